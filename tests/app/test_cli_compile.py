"""--compile through the CLI: the setup's JSON, the estimate's notes, one-line refusals."""
import json

from click.testing import CliRunner

from gpuplan.app.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_compile_json_and_notes():
    on = run("estimate", "--model", "qwen-2.5-0.5b", "--compile", "inductor", "--no-grad-ckpt", "--json")
    off = run("estimate", "--model", "qwen-2.5-0.5b", "--no-grad-ckpt", "--json")
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    d_on, d_off = json.loads(on.output), json.loads(off.output)
    assert d_on["setup"]["compile"] == "inductor" and "compile" not in d_off["setup"]
    assert d_on["components"]["activations"] < d_off["components"]["activations"]
    assert any("min-cut partitioner" in n for n in d_on["notes"])


def test_compile_with_checkpointing_is_one_line():
    r = run("estimate", "--model", "qwen-2.5-0.5b", "--compile", "inductor")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "gradient checkpointing" in r.output and "--no-grad-ckpt" in r.output
