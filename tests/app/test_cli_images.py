"""`gpuplan estimate --images-per-example`: LLaVA's image batch in closed form with the field in
--json, and one line (exit 2) for a text-only model or a sequence too short for the image tokens."""
import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

LLAVA = ["estimate", "--model", "llava-1.5-7b", "--method", "qlora", "--lora-targets", "q_proj,v_proj",
         "--lora-language-only", "--batch-size", "1", "--seq-len", "1024"]


def test_an_image_batch_in_closed_form():
    text = json.loads(CliRunner().invoke(cli, LLAVA + ["--json"]).output)
    out = CliRunner().invoke(cli, LLAVA + ["--images-per-example", "1", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["source"] == "closed-form" and d["setup"]["images_per_example"] == 1
    assert "images_per_example" not in text["setup"]
    assert d["peak_allocated_bytes"] > text["peak_allocated_bytes"]
    assert any("576 of the 1024 positions are image tokens" in n for n in d["notes"])


def test_refusals_are_one_line():
    for args, match in ((["estimate", "--model", "llama-3.2-1b", "--images-per-example", "1"], "text-only model"),
                        (LLAVA[:-1] + ["512", "--images-per-example", "1"], "raise --seq-len above 576")):
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 2 and match in out.output and "Traceback" not in out.output, out.output
