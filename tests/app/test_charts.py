"""The pure figure builders: bytes in, GiB on the axes, every component and capacity line present."""
import json
from pathlib import Path

import pytest

from gpuplan.app import charts
from gpuplan.planner import TrainingSetup, estimate
from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Method

FIXTURES = Path(__file__).parent / "fixtures"
GIB = 2**30
MIB = 2**20


@pytest.fixture(scope="module")
def est():
    return estimate(resolve_model("llama-3.1-8b"), TrainingSetup(method=Method.QLORA)).to_dict()


@pytest.fixture(scope="module")
def profile():
    return json.loads((FIXTURES / "profile-tiny-llama.json").read_text())


def _bar(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_phase_stack_sums_to_each_phase_and_the_device_total(est):
    h100 = resolve_gpu("h100")
    fig = charts.phase_stack(est, [(h100.label, h100.memory_bytes)])
    assert [t.name for t in fig.data] == [c.replace("_", " ") for c in charts.ALL_COMPONENTS]
    x = list(fig.data[0].x)
    assert x[-1] == charts.DEVICE_TOTAL and f"{est['peak_phase']} (peak)" in x
    for i, phase in enumerate(charts.PHASES):   # the stack of each phase is its allocated total
        assert sum(t.y[i] for t in fig.data) == pytest.approx(est["phases"][phase] / GIB)
    assert sum(t.y[-1] for t in fig.data) == pytest.approx(est["device_total_bytes"] / GIB)
    assert _bar(fig, "cuda context").y[0] == 0 and _bar(fig, "cuda context").y[-1] > 0
    (line,) = fig.layout.shapes
    assert line.y0 == pytest.approx(h100.memory_bytes / GIB)
    assert h100.label in fig.layout.annotations[0].text


def test_phase_stack_of_a_simulation_has_no_device_bar_and_a_unit_that_reads(profile):
    fig = charts.phase_stack(profile)
    assert charts.DEVICE_TOTAL not in fig.data[0].x and len(fig.data) == len(charts.TENSOR_COMPONENTS)
    peak = profile["peak_phase"]
    i = charts.PHASES.index(peak)
    assert profile["peak_allocated_bytes"] < GIB and fig.layout.yaxis.title.text == "MiB"   # 1.8 MB: the tiny model
    assert sum(t.y[i] for t in fig.data) == pytest.approx(profile["peak_allocated_bytes"] / MIB)


def test_setups_stack_one_bar_per_setup(est):
    comps = est["components"]
    half = {k: v // 2 for k, v in comps.items()}
    fig = charts.setups_stack([("a", comps), ("b", half)], [("t4", 15 * GIB)])
    assert list(fig.data[0].x) == ["a", "b"] and fig.layout.barmode == "stack"
    assert sum(t.y[0] for t in fig.data) == pytest.approx(est["device_total_bytes"] / GIB)
    assert sum(t.y[1] for t in fig.data) < sum(t.y[0] for t in fig.data)
    assert fig.layout.shapes[0].y0 == 15


def test_sweep_lines_keep_gaps_for_impossible_points():
    fig = charts.sweep_lines("sequence length", {"full": [(512, 2 * GIB), (1024, None)], "lora": [(512, GIB)]})
    full = _bar(fig, "full")
    assert list(full.x) == [512, 1024] and list(full.y) == [2.0, None] and fig.layout.yaxis.title.text == "GiB"
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "sequence length"


def test_compare_bars_only_components_measured(profile):
    fig = charts.compare_bars(profile["comparison"])
    measured = [r for r in profile["comparison"]["components"] if r["measured_bytes"] is not None]
    est_bar, meas_bar = fig.data
    assert len(est_bar.x) == len(measured) == 6   # slack and context are not measured by a simulation
    assert list(meas_bar.customdata) == [r["error_pct"] for r in measured]
    assert profile["comparison"]["phase"] in fig.layout.title.text


def test_timeline_points_by_phase(profile):
    events = profile["per_module"]["timeline"]
    fig = charts.timeline(events)
    assert sum(len(t.x) for t in fig.data) == sum(e["phase"] in charts.PHASES for e in events)
    assert max(max(t.y) for t in fig.data if len(t.y)) == pytest.approx(max(e["live_bytes"] for e in events) / MIB)


def test_pareto_scatter_joins_the_front_in_x_order():
    plans = [{"x": 3, "y": 1, "n": "a", "pareto": True}, {"x": 1, "y": 5, "n": "b", "pareto": True},
             {"x": 4, "y": 4, "n": "c", "pareto": False}]
    fig = charts.pareto_scatter(plans, "x", "y", "n", "hours", "USD")
    others, front = fig.data
    assert list(front.x) == [1, 3] and list(front.text) == ["b", "a"] and list(others.text) == ["c"]


def test_gpu_scatter_skips_unpriced():
    fig = charts.gpu_scatter([{"name": "a", "memory_gib": 80, "usd_per_hour": 2.0},
                              {"name": "b", "memory_gib": 24, "usd_per_hour": None}])
    assert list(fig.data[0].text) == ["a"]


def test_gpu_scatter_names_only_the_cards_none_beats_and_hovers_every_name():
    rows = [{"name": "big-cheap", "memory_gib": 80, "usd_per_hour": 2.0},
            {"name": "big-dear", "memory_gib": 80, "usd_per_hour": 3.0},      # same memory, dearer: unnamed
            {"name": "small-dear", "memory_gib": 24, "usd_per_hour": 2.5},    # less memory, dearer: unnamed
            {"name": "small-cheap", "memory_gib": 24, "usd_per_hour": 0.4}]
    fig = charts.gpu_scatter(rows)
    assert list(fig.data[0].text) == ["big-cheap", "", "", "small-cheap"]
    assert list(fig.data[0].customdata) == [r["name"] for r in rows]
    assert "%{customdata}" in fig.data[0].hovertemplate
