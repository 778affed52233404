"""Time of the preference objectives: the sequences their trainers put through the policy and the no-grad
forwards (techniques/preference.py time_sequences), and reward modelling's score head instead of the lm_head."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Loss, Method, Objective
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.speed.throughput import step_time, time_columns

MODEL, GPU = resolve_model("llama-3.2-1b"), resolve_gpu("a100-80gb")


def _setup(objective, **kw):
    loss = Loss.TRL if objective in (Objective.DPO, Objective.KTO) else Loss.HF
    return TrainingSetup(method=Method.LORA, batch_size=4, seq_len=1024, objective=objective, loss=loss, **kw)


def _scaled(objective, **kw):
    """(step columns of `objective`, the same setup's SFT columns under the objective's loss)."""
    s = _setup(objective, **kw)
    return time_columns(MODEL, s, GPU), time_columns(MODEL, s.with_(objective=Objective.SFT), GPU), s


@pytest.mark.parametrize("objective, policy, forward", [(Objective.DPO, 2, 2), (Objective.KTO, 1, 3),
                                                        (Objective.ORPO, 2, 0)])
def test_the_step_counts_each_sequence_and_each_no_grad_forward(objective, policy, forward):
    c, sft, _ = _scaled(objective)
    share = sft.flops.forward / sft.flops.hardware
    passes = policy + forward * share
    assert c.objective[:2] == (policy, forward)
    assert c.gemm == pytest.approx(sft.gemm * passes)
    assert c.memory - c.optimizer == pytest.approx((sft.memory - sft.optimizer) * passes)
    assert c.layer_passes == pytest.approx(sft.layer_passes * passes)
    assert c.optimizer == pytest.approx(sft.optimizer)          # one optimizer step, whatever the batch holds
    assert c.tokens_per_step == sft.tokens_per_step * policy


def test_precomputed_reference_log_probs_drop_the_reference_forward():
    with_ref, _, _ = _scaled(Objective.DPO)
    pre, sft, _ = _scaled(Objective.DPO, precompute_ref_log_probs=True)
    assert pre.objective[:2] == (2, 0) and pre.gemm == pytest.approx(2 * sft.gemm) and with_ref.gemm > pre.gemm


def test_reward_modelling_times_the_score_head_not_the_vocabulary():
    rm = step_time(MODEL, _setup(Objective.RM), GPU)
    sft = step_time(MODEL, _setup(Objective.SFT), GPU)
    head = MODEL.vocab * MODEL.hidden
    # the forward loses the (vocab x hidden) head matmul, gains a hidden x 1 score head
    assert sft.flops.forward - rm.flops.forward == pytest.approx(2 * (head - MODEL.hidden))
    assert rm.tokens_per_step == 2 * sft.tokens_per_step        # chosen and rejected
    assert any(a.name == "objective_sequences" for a in rm.assumptions)


def test_grpo_times_its_rollouts_with_hf_generate_and_says_so():
    s = TrainingSetup(method=Method.LORA, batch_size=8, seq_len=1024, objective=Objective.GRPO, loss=Loss.TRL,
                      completion_len=768)
    t = step_time(MODEL, s, GPU)
    note = next(a for a in t.assumptions if a.name == "rollouts")
    assert t.generation > 0 and "HF generate" in note.source and "not checked against a published" in note.source
