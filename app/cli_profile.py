"""`gpuplan profile`: runs the real training step (simulated, on the CPU or on a GPU) and shows its memory.

torch, transformers and peft are imported inside the command only, so that `gpuplan estimate`
stays fast; the tables are built in app/profile_tables.py.
"""
from __future__ import annotations

import json
import time
from typing import Any

import click

from gpuplan.planner.specs.enums import Choice
from gpuplan.planner.specs.errors import PlannerError

from .options import setup_from_options, setup_options


class Device(Choice):
    SIMULATE = "simulate"   # FakeTensorMode on the CPU: any model size, no memory, no GPU
    CPU = "cpu"             # real tensors on the CPU: small models
    CUDA = "cuda"           # real tensors on GPU 0: allocator statistics and NVML


DEFAULT_STEPS = {Device.SIMULATE: 2, Device.CPU: 2, Device.CUDA: 3}


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _measure(device: Device, spec, setup, steps: int, per_module: bool):
    """The Measurement from the chosen device (torch is imported here, not at startup)."""
    if not setup.parallel.single_gpu:   # FSDP2 ranks: simulated with a fake process group, or gloo on CPU
        from gpuplan.profiler.distributed import measure_distributed

        return measure_distributed(spec, setup, device.value, steps=steps, per_module=per_module)
    if device is Device.SIMULATE:
        from gpuplan.profiler.simulate import simulate

        return simulate(spec, setup, steps=steps, per_module=per_module)
    if device is Device.CPU:
        from gpuplan.profiler.cpu import measure_cpu

        return measure_cpu(spec, setup, steps=steps, per_module=per_module)
    from gpuplan.profiler.cuda import measure_cuda

    return measure_cuda(spec, setup, steps=steps, per_module=per_module)


def _max_batch(spec, setup, steps: int, log) -> int:
    from gpuplan.profiler.cuda import find_max_batch

    def on_trial(batch: int, result) -> None:
        log.print(f"  batch {batch}: {'fits' if result.fits else 'does not fit'}")

    return find_max_batch(spec, setup, steps=steps, on_trial=on_trial)


def _run(device: Device, spec, setup, steps: int, flags: dict[str, bool]) -> dict:
    """Runs what the flags ask for; returns the JSON payload (Measurement keys plus extras)."""
    log = _stderr()
    verb = {Device.SIMULATE: "simulating", Device.CPU: "running on the CPU",
            Device.CUDA: "running on the GPU"}[device]
    start = time.perf_counter()
    with log.status(f"{verb}: {spec.name}, {steps} steps"):
        try:
            result = _measure(device, spec, setup, steps, flags["per_module"])
        except PlannerError:
            raise
        except ValueError as e:   # transformers/peft refusing a combination (Gemma-2 with sdpa, ...)
            raise PlannerError(f"{type(e).__name__} from the model's library: {str(e).splitlines()[0]}") from None
    log.print(f"{verb}: {spec.name}, {steps} steps, done in {time.perf_counter() - start:.1f} s")
    payload = result.to_dict()
    if flags["compare"]:
        from gpuplan.planner.memory.estimate import estimate
        from gpuplan.profiler.compare import compare

        payload["comparison"] = compare(estimate(spec, setup), result).to_dict()
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
        payload = _run(dev, spec, setup, steps or DEFAULT_STEPS[dev], flags)
    except PlannerError as e:
        raise UserError(str(e)) from None
    except ImportError as e:
        raise UserError(f"the profiler needs torch, transformers and peft ({e.name} is missing): "
                        "pip install 'gpuplan[profile]'") from None
    if output:
        from gpuplan.profiler.report import write_json_atomic

        write_json_atomic(output, payload)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    from .profile_tables import render

    render(payload)
