"""`gpuplan recommend`, `fit`, `gpus` and `estimate --from-config` through CliRunner."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli

FX = Path(__file__).resolve().parents[1] / "planner" / "fixtures"


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


def test_recommend_json(run):
    r = run("recommend", "--model", "qwen2.5-1.5b", "--dataset-tokens", "50M", "--epochs", "2", "--max-gpus", "1",
            "--gpus", "rtx-4090,l4,a100-40gb", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["cheapest"]["usd"] <= d["fastest"]["usd"]
    assert d["fastest"]["hours"] <= d["cheapest"]["hours"]
    assert d["cheapest"]["gpu"] in {"rtx-4090", "l4", "a100-sxm-40gb"}
    assert d["frontier"] and d["considered"] >= d["fitting"] > 0


def test_recommend_table_and_buy(run):
    r = run("recommend", "--model", "qwen2.5-1.5b", "--dataset-tokens", "50M", "--max-gpus", "1",
            "--gpus", "rtx-4090,h100", "--buy", "--kwh-price", "0.3")
    assert r.exit_code == 0, r.output
    assert "Cheapest" in r.output and "Fastest" in r.output and "frontier" in r.output
    assert "Buy instead of renting" in r.output and "usd_per_kwh = 0.3" in r.output


def test_recommend_impossible_deadline_exits_1_with_the_gap(run):
    r = run("recommend", "--model", "qwen2.5-1.5b", "--dataset-tokens", "5B", "--max-gpus", "1",
            "--gpus", "t4", "--deadline", "1h")
    assert r.exit_code == 1
    assert "No plan meets the constraints" in r.output and "over the deadline" in r.output


@pytest.mark.parametrize("args,msg", [
    (["--dataset-tokens", "lots"], "as a token count"),
    (["--dataset-tokens", "1M", "--deadline", "soon"], "as a duration"),
    (["--dataset-tokens", "1M", "--methods", "full,dpo"], "choose from full, lora, qlora"),
    (["--dataset-tokens", "1M", "--gpus", "rtx-4091"], "did you mean: rtx-4090"),
    (["--dataset-tokens", "1M", "--providers", "acme"], "unknown provider"),
])
def test_recommend_bad_input(run, args, msg):
    r = run("recommend", "--model", "qwen2.5-1.5b", *args)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_fit(run):
    r = run("fit", "--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["max_batch_size"] >= 1 and d["gpu"] == "rtx-4090"
    r = run("fit", "--model", "llama-3.1-8b", "--gpu", "rtx-4090")
    assert r.exit_code == 0 and "does NOT fit" in r.output and "--method qlora" in r.output


def test_fit_unknown_gpu(run):
    r = run("fit", "--model", "llama-3.1-8b", "--gpu", "rtx-4091")
    assert r.exit_code == 2 and "did you mean" in r.output


def test_gpus_table_and_json(run):
    r = run("gpus")
    assert r.exit_code == 0 and "h100-sxm-80gb" in r.output and "runpod" in r.output
    d = json.loads(run("gpus", "--json").output)
    assert len(d) >= 20 and all(p["source"] and p["as_of"] for g in d for p in g["prices"])


def test_gpus_with_user_catalog(run, tmp_path):
    from gpuplan.planner.io import catalog as cat

    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"gpus": [{"name": "rtx-4090", "prices": [{"provider": "homelab", "usd_per_hour": 0.05}]}]}))
    try:
        r = run("gpus", "--gpu-catalog", str(f))
        assert r.exit_code == 0 and "homelab 0.05" in r.output
    finally:
        cat._user_gpu_files.clear()
        cat._gpu_catalog.cache_clear(); cat._gpu_index.cache_clear()


def test_estimate_from_config_flags_override(run):
    r = run("estimate", "--from-config", str(FX / "trl_sft.json"), "--batch-size", "1", "--json")
    assert r.exit_code == 0, r.output
    out = r.stdout if hasattr(r, "stdout") else r.output
    d = json.loads(out[out.index("{"):])
    s = d["setup"]
    assert s["batch_size"] == 1 and s["seq_len"] == 2048 and s["method"] == "lora" and s["grad_accum"] == 8
    assert s["model"] == "qwen-2.5-0.5b"


def test_estimate_from_malformed_config(run):
    r = run("estimate", "--from-config", str(FX / "malformed.yaml"))
    assert r.exit_code == 2 and "could not be parsed" in r.output and "Traceback" not in r.output


def test_estimate_without_model_or_config(run):
    r = run("estimate")
    assert r.exit_code == 2 and "--model is required" in r.output


def test_recommend_plans_an_objective_and_refuses_ppo():
    import json as _json

    from click.testing import CliRunner

    from gpuplan.app.cli import cli

    r = CliRunner().invoke(cli, ["recommend", "-m", "qwen-2.5-0.5b", "--dataset-tokens", "20M", "--methods", "lora",
                                 "--gpu-types", "rtx-4090", "--max-gpus", "2", "--objective", "rm", "--json"])
    out = _json.loads(r.stdout)
    assert out["cheapest"]["setup"]["objective"] == "rm"
    assert any("skipped" in n for n in out["notes"])
    r = CliRunner().invoke(cli, ["recommend", "-m", "qwen-2.5-0.5b", "--dataset-tokens", "20M", "--objective", "ppo"])
    assert r.exit_code == 2 and "PPOTrainer" in r.output and "Traceback" not in r.output
