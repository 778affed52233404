"""estimate's run phases: eval and save planned beside the step, the fit checked against the run's peak."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli


def _run(*args: str):
    return CliRunner().invoke(cli, ["estimate", *args])


def test_the_eval_phase_can_be_what_does_not_fit():
    base = ["-m", "llama-3.1-8b", "--method", "qlora", "-b", "1", "-s", "2048", "--loss", "trl", "--gpu", "rtx-4090", "--json"]
    step = json.loads(_run(*base).stdout)
    assert step["fits"][0]["fits"] and "run_phases" not in step and "phase" not in step["fits"][0]
    with_eval = json.loads(_run(*base, "--eval-batch-size", "8", "--eval-accumulate-logits", "--eval-batches", "20").stdout)
    assert set(with_eval["run_phases"]) == {"step", "eval"}
    assert with_eval["run_phases"]["eval"] > with_eval["run_phases"]["step"]
    assert with_eval["fits"][0]["phase"] == "eval" and not with_eval["fits"][0]["fits"]
    assert with_eval["eval"]["steps_on_gpu"] == 20


def test_eval_flags_without_an_eval_batch_are_refused():
    r = _run("-m", "qwen-2.5-0.5b", "--eval-accumulate-logits")
    assert r.exit_code == 2 and "--eval-batch-size" in r.output


def test_save_phase_joins_the_run_phases():
    d = json.loads(_run("-m", "qwen-2.5-0.5b", "--save-steps", "100", "--json").stdout)
    assert set(d["run_phases"]) == {"step", "save"} and d["run_phases"]["save"] < d["run_phases"]["step"]


def test_adapters_on_one_base():
    d = json.loads(_run("-m", "llama-3.1-8b", "--method", "lora", "--lora-r", "16", "-b", "2", "-s", "1024",
                        "--adapters", "10", "--gpu", "a100-80gb", "--json").stdout)
    per = 32 * 16 * ((4096 + 4096) + (4096 + 1024)) * 4          # q_proj and v_proj, fp32 adapters
    assert d["adapters"] == {"count": 10, "bytes_per_adapter": per, "resident_bytes": 9 * per}
    assert d["run_phases"]["step"] == d["device_total_bytes"] + 9 * per
    fit = d["fits"][0]
    assert fit["adapters_that_fit"] == 1 + (fit["memory_bytes"] - d["device_total_bytes"]) // per
    bad = _run("-m", "llama-3.1-8b", "--adapters", "3")
    assert bad.exit_code == 2 and "--method lora" in bad.output
