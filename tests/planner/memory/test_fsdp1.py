"""FSDP1's step (planner/memory/fsdp1.py): today's estimates against the recorded real FSDP1 runs over gloo
(data/measurements/fsdp1_step_gloo.json, benchmarks/fsdp1_gloo.py), the flag, and what it leaves alone."""
from __future__ import annotations

import json
import pathlib
from dataclasses import replace

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Fsdp, Method, ParallelSpec, PlannerError, TrainingSetup, estimate, model_from_config, resolve_model
from gpuplan.planner.memory.fsdp1 import hook_bytes, padded, step_setup
from gpuplan.planner.specs.enums import Phase, Precision
from gpuplan.planner.specs.parallel import Offload

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "data" / "measurements" / "fsdp1_step_gloo.json"
ROWS = json.loads(RECORDED.read_text())["rows"]


def _fsdp(version: int, n: int = 2, **kw) -> TrainingSetup:
    return TrainingSetup(parallel=ParallelSpec(gpus=n, fsdp=Fsdp.FULL, fsdp_version=version), **kw)


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_estimate_within_one_percent_of_real_fsdp1_per_phase(row):
    model = model_from_config(row["config"], name=row["name"])
    setup = _fsdp(1, row["ranks"], precision=Precision(row["precision"]), batch_size=row["batch_size"],
                  seq_len=row["seq_len"])
    if row["extra"]:   # checkpointing, grad_accum: as TrainingSetup.to_dict spells them
        setup = TrainingSetup.from_dict({**setup.to_dict(), **row["extra"]})
    est = estimate(model, setup)
    for phase in Phase:
        measured = row["measured_rank0"][phase.value]["total"]
        assert est.phases[phase] == pytest.approx(measured, rel=0.01), (phase, est.phases[phase], measured)


def test_default_and_json_unchanged_and_round_trip():
    m = resolve_model("qwen-2.5-0.5b")
    two, one = _fsdp(2, 4, batch_size=1, seq_len=512), _fsdp(1, 4, batch_size=1, seq_len=512)
    assert "fsdp_version" not in two.to_dict(m)["parallel"]           # older dicts stay as they were
    assert one.to_dict(m)["parallel"]["fsdp_version"] == 1
    assert TrainingSetup.from_dict(one.to_dict(m)).parallel == one.parallel
    e1, e2 = estimate(m, one), estimate(m, two)
    # no copy-out and no kept all-gather output: FSDP1's forward holds one layer fewer gathered than FSDP2's
    assert e1.phases[Phase.FORWARD] < e2.phases[Phase.FORWARD]
    assert any(n.startswith("FSDP1 fsdp-full") for n in e1.notes)
    assert e1.phases[Phase.OPTIMIZER] == e2.phases[Phase.OPTIMIZER]   # the same shards at the step


def test_padding_to_the_world_size():
    assert padded(10, 4) == 12 and padded(12, 4) == 12 and padded(7, 1) == 7


def test_refusals_and_what_stays_on_fsdp2():
    with pytest.raises(PlannerError, match="--fsdp-version 1 plans FSDP1's FULL_SHARD"):
        ParallelSpec(gpus=2, fsdp=Fsdp.GRAD_OP, fsdp_version=1).validate()
    with pytest.raises(PlannerError, match="must be 1 or 2"):
        ParallelSpec(gpus=2, fsdp=Fsdp.FULL, fsdp_version=3).validate()
    m = resolve_model("qwen-2.5-0.5b")
    with pytest.raises(PlannerError, match="not QLoRA"):
        estimate(m, _fsdp(1, method=Method.QLORA))
    qlora = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL), method=Method.QLORA)
    same, note = step_setup(m, qlora, 1)
    assert same is qlora and "not modelled for QLoRA" in note and "planned as FSDP2's" in note
    off = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL, offload=Offload.PARAMS))
    same, note = step_setup(m, off, 1)
    assert same is off and "CPU offload" in note
    grad_op = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.GRAD_OP))
    assert "SHARD_GRAD_OP" in step_setup(m, grad_op, 1)[1]
    full = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    assert step_setup(m, full, 1)[0].parallel.fsdp_version == 1 and step_setup(m, full, None) == (full, None)
    assert step_setup(m, full, 2) == (full, None)
    lora = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL), method=Method.LORA)
    assert step_setup(m, lora, 1) == (replace(lora, parallel=replace(lora.parallel, fsdp_version=1)), None)
    flat = step_setup(m, full, 1, orig_params=False)[0]
    assert flat.parallel.fsdp1_orig_params is False
    assert TrainingSetup.from_dict(flat.to_dict(m)).parallel == flat.parallel


def test_flat_params_free_gradients_at_zero_grad_and_pad_the_reduce_scatter():
    m = resolve_model("qwen-2.5-0.5b")
    orig, flat = _fsdp(1, 3, batch_size=1, seq_len=512), _fsdp(1, 3, batch_size=1, seq_len=512)
    flat = replace(flat, parallel=replace(flat.parallel, fsdp1_orig_params=False))
    e_orig, e_flat = estimate(m, orig), estimate(m, flat)
    assert e_flat.phases[Phase.FORWARD] <= e_orig.phases[Phase.FORWARD]
    assert any("use_orig_params=False" in n for n in e_flat.notes)
    assert hook_bytes(10, 4, 4, False) == 12 * 4 + 3 * 4        # the padded copy and the output
    assert hook_bytes(12, 4, 4, True) == 12 * 4 + 3 * 4          # the reduce_dtype copy, no padding


def test_cli_flag_selects_the_step():
    base = ["estimate", "-m", "qwen-2.5-0.5b", "--gpus-per-node", "2", "--fsdp", "full", "-b", "1", "-s", "1024", "--json"]
    one = json.loads(CliRunner().invoke(cli, [*base, "--fsdp-version", "1"]).stdout)
    two = json.loads(CliRunner().invoke(cli, base).stdout)
    assert one["setup"]["parallel"]["fsdp_version"] == 1 and "fsdp_version" not in two["setup"]["parallel"]
    assert one["phases"]["forward"] < two["phases"]["forward"]
