"""Reward modelling as TRL's RewardTrainer runs it: AutoModelForSequenceClassification(num_labels=1), a hidden x 1
score head in place of the lm_head (untied, no vocabulary logits), chosen and rejected in one batch of 2b
sequences; with peft the score head is a modules_to_save copy."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Component, Method, Objective, Phase, PlannerError, Precision, TrainingSetup, estimate,
                             resolve_model)
from gpuplan.planner.specs.params import param_counts
from gpuplan.planner.specs.parallel import ParallelSpec
from gpuplan.planner.specs.setup import LoraSpec
from gpuplan.planner.techniques import reward

TIED, UNTIED = resolve_model("qwen-2.5-0.5b"), resolve_model("llama-3.1-8b")
RM = TrainingSetup(batch_size=2, seq_len=512, objective=Objective.RM)


def test_the_score_model_swaps_the_lm_head_for_a_hidden_by_one_head():
    for m in (TIED, UNTIED):
        sft, rm = param_counts(m), param_counts(reward.score_model(m))
        assert rm.lm_head == m.hidden                                   # nn.Linear(hidden, 1, bias=False)
        assert rm.total == sft.total - sft.lm_head + m.hidden
        assert rm.embedding == sft.embedding
    assert param_counts(reward.score_model(UNTIED)).total == 8_030_261_248 - 128_256 * 4096 + 4096
    assert reward.score_model(TIED) is reward.score_model(TIED)        # memoized: the per-model caches hit
    assert reward.score_model(reward.score_model(TIED)) is reward.score_model(TIED)
    assert not reward.score_model(TIED).tied_embeddings


def test_full_fine_tuning_drops_the_vocabulary_head_from_every_state():
    """bf16-true full fine-tuning of Llama-3.1-8B: weights, gradients and AdamW's two moments lose the untied
    V x H lm_head and gain the H-element score head; the step's activations hold no logits."""
    setup = RM.with_(precision=Precision.BF16_TRUE)
    rm, sft = estimate(UNTIED, setup), estimate(UNTIED, setup.with_(objective=Objective.SFT, batch_size=4))
    delta = UNTIED.vocab * UNTIED.hidden - UNTIED.hidden
    opt = rm.phase_components[Phase.OPTIMIZER]
    assert opt[Component.WEIGHTS] == sft.phase_components[Phase.OPTIMIZER][Component.WEIGHTS] - 2 * delta
    assert opt[Component.GRADIENTS] == sft.phase_components[Phase.OPTIMIZER][Component.GRADIENTS] - 2 * delta
    assert rm.trainable_params == sft.trainable_params - delta
    assert max(c[Component.LOGITS] for c in rm.phase_components.values()) < 2**20
    assert rm.peak_allocated_bytes < sft.peak_allocated_bytes


def test_lora_trains_the_score_head_copy_beside_the_adapters():
    lora = RM.with_(method=Method.LORA)
    rm, sft = estimate(TIED, lora), estimate(TIED, lora.with_(objective=Objective.SFT))
    assert rm.trainable_params == sft.trainable_params + TIED.hidden   # modules_to_save=["score"]: H trainable
    assert any("modules_to_save copy of the score head" in n for n in rm.notes)


def test_the_loss_is_independent_of_the_vocabulary():
    from gpuplan.planner.specs.resolved import resolve

    m = reward.score_model(TIED)
    rs = resolve(m, RM.for_model(m))
    T, seqs = 2 * RM.batch_size * RM.seq_len, 2 * RM.batch_size
    fwd, saved, bwd = reward.loss_bytes(m, rs, T, seqs)
    e = rs.compute.bytes
    assert fwd == T * e + 8 * T + 16 * seqs          # (2b, s, 1) scores, the int32 mask and product, two index vectors
    assert saved == 16 * seqs                         # IndexBackward keeps the indices only
    assert bwd == T * e + T * m.hidden * e            # the scores' zeros, then the score head's input gradient
    assert reward.loss_bytes(m.__class__(**{**m.__dict__, "vocab": 7 * m.vocab}), rs, T, seqs) == (fwd, saved, bwd)


def test_memory_grows_with_the_batch_and_never_holds_logits():
    prev = 0
    for b in (1, 2, 4):
        est = estimate(TIED, RM.with_(batch_size=b, method=Method.LORA))
        assert est.peak_allocated_bytes > prev
        prev = est.peak_allocated_bytes


@pytest.mark.parametrize("changes, words", [
    ({"loss": "trl"}, "score head"),
    ({"lora": LoraSpec(targets=("q_proj", "lm_head")), "method": Method.LORA}, "no lm_head"),
    ({"lora": LoraSpec(modules_to_save=("lm_head",)), "method": Method.LORA}, "no lm_head"),
    ({"packing": "rows"}, "never packs"),
    ({"parallel": ParallelSpec(gpus=2)}, "one GPU"),
])
def test_what_reward_modelling_cannot_run_is_refused(changes, words):
    from gpuplan.planner.specs.enums import Loss, Packing

    fixed = {k: (Loss(v) if k == "loss" else Packing(v) if k == "packing" else v) for k, v in changes.items()}
    with pytest.raises(PlannerError, match=words):
        RM.with_(**fixed).validate()


def test_to_dict_round_trips():
    setup = RM.with_(method=Method.LORA)
    d = setup.to_dict(TIED)
    assert d["objective"] == "rm" and "precompute_ref_log_probs" not in d and "num_generations" not in d
    assert TrainingSetup.from_dict({k: v for k, v in d.items() if k != "base_dtype"}).objective is Objective.RM
