"""`gpuplan estimate --from-config / --accelerate-config` through CliRunner: the JSON block, refusals
(exit 2, one line), unknown keys said on stderr, the launcher's GPU count."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
FX = Path(__file__).resolve().parents[1] / "planner" / "fixtures"


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setenv("GPUPLAN_OFFLINE", "1")
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


def _json(r):
    out = r.stdout
    return json.loads(out[out.index("{"):])


def test_json_carries_the_from_config_block(run):
    r = run("estimate", "--from-config", str(CORPUS / "llamafactory" / "qwen3_lora_sft_ds3.yaml"), "--model",
            "qwen-3-4b", "--json")
    assert r.exit_code == 0, r.output
    d = _json(r)
    fc = d["from_config"]
    assert set(fc) == {"format", "used", "no_effect", "refused", "unknown", "notes"} and fc["format"] == "llamafactory"
    assert fc["used"]["deepspeed:zero_optimization.stage"] == "--zero 3" and not fc["refused"] and not fc["unknown"]
    assert "learning_rate" in fc["no_effect"] and fc["notes"][0].startswith("planned per GPU of 8")
    assert d["setup"]["parallel"]["zero"] == 3 and d["setup"]["parallel"]["gpus"] == 8
    assert "planned per GPU of 8" in r.stderr


def test_explicit_gpus_silence_the_default_count(run):
    r = run("estimate", "--from-config", str(CORPUS / "llamafactory" / "qwen3_lora_sft_ds3.yaml"), "--model",
            "qwen-3-4b", "--gpus", "4", "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["setup"]["parallel"]["gpus"] == 4 and "planned per GPU of" not in r.stderr


def test_refused_key_stops_with_exit_2_and_one_line(run):
    r = run("estimate", "--from-config", str(CORPUS / "axolotl" / "phi3-ft.yml"))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert ("resize_token_embeddings_to_32x: true is not modelled yet (resizing the vocabulary to a multiple of 32 "
            "adds rows); remove it to plan the rest") in r.output


def test_sample_packing_is_planned_as_packed_rows(run):
    r = run("estimate", "--from-config", str(CORPUS / "axolotl" / "llama-3-qlora.yml"), "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["setup"]["packing"] == "rows" and "sample_packing -> --packing rows" in r.stderr


def test_unknown_key_is_said_on_stderr(run, tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("base_model: meta-llama/Llama-3.2-1B\nmicro_batch_size: 1\nsequence_len: 512\nbrand_new_key: 3\n")
    r = run("estimate", "--from-config", str(f), "--json")
    assert r.exit_code == 0, r.output
    assert "unknown to gpuplan's axolotl table" in r.stderr and "brand_new_key" in r.stderr
    assert _json(r)["from_config"]["unknown"] == ["brand_new_key"]


def test_accelerate_config_sets_the_launcher_count(run):
    r = run("estimate", "--from-config", str(FX / "trl_sft.json"), "--accelerate-config",
            str(CORPUS / "hf" / "alignment-handbook-accelerate-zero3.yaml"), "--json")
    assert r.exit_code == 0, r.output
    p = _json(r)["setup"]["parallel"]
    assert p["gpus"] == 8 and p["zero"] == 3 and p["nodes"] == 1


def test_accelerate_config_alone_needs_a_model(run):
    r = run("estimate", "--from-config", str(CORPUS / "hf" / "trl-accelerate-fsdp2.yaml"))
    assert r.exit_code == 2 and "--model is required" in r.output
    r = run("estimate", "--from-config", str(CORPUS / "hf" / "trl-accelerate-fsdp2.yaml"), "--model",
            "llama-3.2-1b", "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["setup"]["parallel"]["fsdp"] == "full"


@pytest.mark.parametrize("strategy,planned", [("epoch", True), ("steps", True), ("no", False)])
def test_an_hf_config_that_evaluates_plans_its_eval_phase(run, tmp_path, strategy, planned):
    cfg = tmp_path / "sft.json"
    cfg.write_text(json.dumps({"model_name_or_path": "Qwen/Qwen2.5-0.5B", "per_device_train_batch_size": 2,
                               "per_device_eval_batch_size": 16, "eval_strategy": strategy,
                               "max_length": 512, "bf16": True}))
    r = run("estimate", "--from-config", str(cfg), "--json")
    assert r.exit_code == 0, r.output
    d = _json(r)
    assert ("eval" in d.get("run_phases", {})) is planned
    if planned:
        assert d["from_config"]["used"]["per_device_eval_batch_size"] == "--eval-batch-size 16"
        assert d["run_phases"]["eval"] > 0
    else:
        assert "no evaluation runs" in d["from_config"]["used"]["per_device_eval_batch_size"]


def test_the_command_line_eval_batch_wins_over_the_configs(run, tmp_path):
    cfg = tmp_path / "sft.json"
    cfg.write_text(json.dumps({"model_name_or_path": "Qwen/Qwen2.5-0.5B", "per_device_eval_batch_size": 64,
                               "eval_strategy": "steps", "max_length": 512}))
    small = _json(run("estimate", "--from-config", str(cfg), "--eval-batch-size", "1", "--json"))
    large = _json(run("estimate", "--from-config", str(cfg), "--json"))
    assert small["eval"]["peak_allocated_bytes"] < large["eval"]["peak_allocated_bytes"]


def test_a_refusal_the_command_line_answers_is_planned_with_the_flag(run):
    """torchtune's tokenizer.max_seq_len: null refuses the config, naming --seq-len; given, it plans."""
    path = str(CORPUS / "torchtune" / "llama3_2-1B_lora_single_device.yaml")
    refused = run("estimate", "--from-config", path)
    assert refused.exit_code == 2 and "give --seq-len" in refused.output
    r = run("estimate", "--from-config", path, "--seq-len", "2048", "--json")
    assert r.exit_code == 0, r.output
    d = _json(r)
    assert d["setup"]["seq_len"] == 2048
    assert d["from_config"]["used"]["tokenizer.max_seq_len"] == "--seq-len from the command line"
    assert not d["from_config"]["refused"]
