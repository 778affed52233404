"""Rich tables for an estimate: components x phases, the three figures, fit per GPU. GiB here only."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gpuplan.planner.specs.enums import Component, Phase
from gpuplan.planner.memory.result import GIB, MemoryEstimate

from .console import print_table


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:,.2f}"


def render_estimate(est: MemoryEstimate, fit_rows: list[dict[str, Any]], console: Console,
                    extra_notes: list[str] = (), ranges: dict[str, Any] | None = None) -> None:
    s = est.setup
    ckpt = s['checkpointing']
    if "ckpt_every" in s:   # shown only when set (selective checkpointing by layer)
        ckpt += f" every {s['ckpt_every']} layers from layer {s.get('ckpt_first', 0)}"
    if "activation_offload" in s:
        ckpt += f", activation offload {s['activation_offload']}"
    console.print(f"[bold]{s['model']}[/]  {est.params.total / 1e9:.2f} B params, "
                  f"{est.trainable_params / 1e6:,.1f} M trainable  |  {s['method']}, {s['precision']}, "
                  f"{s['optimizer']}, batch {s['batch_size']} x {s['seq_len']} tokens, "
                  f"grad-accum {s['grad_accum']}, checkpointing {ckpt}, attn {s['attention']}"
                  + (f", torch.compile {s['compile']}" if "compile" in s else "")
                  + (f", fp8 {s['fp8']}" if "fp8" in s else ""))
    table = Table(title="Memory by component and phase (GiB)", title_justify="left")
    table.add_column("component")
    for phase in Phase:
        mark = " (peak)" if phase is est.peak_phase else ""
        table.add_column(phase.value + mark, justify="right")
    for c in Component.tensor_components():
        table.add_row(c.value, *(gib(est.phase_components[p][c]) for p in Phase))
    table.add_row("[bold]allocated[/]", *(f"[bold]{gib(est.phases[p])}[/]" for p in Phase))
    print_table(console, table)

    figures = Table(title="The three figures at the peak (GiB)", title_justify="left")
    figures.add_column("figure")
    figures.add_column("GiB", justify="right")
    figures.add_column("what reports it")
    figures.add_row("peak allocated", gib(est.peak_allocated_bytes), "torch.cuda.max_memory_allocated()")
    figures.add_row("peak reserved", gib(est.peak_reserved_bytes), "torch.cuda.max_memory_reserved()")
    figures.add_row("[bold]device total[/]", f"[bold]{gib(est.device_total_bytes)}[/]", "nvidia-smi")
    if est.activation_host_bytes:   # activation offloading: off the GPU, in pinned host memory
        figures.add_row("pinned host (activation offload)", gib(est.activation_host_bytes), "host RAM, not the GPU")
    print_table(console, figures, drop_order=("what reports it",))
    if est.communication is not None:
        render_parallel(est, console)

    if fit_rows:
        fit = Table(title="Fit", title_justify="left")
        for col in ("GPU", "memory GiB", "fits", "headroom GiB"):
            fit.add_column(col, justify="right" if "GiB" in col else "left")
        for row in fit_rows:
            verdict = "[green]yes[/]" if row["fits"] else "[red]no[/]"
            fit.add_row(row["gpu"], gib(row["memory_bytes"]), verdict, gib(row["headroom_bytes"]))
        print_table(console, fit)
    if ranges is not None:   # the real-GPU range of each figure and the verdict over it (app/ranges_report.py)
        from .ranges_report import render_ranges   # lazy: each command loads what it needs (fast start)

        render_ranges(ranges, console)
    console.print("[dim]Assumptions:[/]")
    for a in est.assumptions:
        value = gib(a.value) + " GiB" if a.unit == "bytes" else f"{a.value} ({a.unit})"
        console.print(f"[dim]  {a.name} = {value}: {a.source}[/]")
    for note in [*est.notes, *extra_notes]:
        console.print(f"[dim]  note: {note}[/]")


def render_parallel(est: MemoryEstimate, console: Console) -> None:
    """Per-GPU scope, host RAM / NVMe per node for offload, and communication per optimizer step."""
    s, par = est.setup, est.setup.get("parallel", {})
    world = par.get("gpus", 1) * par.get("nodes", 1)
    console.print(f"[bold]Per GPU[/] (figures above): engine {s.get('engine')}, {world} GPUs "
                  f"({par.get('gpus')} per node x {par.get('nodes')} nodes), tp {par.get('tp')}, pp {par.get('pp')}, "
                  f"offload {par.get('offload')} ({par.get('offload_device')})")
    host = Table(title="Host side per node (GiB)", title_justify="left")
    host.add_column("what")
    host.add_column("GiB", justify="right")
    host.add_row("CPU RAM for offload", gib(est.host_bytes_per_node))
    host.add_row("NVMe for offload", gib(est.nvme_bytes_per_node))
    print_table(console, host)
    comm = Table(title="Communication per GPU per optimizer step (GiB sent)", title_justify="left")
    for col in ("collective", "link", "GiB", "calls", "group", "what"):
        comm.add_column(col, justify="right" if col in ("GiB", "calls", "group") else "left")
    for t in est.communication.terms:
        comm.add_row(t.collective.value, t.link.value, gib(t.bytes), str(t.calls), str(t.group), t.what)
    c = est.communication
    comm.add_row("[bold]total[/]", "network", f"[bold]{gib(c.total)}[/]", "", "",
                 f"intra-node {gib(c.intra_node)}, inter-node {gib(c.inter_node)}, host {gib(c.host)} GiB")
    print_table(console, comm, drop_order=("group", "calls"), wrap=("what",))


def render_checkpoint(ckpt, console: Console) -> None:
    """The checkpoint section: what each save writes, the disk the run keeps, time and memory."""
    gib = 2**30
    t = Table(title="Checkpoints")
    t.add_column("file")
    t.add_column("GiB per save", justify="right")
    for name, size in ckpt.files.items():
        t.add_row(name, f"{size / gib:,.2f}")
    print_table(console, t)
    console.print(f"{ckpt.bytes_per_checkpoint / gib:,.2f} GiB per checkpoint; {ckpt.checkpoints} saved, "
                  f"{ckpt.kept} kept: {ckpt.bytes_on_disk_total / gib:,.1f} GiB on disk; "
                  f"{ckpt.save_seconds:,.1f} s to write each (synchronous: the GPU waits); "
                  f"save phase {ckpt.save_peak_bytes / gib:,.2f} GiB allocated per GPU")
    if ckpt.save_host_bytes_rank0 is not None:
        console.print(f"save phase host RAM: {ckpt.save_host_bytes_rank0 / gib:,.2f} GiB on rank 0, "
                      f"{ckpt.save_host_bytes_per_node / gib:,.2f} GiB per node")
    for note in ckpt.notes:
        console.print(f"  note: {note}")


def render_time(fit_rows: list[dict[str, Any]], times: list[dict[str, Any]], console: Console) -> None:
    """Step time, tokens/s and (with --dataset-tokens) hours and dollars per GPU, each with its
    cross-validated range (planner/plans/plan.py time_report)."""
    if not times:
        return
    table = Table(title="Time (ranges: cross-validated error of the GPU family and method)", title_justify="left")
    for col in ("GPU", "GPUs", "step s", "tokens/s", "tokens/s range", "hours", "hours range", "cheapest $", "$ range"):
        table.add_column(col, justify="left" if col == "GPU" else "right")
    for row, tm in zip(fit_rows, times):
        lo, hi = tm["tokens_per_s_range"]
        hours = hrange = usd = urange = "-"
        if "hours" in tm:
            hours = f"{tm['hours']:,.2f}"
            hrange = f"{tm['hours_range'][0]:,.2f}-{tm['hours_range'][1]:,.2f}"
            if tm["costs"]:
                c = tm["costs"][0]
                usd = f"{c['usd']:,.2f} ({c['provider']})"
                urange = f"{c['usd_range'][0]:,.2f}-{c['usd_range'][1]:,.2f}"
        table.add_row(row["gpu"], str(tm["gpus"]), f"{tm['step_time_s']:.3f}", f"{tm['tokens_per_s']:,.0f}",
                      f"{lo:,.0f}-{hi:,.0f}", hours, hrange, usd, urange)
    print_table(console, table, drop_order=("$ range", "hours range", "tokens/s range", "GPUs", "step s"))
    for row, tm in zip(fit_rows, times):
        if tm["parts_s"].get("generation"):   # GRPO's rollouts with HF generate (planner/speed/rollout.py)
            console.print(f"{row['gpu']}: {tm['parts_s']['generation']:,.2f} s of the {tm['step_time_s']:,.2f} s step "
                          "are GRPO's rollouts (HF generate, modelled with the step's constants; no published GRPO "
                          "run checks them)")
