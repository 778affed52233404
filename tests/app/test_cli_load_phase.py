"""The load and first-step phases on the command line: shown with --phases, and held to the GPU by
estimate --gpu / --check, fit and recommend whenever they are the run's peak."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

QLORA_70B_FSDP = ["-m", "llama-3.1-70b", "--method", "qlora", "-b", "1", "-s", "1024", "--gpus-per-node", "8",
                  "--fsdp", "full"]


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_phases_shows_every_phase_in_run_order():
    r = _run("estimate", "-m", "qwen-2.5-0.5b", "--method", "lora", "--phases", "--json")
    d = json.loads(r.stdout)
    assert list(d["run_phases"]) == ["load", "first_step", "step"]
    assert d["run_phases"]["first_step"] <= d["run_phases"]["step"] == d["device_total_bytes"]
    assert d["load"]["peak_allocated_bytes"] > 0 and d["load"]["host_bytes_per_node"] >= d["load"]["host_bytes_per_rank"]
    text = _run("estimate", "-m", "qwen-2.5-0.5b", "--method", "lora", "--phases").output
    assert "load phase:" in text and "first step:" in text and "the run's peak is its step phase" in text


def test_the_step_alone_is_reported_as_before_when_it_is_the_peak():
    d = json.loads(_run("estimate", "-m", "qwen-2.5-0.5b", "--method", "lora", "--gpu", "rtx-4090", "--json").stdout)
    assert "run_phases" not in d and "load" not in d and "phase" not in d["fits"][0]


def test_a_load_that_does_not_fit_is_what_check_sees():
    r = _run("estimate", *QLORA_70B_FSDP, "--gpu", "rtx-4090", "--check", "--json")
    assert r.exit_code == 3
    d = json.loads(r.stdout)
    assert d["device_total_bytes"] < 24 * 2**30 < d["run_phases"]["load"]      # the sharded step would fit
    assert d["fits"][0]["phase"] == "load" and not d["fits"][0]["fits"]
    assert "every GPU loads and quantizes the whole model" in " ".join(d["load"]["notes"])


def test_fit_holds_the_load_to_the_gpu():
    d = json.loads(_run("fit", *QLORA_70B_FSDP, "--gpu", "rtx-4090", "--json").stdout)
    step = json.loads(_run("estimate", *QLORA_70B_FSDP, "--json").stdout)
    assert not d["fits"] and d["device_total_bytes"] > step["device_total_bytes"]
    assert d["max_batch_size"] == 0                     # no micro-batch helps: the load does not depend on it
    assert "that is the load phase" in _run("fit", *QLORA_70B_FSDP, "--gpu", "rtx-4090").output


def test_load_options_are_checked():
    r = _run("estimate", "-m", "qwen-2.5-0.5b", "--cpu-ram-efficient-loading")
    assert r.exit_code == 2 and "--fsdp" in r.output
    fsdp = ["estimate", "-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full", "--precision", "bf16-mixed",
            "--phases", "--json"]
    plain, efficient = (json.loads(_run(*fsdp, *extra).stdout)["load"] for extra in ((), ("--cpu-ram-efficient-loading",)))
    assert "fully_shard" in plain["moment"] and "broadcasting" in efficient["moment"]
    cpu, gpu = (json.loads(_run("estimate", "-m", "qwen-2.5-0.5b", "--phases", "--json", *extra).stdout)["load"]
                for extra in ((), ("--load-on-gpu",)))
    assert gpu["host_bytes_per_rank"] < cpu["host_bytes_per_rank"]


def test_accelerates_cpu_ram_efficient_loading_key_is_read():
    cfg = "tests/fixtures/configs/hf/trl-accelerate-fsdp2.yaml"    # fsdp_cpu_ram_efficient_loading: true
    r = _run("estimate", "--from-config", cfg, "-m", "llama-3.1-8b", "--phases", "--json")
    assert "fsdp_cpu_ram_efficient_loading -> --cpu-ram-efficient-loading" in r.stderr
    assert "broadcasting" in json.loads(r.stdout)["load"]["moment"]
