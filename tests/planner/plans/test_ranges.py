"""planner/plans/ranges.py: the kind of a setup, the leave-one-source-out range on hand-built rows,
the fallbacks, the bounds and verdicts, and the recorded table against the recorded errors."""
from __future__ import annotations

import pytest

from gpuplan.planner.io.published import recorded_errors
from gpuplan.planner.plans import ranges as R
from gpuplan.planner.plans.ranges import Evidence, EvidenceRow, EvidenceStack, Fallback, Kind, Range, SimRow
from gpuplan.planner.specs.enums import Method, Objective
from gpuplan.planner.specs.setup import LoraSpec, PeftSpec, TrainingSetup

A = "peak_allocated_bytes"


def rows(source: str, errors: list[float], stack: str = "hf", method: str = "lora", figure: str = A) -> list[EvidenceRow]:
    return [EvidenceRow(f"{source}-{i}|max_memory_allocated", source, stack, method, figure, e, False)
            for i, e in enumerate(errors)]


def test_the_evidence_stacks_collapse_to_what_an_estimate_knows():
    assert R.evidence_stack("hf") is R.evidence_stack("peft-loop") is EvidenceStack.HF
    assert R.evidence_stack("torchtune") is EvidenceStack.TORCHTUNE
    assert R.evidence_stack("litgpt") is R.evidence_stack("answerai") is R.evidence_stack("a-new-one") is EvidenceStack.OTHER


def test_method_label_names_the_adapter_and_objective_beyond_plain_lora_sft():
    assert R.method_label(TrainingSetup()) == "full"
    assert R.method_label(TrainingSetup(method=Method.QLORA)) == "qlora"
    assert R.method_label(TrainingSetup(method=Method.LORA, lora=LoraSpec(use_dora=True))) == "lora-dora"
    assert R.method_label(TrainingSetup(method=Method.LORA, adapter=PeftSpec.of("ia3", {}))) == "lora-ia3"
    assert R.method_label(TrainingSetup(method=Method.LORA, objective=Objective.DPO)) == "lora+dpo"
    assert R.setup_kind(TrainingSetup(method=Method.LORA), EvidenceStack.TORCHTUNE) == Kind(EvidenceStack.TORCHTUNE, "lora")


def test_bias_gives_every_source_one_vote():
    # 9 rows at -20% from one source, 1 row at +10% from another: the median of the medians is -5%
    assert R.bias(rows("big", [-0.2] * 9) + rows("small", [0.1])) == pytest.approx(-0.05)


def test_held_out_errors_widen_when_sources_disagree_and_not_when_they_agree():
    disagree = rows("a", [-0.22, -0.20, -0.18]) + rows("b", [0.18, 0.20, 0.22])
    # b = 0; without a the bias is +0.20, so a's rows sit at e - 0.20; b's at e + 0.20
    assert sorted(R.held_out_errors(disagree)) == pytest.approx([-0.42, -0.40, -0.38, 0.38, 0.40, 0.42])
    agree = rows("a", [-0.11, -0.10, -0.09]) + rows("b", [-0.11, -0.10, -0.09])
    assert sorted(R.held_out_errors(agree)) == pytest.approx(sorted(r.error for r in agree))
    with pytest.raises(ValueError):
        R.held_out_errors(rows("a", [0.1, 0.2]))


def test_the_range_is_held_out_not_the_fitted_errors():
    """The fitted (in-sample) errors of these rows lie within -22%..+22%; held out by source, a new
    source may be as far from the pool as each known one was: the range reaches about +-40%."""
    r = R.kind_range(rows("a", [-0.22, -0.20, -0.18]) + rows("b", [0.18, 0.20, 0.22]), "hf", "lora", A)
    assert r.held_out and r.fallback is Fallback.NONE and r.rows == 6 and r.sources == ("a", "b")
    assert r.bias == pytest.approx(0.0)
    assert r.low < -0.37 and r.high > 0.37            # in-sample: -0.22 and +0.22
    assert r.worst == pytest.approx(-0.42) or r.worst == pytest.approx(0.42)
    assert r.median_abs == pytest.approx(0.40)


def test_quantiles_weigh_sources_not_rows():
    # one row of a lone source keeps half of the weight: it is the 10th percentile, not an outlier beyond it
    vals = [0.0] * 7 + [-0.3]
    w = R.source_weights(rows("many", [0.0] * 7) + rows("one", [-0.3]))
    assert R.quantile(vals, 0.1, w) == pytest.approx(-0.3)
    assert R.quantile(vals, 0.1) == pytest.approx(-0.21)   # by rows: -0.3 at 1/16, 0 at 3/16
    assert R.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert R.quantile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0 and R.quantile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0


