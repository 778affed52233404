"""Rich output of a Recommendation and of purchase options. Units for display only here."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gpuplan.planner.plans.plan import Plan
from gpuplan.planner.plans.purchase import Ownership, PurchaseOption
from gpuplan.planner.plans.recommend import Recommendation

from .console import print_table
from .ranges_report import plan_range_line

GIB = 2**30


def _plan_block(title: str, p: Plan, console: Console) -> None:
    st = p.step
    console.print(f"[bold]{title}[/]: {p.describe()}")
    console.print(f"  {p.hours:,.2f} h, ${p.usd:,.2f}"
                  + (f" at {p.best.provider} (${p.best.usd_per_gpu_hour:.2f}/GPU-h{', spot' if p.spot and p.best.spot_usd is not None else ''})" if p.best else "")
                  + f"; {st.tokens_per_s:,.0f} tokens/s, step {st.total:.2f} s (compute {st.compute:.2f}, "
                  f"comm {st.communication:.2f}, optimizer {st.optimizer:.3f}, dequant {st.dequant:.3f}), "
                  f"MFU {st.achieved_mfu:.0%}; memory {p.device_total_bytes / GIB:.1f} of {p.gpu.memory_bytes / GIB:.1f} GiB")
    line = plan_range_line(p.setup, p.gpu, p.device_total_bytes)
    if line:   # the verdict over the device total's real-GPU range (the plan itself qualified by the estimate)
        console.print("  " + line, highlight=False, markup=False)
    console.print(f"  why: {p.why}")
    others = [c for c in p.costs if p.best is None or c.provider != p.best.provider][:4]
    if others:
        console.print("  elsewhere: " + ", ".join(f"{c.provider} ${c.usd:,.2f}" + (f" (spot ${c.spot_usd:,.2f})" if c.spot_usd else "")
                                             for c in others))


def render_recommendation(rec: Recommendation, model: str, tokens: int, epochs: float, console: Console, top: int) -> None:
    console.print(f"[bold]{model}[/], {tokens / 1e6:,.0f} M tokens x {epochs:g} epoch(s): {rec.counts()}")
    for n in rec.notes:
        console.print(f"[dim]note: {n}[/]")
    if rec.cheapest is None:
        console.print("[red]No plan meets the constraints.[/] What gets closest:")
        for h in rec.closest:
            console.print(f"  {h.knob}: {h.message}")
        return
    _plan_block("Cheapest", rec.cheapest, console)
    _plan_block("Fastest", rec.fastest, console)
    t = Table(title=f"Time-cost frontier (no plan is both faster and cheaper), {len(rec.frontier)} plans",
              title_justify="left")
    for col in ("hours", "$", "provider", "tokens/s", "GPUs", "method", "precision", "optimizer", "ckpt", "micro-batch", "GiB"):
        t.add_column(col, justify="right" if col in ("hours", "$", "tokens/s", "GPUs", "micro-batch", "GiB") else "left")
    for p in rec.frontier[:top]:
        s = p.setup
        t.add_row(f"{p.hours:,.2f}", f"{p.usd:,.2f}", p.best.provider if p.best else "-", f"{p.step.tokens_per_s:,.0f}",
                  f"{p.gpus}x {p.gpu.name}", s.method.value, s.precision.value, s.optimizer.value,
                  s.checkpointing.value, f"{s.batch_size} x {s.seq_len}", f"{p.device_total_bytes / GIB:.1f}")
    print_table(console, t, drop_order=("ckpt", "tokens/s", "optimizer", "precision", "provider", "GiB"))
    console.print("[dim]Assumptions (time model, data/mfu.json):[/]")
    for a in rec.cheapest.step.assumptions:
        console.print(f"[dim]  {a.name} = {a.value}: {a.source}[/]")
    console.print("[dim]  prices: cheapest allowed provider, on-demand unless --spot; see `gpuplan gpus --json` for each "
                  "price's source and date (unverified ones are marked)[/]")


def render_purchase(options: tuple[PurchaseOption, ...], rented: Plan, own: Ownership, console: Console) -> None:
    t = Table(title=f"Buy instead of renting? (vs the cheapest rented plan: ${rented.usd:,.2f} per run)",
              title_justify="left")
    for col in ("cards", "purchase $", "hours/run", "energy $/run", "break-even runs", "break-even days"):
        t.add_column(col, justify="left" if col == "cards" else "right")
    for o in options[:10]:
        t.add_row(f"{o.plan.gpus}x {o.plan.gpu.name}", f"{o.purchase_usd:,.0f}", f"{o.plan.hours:,.1f}",
                  f"{o.energy_usd_per_run:,.2f}",
                  f"{o.break_even_runs:,.1f}" if o.break_even_runs is not None else "never",
                  f"{o.break_even_days:,.0f}" if o.break_even_days is not None else "-")
    print_table(console, t, drop_order=("energy $/run", "hours/run", "break-even days"))
    if options and options[0].break_even_runs is not None:
        o = options[0]
        console.print(f"Buy {o.plan.gpus}x {o.plan.gpu.name} if you will run this job more than "
                      f"{o.break_even_runs:,.1f} times (about {o.break_even_days:,.0f} days at {own.utilization:.0%} utilization).")
    for a in own.assumptions():
        console.print(f"[dim]  {a.name} = {a.value} {a.unit}: {a.source}[/]")
    console.print("[dim]  not counted: host machine, resale value, interest, staff; purchase prices are street "
                  "estimates (gpuplan gpus --json: purchase_source)[/]")
