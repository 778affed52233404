"""--fsdp-version on `estimate`, `fit` and `recommend`: FSDP1's step where modelled, else FSDP2's with a note."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

BASE = ["-m", "qwen-2.5-0.5b", "--gpus-per-node", "2", "--fsdp", "full", "-b", "1", "-s", "1024"]


def _json(args: list[str]) -> dict:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_estimate_plans_fsdp1s_lora_step_and_says_when_it_cannot():
    one = _json(["estimate", *BASE, "--method", "lora", "--fsdp-version", "1", "--json"])
    two = _json(["estimate", *BASE, "--method", "lora", "--json"])
    assert one["setup"]["parallel"]["fsdp_version"] == 1 and "fsdp_version" not in two["setup"]["parallel"]
    assert one["phases"]["forward"] < two["phases"]["forward"]
    q = _json(["estimate", *BASE, "--method", "qlora", "--fsdp-version", "1", "--json"])
    assert "fsdp_version" not in q["setup"]["parallel"]
    assert any("not modelled for QLoRA" in n and "planned as FSDP2's" in n for n in q["notes"])


def test_fit_takes_the_flag():
    args = ["fit", *BASE, "--method", "lora", "--gpu", "rtx-4090"]
    one, two = _json([*args, "--fsdp-version", "1", "--json"]), _json([*args, "--json"])
    assert one["setup"]["parallel"]["fsdp_version"] == 1 and "fsdp_version" not in two["setup"]["parallel"]
    assert one["device_total_bytes"] != two["device_total_bytes"]
    text = CliRunner().invoke(cli, ["fit", *BASE, "--method", "qlora", "--gpu", "rtx-4090", "--fsdp-version", "1"])
    assert "note: FSDP version 1: FSDP1's step is not modelled for QLoRA" in text.stdout


def test_recommend_takes_the_flag():
    r = CliRunner().invoke(cli, ["recommend", "-m", "qwen-2.5-0.5b", "--dataset-tokens", "20M", "--fsdp-version", "3"])
    assert r.exit_code == 2 and "'3' is not one of '1', '2'" in r.output


def test_recommends_fsdp_candidates_plan_fsdp1s_step():
    from gpuplan.planner import resolve_model
    from gpuplan.planner.plans.recommend import recommend, search_from_inputs

    m = resolve_model("qwen-2.5-0.5b")
    c, space = search_from_inputs("lora,qlora", 2, gpus="a10g", fsdp_version=1)
    rec = recommend(m, 20_000_000, 1.0, c, space)
    assert any(n.startswith("--methods qlora: FSDP version 1") for n in rec.notes)
    fsdp = [p.setup for p in rec.plans if p.setup.parallel.fsdp.value == "full"]
    assert fsdp and {s.parallel.fsdp_version for s in fsdp if s.method.value == "lora"} == {1}
    assert {s.parallel.fsdp_version for s in fsdp if s.method.value == "qlora"} <= {2}


CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "configs"


def test_a_configs_fsdp1_plans_fsdp1s_step_where_modelled():
    # LLaMA-Factory's accelerate FSDP config: FULL_SHARD, no offload, forward_prefetch false; accelerate's
    # default FSDP version, 1
    cfg = str(CONFIGS / "llamafactory" / "accelerate_fsdp_config.yaml")
    for method in ("full", "lora"):
        out = _json(["estimate", "--from-config", cfg, "-m", "qwen-2.5-0.5b", "--method", method, "-b", "1", "-s", "512",
                     "--json"])
        assert out["setup"]["parallel"]["fsdp_version"] == 1
        assert any(n.startswith("FSDP1 fsdp-full") for n in out["notes"])
    # the alignment-handbook's: fsdp_forward_prefetch true, which FSDP1's step does not model
    ah = _json(["estimate", "--from-config", str(CONFIGS / "hf" / "alignment-handbook-accelerate-fsdp.yaml"),
                "-m", "qwen-2.5-0.5b", "-b", "1", "-s", "512", "--json"])
    assert "fsdp_version" not in ah["setup"]["parallel"]
    assert any("not modelled for forward_prefetch" in n for n in ah["notes"])