def test_a_kind_with_one_source_falls_back_to_all_stacks_widened_to_its_own_rows():
    evidence = (rows("tt", [0.5, 0.6, 0.7, 0.8, 0.9], stack="torchtune")
                + rows("a", [-0.1, -0.05, 0.0]) + rows("b", [0.0, 0.05, 0.1]))
    r = R.kind_range(evidence, "torchtune", "lora", A)
    assert r.fallback is Fallback.ALL_STACKS and r.group == "*|lora|peak_allocated_bytes" and r.rows == 11
    assert r.high >= 0.9                                # its own runs stay inside the range
    assert "too few for a range of its own" in r.why
    # other figures of a method with evidence: the all-methods fallback
    dev = evidence + rows("c", [-0.3, -0.2, -0.1], method="full", figure="device_total_bytes") + \
        rows("d", [-0.2, -0.1], method="full", figure="device_total_bytes")
    r = R.kind_range(dev, "hf", "lora", "device_total_bytes")
    assert r.fallback is Fallback.ALL_METHODS and r.sources == ("c", "d")
    assert R.kind_range(evidence, "hf", "qlora", A) is None      # no published qlora row at all


def test_a_method_without_published_runs_gets_the_simulator_and_says_so():
    sim = [SimRow("lora-dora", 0.002, "accuracy_simulate_peft.json"), SimRow("lora-dora", -0.001, "accuracy_simulate_peft.json"),
           SimRow("full", 0.01, "accuracy_simulate.json")]
    r = R.simulated_range(sim, "lora-dora")
    assert (r.evidence, r.rows, r.low, r.high, r.held_out) == (Evidence.SIMULATED, 2, -0.001, 0.002, False)
    assert "no real-GPU evidence covers lora-dora" in r.why
    table = R.build_table(rows("a", [-0.1, 0.0, 0.1]) + rows("b", [-0.1, 0.0]), sim)
    assert table["kinds"]["hf|lora-dora|peak_allocated_bytes"]["evidence"] == "simulated"
    assert table["kinds"]["hf|lora|peak_allocated_bytes"]["evidence"] == "published"
    unknown = R.figure_range(Kind(EvidenceStack.HF, "qlora-boft"), A, table)
    assert unknown.evidence is Evidence.SIMULATED and unknown.rows == 3 and "covers qlora-boft" in unknown.why


def test_range_round_trips_through_its_dict():
    r = R.kind_range(rows("a", [-0.2, -0.1, 0.0]) + rows("b", [0.0, 0.1]), "hf", "lora", A)
    assert Range.from_dict(r.to_dict()) == r


def test_bounds_and_verdicts():
    r = Range("g", Evidence.PUBLISHED, 10, ("a", "b"), 0.0, -0.2, 0.25, 0.1, -0.3, True)
    assert R.bounds(100, r) == (80, 125)           # published = estimate / (1 + error)
    assert R.headroom(200, 100, r).verdict == "fits"
    h = R.headroom(110, 100, r)                    # 10 to spare by the estimate, 15 over at the top
    assert (h.estimate, h.low, h.high, h.verdict) == (10, -15, 30, "may not fit")
    assert R.headroom(90, 100, r).verdict == "may fit"
    assert R.headroom(70, 100, r).verdict == "does not fit"
    wild = Range("g", Evidence.PUBLISHED, 10, ("a", "b"), 0.0, -0.99, 0.0, 0.1, -0.99, True)
    assert R.bounds(100, wild) == (100, 1000)      # clamped at -90%


def test_recorded_ranges_come_from_the_recorded_errors():
    """ranges_recorded.json is written with errors_recorded.json (benchmarks/published.py --record):
    the same runs and errors, and its published ranges are what the code computes from its rows."""
    table = R.recorded_table()
    assert table, "data/published/ranges_recorded.json is missing: run benchmarks/published.py --record"
    memory = recorded_errors()["memory"]
    stored = [EvidenceRow(**r) for r in table["rows"]]
    assert {r.key: round(100 * r.error, 4) for r in stored} == pytest.approx(memory, abs=1e-3), \
        "ranges_recorded.json is stale: re-run benchmarks/published.py --record"
    fresh = R.build_table(stored, [])
    for key, d in table["kinds"].items():
        if d["evidence"] == "published":
            assert d == fresh["kinds"][key], key
    assert {k: v for k, v in table["groups"].items()} == fresh["groups"]


def test_coverage_holds_each_source_out_through_the_same_fallbacks():
    evidence = rows("a", [-0.1, 0.0, 0.1]) + rows("b", [-0.1, 0.0, 0.1]) + rows("c", [0.5, 0.6])
    cov = R.coverage(evidence)
    assert [r.source for r, _, _ in cov] == ["a"] * 3 + ["b"] * 3 + ["c"] * 2
    by = {r.key: (rng, ok) for r, rng, ok in cov}
    rng, ok = by["c-0|max_memory_allocated"]
    assert rng.sources == ("a", "b") and not ok            # c's +50% is outside what a and b give
    assert all(ok for r, _, ok in cov if r.source != "c")
