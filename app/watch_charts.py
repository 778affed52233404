"""The Watch page's data and figures: a `gpuplan watch` JSON-lines file (`gpuplan.watch-sample/1`) in,
plain series and plotly Figures out (one trace per run, so runs compare side by side).

No Streamlit here: `run_series` reads the lines, the figure builders only lay the numbers out,
converting bytes to one binary unit per figure (GiB = 2**30; MiB or KiB for tiny runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go

from gpuplan.app.profile_tables import unit_for
from gpuplan.profiler.watch.schema import Kind, read_lines

COLORS = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3")


@dataclass
class RunSeries:
    name: str
    mode: str | None = None
    target: str | None = None
    t: list[float] = field(default_factory=list)                 # seconds since the watch started
    gpu_bytes: list[int | None] = field(default_factory=list)    # the run's NVML bytes (largest GPU)
    gpu_source: str | None = None                                # "process" or "device" (fallback)
    capacity_bytes: int | None = None
    rss_bytes: list[int | None] = field(default_factory=list)
    utilization_pct: list[float | None] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    step_t: list[float] = field(default_factory=list)
    peak_allocated_bytes: list[int | None] = field(default_factory=list)
    peak_reserved_bytes: list[int | None] = field(default_factory=list)
    allocated_bytes: list[int | None] = field(default_factory=list)
    peak_rss_bytes: list[int | None] = field(default_factory=list)   # CPU steps: the process's high-water mark
    tokens_per_s: list[float | None] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.summary is not None


def run_series(path: str | Path, name: str | None = None) -> RunSeries:
    """The series of one watch file (complete lines only: a file still being written reads fine).
    Steps come from the lowest rank (or the first process) that wrote any."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (write one with `gpuplan watch --output {path.name} -- ...`)")
    r = RunSeries(name=name or path.stem)
    start = None
    steps: dict[Any, list[dict[str, Any]]] = {}
    for obj in read_lines(path):
        kind = obj["kind"]
        if kind == Kind.START.value:
            start = obj["t"]
            r.mode, r.expected = obj.get("mode"), obj.get("expected")
            r.target = " ".join(obj.get("command") or []) or f"pid {obj.get('pid')}"
            r.notes.extend(obj.get("notes") or [])
        elif kind == Kind.SAMPLE.value:
            start = obj["t"] if start is None else start
            gpus = obj.get("gpus") or []
            top = max(gpus, key=lambda g: g.get("run_memory_bytes") or 0) if gpus else None
            r.t.append(obj["t"] - start)
            r.gpu_bytes.append(top.get("run_memory_bytes") if top else None)
            r.utilization_pct.append(top.get("utilization_pct") if top else None)
            if top:
                r.capacity_bytes, r.gpu_source = top.get("memory_total_bytes"), top.get("run_memory_source")
            r.rss_bytes.append(obj.get("rss_bytes"))
            for n in obj.get("notes") or []:
                if n not in r.notes:
                    r.notes.append(n)
        elif kind == Kind.STEP.value:
            steps.setdefault(obj.get("rank") if obj.get("rank") is not None else f"pid {obj.get('pid')}", []).append(obj)
        elif kind == Kind.SETUP.value and r.expected is None:
            r.notes.append(f"the run reported its setup ({obj.get('model')})")
        elif kind == Kind.SUMMARY.value:
            r.summary = obj
            r.expected = r.expected or obj.get("expected")
    if steps:
        first = steps[sorted(steps, key=str)[0]]
        for s in first:
            r.step.append(s["step"])
            r.step_t.append(s["t"] - (start or s["t"]))
            r.peak_allocated_bytes.append(s.get("peak_allocated_bytes"))
            r.peak_reserved_bytes.append(s.get("peak_reserved_bytes"))
            r.allocated_bytes.append(s.get("allocated_bytes"))
            r.peak_rss_bytes.append(s.get("peak_rss_bytes"))
            tps = s["tokens"] / s["step_time_s"] if s.get("tokens") and s.get("step_time_s") else None
            r.tokens_per_s.append(tps)
    return r


def _scaled(values: Iterable[int | None], unit: tuple[str, int]) -> list[float | None]:
    return [None if v is None else v / unit[1] for v in values]


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, legend_title_text="", margin=dict(t=60, b=40),
                      hovermode="x unified")
    return fig


