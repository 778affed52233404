"""A shared link that names what does not exist says so (AppTest), and the figures read at a glance."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from gpuplan.app import charts  # noqa: E402
from gpuplan.app.dashboard import main as dashboard_main  # noqa: E402


def app(**params: str) -> AppTest:
    at = AppTest.from_file(dashboard_main.__file__, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_unknown_model_in_a_link_says_so():
    at = app(model="qwen2.5-7")
    (w,) = [w.value for w in at.warning if "not a preset" in w.value]
    assert "'qwen2.5-7'" in w and "did you mean: qwen-2.5-7b" in w and "Showing llama-3.1-8b instead" in w


def test_a_model_alias_in_a_link_opens_that_model():
    at = app(model="qwen2.5-7b")
    assert not at.warning
    assert at.subheader[0].value.startswith("qwen-2.5-7b:")


def test_unknown_page_in_a_link_says_so():
    at = app(page="recomend")
    assert any("'recomend' does not exist" in w.value for w in at.warning)
    assert at.header[0].value == "Estimate"


def test_past_the_trained_context_is_a_warning():
    at = app(model="qwen-2.5-0.5b", seq_len="65536", batch_size="1")
    assert any("trained context of 32,768" in w.value for w in at.warning)


def test_gpt2_past_its_positions_is_an_inline_error():
    at = app(model="gpt-2-small", seq_len="4096")
    assert any("learned positions" in e.value for e in at.error)


def test_metric_tiles_get_the_no_ellipsis_style():
    """The layout itself is checked in a browser (tests/e2e: no metric value wider than its box)."""
    at = app()
    assert len(at.metric) == 4
    assert any('data-testid="stMetricValue"' in m.value and "text-overflow: clip" in m.value
               for m in at.markdown if "<style>" in m.value)


def test_pareto_scatter_log_axes_open_on_the_frontier():
    plans = [{"h": 0.5, "usd": 20.0, "n": "a", "pareto": True}, {"h": 8.0, "usd": 5.0, "n": "b", "pareto": True},
             {"h": 400.0, "usd": 900.0, "n": "c", "pareto": False}]
    fig = charts.pareto_scatter(plans, "h", "usd", "n", "hours", "USD")
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    lo, hi = fig.layout.xaxis.range
    assert math.isclose(10 ** lo, 0.25) and math.isclose(10 ** hi, 16.0)
    lo, hi = fig.layout.yaxis.range
    assert math.isclose(10 ** lo, 2.5) and math.isclose(10 ** hi, 40.0)


def test_log_sweep_labels_at_most_eight_ticks():
    xs = [2 ** k for k in range(6, 20)]   # 64 .. 512k: 14 values
    fig = charts.sweep_lines("sequence length", {"full": [(x, x * 1000) for x in xs]})
    ticks = list(fig.layout.xaxis.tickvals)
    assert fig.layout.xaxis.type == "log" and 2 <= len(ticks) <= charts.MAX_TICKS and set(ticks) <= set(xs)
    assert list(fig.layout.xaxis.ticktext)[:2] == ["64", "256"] and fig.layout.xaxis.ticktext[-1].endswith("k")


def test_sweep_leaves_gpt2_past_its_positions_out():
    from gpuplan.app.dashboard.page_compare import sweep
    from gpuplan.planner import TrainingSetup, estimate
    from gpuplan.planner.io.catalog import resolve_model

    m = resolve_model("gpt-2-small")
    s = TrainingSetup(batch_size=1)
    (points,) = sweep(m, [("a", s, estimate(m, s))], "seq_len", [512, 1024, 2048]).values()
    assert [y is None for _, y in points] == [False, False, True]
