"""recommend says when the runner-up lies inside the winner's cross-validated range."""
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.plans.recommend import Constraints, SearchSpace, recommend
from gpuplan.planner.specs.enums import Method


def test_a_note_names_a_runner_up_within_the_range_and_only_then():
    r = recommend(resolve_model("llama-3.2-1b"), 20_000_000, 1.0,
                  Constraints(max_gpus=1, gpus=("h100-sxm-80gb", "h200-sxm-141gb", "a100-sxm-80gb", "l40s"),
                              methods=(Method.LORA,)), SearchSpace(seq_len=1024))
    cheap = r.cheapest
    others = [p for p in r.plans if p.gpu.name != cheap.gpu.name]
    runner = min(others, key=lambda p: p.usd)
    lo, hi = cheap.usd_range
    assert lo <= cheap.usd <= hi
    within = runner.usd <= hi
    assert any(n.startswith("cheapest:") for n in r.notes) is within
    fast = r.fastest
    runner = min((p for p in r.plans if p.gpu.name != fast.gpu.name), key=lambda p: p.hours)
    assert any(n.startswith("fastest:") for n in r.notes) is (runner.hours <= fast.hours_range[1])
