"""Generation during eval: the planner's generate peak (planner/techniques/generation.py through
eval_estimate) against transformers' own `generate` run under FakeTensorMode (profiler/generation.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.planner import Component, Method, Precision, TrainingSetup, resolve_model  # noqa: E402
from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate  # noqa: E402
from gpuplan.planner.techniques.generation import CacheKind  # noqa: E402
from gpuplan.profiler.generation import HOST_READS, HostReads, simulate_generation  # noqa: E402

# (setup, batch, prompt, new tokens, cache) on Qwen2.5-0.5B (the tiny test Llama's 256-token vocabulary
# and 64-wide layers leave its int64 ids and 4-bit block rounding larger than the terms checked here)
CASES = [
    (TrainingSetup(), 2, 64, 8, CacheKind.DYNAMIC),                                 # fp32 weights, autocast: fp32 keys
    (TrainingSetup(method=Method.LORA), 4, 64, 6, CacheKind.DYNAMIC),               # frozen fp32 base: casts per use
    (TrainingSetup(method=Method.QLORA), 2, 64, 8, CacheKind.DYNAMIC),              # fp32 keys and values
    (TrainingSetup(precision=Precision.BF16_TRUE), 4, 32, 12, CacheKind.STATIC),    # the whole cache up front
    (TrainingSetup(precision=Precision.BF16_TRUE), 8, 256, 1, CacheKind.DYNAMIC),   # the prefill alone
]
MODEL = "qwen-2.5-0.5b"


def _generation_peak(model, setup, b, s, n, cache) -> tuple[int, int]:
    """(weights, generate peak) of the estimate, without the optimizer state (a training run keeps
    it; the simulated generate builds none)."""
    est = eval_estimate(model, setup, EvalPlan(batch_size=b, seq_len=s, generate_tokens=n, cache=cache))
    return est.components[Component.WEIGHTS], \
        est.generation["peak_allocated_bytes"] - est.components[Component.OPTIMIZER_STATE]


@pytest.mark.slow
@pytest.mark.parametrize("setup,b,s,n,cache", CASES, ids=[f"{c[0].method.value}-{c[0].precision.value}-b{c[1]}s{c[2]}n{c[3]}-{c[4].value}"
                                                        for c in CASES])
def test_generate_peak_matches_the_simulated_generate(setup, b, s, n, cache):
    m = resolve_model(MODEL)
    _, simulated = simulate_generation(m, setup, b, s, n, None if cache is CacheKind.DYNAMIC else cache.value)
    assert _generation_peak(m, setup, b, s, n, cache)[1] == pytest.approx(simulated, rel=0.005)


def test_host_reads_are_answered_in_order_and_counted():
    reads = HostReads()
    with reads:
        answers = [bool(torch.tensor(True)) for _ in HOST_READS]
    assert answers == [a for a, _ in HOST_READS]
    with pytest.raises(RuntimeError, match="HOST_READS"):
        with HostReads():
            pass   # fewer reads than transformers' generate makes: a version whose reads differ