def memory_over_time(runs: Sequence[RunSeries]) -> go.Figure:
    """The run's GPU memory (NVML) and host RSS over time, with each run's estimate and capacity as lines."""
    values = [v for r in runs for v in (*r.gpu_bytes, *r.rss_bytes, r.capacity_bytes,
                                         (r.expected or {}).get("device_total_bytes"))]
    unit = unit_for(values)
    fig = go.Figure()
    for i, r in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        if any(v is not None for v in r.gpu_bytes):
            label = "GPU (NVML)" if r.gpu_source == "process" else "GPU, device-wide (NVML)"
            fig.add_trace(go.Scatter(x=r.t, y=_scaled(r.gpu_bytes, unit), name=f"{r.name}: {label}",
                                     line=dict(color=color)))
        fig.add_trace(go.Scatter(x=r.t, y=_scaled(r.rss_bytes, unit), name=f"{r.name}: host RSS",
                                 line=dict(color=color, dash="dot")))
        est = (r.expected or {}).get("device_total_bytes")
        if est is not None and any(v is not None for v in r.gpu_bytes):
            fig.add_hline(y=est / unit[1], line_dash="dash", line_color=color, line_width=1,
                          annotation_text=f"{r.name} estimate {est / unit[1]:.2f} {unit[0]}")
        if r.capacity_bytes:
            fig.add_hline(y=r.capacity_bytes / unit[1], line_dash="dash", line_color="#444", line_width=1,
                          annotation_text=f"{r.name} capacity {r.capacity_bytes / unit[1]:.1f} {unit[0]}",
                          annotation_position="top left")
    return _layout(fig, "Memory over time", "seconds", unit[0])


def step_memory(runs: Sequence[RunSeries]) -> go.Figure:
    """Per step: the allocator's peak reserved and allocated, and the allocated bytes between steps
    (flat in a steady run; rising is a leak), against each run's estimated peaks; a CPU run's steps
    have no allocator figures and show the process's peak RSS instead."""
    values = [v for r in runs for v in (*r.peak_reserved_bytes, *r.peak_allocated_bytes, *r.allocated_bytes,
                                         *r.peak_rss_bytes, (r.expected or {}).get("peak_reserved_bytes"))]
    unit = unit_for(values)
    fig = go.Figure()
    for i, r in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        for label, ys, dash in (("peak reserved", r.peak_reserved_bytes, None),
                                ("peak allocated", r.peak_allocated_bytes, "dash"),
                                ("allocated between steps", r.allocated_bytes, "dot"),
                                ("peak RSS (CPU)", r.peak_rss_bytes, "dashdot")):
            if any(v is not None for v in ys):
                fig.add_trace(go.Scatter(x=r.step, y=_scaled(ys, unit), name=f"{r.name}: {label}", mode="lines+markers",
                                         line=dict(color=color, dash=dash)))
        est = (r.expected or {}).get("peak_reserved_bytes")
        if est is not None and any(v is not None for v in r.peak_reserved_bytes):
            fig.add_hline(y=est / unit[1], line_dash="dash", line_color=color, line_width=1,
                          annotation_text=f"{r.name} estimated peak reserved {est / unit[1]:.2f} {unit[0]}")
    return _layout(fig, "Memory per step", "step", unit[0])


def speed(runs: Sequence[RunSeries]) -> go.Figure:
    """Tokens/s of each step against the time model's prediction."""
    fig = go.Figure()
    for i, r in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=r.step, y=r.tokens_per_s, name=f"{r.name}: tokens/s", mode="lines+markers",
                                 line=dict(color=color)))
        pred = (r.expected or {}).get("tokens_per_s")
        if pred:
            fig.add_hline(y=pred, line_dash="dash", line_color=color, line_width=1,
                          annotation_text=f"{r.name} predicted {pred:,.0f}")
    return _layout(fig, "Tokens per second", "step", "tokens/s")


def utilization(runs: Sequence[RunSeries]) -> go.Figure:
    fig = go.Figure()
    for i, r in enumerate(runs):
        fig.add_trace(go.Scatter(x=r.t, y=r.utilization_pct, name=f"{r.name}: GPU utilization",
                                 line=dict(color=COLORS[i % len(COLORS)])))
    fig.update_yaxes(range=[0, 100])
    return _layout(fig, "GPU utilization (NVML)", "seconds", "%")
