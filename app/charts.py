"""Pure plotly figure builders for the dashboard: plain data in (bytes as ints, the JSON shapes of
`MemoryEstimate.to_dict()`, `Measurement.to_dict()` and `Comparison.to_dict()`), a Figure out.

No Streamlit here and no planner formulas: the numbers arrive computed; this module only lays
them out, converting bytes to one binary unit per figure (GiB = 2**30; MiB or KiB for the tiny
models of tests) for the axes.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

from gpuplan.app.profile_tables import unit_for

GIB = 2**30
PHASES = ("forward", "backward", "optimizer")
TENSOR_COMPONENTS = ("weights", "gradients", "optimizer_state", "activations", "logits", "temporaries")
ALL_COMPONENTS = TENSOR_COMPONENTS + ("allocator_slack", "cuda_context")
# One color per component across every figure (plotly's qualitative "Plotly" palette, in order).
COMPONENT_COLORS = dict(zip(ALL_COMPONENTS, ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3",
                                             "#B6E880", "#BBBBBB")))
DEVICE_TOTAL = "device total (peak)"

Capacity = tuple[str, int]   # (GPU label, memory bytes as the device reports it)


def scaled(nbytes: float | None, unit: tuple[str, int]) -> float | None:
    return None if nbytes is None else nbytes / unit[1]


def _label(component: str) -> str:
    return component.replace("_", " ")


def _capacity_lines(fig: go.Figure, capacities: Sequence[Capacity], unit: tuple[str, int] = ("GiB", GIB)) -> None:
    for name, nbytes in capacities:
        fig.add_hline(y=nbytes / unit[1], line_dash="dash", line_color="#444", line_width=1,
                      annotation_text=f"{name} {nbytes / unit[1]:.1f} {unit[0]}", annotation_position="top right",
                      annotation_bgcolor="rgba(255,255,255,0.8)", annotation_font_size=11)


def _layout(fig: go.Figure, title: str, y_title: str = "GiB", **kw: Any) -> go.Figure:
    fig.update_layout(title=title, yaxis_title=y_title, legend_title_text="", margin=dict(t=60, b=40),
                      **kw)
    return fig


def phase_stack(est: Mapping[str, Any], capacities: Sequence[Capacity] = ()) -> go.Figure:
    """Stacked bars of tensor bytes by component at each phase's peak, plus (where known) a bar of the
    device total at the peak (with allocator slack and CUDA context), against GPU capacity lines."""
    pc, comps = est["phase_components"], est["components"]
    x = [p + (" (peak)" if p == est["peak_phase"] else "") for p in PHASES]
    device_bar = est.get("device_total_bytes") is not None   # a simulated step measures no device total
    x += [DEVICE_TOTAL] if device_bar else []
    unit = unit_for([*est["phases"].values(), est.get("device_total_bytes"), *(b for _, b in capacities)])
    fig = go.Figure()
    for c in ALL_COMPONENTS if device_bar else TENSOR_COMPONENTS:
        y = [scaled(pc.get(p, {}).get(c, 0), unit) if c in TENSOR_COMPONENTS else 0 for p in PHASES]
        y += [scaled(comps.get(c, 0), unit)] if device_bar else []
        fig.add_bar(name=_label(c), x=x, y=y, marker_color=COMPONENT_COLORS[c],
                    hovertemplate="%{x}<br>" + _label(c) + f": %{{y:.2f}} {unit[0]}<extra></extra>")
    _capacity_lines(fig, capacities, unit)
    return _layout(fig, "Memory by component and phase", unit[0], barmode="stack")


def setups_stack(setups: Sequence[tuple[str, Mapping[str, int]]], capacities: Sequence[Capacity] = ()) -> go.Figure:
    """One stacked bar per setup: every component at its peak, summing to its device total."""
    labels = [label for label, _ in setups]
    unit = unit_for([*(sum(comps.values()) for _, comps in setups), *(b for _, b in capacities)])
    fig = go.Figure()
    for c in ALL_COMPONENTS:
        fig.add_bar(name=_label(c), x=labels, y=[scaled(comps.get(c, 0), unit) for _, comps in setups],
                    marker_color=COMPONENT_COLORS[c],
                    hovertemplate="%{x}<br>" + _label(c) + f": %{{y:.2f}} {unit[0]}<extra></extra>")
    _capacity_lines(fig, capacities, unit)
    return _layout(fig, "Device total at the peak, by component", unit[0], barmode="stack")


def sweep_lines(x_title: str, series: Mapping[str, Sequence[tuple[int, int | None]]],
                capacities: Sequence[Capacity] = (), log_x: bool = True) -> go.Figure:
    """Memory (bytes; None where the setup is impossible) against a swept value, one line per setup."""
    unit = unit_for([*(y for points in series.values() for _, y in points), *(b for _, b in capacities)])
    fig = go.Figure()
    for name, points in series.items():
        fig.add_scatter(name=name, x=[x for x, _ in points], y=[scaled(y, unit) for _, y in points],
                        mode="lines+markers",
                        hovertemplate=f"{name}<br>{x_title} %{{x}}: %{{y:.2f}} {unit[0]}<extra></extra>")
    _capacity_lines(fig, capacities, unit)
    fig.update_xaxes(title=x_title, type="log" if log_x else "linear")
    if log_x:   # plotly labels every 2 and 5 of each decade on a log axis: label the swept values, at most 8
        xs = sorted({x for points in series.values() for x, _ in points if x and x > 0})
        ticks = xs[:: -(-len(xs) // MAX_TICKS)] if xs else []
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[_count(v) for v in ticks])
    return _layout(fig, f"Device total vs {x_title}", unit[0])


MAX_TICKS = 8


def _count(v: float) -> str:
    """Tick text of a count: 512, 2k, 32k, 1M (binary-sized values, as sequence lengths are)."""
    for div, suffix in ((1 << 20, "M"), (1 << 10, "k")):
        if v >= div and v % div == 0:
            return f"{v // div:g}{suffix}"
    return f"{v:g}"


def compare_bars(comparison: Mapping[str, Any]) -> go.Figure:
    """Estimate and measurement side by side for each component both have, at the measured peak phase."""
    rows = [r for r in comparison["components"] if r["measured_bytes"] is not None and r["estimate_bytes"] is not None]
    names = [_label(r["name"]) for r in rows]
    unit = unit_for(v for r in rows for v in (r["estimate_bytes"], r["measured_bytes"]))
    fig = go.Figure()
    fig.add_bar(name="estimate", x=names, y=[scaled(r["estimate_bytes"], unit) for r in rows], marker_color="#636EFA")
    fig.add_bar(name="measured", x=names, y=[scaled(r["measured_bytes"], unit) for r in rows], marker_color="#EF553B",
                customdata=[r["error_pct"] for r in rows],
                hovertemplate=f"%{{x}}: %{{y:.3f}} {unit[0]}<br>estimate error %{{customdata:+.1f}}%<extra></extra>")
    return _layout(fig, f"Estimate vs measured, by component at the {comparison['phase']} peak", unit[0],
                   barmode="group")


def timeline(events: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Live tensor bytes at each module hook of the profiled step, colored by phase."""
    unit = unit_for(e["live_bytes"] for e in events)
    fig = go.Figure()
    for phase in PHASES:
        idx = [i for i, e in enumerate(events) if e["phase"] == phase]
        fig.add_scatter(name=phase, x=idx, y=[scaled(events[i]["live_bytes"], unit) for i in idx],
                        mode="markers+lines", customdata=[f"{events[i]['event']} {events[i]['module']}" for i in idx],
                        hovertemplate=f"#%{{x}} %{{customdata}}<br>%{{y:.3f}} {unit[0]} live<extra></extra>")
    fig.update_xaxes(title="module hook, in execution order")
    return _layout(fig, "Memory timeline of the profiled step", unit[0])


