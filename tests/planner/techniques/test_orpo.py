"""ORPO as trl.experimental's ORPOTrainer runs it: chosen and rejected in one batch, the full logits read
twice (the chosen NLL, both sides' log-probs), no reference model."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Component, Loss, Method, Objective, Phase, PlannerError, Precision, TrainingSetup,
                             estimate, resolve_model)
from gpuplan.planner.specs.parallel import ParallelSpec
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import orpo

M = resolve_model("qwen-2.5-0.5b")
BASE = TrainingSetup(batch_size=2, seq_len=512, method=Method.LORA, objective=Objective.ORPO)


def _loss(setup: TrainingSetup) -> tuple[int, int, int]:
    rs = resolve(M, setup.for_model(M))
    b, s = setup.batch_size, setup.seq_len
    return orpo.loss_bytes(M, rs, 2 * b * s, 2 * b)


def test_no_reference_model_and_twice_the_sequences_of_sft():
    est, sft = estimate(M, BASE), estimate(M, BASE.with_(objective=Objective.SFT, batch_size=4))
    for phase in Phase:   # no reference weights: the weights and optimizer state are SFT's
        for c in (Component.WEIGHTS, Component.OPTIMIZER_STATE):
            assert est.phase_components[phase][c] == sft.phase_components[phase][c]
    assert est.phase_components[Phase.FORWARD][Component.ACTIVATIONS] == \
        sft.phase_components[Phase.FORWARD][Component.ACTIVATIONS]
    assert any(n.startswith("ORPO modelled from TRL 1.16.0") for n in est.notes)


def test_bf16_logits_with_the_chosen_copy_and_log_softmax():
    """bf16-true: logits (2b, s, V) bf16, then the chosen slice's contiguous copy and log_softmax's bf16 output."""
    setup = BASE.with_(precision=Precision.BF16_TRUE)
    fwd, saved, bwd = _loss(setup)
    b, s, V = 2, 512, M.vocab
    logits, chosen = 2 * b * s * V * 2, b * (s - 1) * V * 2
    assert logits + 2 * chosen < fwd < logits + 2 * chosen + 64 * 2 * b * s   # + int64/fp32 vectors
    assert logits + chosen < saved < fwd
    assert bwd == 2 * logits - chosen     # two (2b, s, V) gradients and their sum, once log_softmax's output is freed


def test_one_pair_needs_no_contiguous_copy():
    """b == 1: logits[:1][..., :-1, :] is already contiguous, so `.contiguous()` copies nothing."""
    one = BASE.with_(batch_size=1, precision=Precision.BF16_TRUE)
    fwd, saved, _ = _loss(one)
    s, V = 512, M.vocab
    assert fwd == saved                       # the forward's peak is what it keeps: no (s-1, V) copy
    two = _loss(BASE.with_(precision=Precision.BF16_TRUE))
    assert two[0] - two[1] == 2 * (s - 1) * V * 2   # b == 2: the chosen half's copy, freed after the NLL


def test_autocast_runs_log_softmax_in_fp32():
    mixed, true = _loss(BASE), _loss(BASE.with_(precision=Precision.BF16_TRUE))
    b, s, V = 2, 512, M.vocab
    assert mixed[0] - true[0] == b * (s - 1) * V * (4 + 4 - 2)   # an fp32 copy and an fp32 output, not bf16


def test_orpo_refuses_what_it_cannot_run():
    with pytest.raises(PlannerError, match="--loss hf"):
        estimate(M, BASE.with_(loss=Loss.TRL))
    with pytest.raises(PlannerError, match="one GPU only"):
        estimate(M, BASE.with_(parallel=ParallelSpec(gpus=2)))


def test_to_dict_shows_the_objective_only():
    d = BASE.to_dict()
    assert d["objective"] == "orpo" and "precompute_ref_log_probs" not in d
    assert TrainingSetup.from_dict(d).objective is Objective.ORPO and TrainingSetup.from_dict(d).to_dict() == d
    assert "objective" not in BASE.with_(objective=Objective.SFT).to_dict()
