"""estimate --objective orpo|grpo|ppo|rm: GRPO's generation phase planned beside the step, the fit checked
against the larger; vLLM colocate's share taken from each GPU; what is not modelled refused in one line."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

GRPO = ["-m", "qwen-2.5-1.5b", "--objective", "grpo", "--loss", "trl", "--method", "lora", "-b", "8", "-s", "2304",
        "--max-completion-length", "2048", "--num-generations", "8", "--gpu", "h100-80gb", "--json"]


def _run(*args: str):
    return CliRunner().invoke(cli, ["estimate", *args])


def test_grpo_plans_its_generation_phase_and_fits_the_larger_peak():
    out = json.loads(_run(*GRPO, "--steps-per-generation", "8").stdout)
    assert set(out["run_phases"]) == {"step", "generate"}
    assert out["generation"]["completions"] == 64 and out["generation"]["kv_cache_bytes"] > 0
    assert out["run_phases"]["generate"] > out["run_phases"]["step"]   # 64 completions of 2048 tokens: the cache
    assert out["fits"][0]["phase"] == "generate"
    assert out["setup"]["objective"] == "grpo" and out["setup"]["steps_per_generation"] == 8


def test_vllm_colocate_takes_its_share_of_each_gpu():
    hf, vllm = json.loads(_run(*GRPO).stdout), json.loads(_run(*GRPO, "--vllm-colocate", "0.3").stdout)
    row = vllm["fits"][0]
    assert row["vllm_reserved_bytes"] == int(row["memory_bytes"] * 0.3)
    assert vllm["generation"]["kv_cache_bytes"] == 0                   # vLLM's cache lives in its own share
    total = max(vllm["run_phases"].values())
    assert row["headroom_bytes"] == row["memory_bytes"] - row["vllm_reserved_bytes"] - total
    assert hf["fits"][0].get("vllm_reserved_bytes") is None


def test_orpo_estimates_and_what_is_not_modelled_is_refused():
    out = json.loads(_run("-m", "qwen-2.5-0.5b", "--objective", "orpo", "--json").stdout)
    assert out["setup"]["objective"] == "orpo" and any("ORPO modelled" in n for n in out["notes"])
    for objective, word in (("ppo", "PPOTrainer"), ("rm", "RewardTrainer")):
        r = _run("-m", "qwen-2.5-0.5b", "--objective", objective)
        assert r.exit_code == 2 and word in r.output and "Traceback" not in r.output
    r = _run("-m", "qwen-2.5-0.5b", "--objective", "grpo")
    assert r.exit_code == 2 and "--loss trl" in r.output
