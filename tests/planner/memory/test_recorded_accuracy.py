"""The estimate against the recorded profiler runs of the accuracy matrix (profiler/matrix.py).

`python benchmarks/accuracy.py --record` simulates every case and writes
data/measurements/accuracy_simulate.json (and, on a GPU, accuracy_cuda_<gpu>.json). This test
needs neither torch nor a GPU: it re-estimates each recorded setup and holds the estimate to
the issue's targets against what the profiler measured then.
"""
import json
import statistics
from pathlib import Path

import pytest

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.setup import TrainingSetup

MEASUREMENTS = Path(__file__).resolve().parents[3] / "data" / "measurements"
RECORDS = sorted(MEASUREMENTS.glob("accuracy_*.json"))


def _results(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text())["results"] if r["measured_bytes"]]


def _error_pct(r: dict) -> float:
    setup = TrainingSetup.from_dict({**r["setup"], "batch_size": r["batch_size"], "seq_len": r["seq_len"]})
    est = estimate(resolve_model(r["model"]), setup).peak_allocated_bytes
    return 100.0 * (est - r["measured_bytes"]) / r["measured_bytes"]


def test_the_simulated_matrix_is_recorded_and_broad():
    path = MEASUREMENTS / "accuracy_simulate.json"
    assert path.exists(), "run: python benchmarks/accuracy.py --record"
    data = json.loads(path.read_text())
    results = _results(path)
    assert len(results) >= 40
    assert len({r["family"] for r in results}) >= 6
    assert {"torch", "transformers", "peft", "date", "device"} <= set(data["environment"])
    methods = {r["setup"].get("method", "full") for r in results}
    assert methods == {"full", "lora", "qlora"}


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_estimates_meet_the_targets_against_recorded_runs(path):
    errors = {f'{r["model"]} {r["setup"]} b{r["batch_size"]}x{r["seq_len"]}': _error_pct(r) for r in _results(path)}
    worst_under = {k: e for k, e in errors.items() if e < -3.0}
    worst = {k: e for k, e in errors.items() if abs(e) > 5.0}
    assert not worst_under, f"under-estimates beyond -3%: {worst_under}"
    assert not worst, f"errors beyond 5%: {worst}"
    assert statistics.median(abs(e) for e in errors.values()) <= 2.0
