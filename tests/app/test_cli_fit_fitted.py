"""`gpuplan fit` for a setup without a closed form: the batch and sequence searched on a sweep fitted to
simulations, the answer checked by one more simulation, and the path that answered named."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import TrainingSetup
from gpuplan.planner.io.catalog import resolve_gpu
from gpuplan.planner.plans.fit import fit

TINY = str(Path(__file__).parent / "fixtures" / "tiny-llama-config.json")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CACHE_DIR", str(tmp_path / "cache"))


def test_fit_takes_the_device_total_it_is_given_and_names_its_source(tiny):
    gpu = resolve_gpu("l4")
    seventh = gpu.memory_bytes // 7 + 1
    r = fit(tiny, TrainingSetup(batch_size=8, seq_len=256), gpu, device_total=lambda s: seventh * s.batch_size,
            source="fitted", notes=("n",))
    assert r.max_batch == 6 and r.source == "fitted" and not r.knobs   # 7 of them exceed the memory
    assert r.to_dict()["source"] == "fitted" and r.to_dict()["notes"] == ["n"]
    assert "source" not in fit(tiny, TrainingSetup(), gpu).to_dict()   # the closed form's dict is as it was


def test_a_peft_method_without_a_closed_form_is_fitted_and_checked(tmp_path):
    pytest.importorskip("peft")
    cfg = tmp_path / "adapter_config.json"
    cfg.write_text(json.dumps({"peft_type": "VERA", "r": 16, "target_modules": ["q_proj", "v_proj"]}))
    r = CliRunner().invoke(cli, ["fit", "-m", TINY, "--method", "lora", "--peft-config", str(cfg), "-s", "128",
                                 "--gpu", "l4", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["source"] == "fitted" and d["max_batch_size"] > 0 and d["knobs"] == []
    check = next(n for n in d["notes"] if n.startswith("checked at micro-batch"))
    err = float(check.rsplit("(", 1)[1].rstrip("%)"))
    assert abs(err) < 5   # the fitted sweep against the simulator at the answer
