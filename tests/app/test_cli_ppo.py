"""estimate --objective ppo: TRL 1.12.0's PPOTrainer planned on one GPU, its knobs in --json, its rollout a run
phase, and the library versions without a PPOTrainer refused in one line."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app import stack_options
from gpuplan.app.cli import cli

PPO = ["-m", "qwen-2.5-0.5b", "--objective", "ppo", "--precision", "bf16-true", "-b", "2", "-s", "256",
       "--response-length", "64", "--method", "lora", "--json"]


def _run(*args: str):
    return CliRunner().invoke(cli, ["estimate", *args])


def test_ppo_estimates_with_its_knobs_in_the_json():
    r = _run(*PPO, "--rollout-batch", "2", "--grad-accum", "4", "--num-mini-batches", "2",
             "--value-model", "qwen-2.5-0.5b")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    setup = out["setup"]
    assert setup["objective"] == "ppo" and setup["response_len"] == 64 and setup["rollout_batch"] == 2
    assert setup["mini_batches"] == 2 and setup["value_model"] == "qwen-2.5-0.5b" and "reward_model" not in setup
    assert any("TRL 1.12.0's trl.experimental.ppo" in n for n in out["notes"])


def test_ppo_run_phases_hold_the_rollout():
    out = json.loads(_run(*PPO, "--phases").stdout)
    assert {"step", "generate"} <= set(out["run_phases"])


def test_what_ppo_does_not_take_is_refused_in_one_line():
    for bad, word in ((["--gpus", "2"], "one GPU only"), (["--precision", "bf16-mixed"], "mixed_precision"),
                      (["--response-length", "256"], "below --seq-len")):
        r = _run(*PPO, *bad)
        assert r.exit_code == 2 and word in r.output and "Traceback" not in r.output, r.output


def test_an_installed_trl_without_ppo_trainer_is_refused(monkeypatch):
    monkeypatch.setattr(stack_options, "installed_versions", lambda: {"trl": "1.14.0", "torch": "2.13.0"})
    r = _run(*PPO, "--stack-versions", "installed")
    assert r.exit_code == 2 and "installed trl 1.14.0 has no PPOTrainer" in r.output and "Traceback" not in r.output
    assert [line for line in r.output.splitlines() if "PPOTrainer" in line][0].startswith("Error: ")
    monkeypatch.setattr(stack_options, "installed_versions", lambda: {"trl": "1.12.0", "torch": "2.13.0"})
    assert _run(*PPO, "--stack-versions", "installed").exit_code == 0
