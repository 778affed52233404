"""`gpuplan watch`: a real training run sampled live from outside, against gpuplan's estimate.

The sampler (profiler/watch/) imports no torch; the estimate comes from the same setup flags as
`gpuplan estimate` (`--estimate-from` is `--from-config`), or from the setup the run's callback reports.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from gpuplan.planner import PlannerError

from .options import setup_options


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def _expected(options: dict[str, Any], estimate_from: str | None, gpu_name: str | None, max_seq_len: int | None):
    """The Expected from the setup flags, or None where neither --model nor a config was given."""
    from gpuplan.profiler.watch.expect import catalog_gpu, expected_for   # lazy: each command loads what it needs (fast start)

    from .options import setup_from_options   # lazy: each command loads what it needs (fast start)

    if estimate_from:
        options["from_config"] = estimate_from
    if not (options.get("model") or options.get("from_config")):
        return None
    spec, setup = setup_from_options(**options)
    source = f"--estimate-from {options['from_config']}" if options.get("from_config") else "the setup flags"
    return expected_for(spec, setup, options.get("model") or spec.name, source, catalog_gpu(gpu_name), max_seq_len)


@click.command()
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--pid", type=int, default=None, help="Attach to a running training process instead of starting one.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="JSON lines out (default: gpuplan-watch-<UTC time>.jsonl here).")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="The gpuplan.record/1 file written at the end (default: the output's name + .record.json).")
@click.option("--estimate-from", type=click.Path(dir_okay=False), default=None,
              help="Your training config (axolotl, HF/TRL, torchtune): the run's setup, to estimate.")
@click.option("--gpu", "gpu_name", default=None,
              help="Catalog GPU for the time model's tokens/s [the NVML name of GPU 0].")
@click.option("--max-seq-len", type=click.IntRange(min=1), default=None,
              help="Longest sequence the data can produce, for the OOM warning [the setup's --seq-len].")
@click.option("--leak-steps", type=click.IntRange(min=2), default=None,
              help="Steps of rising between-step allocated memory that make a leak [8].")
@click.option("--oom-margin", type=click.FloatRange(0, 0.9), default=None,
              help="Share of the GPU kept free of the projected peak [0.05].")
@click.option("--steps-dir", type=click.Path(file_okay=False), default=None,
              help="With --pid: the GPUPLAN_WATCH_DIR the run was started with (its step lines).")
@click.option("--live/--no-live", default=None, help="The live terminal view [on when stderr is a terminal].")
@click.option("--log", type=click.Path(dir_okay=False), default=None,
              help="The run's output to this file [with the live view: the output's name + .log; without it: "
                   "the terminal].")
@setup_options
def watch(command: tuple[str, ...], pid: int | None, interval: float, output: str | None, record: str | None,
          estimate_from: str | None, gpu_name: str | None, max_seq_len: int | None, leak_steps: int | None,
          oom_margin: float | None, steps_dir: str | None, live: bool | None, log: str | None,
          **options: Any) -> None:
    """Watch a real training run live: memory, speed and GPU state against gpuplan's estimate.

    Starts COMMAND (after --) with GPUPLAN_WATCH_DIR set, or attaches to --pid, and samples it every
    --interval seconds (NVML per GPU, /proc for the process tree). Runs that call
    gpuplan.profiler.watch.hook.step() or use GpuplanCallback add per-step allocator peaks, step times
    and tokens. Writes JSON lines (`gpuplan dashboard` plots them on its Watch page) and, at the end,
    a data/measurements-style record. Exits with the run's exit status.

    \b
    Examples:
      gpuplan watch -- python train.py --config my.yaml
      gpuplan watch --estimate-from my.yaml --output run.jsonl -- accelerate launch train.py
      gpuplan watch --pid 12345
    """
    from rich.console import Console   # lazy: each command loads what it needs (fast start)

    from gpuplan.profiler.watch import analysis   # lazy: each command loads what it needs (fast start)
    from gpuplan.profiler.watch.expect import catalog_gpu   # lazy: each command loads what it needs (fast start)
    from gpuplan.profiler.watch.record import write_watch_record   # lazy: each command loads what it needs (fast start)
    from gpuplan.profiler.watch.session import Session, WatchConfig   # lazy: each command loads what it needs (fast start)
    from gpuplan.profiler.watch.view import LiveView, print_summary   # lazy: each command loads what it needs (fast start)

    if bool(command) == (pid is not None):
        raise UserError("give the training command after -- (gpuplan watch -- python train.py), or --pid PID")
    if steps_dir and pid is None:
        raise UserError("--steps-dir applies to --pid (a started run gets its own)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(output or f"gpuplan-watch-{stamp}.jsonl")
    record_path = Path(record) if record else out.with_name(out.stem + ".record.json")
    try:
        gpu = None
        if gpu_name:
            gpu = catalog_gpu(gpu_name)
            if gpu is None:
                from gpuplan.planner import resolve_gpu   # lazy: each command loads what it needs (fast start)

                resolve_gpu(gpu_name)   # raises with the catalog's suggestions
        expected = _expected(dict(options), estimate_from, gpu_name or _nvml_gpu0(), max_seq_len)
        err = Console(stderr=True, highlight=False)
        use_live = err.is_terminal if live is None else live
        if log is None and use_live and command:   # the live view owns the terminal: the run writes to a file
            log = str(out.with_name(out.stem + ".log"))
        session = Session(WatchConfig(
            output=out, command=list(command) or None, pid=pid, interval_s=interval,
            steps_dir=Path(steps_dir) if steps_dir else None, expected=expected, gpu=gpu, max_seq_len=max_seq_len,
            leak_steps=leak_steps or analysis.LEAK_STEPS,
            oom_margin=analysis.OOM_MARGIN_FRACTION if oom_margin is None else oom_margin,
            log=Path(log) if log and command else None))
        if use_live:
            with LiveView(err) as view:
                state = session.run(on_update=view.update)
        else:
            err.print(f"gpuplan watch: {' '.join(command) or f'pid {pid}'} -> {out}")
            state = session.run()
    except PlannerError as e:
        raise UserError(str(e)) from None
    written = write_watch_record(record_path, state, driver=session.nvml.driver(),
                                 cuda_driver=session.nvml.cuda_driver(), alloc_conf=session.alloc_conf,
                                 files={"samples": str(out), **({"log": log} if log and command else {})})
    print_summary(Console(highlight=False), state)
    click.echo(f"samples: {out}" + (f"\nrecord: {written}" if written else "")
               + (f"\nthe run's output: {log}" if log and command else ""), err=True)
    if state.exit_code:   # a run killed by signal N (Popen: -N) exits 128 + N, as a shell reports it
        sys.exit(state.exit_code if state.exit_code > 0 else 128 - state.exit_code)


def _nvml_gpu0() -> str | None:
    """GPU 0's NVML name (for the time model), or None without NVML."""
    from gpuplan.profiler.watch.nvml import NvmlSampler   # lazy: each command loads what it needs (fast start)

    s = NvmlSampler()
    try:
        return s.names[0] if s.available else None
    finally:
        s.close()
