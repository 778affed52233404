"""`gpuplan estimate --fp8` through CliRunner."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli


def test_fp8_json_and_refusals():
    r = CliRunner().invoke(cli, ["estimate", "-m", "qwen2.5-0.5b", "--precision", "bf16-true", "--fp8", "rowwise",
                                  "--fp8-linears", "all", "--gpu", "h100", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["setup"]["fp8"] == "rowwise" and d["setup"]["fp8_linears"] == "all"
    bad = CliRunner().invoke(cli, ["estimate", "-m", "qwen2.5-0.5b", "--fp8", "tensorwise", "--gpu", "a100-80gb"])
    assert bad.exit_code == 2 and "compute capability 8.9" in bad.output and "Traceback" not in bad.output
