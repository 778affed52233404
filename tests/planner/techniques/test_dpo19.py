"""TRL 1.9's DPOTrainer (planner/techniques/dpo19.py): picked by the trl-1.12 stack, its full-logits step, what it
refuses, and the recorded simulator rows (TRL 1.9.0's own _compute_loss) within 1%."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan.planner import PlannerError
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.enums import Objective, TrlVersion
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.specs.stack import Stack
from gpuplan.planner.techniques import dpo19

RECORD = Path(__file__).resolve().parents[3] / "data" / "measurements" / "accuracy_simulate_trl19.json"
DPO19 = {"objective": "dpo", "trl_version": "1.9", "loss": "hf", "precision": "bf16-true", "method": "lora",
         "batch_size": 2, "seq_len": 512}


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup.from_dict({**DPO19, **kw})


def test_the_stack_rows_pick_the_trainer_and_refuse_what_is_not_modelled():
    assert dpo19.for_stack(Stack.TRL_1_12, Objective.DPO) is TrlVersion.TRL_1_9
    assert dpo19.for_stack(Stack.TRL_1_16, Objective.GRPO) is TrlVersion.TRL_1_16
    for objective in (Objective.KTO, Objective.GRPO):
        with pytest.raises(PlannerError, match="TRL 1.9's .*Trainer is not modelled"):
            dpo19.for_stack(Stack.TRL_1_12, objective)
    for stack in (Stack.TRL_1_6, Stack.TRL_1_14, Stack.TRANSFORMERS, Stack.TORCHTUNE):
        with pytest.raises(PlannerError, match=f"--stack-versions {stack.value}"):
            dpo19.for_stack(stack, Objective.DPO)


def test_the_default_setup_and_its_dict_are_unchanged():
    s = TrainingSetup(objective=Objective.DPO)
    assert s.trl_version is TrlVersion.TRL_1_16 and "trl_version" not in s.to_dict()
    one_nine = _setup()
    d = one_nine.to_dict()
    assert d["trl_version"] == "1.9"
    back = TrainingSetup.from_dict(d)
    assert back.trl_version is TrlVersion.TRL_1_9 and back.to_dict() == d


@pytest.mark.parametrize("kw, word", [
    ({"loss": "trl"}, "--loss hf"),
    ({"objective": "kto"}, "TRL 1.9's KTOTrainer is not modelled"),
    ({"objective": "grpo", "loss": "trl"}, "TRL 1.9's GRPOTrainer is not modelled"),
    ({"objective": "sft"}, "applies to --objective dpo"),
    ({"precision": "fp32"}, "logsumexp path"),
    ({"lora": {"dropout": 0.05}}, "disable_dropout"),
    ({"ckpt_every": 2}, "--ckpt-every"),
    ({"parallel": {"gpus": 2}}, "one GPU only"),
    ({"packing": "rows"}, "pads chosen and rejected"),
    ({"padding": "longest"}, "pads chosen and rejected"),
])
def test_what_trl_1_9_dpo_does_not_model_is_refused_in_one_line(kw, word):
    with pytest.raises(PlannerError, match=word) as e:
        _setup(**kw).validate()
    assert "\n" not in str(e.value)


def test_the_full_logits_and_the_saved_log_softmax():
    m = resolve_model("qwen-2.5-0.5b")
    s = _setup()
    rs = resolve(m, s.for_model(m))
    T, rows = 2 * s.batch_size * s.seq_len, 2 * s.batch_size
    fwd, saved, bwd = dpo19.loss_bytes(m, rs, T, rows)
    assert saved == (T - rows) * m.vocab * 2                 # every row's bf16 log-softmax, kept for backward
    assert fwd >= 2 * T * m.vocab * 2 + saved                 # the policy's and the reference's logits alive at once
    auto = resolve(m, _setup(precision="bf16-mixed").for_model(m))
    assert dpo19.loss_bytes(m, auto, T, rows)[1] == (T - rows) * m.vocab * 4   # fp32 under CUDA autocast
    pre = resolve(m, _setup(precompute_ref_log_probs=True).for_model(m))
    assert dpo19.loss_bytes(m, pre, T, rows)[0] < fwd and dpo19.reference_forward_bytes(m, pre, T, rows) == 0


def test_trl_1_9_plans_more_than_the_fused_head_of_trl_1_16():
    m = resolve_model("llama-3.2-1b")
    old = estimate(m, _setup())
    new = estimate(m, _setup(trl_version="1.16", loss="trl"))
    assert old.peak_allocated_bytes > new.peak_allocated_bytes
    assert any("TRL 1.9.0's source" in n for n in old.notes)
    assert not any("TRL 1.9.0's source" in n for n in new.notes)


def test_the_recorded_simulator_rows_are_within_one_percent():
    rows = [r for r in json.loads(RECORD.read_text())["results"] if r["measured_bytes"]]
    assert len(rows) >= 13 and sum(r["setup"]["precision"] == "bf16-mixed" for r in rows) >= 4   # autocast too
    assert json.loads(RECORD.read_text())["environment"]["trl"] == "1.9.0"
    for r in rows:
        setup = TrainingSetup.from_dict({**r["setup"], "batch_size": r["batch_size"], "seq_len": r["seq_len"]})
        est = estimate(resolve_model(r["model"]), setup).peak_allocated_bytes
        assert abs(est - r["measured_bytes"]) / r["measured_bytes"] < 0.01, (r["model"], r["setup"])


def test_the_reference_head_holds_autocasts_cast_of_a_frozen_fp32_lm_head():
    m = resolve_model("llama-3.2-1b")
    T, rows = 2 * 2 * 256, 2 * 2
    fp32 = resolve(m, _setup(precision="bf16-mixed", seq_len=256).for_model(m))     # fp32 base weights, autocast
    bf16 = resolve(m, _setup(precision="bf16-true", seq_len=256).for_model(m))
    cast = m.vocab * m.hidden * 2
    logits = T * m.vocab * 2
    assert dpo19.reference_forward_bytes(m, fp32, T, rows) >= 2 * logits + cast
    assert dpo19.reference_forward_bytes(m, bf16, T, rows) < 2 * logits + cast
