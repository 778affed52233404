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
@click.option("--dataset-tokens", default=None, help="With --gpu: tokens per epoch (200M, 1.5B) for hours and dollars.")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="With --dataset-tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in README.md).")
def estimate(gpus: tuple[str, ...], dataset_tokens: str | None, epochs: float, as_json: bool, **kw) -> None:
    """Peak GPU memory of one training step, by component and phase, and whether it fits.

    \b
    Example:
      gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 4 --seq-len 4096 --gpu rtx-4090
      gpuplan estimate --model llama-3.1-8b --method lora --gpu a100-80gb --dataset-tokens 200M --epochs 2
    """
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.memory.estimate import estimate as run_estimate, fits
    from gpuplan.planner.plans.cost import parse_tokens
    from gpuplan.planner.plans.plan import time_report

    try:
        model, setup = setup_from_options(**kw)
        gpu_specs = [resolve_gpu(g) for g in gpus]
        est = run_estimate(model, setup)
        tokens = parse_tokens(dataset_tokens) if dataset_tokens else None
        if (tokens is not None and tokens <= 0) or epochs <= 0:
            raise PlannerError("--dataset-tokens and --epochs must be positive")
        times = [time_report(model, setup, g, tokens, epochs) for g in gpu_specs]
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    fit_rows = [fits(est, g) for g in gpu_specs]
    if as_json:
        out = est.to_dict()
        out["fits"] = [{**row, "time": tm} for row, tm in zip(fit_rows, times)]
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    from .report import render_estimate, render_time

    console = Console()
    render_estimate(est, fit_rows, console)
    render_time(fit_rows, times, console)


@click.command()
def models() -> None:
    """List the bundled model presets."""
    from gpuplan.planner.io.catalog import load_preset, model_names

    for name in model_names():
        preset = load_preset(name)
        click.echo(f"{name:28s} {preset['params_total'] / 1e9:8.2f} B  {preset['hf_id']}")

