"""benchmarks/gpu_validate.py as far as a CPU goes: its case list fits the 8-minute budget, and its CPU
path measures the tiny model and writes records that the schema (planner/io/records.py) accepts."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gpuplan.planner.io.records import load_records

pytest.importorskip("torch")
pytest.importorskip("transformers")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_validate.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_validate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_validate"] = module          # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_cuda_cases_fit_the_budget_and_cover_every_method(capsys):
    gv = _script()
    assert gv.main(["--list"]) == 0
    assert sum(c.seconds for c in gv.CUDA_CASES) <= 420     # under 8 minutes with the device's start
    methods = {c.training_setup().method.value for c in gv.CUDA_CASES}
    assert methods == {"full", "lora", "qlora"}
    assert capsys.readouterr().out.count(" s  ") == len(gv.CUDA_CASES) + 1


def test_the_cpu_path_records_every_case_with_its_estimate(tmp_path, capsys):
    gv = _script()
    assert gv.main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    records = load_records(tmp_path)             # validates each gpuplan.record/1 file
    assert len(records) == len(gv.CPU_CASES) + 1   # + the device's record
    assert all(r["kind"] == "gpu_validate" and r["environment"]["torch"] for r in records)
    summary = json.loads(next(tmp_path.glob("gpu_validate_cpu_*.json")).read_text())
    assert not summary["skipped"] and len(summary["results"]) == len(gv.CPU_CASES)
    for row in summary["results"]:
        assert row["error"] is None
        est, meas = row["estimate"]["peak_allocated_bytes"], row["measured"]["peak_allocated_bytes"]
        assert meas > 0 and abs(est - meas) / meas < 0.15   # the tiny model: a few % (README's accuracy notes)
    assert "MiB" in capsys.readouterr().out


def test_a_short_budget_skips_cases_and_says_so(tmp_path):
    gv = _script()
    assert gv.main(["--device", "cpu", "--out", str(tmp_path), "--budget-s", "0"]) == 0
    summary = json.loads(next(tmp_path.glob("gpu_validate_cpu_*.json")).read_text())
    assert summary["results"] == [] and len(summary["skipped"]) == len(gv.CPU_CASES)
