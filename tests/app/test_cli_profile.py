"""`gpuplan profile` through click's CliRunner: JSON keys, files, tables, and one-line errors."""
from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from gpuplan.app.cli import cli

ESTIMATE_KEYS = {"peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes", "peak_phase",
                 "components", "phases", "phase_components", "setup", "notes"}


@pytest.fixture(scope="module")
def run(tiny_config):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["profile", "--model", tiny_config, "-b", "2", "-s", "16", *args])
    return invoke


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_has_the_estimate_keys_and_nulls_for_what_simulate_cannot_measure(run, tiny_config):
    payload = _json(run("--json"))
    estimate = _json(CliRunner().invoke(cli, ["estimate", "--model", tiny_config, "-b", "2", "-s", "16", "--json"]))
    assert ESTIMATE_KEYS <= set(payload) and ESTIMATE_KEYS <= set(estimate)
    assert payload["device"] == "simulate" and payload["fits"] is None
    assert payload["peak_reserved_bytes"] is None and payload["device_total_bytes"] is None
    assert set(payload["phases"]) == set(estimate["phases"])
    assert set(payload["components"]) <= set(estimate["components"])
    assert payload["setup"] == estimate["setup"]          # the same keys, the model included


def test_compare_gives_signed_errors_per_component(run):
    payload = _json(run("--json", "--compare", "--per-module"))
    comparison = payload["comparison"]
    assert comparison["phase"] == payload["peak_phase"]
    rows = {r["name"]: r for r in comparison["components"]}
    weights = rows["weights"]
    assert weights["measured_bytes"] == payload["components"]["weights"]
    expected = 100 * (weights["estimate_bytes"] - weights["measured_bytes"]) / weights["measured_bytes"]
    assert weights["error_pct"] == pytest.approx(expected, abs=0.01)
    assert rows["cuda_context"]["measured_bytes"] is None and rows["cuda_context"]["error_pct"] is None
    assert payload["per_module"]["param_bytes"] == payload["components"]["weights"]


def test_output_file_is_written_whole(run, tmp_path):
    out = tmp_path / "runs" / "profile.json"
    result = run("--device", "cpu", "--output", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["peak_allocated_bytes"] > 0
    assert os.listdir(out.parent) == ["profile.json"]           # no temporary left behind
    assert "peak allocated" in result.stdout                     # tables still printed


def test_tables_on_stdout_progress_on_stderr(run):
    result = run("--compare", "--per-module")
    assert result.exit_code == 0, result.output
    for text in ("peak allocated", "not measurable here", "backward", "optimizer_state",
                 "estimate vs measured", "per module", "lm_head"):
        assert text in result.stdout, text
    assert "simulating: config, 2 steps, done in" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-b", "0"], "Error: batch size must be at least 1, got 0"),
    (["--find-max-batch"], "Error: --find-max-batch runs trials on a GPU: add --device cuda"),
    (["--lora-r", "0", "--method", "lora"], "Error: LoRA rank must be at least 1, got 0"),
])
def test_bad_input_is_one_line_exit_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.output and result.stdout == ""


def test_unknown_model_suggests_close_names():
    result = CliRunner().invoke(cli, ["profile", "--model", "llama-3.1-8", "--json"])
    assert result.exit_code == 2 and "did you mean" in result.stderr and "Traceback" not in result.output


def test_cuda_without_a_gpu_names_the_alternatives(run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run("--device", "cuda")
    assert result.exit_code == 2
    assert "no CUDA GPU" in result.stderr and "--device simulate" in result.stderr


def test_a_library_refusing_the_setup_is_one_line(run, monkeypatch):
    import gpuplan.profiler.simulate

    def refuse(*args, **kwargs):
        raise ValueError("Gemma2ForCausalLM does not support sdpa yet.\nPlease request it.")

    monkeypatch.setattr(gpuplan.profiler.simulate, "simulate", refuse)
    result = run("--steps", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "Error: ValueError from the model's library: Gemma2ForCausalLM does not support sdpa yet."


def test_repeated_layers_are_grouped_in_the_table():
    from gpuplan.app.profile_tables import group_modules

    rows = [{"name": f"model.layers.{i}.mlp", "type": "MLP", "param_bytes": 10, "saved_bytes": 1} for i in range(12)]
    rows.append({"name": "lm_head", "type": "Linear", "param_bytes": 50, "saved_bytes": 0})
    assert group_modules(rows) == [
        {"name": "model.layers.*.mlp", "type": "MLP", "count": 12, "param_bytes": 120, "saved_bytes": 12},
        {"name": "lm_head", "type": "Linear", "count": 1, "param_bytes": 50, "saved_bytes": 0},
    ]
