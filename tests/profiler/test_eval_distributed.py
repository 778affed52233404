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
from gpuplan.planner import Engine, Loss, Objective  # noqa: E402
from gpuplan.planner.memory.preference_ranks import reference_on_rank  # noqa: E402
from gpuplan.profiler.distributed_eval import simulate_distributed_eval, simulate_reference_forward  # noqa: E402


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


def test_an_fsdp2_reference_is_one_unit_gathered_whole_twice_in_its_forward():
    """TRL's prepare_fsdp shards the reference as one unit: its forward holds the flat all-gather output and
    the unsharded copy of the whole model (a batch of 8 tokens keeps the activations out of the way)."""
    m = resolve_model("qwen-2.5-0.5b")
    s = TrainingSetup(objective=Objective.DPO, loss=Loss.TRL, batch_size=1, seq_len=8,
                      parallel=ParallelSpec(gpus=4, fsdp=Fsdp.FULL))
    start, peak = simulate_reference_forward(m, s, 1, 8)
    resident, gathered = reference_on_rank(m, s, Engine.FSDP_FULL)
    assert resident == pytest.approx(start, rel=0.001)
    assert resident + gathered == pytest.approx(peak, rel=0.005), (resident + gathered, peak)
