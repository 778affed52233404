"""The live terminal view of a watch (rich), and the summary table printed at its end.

`render(state)` builds the whole screen from a WatchState (pure: tests render it to text);
`LiveView` redraws it on every sample inside `rich.live.Live`.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .analysis import fmt_bytes
from .session import WatchState

GIB = 2**30


gib = fmt_bytes


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pct_of(value: int | None, whole: int | None) -> str:
    return "" if value is None or not whole else f"{value / whole:.0%}"


def _latest(state: WatchState, key: str) -> int | None:
    values = [v[-1].get(key) for v in state.steps_by_rank.values() if v and v[-1].get(key) is not None]
    return max(values) if values else None


def memory_table(state: WatchState) -> Table:
    m = state.measured()
    exp = state.expected
    cap = state.capacity_bytes
    t = Table(title="memory", title_justify="left", expand=False, show_edge=False)
    for col in ("", "now", "peak", "estimate", "capacity", "peak/capacity"):
        t.add_column(col, justify="left" if not col else "right")
    gpus = (state.last_sample or {}).get("gpus") or []
    for g in gpus:
        if not g.get("run_memory_bytes") and len(gpus) > 1:
            continue
        peak = max((x.get("run_memory_bytes") or 0 for s in state.samples for x in s.get("gpus", [])
                    if x["index"] == g["index"]), default=None)
        src = "run, NVML" if g["run_memory_source"] == "process" else "device-wide, NVML"
        t.add_row(f"GPU {g['index']} ({src})", gib(g.get("run_memory_bytes")), gib(peak),
                  gib(exp.device_total_bytes if exp else None), gib(g.get("memory_total_bytes")),
                  _pct_of(peak, g.get("memory_total_bytes")))
    t.add_row("allocated (step peak)", gib(_latest(state, "peak_allocated_bytes")), gib(m["peak_allocated_bytes"]),
              gib(exp.peak_allocated_bytes if exp else None), gib(cap), _pct_of(m["peak_allocated_bytes"], cap))
    t.add_row("reserved (step peak)", gib(_latest(state, "peak_reserved_bytes")), gib(m["peak_reserved_bytes"]),
              gib(exp.peak_reserved_bytes if exp else None), gib(cap), _pct_of(m["peak_reserved_bytes"], cap))
    t.add_row("allocated between steps", gib(_latest(state, "allocated_bytes")), "", "", "", "")
    rss = (state.last_sample or {}).get("rss_bytes")
    t.add_row("host RSS (process tree)", gib(rss), gib(m["peak_rss_bytes"]), "", "", "")
    return t


def speed_table(state: WatchState) -> Table:
    m = state.measured()
    exp = state.expected
    t = Table(title="speed", title_justify="left", show_edge=False)
    for col in ("", "measured", "predicted", "error"):
        t.add_column(col, justify="left" if not col else "right")
    pred_tps = exp.tokens_per_s if exp else None
    err = None if not (m["tokens_per_s"] and pred_tps) else (pred_tps - m["tokens_per_s"]) / m["tokens_per_s"]
    t.add_row("steps", _num(m["steps"]), "", "")
    t.add_row("step time (median)", _num(m["step_time_s"], "{:.3g} s"), _num(exp.step_time_s if exp else None, "{:.3g} s"), "")
    t.add_row("tokens/s", _num(m["tokens_per_s"]), _num(pred_tps), "" if err is None else f"{err:+.0%}")
    return t


def gpu_table(state: WatchState) -> Table | None:
    gpus = (state.last_sample or {}).get("gpus") or []
    if not gpus:
        return None
    t = Table(title="GPUs (NVML, now)", title_justify="left", show_edge=False)
    for col in ("GPU", "util", "mem util", "power", "SM clock", "temp", "clock events"):
        t.add_column(col, justify="right" if col not in ("GPU", "clock events") else "left")
    for g in gpus:
        reasons = g.get("clock_event_reasons")
        t.add_row(f"{g['index']} {g['name']}", _num(g.get("utilization_pct"), "{:.0f}%"),
                  _num(g.get("memory_utilization_pct"), "{:.0f}%"), _num(g.get("power_w"), "{:.0f} W"),
                  _num(g.get("sm_clock_mhz"), "{:.0f} MHz"), _num(g.get("temperature_c"), "{:.0f} C"),
                  "-" if reasons is None else ", ".join(r for r in reasons if r != "gpu_idle") or "none")
    return t


def header(state: WatchState) -> Text:
    now = state.ended_t or (state.last_sample or {}).get("t") or state.started_t
    elapsed = int(now - state.started_t)
    est = (f"estimate from {state.expected.source}: {state.expected.model}" if state.expected
           else "no estimate yet (give --estimate-from, or the run's callback reports its setup)")
    text = Text.assemble(("gpuplan watch", "bold"), f"  {state.mode}: {state.target}  ",
                         f"{elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}",
                         f"  {len(state.samples)} samples every {state.interval_s:g} s\n", (est, "dim"))
    return text


def render(state: WatchState) -> Group:
    parts: list[Any] = [header(state), memory_table(state), speed_table(state)]
    gt = gpu_table(state)
    if gt is not None:
        parts.append(gt)
    for w in (state.oom, state.leak):
        if w is not None:
            parts.append(Text(w.message, style="bold red"))
    for n in state.notes:
        parts.append(Text(n, style="dim"))
    tail = state.log_tail()
    if tail:
        parts.append(Text(f"the run's output ({state.log}):", style="bold"))
        parts.extend(Text(x, style="dim") for x in tail)
    if state.exit_code is not None:
        parts.append(Text(f"the run exited with status {state.exit_code}", style="bold"))
    return Group(*parts)


def summary_table(summary: dict[str, Any]) -> Table:
    """Measured against estimated: the three memory figures and tokens/s."""
    t = Table(title="gpuplan watch: measured vs estimated", title_justify="left")
    for col in ("figure", "measured", "estimated", "error"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for row in summary["comparison"]:
        fmt = (lambda v: _num(v)) if row["name"] == "tokens_per_s" else gib
        err = row["error_pct"]
        t.add_row(row["name"], fmt(row["measured"]), fmt(row["estimated"]), "" if err is None else f"{err:+.2f}%")
    return t


def print_summary(console: Console, state: WatchState) -> None:
    s = state.summary
    console.print(summary_table(s))
    m = s["measured"]
    console.print(f"{m['steps']} steps, median step {_num(m['step_time_s'], '{:.3f} s')}, peak host RSS "
                  f"{gib(m['peak_rss_bytes'])}, {s['samples']} samples over {s['duration_s']:.1f} s"
                  + ("" if s["exit_code"] is None else f"; exit status {s['exit_code']}"))
    for w in s["warnings"]:
        console.print(Text(w, style="bold red"))
    for n in state.notes:   # the summary's notes, and any added since (the record's)
        console.print(Text(n, style="dim"))


class LiveView:
    """Redraws `render(state)` on every sample (rich.live.Live on stderr)."""

    def __init__(self, console: Console) -> None:
        self.live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def update(self, state: WatchState) -> None:
        self.live.update(render(state), refresh=True)

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)
