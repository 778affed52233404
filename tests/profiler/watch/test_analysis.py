"""The watch's conclusions on synthetic series: the OOM warning, the leak, the measured figures."""
import pytest

from gpuplan.profiler.watch.analysis import (OOM_MARGIN_FRACTION, comparison, leak, measured_figures, oom_warning,
                                             steady)

GIB = 2**30
CAP = 80 * GIB


def test_no_warning_while_the_projection_fits():
    assert oom_warning({2: 60 * GIB, 3: 61 * GIB}, growth_bytes=5 * GIB, capacity_bytes=CAP, overhead_bytes=GIB) is None
    assert oom_warning({}, growth_bytes=100 * GIB, capacity_bytes=CAP) is None   # no step yet: nothing to project


def test_warning_when_the_longest_sequence_would_not_fit():
    w = oom_warning({2: 60 * GIB, 3: 70 * GIB, 4: 69 * GIB}, growth_bytes=6 * GIB, capacity_bytes=CAP,
                    overhead_bytes=GIB)
    assert w is not None and w.step == 3
    assert w.projected_bytes == 77 * GIB and w.limit_bytes == int(CAP * (1 - OOM_MARGIN_FRACTION))
    assert "step 3" in w.message and "= 77.00 GiB > 76.00 GiB" in w.message
    assert oom_warning({2: 60 * GIB, 3: 70 * GIB}, growth_bytes=6 * GIB, capacity_bytes=CAP) is None   # 76 <= 76


def test_the_margin_decides_at_the_edge():
    peaks = {2: 74 * GIB}
    assert oom_warning(peaks, GIB, CAP, margin=0.05) is None            # 75 <= 76
    assert oom_warning(peaks, GIB, CAP, margin=0.07) is not None        # 75 > 74.4
    assert oom_warning(peaks, -10 * GIB, CAP, margin=0.08) is not None  # 74 > 73.6: a negative growth is no credit


def test_a_steady_run_is_no_leak():
    flat = {s: 5 * GIB for s in range(1, 30)}
    assert leak(flat, k=8) is None
    noisy = {s: 5 * GIB + (s % 3) * 512 for s in range(1, 30)}       # up, up, down: not monotone
    assert leak(noisy, k=8) is None


def test_allocated_rising_at_every_step_is_a_leak():
    rising = {s: 5 * GIB + s * 2**20 for s in range(1, 12)}
    found = leak(rising, k=8)
    assert found is not None and (found.first_step, found.last_step) == (3, 11)
    assert found.rise_bytes == 8 * 2**20 and "+8.0 MiB" in found.message


def test_a_leak_needs_k_rising_steps():
    short = {s: s * 2**20 for s in range(1, 9)}       # 7 rises
    assert leak(short, k=8) is None
    assert leak({**short, 9: 9 * 2**20}, k=8) is not None
    stopped = {**{s: s * 2**20 for s in range(1, 12)}, 12: 11 * 2**20}   # flat at the last step: stopped rising
    assert leak(stopped, k=8) is None


def test_steady_steps_start_at_step_two():
    steps = [{"step": 1}, {"step": 2}, {"step": 3}]
    assert [s["step"] for s in steady(steps)] == [2, 3]
    assert [s["step"] for s in steady(steps[:1])] == [1]


def test_measured_figures_over_ranks_and_samples():
    r0 = [{"step": 1, "step_time_s": None, "tokens": 100, "peak_allocated_bytes": 9 * GIB, "peak_reserved_bytes": 10 * GIB},
          {"step": 2, "step_time_s": 0.5, "tokens": 100, "peak_allocated_bytes": 7 * GIB, "peak_reserved_bytes": 8 * GIB},
          {"step": 3, "step_time_s": 0.7, "tokens": 100, "peak_allocated_bytes": 7 * GIB, "peak_reserved_bytes": 8 * GIB}]
    r1 = [{**s, "peak_allocated_bytes": s["peak_allocated_bytes"] + GIB} for s in r0]
    samples = [{"rss_bytes": 3 * GIB, "gpus": [{"run_memory_bytes": 9 * GIB}, {"run_memory_bytes": 11 * GIB}]},
               {"rss_bytes": 4 * GIB, "gpus": [{"run_memory_bytes": 10 * GIB}, {"run_memory_bytes": None}]}]
    m = measured_figures({0: r0, 1: r1}, samples)
    assert m["peak_allocated_bytes"] == 8 * GIB          # steady steps only (step 1's optimizer state is lazy)
    assert m["first_step_peak_allocated_bytes"] == 10 * GIB
    assert m["peak_reserved_bytes"] == 8 * GIB and m["device_total_bytes"] == 11 * GIB and m["peak_rss_bytes"] == 4 * GIB
    assert m["step_time_s"] == pytest.approx(0.6) and m["steps_timed"] == 2 and m["steps"] == 3
    assert m["tokens_per_s"] == pytest.approx(2 * 200 / 1.2)   # both ranks' tokens
    rows = {r["name"]: r for r in comparison(m, {"peak_allocated_bytes": 9 * GIB, "tokens_per_s": None})}
    assert rows["peak_allocated_bytes"]["error_pct"] == 12.5 and rows["tokens_per_s"]["error_pct"] is None


def test_measured_figures_of_nothing():
    m = measured_figures({}, [])
    assert m["steps"] == 0 and m["step_time_s"] is None and m["tokens_per_s"] is None and m["peak_rss_bytes"] is None