def pareto_scatter(plans: Sequence[Mapping[str, Any]], x: str, y: str, label: str,
                   x_title: str, y_title: str) -> go.Figure:
    """Plans as points (x, y); those flagged `pareto` joined by the frontier line."""
    fig = go.Figure()
    others = [p for p in plans if not p.get("pareto")]
    front = sorted((p for p in plans if p.get("pareto")), key=lambda p: p[x])
    fig.add_scatter(name="plan", x=[p[x] for p in others], y=[p[y] for p in others], mode="markers",
                    text=[p[label] for p in others], marker=dict(color="#BBBBBB", size=8),
                    hovertemplate="%{text}<br>%{x:.3g}, %{y:.3g}<extra></extra>")
    fig.add_scatter(name="Pareto front", x=[p[x] for p in front], y=[p[y] for p in front], mode="lines+markers",
                    text=[p[label] for p in front], marker=dict(color="#EF553B", size=10),
                    hovertemplate="%{text}<br>%{x:.3g}, %{y:.3g}<extra></extra>")
    # hours and dollars span decades (1 GPU for days to 64 for minutes): log axes, opened on the
    # frontier (padded by a factor of 2; double-click or "autoscale" shows every plan)
    fig.update_xaxes(title=x_title, type="log")
    fig.update_yaxes(type="log")
    if front:
        for axis, key in ((fig.update_xaxes, x), (fig.update_yaxes, y)):
            values = [p[key] for p in front if p[key] and p[key] > 0]
            if values:
                axis(range=[math.log10(min(values) / 2), math.log10(max(values) * 2)])
    return _layout(fig, f"{y_title} vs {x_title}", y_title=y_title)


def cheapest_for_memory(rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Names of the cards no other card beats: none has as much memory or more for less per hour."""
    return {r["name"] for r in rows
            if not any(o is not r and o["memory_gib"] >= r["memory_gib"] and o["usd_per_hour"] < r["usd_per_hour"]
                       for o in rows)}


def gpu_scatter(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """GPUs placed by memory (GiB) and cheapest hourly price; hover shows price per GiB and per TFLOP."""
    priced = [r for r in rows if r.get("usd_per_hour") is not None]
    labelled = cheapest_for_memory(priced)
    fig = go.Figure()
    # cards of one memory size sit in a column, so every name on the chart overlaps: the frontier's
    # (no card with as much memory for less) are named, every card's name is in its hover
    fig.add_scatter(x=[r["memory_gib"] for r in priced], y=[r["usd_per_hour"] for r in priced], mode="markers+text",
                    text=[r["name"] if r["name"] in labelled else "" for r in priced],
                    customdata=[r["name"] for r in priced], textposition="top center", marker=dict(size=10),
                    hovertemplate="%{customdata}<br>%{x:.1f} GiB, $%{y:.2f}/h<extra></extra>", showlegend=False)
    fig.update_xaxes(title="memory (GiB)")
    return _layout(fig, "Cheapest hourly price vs memory", y_title="USD per GPU-hour")
