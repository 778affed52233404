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
@click.option("--save-steps", type=int, default=None, help="Checkpoint every N optimizer steps: adds what each "
              "save writes, the disk the run keeps, the save time and the save phase's memory.")
@click.option("--save-total-limit", type=int, default=None, help="Checkpoints kept on disk [all].")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps of the run, to count checkpoints [one].")
@click.option("--disk-bandwidth", default=None, help="Checkpoint write speed: 1.5GB/s, 800MB/s [2GB/s, a datacenter NVMe].")
@click.option("--save-only-model", is_flag=True, help="Checkpoints without the optimizer state (HF save_only_model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in README.md).")
def estimate(gpus: tuple[str, ...], as_json: bool, save_steps: int | None, save_total_limit: int | None,
             max_steps: int | None, disk_bandwidth: str | None, save_only_model: bool, **kw) -> None:
    """Peak GPU memory of one training step, by component and phase, and whether it fits.

    \b
    Example:
      gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 4 --seq-len 4096 --gpu rtx-4090
    """
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.memory.estimate import estimate as run_estimate, fits

    try:
        model, setup = setup_from_options(**kw)
        gpu_specs = [resolve_gpu(g) for g in gpus]
        est = run_estimate(model, setup)
        ckpt = None
        if save_steps is not None:
            from gpuplan.planner.memory.checkpoints import DEFAULT_DISK_BYTES_PER_S, SavePlan, checkpoint_estimate
            from gpuplan.planner.plans.cost import parse_bandwidth

            plan = SavePlan(save_steps, save_total_limit, max_steps,
                            parse_bandwidth(disk_bandwidth) if disk_bandwidth else DEFAULT_DISK_BYTES_PER_S,
                            save_only_model)
            ckpt = checkpoint_estimate(model, setup, plan)
        elif any(v is not None for v in (save_total_limit, max_steps, disk_bandwidth)) or save_only_model:
            raise PlannerError("--save-total-limit, --max-steps, --disk-bandwidth and --save-only-model "
                               "describe checkpoints: add --save-steps N")
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    fit_rows = [fits(est, g) for g in gpu_specs]
    if as_json:
        out = est.to_dict()
        out["fits"] = fit_rows
        if ckpt is not None:
            out["checkpoint"] = ckpt.to_dict()
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    from .report import render_estimate

    console = Console()
    render_estimate(est, fit_rows, console)
    if ckpt is not None:
        from .report import render_checkpoint

        render_checkpoint(ckpt, console)


@click.command()
def models() -> None:
    """List the bundled model presets."""
    from gpuplan.planner.io.catalog import load_preset, model_names

    for name in model_names():
        preset = load_preset(name)
        click.echo(f"{name:28s} {preset['params_total'] / 1e9:8.2f} B  {preset['hf_id']}")

