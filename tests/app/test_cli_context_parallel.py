"""`gpuplan estimate --context-parallel N --cp-kind ...` through the CLI; `profile` refuses it."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gpuplan.app.cli import cli

BASE = ["estimate", "-m", "llama-3.1-8b", "--method", "lora", "-b", "1", "--seq-len", "32768", "--gpus-per-node", "8"]


def test_flags_reach_the_setup_and_the_notes():
    r = CliRunner().invoke(cli, BASE + ["--fsdp", "full", "--context-parallel", "4", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["setup"]["parallel"]["cp"] == 4 and "cp_kind" not in d["setup"]["parallel"]   # torch: the default
    assert any("modelled from source, not simulated" in n and "context parallel torch" in n for n in d["notes"])
    plain = json.loads(CliRunner().invoke(cli, BASE + ["--fsdp", "full", "--json"]).stdout)
    assert d["peak_allocated_bytes"] < plain["peak_allocated_bytes"]
    assert "cp" not in plain["setup"]["parallel"]


def test_bad_combinations_exit_2_with_one_line():
    r = CliRunner().invoke(cli, BASE + ["--context-parallel", "4", "--cp-kind", "ulysses"])
    assert r.exit_code == 2 and "add --zero" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, BASE + ["--heads-k-stride", "2"])
    assert r.exit_code == 2 and "--context-parallel 2 or more" in r.output


def test_profile_refuses_context_parallel():
    from gpuplan.planner.specs.parallel import CpKind, Fsdp, ParallelSpec
    from gpuplan.planner.specs.setup import TrainingSetup
    from gpuplan.profiler.run import _not_runnable

    why = _not_runnable(TrainingSetup(parallel=ParallelSpec(gpus=4, cp=4, fsdp=Fsdp.FULL, cp_kind=CpKind.TORCH)))
    assert why and "modelled from source, not profiled" in why


def test_tiled_mlp_flag():
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "-b", "1", "--seq-len", "65536", "--tiled-mlp",
                                 "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["setup"]["tiled_mlp"] is True and "tiled_mlp_shards" not in d["setup"]
    assert any("tiled MLP: 2 tile(s)" in n for n in d["notes"])
