"""`gpuplan models --json` lists the families added for issue 11, DeepSeek with its MLA head dims."""
import json

from click.testing import CliRunner

from gpuplan.app.cli import cli


def test_models_json_lists_the_new_families_with_mla_fields():
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    assert {rows[n]["family"] for n in ("phi-2", "santacoder", "falcon-40b", "deepseek-v3", "starcoder2-7b",
                                        "stablelm-2-zephyr-1.6b")} == {
        "phi", "gpt_bigcode", "falcon", "deepseek_v3", "starcoder2", "stablelm"}
    assert rows["deepseek-v2-lite"]["mla"] == {"q_lora_rank": 0, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
                                               "qk_nope_head_dim": 128, "v_head_dim": 128,
                                               "shared_experts_intermediate": 2816}
    assert "mla" not in rows["llama-3.1-8b"]


def test_models_json_says_each_preset_s_aliases_and_source():
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    assert len(rows) >= 120
    row = rows["qwen-3-4b-instruct-2507"]
    assert "Qwen/Qwen3-4B-Thinking-2507" in row["aliases"]
    assert row["source"].startswith("https://github.com/mlc-ai/mlc-llm/blob/b8c5d3ebf7d4c0a80c0c124a0e9d82ffc14c2103/")
    assert all(r["source"] and r["hf_id"] in r["aliases"] for r in rows.values())
