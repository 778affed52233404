"""recommend(): the cheapest is the cheapest of a brute-force search, the frontier is non-dominated,
constraints hold, and nothing-fits says what gets closest."""
import itertools
import math

import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Method, Optimizer, Precision
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.plans.plan import make_plan
from gpuplan.planner.plans.recommend import Constraints, SearchSpace, pareto_frontier, recommend
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.speed.throughput import time_columns

MODEL = resolve_model("qwen-2.5-1.5b")
GPUS = ("rtx-4090", "l4", "a100-sxm-40gb", "t4")
SPACE = SearchSpace(seq_len=1024, global_batch=32, precisions=(Precision.BF16_MIXED, Precision.FP16_MIXED),
                    optimizers=(Optimizer.ADAMW_FUSED, Optimizer.ADAMW_8BIT), max_micro_batch=16)
C = Constraints(max_gpus=1, gpus=GPUS)
TOKENS = 50_000_000


@pytest.fixture(scope="module")
def rec():
    return recommend(MODEL, TOKENS, 1.0, C, SPACE)


def brute_force():
    plans = []
    for method, prec, opt, ckpt, name in itertools.product(Method, SPACE.precisions, SPACE.optimizers,
                                                           SPACE.checkpointing, GPUS):
        gpu = resolve_gpu(name)
        if (prec is Precision.BF16_MIXED) != (gpu.raw["peak_flops"]["bf16"] is not None):
            continue
        best = None
        for b in (1, 2, 4, 8, 16):    # every micro-batch, no bisection
            s = TrainingSetup(method=method, precision=prec, optimizer=opt, checkpointing=ckpt, seq_len=1024,
                              batch_size=b, grad_accum=max(1, math.ceil(32 / b)))
            total = estimate(MODEL, s).device_total_bytes
            if total <= gpu.memory_bytes:
                best = (s, total)
        if best:
            plans.append(make_plan(MODEL, best[0], gpu, TOKENS, 1.0, best[1]))
    return plans


def test_cheapest_and_fastest_match_brute_force(rec):
    plans = brute_force()
    assert rec.fitting == len(plans)
    assert rec.cheapest.usd == pytest.approx(min(p.usd for p in plans))
    assert rec.fastest.hours == pytest.approx(min(p.hours for p in plans))


def test_frontier_is_non_dominated_and_cheaper_never_faster(rec):
    f = rec.frontier
    assert f[0].hours == pytest.approx(rec.fastest.hours)
    assert f[-1].usd == pytest.approx(rec.cheapest.usd)
    for a, b in zip(f, f[1:]):
        assert a.hours <= b.hours and a.usd > b.usd      # slower points must be cheaper
    for p in rec.plans:                                   # and nothing beats a frontier point on both
        assert not any(p.hours < q.hours and p.usd < q.usd * (1 - 1e-3) for q in f)
    for p in rec.plans:
        assert not any(q.hours < p.hours and q.usd < p.usd for q in f if q is not p) or p not in f


def test_pareto_frontier_on_made_up_points():
    class P:
        def __init__(self, h, u):
            self.hours, self.usd = h, u
    pts = [P(1, 10), P(2, 5), P(2, 8), P(3, 6), P(4, 1), P(5, 1)]
    assert [(p.hours, p.usd) for p in pareto_frontier(pts)] == [(1, 10), (2, 5), (4, 1)]
    assert [(p.hours, p.usd) for p in pareto_frontier([P(1, 5.0), P(2, 4.9999)])] == [(1, 5.0)]


def test_recommended_plans_fit_and_carry_reasons(rec):
    for p in (rec.cheapest, rec.fastest, *rec.frontier):
        assert p.device_total_bytes <= p.gpu.memory_bytes
        assert p.why
    assert "lowest cost" in rec.cheapest.why and "shortest time" in rec.fastest.why
    assert rec.considered >= rec.fitting > 0


def test_micro_batch_is_the_largest_that_fits(rec):
    p = rec.cheapest
    if p.setup.batch_size < SPACE.max_micro_batch:
        bigger = p.setup.with_(batch_size=p.setup.batch_size * 2,
                               grad_accum=max(1, math.ceil(32 / (p.setup.batch_size * 2))))
        assert estimate(MODEL, bigger).device_total_bytes > p.gpu.memory_bytes


def test_deadline_and_budget_are_respected():
    r = recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=1, gpus=GPUS, deadline_s=3 * 3600), SPACE)
    assert all(p.seconds <= 3 * 3600 for p in r.plans)
    r = recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=1, gpus=GPUS, budget_usd=2.0), SPACE)
    assert all(p.usd <= 2.0 for p in r.plans)


def test_methods_and_providers_filter():
    r = recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=1, gpus=GPUS, methods=(Method.FULL,), providers=("aws",)), SPACE)
    assert all(p.setup.method is Method.FULL and p.best.provider == "aws" for p in r.plans)


def test_impossible_deadline_names_the_gap():
    r = recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=1, gpus=GPUS, deadline_s=60), SPACE)
    assert r.cheapest is None and r.qualifying == 0
    hint = next(h for h in r.closest if h.knob == "deadline")
    assert "over the deadline" in hint.message and hint.plan.hours == pytest.approx(
        min(p.hours for p in brute_force()))


def test_nothing_fits_says_how_far():
    r = recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=1, gpus=("t4",), methods=(Method.FULL,)), SPACE)
    assert r.cheapest is None
    assert r.closest[0].knob == "memory" and "short by" in r.closest[0].message
    knobs = {h.knob for h in r.closest}
    assert {"gpus", "methods"} <= knobs      # another GPU type, or LoRA, gets there


def test_bad_constraints():
    with pytest.raises(PlannerError, match="unknown provider"):
        recommend(MODEL, TOKENS, 1.0, Constraints(providers=("acme",)), SPACE)
    with pytest.raises(PlannerError, match="max-gpus"):
        recommend(MODEL, TOKENS, 1.0, Constraints(max_gpus=0), SPACE)


def test_to_dict_is_json():
    import json

    r = recommend(MODEL, TOKENS, 1.0, C, SPACE)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["cheapest"]["usd"] == pytest.approx(r.cheapest.usd)


def test_multi_gpu_candidates_from_the_per_gpu_estimates():
    """The search over counts and sharding uses the estimator's own per-GPU figures."""
    c = Constraints(max_gpus=8, gpus=("h100-sxm-80gb",), methods=(Method.FULL,))
    r = recommend(resolve_model("qwen-2.5-7b"), TOKENS, 1.0, c, SPACE)
    counts = {p.gpus for p in r.plans}
    assert counts >= {2, 4, 8}
    # the fastest plan's collectives are timed (over NVLink they hide behind compute: exposed >= 0)
    f = r.fastest
    assert f.gpus > 1 and time_columns(resolve_model("qwen-2.5-7b"), f.setup, f.gpu).network > 0
    assert f.step.communication >= 0
    def fsdp_batch(n: int) -> int:       # sharding wider frees memory for a larger micro-batch
        return max(p.setup.batch_size for p in r.plans if p.gpus == n and p.setup.parallel.fsdp.value == "full"
                   and p.setup.optimizer is Optimizer.ADAMW_FUSED and p.setup.checkpointing.value == "none"
                   and p.setup.precision.value == "bf16-mixed")

    assert fsdp_batch(8) > fsdp_batch(2)
    one = recommend(resolve_model("qwen-2.5-7b"), TOKENS, 1.0, Constraints(max_gpus=1, gpus=c.gpus, methods=c.methods), SPACE)
    assert one.cheapest is None or r.fastest.hours < one.fastest.hours