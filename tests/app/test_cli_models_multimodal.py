"""`gpuplan models --json` lists the multimodal wrappers with their vision tower; `estimate` answers
for one by its hub id and says the batches are text-only."""
import json

from click.testing import CliRunner

from gpuplan.app.cli import cli


def test_models_json_lists_the_vision_tower():
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    assert rows["llava-1.5-7b"]["vision"] == {"tower": "clip", "params": 303_507_456 + 20_979_712, "image_tokens": 576}
    assert rows["qwen2-vl-2b-instruct"]["vision"]["image_tokens"] is None
    assert rows["gemma-3-4b-it-multimodal"]["family"] == "gemma3"
    assert "vision" not in rows["gemma-3-4b"]


def test_estimate_by_hub_id():
    out = CliRunner().invoke(cli, ["estimate", "--model", "Qwen/Qwen2-VL-2B-Instruct", "--method", "lora",
                                   "--lora-targets", "all-linear", "--seq-len", "256", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["source"] == "closed-form" and d["params"]["vision"] == 665_271_296
    assert any("text-only batches" in n for n in d["notes"])
    refused = CliRunner().invoke(cli, ["estimate", "--model", "qwen2-vl-2b-instruct", "--method", "lora"])
    assert refused.exit_code == 2 and "--lora-targets" in refused.output and "Traceback" not in refused.output
