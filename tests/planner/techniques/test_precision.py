"""techniques/precision.py: autocast's weight copies by recipe, the recipe note, and the precision rows of
the accuracy matrix (profiler/matrix.py PRECISION_MATRIX) within 1% of their recorded simulated peaks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan.planner import Method, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.specs.enums import DType
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import precision

LLAMA = resolve_model("llama-3.2-1b")
RECORD = Path(__file__).resolve().parents[3] / "data" / "measurements" / "accuracy_simulate_precision.json"


def test_autocast_copies_only_fp32_weights():
    layers, head, _ = precision.weight_copies(LLAMA, resolve(LLAMA, TrainingSetup()))
    assert layers > 0 and head == 2 * LLAMA.vocab * LLAMA.hidden
    assert precision.weight_copies(LLAMA, resolve(LLAMA, TrainingSetup(weights=DType.BF16))) == (0, 0, 0)
    assert precision.weight_copies(LLAMA, resolve(LLAMA, TrainingSetup(method=Method.QLORA, kbit_upcast=False))) \
        == (0, 0, 0)


def test_the_note_names_only_recipes_no_preset_names():
    def note(s: TrainingSetup) -> list[str]:
        return precision.notes(resolve(LLAMA, s.for_model(LLAMA)))

    for s in (TrainingSetup(), TrainingSetup(precision=Precision.BF16_TRUE),
              TrainingSetup(method=Method.LORA, weights=DType.BF16),
              TrainingSetup(precision=Precision.BF16_MIXED, autocast=False, weights=DType.BF16)):
        assert note(s) == []
    assert note(TrainingSetup(weights=DType.BF16)) == [
        "precision recipe: bf16 weights (and their gradients and optimizer states), bf16 autocast"]
    assert note(TrainingSetup(method=Method.QLORA, kbit_upcast=False)) == [
        "precision recipe: bf16 weights, bf16 autocast, no prepare_model_for_kbit_training: non-quantized weights "
        "stay bf16"]


def _rows() -> list[dict]:
    return [r for r in json.loads(RECORD.read_text())["results"] if r["measured_bytes"]]


def test_the_precision_matrix_is_recorded_whole():
    from gpuplan.profiler.matrix import MATRICES   # the rows' definitions (no torch import needed for them)

    assert {(r["model"], json.dumps(r["setup"], sort_keys=True)) for r in _rows()} == \
        {(c.model, json.dumps(c.setup, sort_keys=True)) for c in MATRICES["precision"]}


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f'{r["model"]} {r["setup"]}')
def test_each_precision_row_within_one_percent_of_the_simulated_step(row):
    setup = TrainingSetup.from_dict({**row["setup"], "batch_size": row["batch_size"], "seq_len": row["seq_len"]})
    est = estimate(resolve_model(row["model"]), setup).peak_allocated_bytes
    assert abs(est - row["measured_bytes"]) <= 0.01 * row["measured_bytes"]
