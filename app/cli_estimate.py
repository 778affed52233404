"""`gpuplan estimate` and `gpuplan models`: the planner from the command line (imports no torch).
`gpuplan gpus` lives in cli_gpus.py."""
from __future__ import annotations

import json

import click

from gpuplan.planner.specs.errors import PlannerError

from .options import setup_from_options, setup_options


@click.command()
@setup_options
@click.option("--gpu", "gpus", multiple=True, help="GPU to check the fit against (repeatable): rtx-4090, h100, a100-40gb...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in README.md).")
def estimate(gpus: tuple[str, ...], as_json: bool, **kw) -> None:
    """Peak GPU memory of one training step, by component and phase, and whether it fits.

    \b
    Example:
      gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 4 --seq-len 4096 --gpu rtx-4090
    """
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.memory.estimate import fits
    from gpuplan.profiler.answer import estimate_or_simulate   # imports torch only to simulate

    try:
        model, setup = setup_from_options(**kw)
        gpu_specs = [resolve_gpu(g) for g in gpus]
        est, source = estimate_or_simulate(model, setup)
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    fit_rows = [fits(est, g) for g in gpu_specs]
    if as_json:
        out = est.to_dict()
        out["fits"] = fit_rows
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    from .report import render_estimate

    console = Console()
    render_estimate(est, fit_rows, console)
    console.print(f"answered by: {source.value}" + ("" if source.value == "closed-form" else
                                                     " (no closed form; see the notes)"))


@click.command()
def models() -> None:
    """List the bundled model presets."""
    from gpuplan.planner.io.catalog import load_preset, model_names

    for name in model_names():
        preset = load_preset(name)
        click.echo(f"{name:28s} {preset['params_total'] / 1e9:8.2f} B  {preset['hf_id']}")

