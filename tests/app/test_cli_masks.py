"""--padding, --packing and --length-histogram through the CLI: in --json only when set, the worst
micro-batch of a histogram planned and named, bad files refused in one line."""
import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def _json(r) -> dict:
    return json.loads(r.stdout[r.stdout.index("{"):])


BASE = ("estimate", "--model", "llama-3.2-1b", "--method", "lora", "-b", "2", "-s", "1024", "--json")


def test_defaults_leave_the_mask_fields_out_of_the_json():
    d = _json(run(*BASE))
    assert "padding" not in d["setup"] and "packing" not in d["setup"]


def test_padding_and_packing_appear_and_cost_memory():
    plain = _json(run(*BASE))
    padded = _json(run(*BASE, "--padding", "longest"))
    flat = _json(run(*BASE, "--packing", "flattened"))
    assert padded["setup"]["padding"] == "longest" and flat["setup"]["packing"] == "flattened"
    assert plain["peak_allocated_bytes"] < padded["peak_allocated_bytes"] < flat["peak_allocated_bytes"]
    assert any("memory-efficient kernel" in n for n in padded["notes"])


def test_padding_with_packing_is_refused_in_one_line():
    r = run(*BASE, "--padding", "longest", "--packing", "rows")
    assert r.exit_code == 2 and "Traceback" not in r.output and "exclude each other" in r.output


@pytest.mark.parametrize("name, text", [
    ("lengths.csv", "length,count\n300,10\n900,2\n5000,1\n"),
    ("lengths.json", '{"300": 10, "900": 2, "5000": 1}'),
])
def test_a_length_histogram_plans_the_micro_batch_with_the_longest_sample(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    r = run(*BASE[:-1], "--padding", "longest", "--length-histogram", str(f), "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["setup"]["seq_len"] == 1024          # 5000 truncated to --seq-len
    assert any(n.startswith("length histogram (13 samples") for n in _json(r)["notes"])
    assert "longest 5,000 tokens, truncated to --seq-len 1,024" in r.stderr
    short = run(*BASE[:-1], "-s", "4096", "--padding", "longest", "--length-histogram", str(f), "--json")
    assert _json(short)["setup"]["seq_len"] == 4096
    f.write_text(text.replace("5000", "700"))
    r = run(*BASE[:-1], "-s", "4096", "--padding", "longest", "--length-histogram", str(f), "--json")
    assert _json(r)["setup"]["seq_len"] == 900 and "2 rows of 900 tokens" in r.stderr


def test_padding_free_plans_the_b_longest_samples_in_one_row(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("100,50\n600,1\n400,1\n")
    r = run(*BASE[:-1], "--packing", "flattened", "--length-histogram", str(f), "--json")
    assert _json(r)["setup"]["seq_len"] == 500 and "one row of 1,000 tokens" in r.stderr


@pytest.mark.parametrize("text, words", [("length,count\n300,x\n", "not a whole number"),
                                         ("300;2\n", "expected `length,count`"), ("", "no sample lengths")])
def test_a_bad_histogram_is_one_line(tmp_path, text, words):
    f = tmp_path / "l.csv"
    f.write_text(text)
    r = run(*BASE, "--length-histogram", str(f))
    assert r.exit_code == 2 and "Traceback" not in r.output and words in r.output
