"""estimate --objective dpo --stack-versions trl-1.12: TRL 1.9's DPOTrainer (planner/techniques/dpo19.py) planned,
named in --json, and the stacks or objectives whose preference trainer is not modelled refused in one line; without
a stack, or with trl-1.16, TRL 1.16's DPO plan is unchanged."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

DPO = ["-m", "qwen-2.5-0.5b", "--objective", "dpo", "--method", "lora", "-b", "2", "-s", "512", "--json"]


def _run(*args: str):
    return CliRunner().invoke(cli, ["estimate", *args])


def test_the_trl_1_12_stack_plans_trl_1_9s_dpo_trainer():
    r = _run(*DPO, "--stack-versions", "trl-1.12")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["setup"]["trl_version"] == "1.9" and out["setup"]["loss"] == "hf"
    assert any("TRL 1.9.0's source" in n for n in out["notes"])
    today = json.loads(_run(*DPO).stdout)
    assert "trl_version" not in today["setup"] and today["setup"]["loss"] == "trl"
    assert out["peak_allocated_bytes"] > today["peak_allocated_bytes"]   # full logits of both models
    same = json.loads(_run(*DPO, "--stack-versions", "trl-1.16").stdout)
    assert "trl_version" not in same["setup"] and same["setup"]["loss"] == "trl"


def test_what_is_not_modelled_is_refused_in_one_line():
    for extra, word in ((["--stack-versions", "trl-1.14"], "TRL 1.13-1.14"),
                        (["--stack-versions", "trl-1.12", "--loss", "trl"], "--loss hf"),
                        (["--stack-versions", "transformers-5.24"], "no TRL")):
        r = _run(*DPO, *extra)
        assert r.exit_code == 2 and word in r.output and "Traceback" not in r.output, r.output
    for objective in ("kto", "grpo"):
        r = _run("-m", "qwen-2.5-0.5b", "--objective", objective, "-b", "2", "-s", "1024",
                 "--stack-versions", "trl-1.12")
        assert r.exit_code == 2 and f"TRL 1.9's {objective.upper()}Trainer is not modelled" in r.output, r.output
