"""Watch: the plots of `gpuplan watch --output run.jsonl`, redrawn while the file grows; several runs
side by side. Attach-mode runs without a hook or callback have only NVML and /proc figures."""
from __future__ import annotations

import streamlit as st

from gpuplan.app import watch_charts
from gpuplan.app.watch_charts import RunSeries
from gpuplan.profiler.watch import analysis

from .state import Param, Params
from .widgets import figure_ui, show_problems

SCOPE = "watch"
MAX_REFRESH_S = 60


def _page_params() -> Params:
    return Params(SCOPE, [Param("runs", "", str), Param("refresh", 2, int, low=0, high=MAX_REFRESH_S)])


def paths_of(text: str) -> list[str]:
    """The file paths in the text box: comma- or newline-separated, blanks dropped."""
    return [p.strip() for chunk in text.splitlines() for p in chunk.split(",") if p.strip()]


def live_warnings(r: RunSeries) -> list[str]:
    """The OOM and leak warnings of a run, from its series as they stand (the same checks the CLI makes)."""
    if r.summary is not None:
        return list(r.summary.get("warnings") or [])
    out = []
    reserved = {s: b for s, b in zip(r.step, r.peak_reserved_bytes) if b is not None and s >= 2}
    peak_gpu = max((b for b in r.gpu_bytes if b is not None), default=None)
    if reserved and r.capacity_bytes:
        overhead = max(peak_gpu - max(reserved.values()), 0) if peak_gpu is not None else 0
        w = analysis.oom_warning(reserved, (r.expected or {}).get("growth_bytes") or 0, r.capacity_bytes, overhead)
        out += [w.message] if w else []
    leak = analysis.leak({s: b for s, b in zip(r.step, r.allocated_bytes) if b is not None})
    out += [leak.message] if leak else []
    return out


def _run_card(container, r: RunSeries) -> None:
    exp = r.expected or {}
    gib = analysis.fmt_bytes
    status = ("finished" + (f", exit {r.summary['exit_code']}" if r.summary.get("exit_code") is not None else "")
              if r.finished else "running")
    container.subheader(r.name)
    container.caption(f"{r.mode or '?'}: {r.target or '?'} ({status}); estimate from {exp.get('source', 'nothing yet')}")
    peak_gpu = max((b for b in r.gpu_bytes if b is not None), default=None)
    peak_res = max((b for b in r.peak_reserved_bytes if b is not None), default=None)
    steady = [t for s, t in zip(r.step, r.tokens_per_s) if t is not None and s >= 2]
    tps = sum(steady) / len(steady) if steady else None
    a, b, c = container.columns(3)
    a.metric("peak GPU memory (NVML)", gib(peak_gpu),
             help=f"estimate {gib(exp.get('device_total_bytes'))}; capacity {gib(r.capacity_bytes)}")
    b.metric("peak reserved (allocator)", gib(peak_res), help=f"estimate {gib(exp.get('peak_reserved_bytes'))}")
    c.metric("tokens/s (mean of steps)", "n/a" if tps is None else f"{tps:,.0f}",
             help="predicted " + ("n/a" if not exp.get("tokens_per_s") else f"{exp['tokens_per_s']:,.0f}"))
    container.caption(f"{len(r.step)} steps, {len(r.t)} samples; estimate: GPU {gib(exp.get('device_total_bytes'))}, "
                      f"reserved {gib(exp.get('peak_reserved_bytes'))}, tokens/s "
                      + ("n/a" if not exp.get("tokens_per_s") else f"{exp['tokens_per_s']:,.0f}"))
    for w in live_warnings(r):
        container.error(w)
    if r.mode == "attach" and not r.step:
        container.info("attached without step lines: only NVML and /proc figures (no allocator peaks, step times "
                       "or tokens/s); start the run with GPUPLAN_WATCH_DIR=DIR and watch with --steps-dir DIR")
    for n in r.notes:
        container.caption(n)


def _plots(paths: list[str]) -> None:
    runs, problems = [], []
    for p in paths:
        try:
            runs.append(watch_charts.run_series(p))
        except (FileNotFoundError, OSError) as e:
            problems.append(str(e))
    for p in problems:
        st.warning(p)
    if not runs:
        return
    for col, r in zip(st.columns(len(runs)), runs):
        _run_card(col, r)
    figure_ui(watch_charts.memory_over_time(runs), "watch-memory")
    if any(r.step for r in runs):
        figure_ui(watch_charts.step_memory(runs), "watch-steps")
        figure_ui(watch_charts.speed(runs), "watch-speed")
    if any(v is not None for r in runs for v in r.utilization_pct):
        figure_ui(watch_charts.utilization(runs), "watch-utilization")


def watch_ui() -> None:
    st.header("Watch")
    pp = _page_params()
    show_problems(pp.init())
    st.caption("Live plots of `gpuplan watch --output run.jsonl -- python train.py`: memory against the estimate "
               "and the GPU, per-step allocator peaks, tokens/s against the time model, utilization.")
    cols = st.columns([4, 1])
    cols[0].text_input("watch files (JSON lines; comma-separated for several runs)", key=pp.key("runs"),
                       placeholder="run.jsonl, other-run.jsonl")
    cols[1].number_input("refresh every (s, 0: off)", 0, MAX_REFRESH_S, key=pp.key("refresh"))
    paths = paths_of(pp.get("runs"))
    if not paths:
        st.info("Give the JSON-lines file of a watch: `gpuplan watch --output run.jsonl -- python train.py`.")
        return
    refresh = pp.get("refresh") or None

    @st.fragment(run_every=refresh)
    def plots() -> None:   # reruns alone every `refresh` seconds: the files are re-read as they grow
        _plots(paths)

    plots()
