"""The real-GPU ranges of an estimate's figures (planner/plans/ranges.py) for `estimate`'s table and
`--json`, and the fit verdict with its range ("fits with 2.10 GiB to spare, +0.80/-1.40 GiB")."""
from __future__ import annotations

from typing import Any

import click

from gpuplan.planner.plans.ranges import FIGURES, FIGURE_NAMES, EvidenceStack, Range, bounds, figure_range, headroom
from gpuplan.planner.plans.ranges import setup_kind

GIB = 2**30
# --from-config formats whose training code is not transformers + peft (planner/fromconfig Format values)
_CONFIG_STACKS = {"torchtune": EvidenceStack.TORCHTUNE, "unsloth": EvidenceStack.OTHER}


def stack_of(ctx: click.Context | None, given: str | None = None) -> tuple[EvidenceStack, str]:
    """(the kind's stack, why): `given` (--ranges-stack); else torchtune for --stack-versions torchtune-*
    or a torchtune config, other for an Unsloth script, else hf (gpuplan's defaults are TRL's SFTTrainer)."""
    if given is not None:
        return EvidenceStack(given), f"--ranges-stack {given}"
    from .from_config import FROM_CONFIG_META     # lazy: each command loads what it needs (fast start)
    from .stack_options import stack_block        # lazy: each command loads what it needs (fast start)

    block = stack_block(ctx)
    if block is not None and str(block["name"]).startswith("torchtune"):
        return EvidenceStack.TORCHTUNE, f"--stack-versions {block['name']}"
    cfg = ctx.meta.get(FROM_CONFIG_META) if ctx is not None else None
    if cfg is not None:   # axolotl, HF/TRL, LLaMA-Factory and accelerate configs train with transformers + peft
        return _CONFIG_STACKS.get(cfg.format, EvidenceStack.HF), f"the {cfg.format} config (--from-config)"
    if block is not None:
        return EvidenceStack.HF, f"--stack-versions {block['name']}"
    return EvidenceStack.HF, "gpuplan's defaults (TRL's SFTTrainer)"


def _figure_block(nbytes: int, r: Range) -> dict[str, Any]:
    lo, hi = bounds(nbytes, r)
    return {"estimate_bytes": nbytes, "low_bytes": lo, "high_bytes": hi, **r.to_dict()}


def ranges_block(est, setup, fit_rows: list[dict[str, Any]], stack: EvidenceStack, why: str) -> dict[str, Any] | None:
    """The `ranges` object of `estimate --json` (bytes), None where no range was ever recorded."""
    kind = setup_kind(setup, stack)
    figs = {f: figure_range(kind, f) for f in FIGURES}
    if any(r is None for r in figs.values()):
        return None
    out: dict[str, Any] = {
        "kind": {"stack": kind.stack.value, "method": kind.method, "stack_from": why},
        "description": ("real figure = estimate / (1 + error); error low..high: the 10th-90th percentile of the "
                    "kind's published errors held out by source (planner/plans/ranges.py)"),
        **{f: _figure_block(getattr(est, f), r) for f, r in figs.items()}}
    dev = figs["device_total_bytes"]
    out["fits"] = [{"gpu": row["gpu"], **headroom(row["memory_bytes"], row["memory_bytes"] - row["headroom_bytes"], dev).to_dict()}
                   for row in fit_rows]
    return out


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:,.2f}"


def verdict_line(gpu: str, fit: dict[str, Any]) -> str:
    """One line: the verdict by the estimate and over the range, e.g. 'a100-80gb: fits with 2.10 GiB
    to spare, +0.80/-1.40 GiB'; 'may not fit' where the range straddles the capacity."""
    est, low, high = fit["headroom_bytes"], fit["headroom_low_bytes"], fit["headroom_high_bytes"]
    spread = f"+{_gib(high - est)}/-{_gib(est - low)} GiB"
    v = fit["verdict"]
    if v == "fits":
        return f"{gpu}: fits with {_gib(est)} GiB to spare, {spread}"
    if v == "may not fit":
        return (f"{gpu}: may not fit: {_gib(est)} GiB to spare by the estimate, {spread}: at the range's top "
                f"it is {_gib(-low)} GiB over")
    if v == "may fit":
        return (f"{gpu}: does not fit by {_gib(-est)} GiB by the estimate, {spread}: at the range's bottom "
                f"it fits with {_gib(high)} GiB to spare")
    return f"{gpu}: does not fit by {_gib(-est)} GiB, {spread}"


def plan_range_line(setup, gpu, device_total: int, ctx: click.Context | None = None) -> str | None:
    """`fit`'s and `recommend`'s line: the verdict of `device_total` on `gpu` over the device total's
    real-GPU range (None where no range was recorded). Their own verdicts stay the estimate's."""
    stack, _ = stack_of(ctx if ctx is not None else click.get_current_context(silent=True))
    kind = setup_kind(setup, stack)
    r = figure_range(kind, "device_total_bytes")
    if r is None:
        return None
    fit = headroom(gpu.memory_bytes, device_total, r).to_dict()
    return (f"on a real GPU ({stack.value} stack, {kind.method}; published runs held out by source): "
            + verdict_line(gpu.name, fit).split(": ", 1)[1])


def render_ranges(block: dict[str, Any] | None, console) -> None:
    """The range table (GiB) and one verdict line per --gpu."""
    if block is None:
        return
    from rich.table import Table   # lazy: rich loads only to print tables

    from .console import print_table   # lazy: with rich, only to print tables

    k = block["kind"]
    t = Table(title=f"Real-GPU range of each figure (GiB; kind: {k['stack']} stack, {k['method']})", title_justify="left")
    for col in ("figure", "estimate GiB", "range GiB", "error range", "bias", "from", "runs", "sources"):
        t.add_column(col, justify="right" if col in ("estimate GiB", "range GiB", "error range", "bias", "runs", "sources") else "left")
    notes = [f"the {k['stack']} stack is assumed from {k['stack_from']}; real = estimate / (1 + error), the error "
             "range the 10th-90th percentile of published errors of the kind, held out by source"]
    for f in FIGURES:
        b = block[f]
        t.add_row(FIGURE_NAMES[f], _gib(b["estimate_bytes"]), f"{_gib(b['low_bytes'])}-{_gib(b['high_bytes'])}",
                  f"{100 * b['low']:+.0f}%..{100 * b['high']:+.0f}%", f"{100 * b['bias']:+.1f}%",
                  b["group"] + ("" if b["held_out"] else " (one source, not held out)"), str(b["rows"]), str(len(b["sources"])))
        if b["why"] and b["why"] not in notes:
            notes.append(b["why"])
    print_table(console, t, drop_order=("sources", "runs", "bias", "error range"))
    for fit in block["fits"]:
        console.print(verdict_line(fit["gpu"], fit), highlight=False, markup=False)
    for n in notes:
        console.print(f"[dim]  range: {n}[/]", highlight=False)
