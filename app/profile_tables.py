"""Rich tables for `gpuplan profile`, built from its JSON payload (so a saved --output file renders too).

Bytes arrive as ints; each table picks one binary unit (GiB, MiB or KiB) for all its cells.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

PHASES = ("forward", "backward", "optimizer")
TENSOR_COMPONENTS = ("weights", "gradients", "optimizer_state", "activations", "logits", "temporaries")
FIGURE_LABELS = {
    "peak_allocated_bytes": "peak allocated (max_memory_allocated)",
    "peak_reserved_bytes": "peak reserved (max_memory_reserved)",
    "device_total_bytes": "device total (nvidia-smi)",
}
MODULE_ROWS = 20   # the per-module table shows the module groups holding the most bytes; --json has all


def unit_for(values: Iterable[int | None]) -> tuple[str, int]:
    """The binary unit (name, bytes) in which the largest of `values` reads best."""
    top = max((abs(v) for v in values if v is not None), default=0)
    for name, size in (("GiB", 2**30), ("MiB", 2**20)):
        if top >= size:
            return name, size
    return "KiB", 2**10


def fmt(value: int | None, unit: tuple[str, int], missing: str = "n/a") -> str:
    return missing if value is None else f"{value / unit[1]:,.2f}"


def figures_table(p: dict[str, Any]) -> Table:
    unit = unit_for(p[f] for f in FIGURE_LABELS)
    t = Table(title=f"{p['device']}: peak memory", title_justify="left")
    t.add_column("figure")
    t.add_column(unit[0], justify="right")
    for key, label in FIGURE_LABELS.items():
        t.add_row(label, fmt(p[key], unit, missing="not measurable here"))
    return t


def phases_table(p: dict[str, Any]) -> Table:
    """Components (rows) by phase (columns), each phase at its own peak; the peak phase in bold."""
    pc = p["phase_components"]
    unit = unit_for(p["phases"].values())
    t = Table(title=f"tensor bytes by component at each phase's peak ({unit[0]})", title_justify="left")
    t.add_column("component")
    for phase in PHASES:
        style = "bold" if phase == p["peak_phase"] else None
        t.add_column(phase + (" (peak)" if style else ""), justify="right", style=style, header_style=style)
    for comp in TENSOR_COMPONENTS:
        t.add_row(comp, *(fmt(pc.get(ph, {}).get(comp), unit) for ph in PHASES))
    t.add_section()
    t.add_row("total", *(fmt(p["phases"].get(ph), unit) for ph in PHASES), style="bold")
    return t


def _error(pct: float | None) -> str:
    if pct is None:
        return "n/a"
    color = "green" if abs(pct) <= 5 else "yellow" if abs(pct) <= 15 else "red"
    return f"[{color}]{pct:+.1f}%[/{color}]"


def compare_table(c: dict[str, Any]) -> Table:
    rows = c["figures"] + c["components"] + c["phases"]
    unit = unit_for(v for r in rows for v in (r["estimate_bytes"], r["measured_bytes"]))
    t = Table(title=f"estimate vs measured ({unit[0]}; components at the {c['phase']} peak; "
                    "+ means the estimate is higher)", title_justify="left")
    for name, justify in (("", "left"), ("estimate", "right"), ("measured", "right"), ("error", "right")):
        t.add_column(name, justify=justify)
    for section in ("figures", "components", "phases"):
        for r in c[section]:
            label = FIGURE_LABELS.get(r["name"], r["name"])
            t.add_row(label, fmt(r["estimate_bytes"], unit), fmt(r["measured_bytes"], unit),
                      _error(r["error_pct"]))
        t.add_section()
    return t


def group_modules(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of repeated blocks merged: `model.layers.3.mlp` and its siblings become `model.layers.*.mlp`,
    with bytes summed over the copies and `count` of them; largest first."""
    groups: dict[str, dict[str, Any]] = {}
    for m in modules:
        key = re.sub(r"\.\d+(?=\.|$)", ".*", m["name"])
        g = groups.setdefault(key, {"name": key, "type": m["type"], "count": 0, "param_bytes": 0, "saved_bytes": 0})
        g["count"] += 1
        g["param_bytes"] += m["param_bytes"]
        g["saved_bytes"] += m["saved_bytes"]
    return sorted(groups.values(), key=lambda g: g["param_bytes"] + g["saved_bytes"], reverse=True)


def modules_table(per_module: dict[str, Any], rows: int = MODULE_ROWS) -> Table:
    groups = group_modules(per_module["modules"])
    unit = unit_for([per_module["param_bytes"], per_module["saved_bytes"]])
    t = Table(title=f"per module ({unit[0]}, summed over repeated layers; saved = activations kept for "
                    f"backward): top {min(rows, len(groups))} of {len(groups)}", title_justify="left")
    for name, justify in (("module", "left"), ("type", "left"), ("copies", "right"), ("weights", "right"),
                          ("saved", "right")):
        t.add_column(name, justify=justify)
    for g in groups[:rows]:
        t.add_row(g["name"], g["type"], str(g["count"]), fmt(g["param_bytes"], unit), fmt(g["saved_bytes"], unit))
    t.add_section()
    t.add_row("all modules", "", "", fmt(per_module["param_bytes"], unit), fmt(per_module["saved_bytes"], unit),
              style="bold")
    return t


def render(p: dict[str, Any], console: Console | None = None) -> None:
    """Prints the profile payload's tables and notes to stdout."""
    console = console or Console(highlight=False)
    if p.get("fits") is False:
        console.print("[bold red]does not fit[/bold red] on this GPU: figures are up to the failing allocation")
    from .console import print_table   # no cell cut: piped at natural width, narrow terminals drop columns

    print_table(console, figures_table(p))
    print_table(console, phases_table(p))
    if "comparison" in p:
        from gpuplan.profiler.compare import explain   # torch-free

        print_table(console, compare_table(p["comparison"]))
        for line in explain(p["comparison"]):
            console.print(f"[dim]{line}[/dim]")
    if p.get("per_module"):
        print_table(console, modules_table(p["per_module"]), drop_order=("type", "copies"))
    if "max_batch_size" in p:
        console.print(f"largest micro-batch that fits: [bold]{p['max_batch_size']}[/bold] "
                      f"(seq len {p['setup'].get('seq_len')})")
    for note in p.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
