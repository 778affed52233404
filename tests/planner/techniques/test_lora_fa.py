"""LoRA-FA (peft's create_lorafa_optimizer, planner/techniques/lora_fa.py): frozen lora_A's weights stay, their
gradient, state, saved input and weight-gradient FLOPs go; what it cannot combine with is refused in one line."""
import pytest

from gpuplan.planner import estimate
from gpuplan.planner import PlannerError
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.states import states
from gpuplan.planner.specs.enums import Component, Method, Optimizer, Phase
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import Checkpointing, LoraSpec, TrainingSetup
from gpuplan.planner.speed.flops import step_flops
from gpuplan.planner.techniques import lora_fa

M = resolve_model("qwen-2.5-0.5b")
QV = LoraSpec(r=32, alpha=64, targets=("q_proj", "v_proj"))


def setup(opt: Optimizer, **kw) -> TrainingSetup:
    return TrainingSetup(**{"method": Method.LORA, "optimizer": opt, "lora": QV, "batch_size": 2, "seq_len": 256, **kw})


def test_a_is_frozen_b_keeps_adamws_moments():
    lora, fa = (states(M, resolve(M, setup(o))) for o in (Optimizer.ADAMW_FUSED, Optimizer.LORAFA))
    a = M.n_layers * 32 * 2 * M.hidden                     # lora_A of q and v: r x in each
    assert lora.trainable_params - fa.trainable_params == a
    assert fa.weights == lora.weights                     # A's weights stay on the model
    assert fa.optimizer_state == 2 * 4 * fa.trainable_params   # exp_avg_B, exp_avg_sq_B in fp32
    assert lora_fa.frozen_a_params(M, resolve(M, setup(Optimizer.LORAFA))) == a


def test_a_frozen_lora_a_saves_no_input():
    no_ckpt = dict(checkpointing=Checkpointing.NONE, lora=LoraSpec(r=16, dropout=0.05, targets=("all-linear",)))
    lora, fa = (estimate(M, setup(o, **no_ckpt)) for o in (Optimizer.ADAMW, Optimizer.LORAFA))
    saved = [e.phase_components[Phase.FORWARD][Component.ACTIVATIONS] for e in (lora, fa)]
    # each adapted linear's dropout output (bf16 under autocast) goes; its bool mask stays
    inputs = 2 * 256 * M.n_layers * (3 * M.hidden + M.hidden + 2 * M.hidden + M.intermediate)
    assert saved[0] - saved[1] == pytest.approx(2 * inputs, rel=0.01)


def test_no_weight_gradient_flops_for_a():
    lora, fa = (step_flops(M, setup(o)) for o in (Optimizer.ADAMW_FUSED, Optimizer.LORAFA))
    assert lora.backward - fa.backward == 2 * M.n_layers * 32 * 2 * M.hidden
    assert lora.forward == fa.forward


@pytest.mark.parametrize("kw, words", [
    ({"method": Method.FULL}, "not with full fine-tuning"),
    ({"lora": LoraSpec(r=8, use_dora=True)}, "--use-dora"),
    ({"lora": LoraSpec(r=8, targets=("q_proj", "embed_tokens"))}, "embed_tokens"),
    ({"optimizer_in_backward": True}, "--optimizer-in-backward"),
])
def test_combinations_it_cannot_train_are_refused(kw, words):
    with pytest.raises(PlannerError, match=words):
        estimate(M, setup(Optimizer.LORAFA, **kw))


def test_the_estimate_says_how_it_was_modelled():
    e = estimate(M, setup(Optimizer.LORAFA))
    assert any("LoRA-FA" in n for n in e.notes)
    assert TrainingSetup.from_dict(setup(Optimizer.LORAFA).to_dict()).optimizer is Optimizer.LORAFA
