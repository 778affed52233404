"""AOTAutograd's partitioner on the real HF model's fake-tensor graph (profiler/compiled.py) against the
planner's closed form (planner/techniques/compile.py); and the recorded rows of benchmarks/compile_saved.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan.planner import TrainingSetup, resolve_model
from gpuplan.profiler.compiled import CASES, case_setup, compare, planned_saved_bytes, saved_for_backward, truncated

RECORD = Path(__file__).resolve().parents[2] / "data" / "measurements" / "compile_saved.json"
QWEN2 = truncated(resolve_model("qwen-2.5-0.5b"), 2)


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup.from_dict({"checkpointing": "none", "batch_size": 1, "seq_len": 32, "compile": "inductor", **kw})


def test_partitioner_count_matches_the_closed_form_and_saves_less_than_eager():
    setup = _setup(precision="bf16-mixed")
    counted = saved_for_backward(QWEN2, setup)
    assert counted.activations == pytest.approx(planned_saved_bytes(QWEN2, setup), rel=0.01)
    # the saved set holds no fp32 logits: the 16-bit logits (T x V) are the largest tensor kept
    largest = max(counted.tensors, key=lambda t: t[3])
    assert largest[1] == (32, QWEN2.vocab) and largest[2] == "bfloat16"
    assert counted.weight_copies > 0   # autocast's bf16 copies of the fp32 weights, counted apart
    # the default partitioner keeps what eager autograd keeps: the fp32 logits and every elementwise output
    assert saved_for_backward(QWEN2, setup, "default").activations > 1.5 * counted.activations


def test_recorded_rows_within_one_percent():
    rows = json.loads(RECORD.read_text())["rows"]
    assert len(rows) == len(CASES)
    for (name, layers, overrides), row in zip(CASES, rows):
        m = truncated(resolve_model(name), layers)
        assert row["model"] == name and row["layers"] == layers
        planned = planned_saved_bytes(m, case_setup(overrides))   # today's closed form, not the recorded one
        assert abs(planned - row["partitioner_bytes"]) <= 0.01 * row["partitioner_bytes"], (name, overrides)


def test_profile_refuses_compile_in_one_line():
    from gpuplan.planner.specs.errors import PlannerError
    from gpuplan.profiler.run import measure

    with pytest.raises(PlannerError, match="eager kernels"):
        measure(QWEN2, _setup())
