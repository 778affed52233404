"""`gpuplan profile`: runs the real training step (simulated, on the CPU or on a GPU) and shows its memory.

The run is gpuplan.profiler.measure(), shared with the dashboard; torch, transformers and peft load
when it runs, not when the CLI starts, so that `gpuplan estimate` stays fast. The tables are built in
app/profile_tables.py.
"""
from __future__ import annotations

import time

import json
from typing import Any

import click

from gpuplan.planner import PlannerError
from gpuplan.profiler import Device, measure, profile_json
from gpuplan.planner.io.files import write_json_atomic

from .options import setup_from_options, setup_options


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def _stderr():
    from rich.console import Console   # lazy: rich loads only when a profile runs, not at CLI start

    return Console(stderr=True, highlight=False)


def _max_batch(spec, setup, steps: int, log) -> int:
    from gpuplan.profiler.cuda import find_max_batch   # lazy: imports torch (see the module docstring)

    def on_trial(batch: int, result) -> None:
        log.print(f"  batch {batch}: {'fits' if result.fits else 'does not fit'}")

    return find_max_batch(spec, setup, steps=steps, on_trial=on_trial)


def _run(device: Device, spec, setup, steps: int | None, flags: dict[str, bool]) -> dict:
    """Runs what the flags ask for; returns the JSON payload (Measurement keys plus extras)."""
    from .progress import warnings_once   # lazy: rich's live display loads only to profile

    log = _stderr()
    steps = steps or device.default_steps
    start = time.monotonic()
    with warnings_once(log), log.status(f"{device.verb}: {spec.name}, {steps} steps") as status:
        def progress(fraction: float, message: str) -> None:   # elapsed time on every update
            if fraction < 1.0:
                status.update(f"{message} ({time.monotonic() - start:.0f} s elapsed)")
            else:
                log.print(message)

        result = measure(spec, setup, device, steps=steps, per_module=flags["per_module"], progress=progress)
    payload = profile_json(spec, setup, result, with_estimate=flags["compare"])
    if flags["find_max_batch"]:
        log.print(f"finding the largest micro-batch that fits ({steps} steps per trial)")
        payload["max_batch_size"] = _max_batch(spec, setup, steps, log)
    return payload


@click.command()
@setup_options
@click.option("--device", type=click.Choice(Device.values()), default=Device.SIMULATE.value, show_default=True,
              help="simulate: fake tensors, any size; cpu: real tensors, small models; cuda: real GPU 0.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimizer steps to run; peaks come from the last (default 2, cuda 3).")
@click.option("--compare", is_flag=True, help="Also estimate, and show the signed error per component.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as JSON (estimate --json's keys).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON to this file (atomically).")
@click.option("--find-max-batch", is_flag=True, help="Largest micro-batch that fits the GPU (--device cuda).")
@click.option("--per-module", is_flag=True, help="Per-module weights, saved activations and timeline.")
def profile(device: str, steps: int | None, compare: bool, as_json: bool, output: str | None,
            find_max_batch: bool, per_module: bool, **options: Any) -> None:
    """Run the real training step and show its memory: three figures, components by phase.

    \b
    Example:
      gpuplan profile --model llama-3.1-8b --method lora --batch-size 4 --seq-len 2048 --compare
    """
    dev = Device(device)
    if find_max_batch and dev is not Device.CUDA:
        raise UserError("--find-max-batch runs trials on a GPU: add --device cuda")
    try:
        spec, setup = setup_from_options(**options)
        flags = {"compare": compare, "find_max_batch": find_max_batch, "per_module": per_module}
        payload = _run(dev, spec, setup, steps, flags)
    except PlannerError as e:
        raise UserError(str(e)) from None
    except ImportError as e:
        raise UserError(f"the profiler needs torch, transformers and peft ({e.name} is missing): "
                        "pip install 'gpuplan[profile]'") from None
    if output:
        write_json_atomic(output, payload)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    from .profile_tables import render   # lazy: rich's tables load only when a table is printed

    render(payload)
