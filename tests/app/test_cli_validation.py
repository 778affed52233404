"""The crashes the issue listed, through the CLI: exit 2 and one line, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli

TINY = json.loads((Path(__file__).parent / "fixtures" / "tiny-llama-config.json").read_text())


def run(*argv: str):
    r = CliRunner().invoke(cli, list(argv))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and lines and "Traceback" not in r.output, r.output
    return lines[-1]


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", ["binary file"]),
    (b'{"model_type": "llama", "x": "caf\xe9"}', ["not UTF-8", "0xe9"]),
])
def test_config_json_bytes(tmp_path, content, words):
    p = tmp_path / "config.json"
    p.write_bytes(content)
    line = error_line(run("estimate", "-m", str(p)))
    assert all(w in line for w in words), line


@pytest.mark.parametrize("content", [b"micro_batch_size: 2\nbase_model: caf\xe9\n", b"\x00\x01\x02\xff"])
def test_from_config_bytes(tmp_path, content):
    p = tmp_path / "axolotl.yaml"
    p.write_bytes(content)
    line = error_line(run("estimate", "--from-config", str(p)))
    assert "--from-config file" in line


@pytest.mark.parametrize("field, value, words", [
    ("hidden_size", "big", ["hidden_size", "'big'"]),
    ("hidden_size", -64, ["hidden_size", "-64"]),
    ("num_key_value_heads", 3, ["num_key_value_heads 3"]),
])
def test_config_json_fields(tmp_path, field, value, words):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**TINY, field: value}))
    line = error_line(run("estimate", "-m", str(p)))
    assert all(w in line for w in words), line


@pytest.mark.parametrize("entry, words", [
    ({"name": "h100", "prices": {"aws": 3.0}}, ["prices"]),
    ({"name": "h100", "peak_flops": "1e15"}, ["peak_flops"]),
    ({"name": "h100", "peak_flops": {"bf16": "1e15"}}, ["peak_flops.bf16"]),
])
@pytest.mark.parametrize("command", [("gpus",), ("fit", "-m", "llama-3.2-1b", "--gpu", "h100"),
                                     ("recommend", "-m", "llama-3.2-1b", "--dataset-tokens", "1M")])
def test_gpu_catalog_fields(tmp_path, entry, words, command):
    p = tmp_path / "my.json"
    p.write_text(json.dumps({"gpus": [entry]}))
    line = error_line(run(*command, "--gpu-catalog", str(p)))
    assert all(w in line for w in words), line


def test_gpt2_past_its_positions_is_refused():
    line = error_line(run("estimate", "-m", "gpt-2-small", "-s", "2048"))
    assert "learned positions" in line and "--seq-len 1024" in line


def test_rope_past_context_is_a_note():
    r = run("estimate", "-m", "qwen-2.5-0.5b", "-s", "65536", "--json")
    assert r.exit_code == 0
    assert any("trained context of 32,768" in n for n in json.loads(r.stdout)["notes"])


def test_auto_map_note(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**TINY, "auto_map": {"AutoModelForCausalLM": "m.X"}}))
    r = run("estimate", "-m", str(p), "--json")
    assert r.exit_code == 0 and any("custom code" in n for n in json.loads(r.stdout)["notes"])


def test_recommend_refuses_gpt2_past_its_positions_and_notes_rope():
    line = error_line(run("recommend", "-m", "gpt-2-small", "--dataset-tokens", "1M", "-s", "2048"))
    assert "learned positions" in line
    r = run("recommend", "-m", "qwen-2.5-0.5b", "--dataset-tokens", "1M", "-s", "65536", "--max-gpus", "1", "--json")
    assert r.exit_code in (0, 1) and "trained context of 32,768" in r.stderr
