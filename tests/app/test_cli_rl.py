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
    r = _run("-m", "qwen-2.5-0.5b", "--objective", "ppo")
    assert r.exit_code == 2 and "PPOTrainer" in r.output and "Traceback" not in r.output
    r = _run("-m", "qwen-2.5-0.5b", "--objective", "grpo", "--loss", "chunked")
    assert r.exit_code == 2 and "--loss trl" in r.output


def test_reward_modelling_plans_the_score_head_model():
    out = json.loads(_run("-m", "llama-3.1-8b", "--objective", "rm", "--method", "lora", "-b", "2", "-s", "1024",
                          "--gpu", "rtx-4090", "--json").stdout)
    assert out["setup"]["objective"] == "rm" and out["params"]["lm_head"] == 4096   # the score head, hidden x 1
    assert out["components"]["logits"] < 2**20                                       # no vocabulary logits
    assert any("RewardTrainer" in n for n in out["notes"])
    for bad, word in ((["--loss", "trl"], "score head"), (["--lora-targets", "q_proj,lm_head"], "lm_head"),
                      (["--packing", "rows"], "never packs"), (["--eval-batch-size", "4"], "eval")):
        r = _run("-m", "qwen-2.5-0.5b", "--objective", "rm", "--method", "lora", *bad)
        assert r.exit_code == 2 and word in r.output and "Traceback" not in r.output, r.output


def test_reward_modellings_run_phases_load_and_save_the_score_head_model():
    """Load and save phases see the sequence-classification model: a full bf16 checkpoint of Llama-3.1-8B loses the
    untied V x H lm_head from the weights and both AdamW moments, and gains the H-element score head."""
    args = ["-m", "llama-3.1-8b", "-b", "1", "-s", "512", "--precision", "bf16-true", "--save-steps", "100",
            "--phases", "--json"]
    rm, sft = (json.loads(_run(*args, "--objective", o).stdout) for o in ("rm", "sft"))
    head = (128_256 * 4096 - 4096) * 2
    saved = sft["checkpoint"]["bytes_per_checkpoint"] - rm["checkpoint"]["bytes_per_checkpoint"]
    assert abs(saved - 3 * head) < 2**20                       # weights + exp_avg + exp_avg_sq, headers apart
    assert rm["run_phases"]["load"] < sft["run_phases"]["load"]


def test_trl_trainers_with_a_fused_head_get_trl_s_loss_when_none_is_given():
    for objective in ("dpo", "kto"):
        out = json.loads(_run("-m", "qwen-2.5-0.5b", "--method", "lora", "--objective", objective, "-b", "2",
                              "--json").stdout)
        assert out["setup"]["loss"] == "trl", objective
    grpo = [a for a in GRPO if a not in ("--loss", "trl")]
    assert json.loads(_run(*grpo).stdout)["setup"]["loss"] == "trl"
    given = _run("-m", "qwen-2.5-0.5b", "--method", "lora", "--objective", "dpo", "--loss", "hf")
    assert given.exit_code == 2 and "use --loss trl with --objective dpo" in given.output   # a loss given is kept
    sft = json.loads(_run("-m", "qwen-2.5-0.5b", "--method", "lora", "--json").stdout)
    assert sft["setup"]["loss"] == "hf"   # SFT keeps the project's default
