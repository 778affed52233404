"""`gpuplan fit`: the largest micro-batch and sequence length that fit one GPU, and the cheapest
knobs when nothing fits."""
from __future__ import annotations

import json

import click

from gpuplan.planner.specs.errors import PlannerError

from .cli_gpus import gpu_catalog_option, load_gpu_catalogs
from .options import setup_from_options, setup_options


@click.command()
@setup_options
@click.option("--gpu", "gpu_name", required=True, help="The GPU: rtx-4090, h100, a100-40gb... (gpuplan gpus)")
@gpu_catalog_option
@click.option("--fsdp-version", type=click.Choice(["1", "2"]), default=None, help="With --fsdp full: plan FSDP1's "
              "(FullyShardedDataParallel) FlatParameter step where it is modelled (full fine-tuning or LoRA, no "
              "offload, TP, PP or CP), else FSDP2's (fully_shard), with a note saying so [2].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fit(gpu_name: str, gpu_catalogs: tuple[str, ...], fsdp_version: str | None, as_json: bool, **kw) -> None:
    """Largest micro-batch (at --seq-len) and sequence length (at --batch-size and at 1) that fit
    the GPU; when the setup does not fit, the knobs that make it fit, fastest first.

    \b
    Example:
      gpuplan fit --model llama-3.1-8b --gpu rtx-4090 --method qlora
    """
    from gpuplan.planner.io.catalog import resolve_gpu   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.fit import fit as run_fit   # lazy: each command loads what it needs (fast start)

    from gpuplan.planner.specs.errors import NoClosedForm   # lazy: each command loads what it needs (fast start)

    try:
        load_gpu_catalogs(gpu_catalogs)
        gpu = resolve_gpu(gpu_name)
        model, setup = setup_from_options(**kw)
        from gpuplan.planner.memory.fsdp1 import step_setup   # lazy: each command loads what it needs (fast start)

        setup, fsdp1_note = step_setup(model, setup, int(fsdp_version) if fsdp_version else None)
        try:
            r = run_fit(model, setup, gpu, memory_only=True)
        except NoClosedForm as e:
            from gpuplan.profiler.answer import fit_from_simulations   # lazy: torch loads only to simulate

            r = fit_from_simulations(model, setup, gpu, str(e), say=lambda line: click.echo(line, err=True))
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        out = r.to_dict()
        if fsdp1_note:
            out["notes"] = [*out.get("notes", []), fsdp1_note]
        click.echo(json.dumps(out, indent=2))
        return
    gib = 2**30
    s = setup
    click.echo(f"{model.name} on {gpu.name} ({gpu.memory_bytes / gib:.2f} GiB): {s.method.value}, {s.precision.value}, "
               f"{s.optimizer.value}, checkpointing {s.checkpointing.value}, micro-batch {s.batch_size} x {s.seq_len}")
    verdict = "fits" if r.fits else "does NOT fit"
    click.echo(f"  as given: {r.device_total_bytes / gib:.2f} GiB device total: {verdict} "
               f"(headroom {(gpu.memory_bytes - r.device_total_bytes) / gib:+.2f} GiB)")
    from .ranges_report import plan_range_line   # lazy: each command loads what it needs (fast start)

    line = plan_range_line(setup, gpu, r.device_total_bytes)
    if line:   # the verdict over the real-GPU range of the device total (the verdict above is the estimate's)
        click.echo("  " + line)
    from gpuplan.planner.memory.load import run_phase_totals   # lazy: each command loads what it needs (fast start)

    phases = run_phase_totals(model, setup) if r.source == "closed-form" else {}
    if phases and max(phases, key=phases.get) == "load" and phases["load"] > phases["step"]:
        click.echo(f"  (that is the load phase; the step alone needs {phases['step'] / gib:.2f} GiB: "
                   "gpuplan estimate --phases shows both)")
    if r.max_batch:
        capped = s.max_micro_batch() == r.max_batch   # e.g. llama3 context parallelism: batch 1 only
        click.echo(f"  largest micro-batch at seq-len {s.seq_len}: {r.max_batch} ({r.max_batch_total_bytes / gib:.2f} GiB, "
                   + ("the largest the setup accepts" if capped else "no headroom")
                   + f"); with a {r.margin:.0%} safety margin: {r.safe_max_batch or 'none'}")
        click.echo(f"    (the margin is {r.margin_source})")
    else:
        click.echo(f"  no micro-batch fits at seq-len {s.seq_len}")
    unit = s.batch_unit()   # 1, or GRPO's smallest micro-batch
    click.echo(f"  longest sequence at micro-batch {s.batch_size}: {r.max_seq_len or 'none'}"
               + (f"; at micro-batch {unit}: {r.max_seq_len_batch1 or 'none'}" if s.batch_size > unit else ""))
    if not r.fits:
        for line in knob_lines(r):
            click.echo("  " + line)
    for note in [*r.notes, *([fsdp1_note] if fsdp1_note else [])]:
        click.echo("  note: " + note)
    click.echo(f"answered by: {r.source}")


def _smaller_batch(max_batch: int, sequences: int) -> str:
    """The micro-batch and accumulation that keep the optimizer step's sequences: the largest divisor
    of them that fits, unless it is under half the largest micro-batch that fits (then round up)."""
    d = max(k for k in range(1, max_batch + 1) if sequences % k == 0)
    if 2 * d >= max_batch:
        return (f"fits at --batch-size {d} --grad-accum {sequences // d} (the same {sequences} sequences per "
                f"optimizer step; the largest micro-batch that fits is {max_batch})")
    accum = -(-sequences // max_batch)
    return (f"fits at --batch-size {max_batch} --grad-accum {accum} ({max_batch * accum} sequences per optimizer "
            f"step instead of {sequences})")


def knob_lines(r) -> list[str]:
    """What makes a setup that does not fit fit: a smaller micro-batch (same tokens per step), then the
    knobs that buy more than that (planner.fit memory_only: none that change the task or nothing)."""
    gib, s = 2**30, r.setup
    lines = []
    if 0 < r.max_batch < s.batch_size:
        lines.append(_smaller_batch(r.max_batch, s.batch_size * s.grad_accum))
    if r.knobs:
        lines.append("knobs that make it fit" + (f" at a micro-batch above {r.max_batch}" if r.max_batch else "")
                     + " (most tokens/s first):")
        for k in r.knobs:
            flags = " ".join(f"{f} {v}" if v != "on" else f for f, v in k.changes)
            lines.append(f"  {flags:45s} micro-batch {k.batch_size:4d}  {k.device_total_bytes / gib:6.2f} GiB  "
                         f"{k.tokens_per_s:,.0f} tokens/s")
    elif not r.max_batch:
        lines.append("no combination of up to three knobs fits this GPU: use a larger GPU or several "
                     "(gpuplan recommend --model ... --max-gpus N)")
    return lines
