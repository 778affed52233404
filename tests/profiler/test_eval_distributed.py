"""The multi-GPU eval phase's estimate (planner/memory/evaluation.py with eval_ranks.py) against rank 0 of a
simulated FSDP2 job (profiler/distributed_eval.py): the sharded model evaluated under no_grad, and with
compute_metrics each step's logits all-gathered across the ranks and kept as transformers keeps them."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.planner import Component, Fsdp, Method, ParallelSpec, TrainingSetup, resolve_model  # noqa: E402
from gpuplan.planner.memory.eval_ranks import rank_states  # noqa: E402
from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate  # noqa: E402
from gpuplan.profiler.distributed_eval import simulate_distributed_eval  # noqa: E402


@pytest.mark.parametrize("name,setup,plan", [
    ("qwen-2.5-0.5b", TrainingSetup(parallel=ParallelSpec(gpus=4, fsdp=Fsdp.FULL)),
     EvalPlan(batch_size=2, seq_len=256, accumulate_logits=True, eval_batches=3)),
    ("qwen-2.5-0.5b", TrainingSetup(parallel=ParallelSpec(gpus=4, fsdp=Fsdp.GRAD_OP)),
     EvalPlan(batch_size=4, seq_len=256)),
    ("llama-3.2-1b", TrainingSetup(method=Method.LORA, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)),
     EvalPlan(batch_size=2, seq_len=512)),
])
def test_sharded_eval_peak_matches_the_simulated_fsdp2_eval(name, setup, plan):
    m = resolve_model(name)
    start, peak = simulate_distributed_eval(m, setup, plan.batch_size, plan.seq_len, plan.eval_batches,
                                            plan.accumulate_logits)
    est = eval_estimate(m, setup, plan)
    planned = est.peak_allocated_bytes - est.components[Component.OPTIMIZER_STATE]   # the state is lazy
    assert planned == pytest.approx(peak, rel=0.005), (planned, peak)
    assert start == pytest.approx(rank_states(m, setup).weights, rel=0.001)   # the resident shards
