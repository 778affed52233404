"""The architecture families of issue 11 (profiler/matrix.py ARCH_MATRIX) against their recorded
simulated runs: every family recorded, each estimate within 1% of the simulated peak, median
|error| at most 0.3% [issue 11, "Accuracy and tests"]. Re-record with
`nice python benchmarks/accuracy.py --matrix archs --record`."""
import json
import statistics
from pathlib import Path

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.setup import TrainingSetup

RECORD = Path(__file__).resolve().parents[3] / "data" / "measurements" / "accuracy_simulate_archs.json"


def _errors() -> dict[str, float]:
    out = {}
    for r in json.loads(RECORD.read_text())["results"]:
        assert r["measured_bytes"], f"{r['model']} {r['setup']} failed to simulate: {r['error']}"
        setup = TrainingSetup.from_dict({**r["setup"], "batch_size": r["batch_size"], "seq_len": r["seq_len"]})
        est = estimate(resolve_model(r["model"]), setup).peak_allocated_bytes
        out[f'{r["model"]} {r["setup"]} b{r["batch_size"]}x{r["seq_len"]}'] = 100.0 * (est - r["measured_bytes"]) / r["measured_bytes"]
    return out


def test_every_new_family_is_recorded():
    families = {resolve_model(r["model"]).model_type for r in json.loads(RECORD.read_text())["results"]}
    assert {"phi", "gpt_bigcode", "falcon", "deepseek_v2", "starcoder2", "stablelm"} <= families


def test_within_one_percent_median_three_tenths():
    errors = _errors()
    assert all(abs(e) <= 1.0 for e in errors.values()), {k: e for k, e in errors.items() if abs(e) > 1.0}
    assert statistics.median(abs(e) for e in errors.values()) <= 0.3
