"""The eval phase on several GPUs (planner/memory/eval_ranks.py): what each rank holds beside its own eval
batch, by engine, and the logits gather_for_metrics concatenates on every rank."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Component, Fsdp, Method, ParallelSpec, PlannerError, TrainingSetup, resolve_model
from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate
from gpuplan.planner.memory.eval_ranks import rank_states
from gpuplan.planner.memory.pieces import terms

LLAMA = resolve_model("llama-3.1-8b")
PLAN = EvalPlan(batch_size=4, seq_len=1024)


def _eval(parallel: ParallelSpec, plan: EvalPlan = PLAN, **kw):
    return eval_estimate(LLAMA, TrainingSetup(parallel=parallel, **kw), plan)


def test_ddp_evaluates_the_one_gpu_batch_beside_the_gradient_buckets():
    one, ddp = _eval(ParallelSpec()), _eval(ParallelSpec(gpus=8))
    _, st, _ = terms(LLAMA, TrainingSetup())
    assert ddp.peak_allocated_bytes - one.peak_allocated_bytes == st.gradients
    assert ddp.components[Component.GRADIENTS] == st.gradients


def test_sharding_more_lowers_the_eval_peak():
    peaks = [_eval(p).peak_allocated_bytes for p in (ParallelSpec(gpus=8), ParallelSpec(gpus=8, zero=1),
                                                     ParallelSpec(gpus=8, zero=3), ParallelSpec(gpus=8, fsdp=Fsdp.FULL))]
    assert peaks[0] > peaks[1] > peaks[2] and peaks[0] > peaks[3]
    assert _eval(ParallelSpec(gpus=8, fsdp=Fsdp.GRAD_OP)).peak_allocated_bytes > peaks[3]   # every layer stays gathered


def test_each_kept_step_holds_every_replicas_logits():
    acc = EvalPlan(batch_size=4, seq_len=1024, accumulate_logits=True, eval_batches=10)
    kept = 4 * 1024 * LLAMA.vocab * 2
    fsdp = _eval(ParallelSpec(gpus=8, fsdp=Fsdp.FULL), acc)
    assert fsdp.components[Component.LOGITS] == 2 * 10 * 8 * kept      # old, new and their concatenation
    hsdp = _eval(ParallelSpec(gpus=4, nodes=2, fsdp=Fsdp.HYBRID), acc)
    assert hsdp.components[Component.LOGITS] == fsdp.components[Component.LOGITS]   # 8 replicas either way
    assert "gathered from 8 ranks" in " ".join(fsdp.notes)


@pytest.mark.parametrize("parallel, plan, match", [
    (ParallelSpec(gpus=8, tp=2), PLAN, "--tp / --pp"),
    (ParallelSpec(gpus=8, fsdp=Fsdp.YAFSDP), PLAN, "yafsdp"),
])
def test_unmodelled_layouts_are_refused(parallel, plan, match):
    with pytest.raises(PlannerError, match=match):
        eval_estimate(LLAMA, TrainingSetup(parallel=parallel), plan)


def test_generation_on_several_gpus_holds_the_rank_and_gathers_as_its_forward():
    gen = EvalPlan(batch_size=8, seq_len=512, generate_tokens=256)
    one = eval_estimate(LLAMA, TrainingSetup(method=Method.LORA), gen)
    caches = []
    for parallel in (ParallelSpec(gpus=8, fsdp=Fsdp.FULL), ParallelSpec(gpus=8, zero=3), ParallelSpec(gpus=8)):
        e = eval_estimate(LLAMA, TrainingSetup(method=Method.LORA, parallel=parallel), gen)
        rank = rank_states(LLAMA, TrainingSetup(method=Method.LORA, parallel=parallel))
        caches.append(e.generation["kv_cache_bytes"])   # each rank its own eval batch
        beside = e.generation["peak_allocated_bytes"] - e.generation["kv_cache_bytes"]
        assert beside >= rank.weights + rank.optimizer
        assert "synced_gpus" in " ".join(e.notes)
    # FSDP2/ZeRO-3 compute with 16-bit parameters instead of autocast: bf16 keys, not RoPE's fp32 ones; DDP runs
    # the one-GPU module (memory/pieces.py compute_setup)
    assert caches[0] == caches[1] < caches[2] == one.generation["kv_cache_bytes"]
    sharded = eval_estimate(LLAMA, TrainingSetup(method=Method.LORA, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)), gen)
    assert sharded.generation["peak_allocated_bytes"] < one.generation["peak_allocated_bytes"]   # 1/8 of the weights


def test_cli_plans_the_eval_phase_on_eight_gpus():
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.1-8b", "--method", "lora", "--gpus", "8", "--fsdp", "full",
                                 "--eval-batch-size", "16", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["run_phases"]["eval"] > 0 and "FSDP2" in d["eval"]["notes"][0]
    one = eval_estimate(LLAMA, TrainingSetup(method=Method.LORA), EvalPlan(batch_size=16))
    assert d["eval"]["peak_allocated_bytes"] < one.peak_allocated_bytes
