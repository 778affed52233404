"""Profiler overhead on a real CPU training step: plain, with the StorageTracker, and with the
per-module hooks on top (target: hooks <= 5% of the step). Prints a markdown table.

    python benchmarks/profiler_overhead.py [--model smollm-2-135m] [--reps 3]

Two measurements, because on a shared machine an A/B difference of a few percent drowns in noise:
1. A/B: each configuration builds the model afresh, runs STEPS optimizer steps (fp32, no autocast,
   so that CPU bf16 kernels do not dominate) and times the steady-state steps (all but the first),
   in this process's CPU time on one thread; configurations interleave, in rotated order.
2. In-hook time: the hooks' own time (every forward pre/post hook and saved-tensor pack hook,
   clocked around each call), as a share of the step, plus torch's slower module-call path when
   a module has hooks: the module calls of the step (forward_pre events) times that path's extra
   cost, measured on nn.Identity. This is the hooks' cost without the machine's noise.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings

import torch

from gpuplan.planner import Optimizer, Phase, Precision, TrainingSetup, resolve_model
from gpuplan.profiler.build import build
from gpuplan.profiler.hooks import ModuleAttribution
from gpuplan.profiler.step import run_steps
from gpuplan.profiler.tracker import NullTracker, StorageTracker

STEPS = 3   # the first allocates optimizer state and is not timed
CALL_EXTRA_S = 0.0   # set in main() by hooked_call_extra_s()


class StepClock:
    """Mixin for a tracker: CPU time at each step start (a FORWARD mark after an OPTIMIZER one)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []
        self._prev: Phase | None = None

    def mark(self, phase, component) -> None:
        if phase is Phase.FORWARD and self._prev in (None, Phase.OPTIMIZER):
            self.starts.append(time.process_time())
        self._prev = phase
        super().mark(phase, component)


class ClockedNull(StepClock, NullTracker): ...
class ClockedTracker(StepClock, StorageTracker): ...


class ClockedAttribution(ModuleAttribution):
    """ModuleAttribution that adds up the time spent inside its own hooks."""

    spent_ns = 0

    def _clocked(self, fn):
        def hook(*args):
            start = time.perf_counter_ns()
            out = fn(*args)
            self.spent_ns += time.perf_counter_ns() - start
            return out
        return hook

    def _pre(self, name):
        return self._clocked(super()._pre(name))

    def _post(self, name):
        return self._clocked(super()._post(name))

    def _pack(self, t):
        start = time.perf_counter_ns()
        out = super()._pack(t)
        self.spent_ns += time.perf_counter_ns() - start
        return out


def hooked_call_extra_s(calls: int = 100_000) -> float:
    """CPU seconds a module call costs more with a no-op forward pre-hook and forward hook."""
    module, x = torch.nn.Identity(), torch.zeros(1)

    def per_call() -> float:
        start = time.process_time()
        for _ in range(calls):
            module(x)
        return (time.process_time() - start) / calls

    plain = min(per_call() for _ in range(3))
    module.register_forward_pre_hook(lambda m, args: None)
    module.register_forward_hook(lambda m, args, out: None)
    return min(per_call() for _ in range(3)) - plain


def timed_run(model, setup, mode: str) -> tuple[float, float]:
    """(CPU seconds per steady-state step, share of it the hooks cost) on a freshly built model."""
    built = build(model, setup, torch.device("cpu"))
    # build() initializes real tensors (weights, RoPE tables, LoRA)
    tracker = ClockedNull() if mode == "plain" else ClockedTracker()
    hooks = ClockedAttribution(built.model, tracker) if mode == "tracker+hooks" else contextlib.nullcontext()
    with tracker, hooks:
        run_steps(built, setup, tracker, STEPS)
    per_step = (time.process_time() - tracker.starts[1]) / (STEPS - 1)
    if not isinstance(hooks, ClockedAttribution):
        return per_step, 0.0
    calls = sum(e["event"] == "forward_pre" for e in hooks.timeline)   # the last step's module calls
    cost = hooks.spent_ns / 1e9 / STEPS + calls * CALL_EXTRA_S
    return per_step, cost / per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm-2-135m")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--reps", type=int, default=6)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    global CALL_EXTRA_S
    CALL_EXTRA_S = hooked_call_extra_s()
    model = resolve_model(args.model)
    setup = TrainingSetup(precision=Precision.FP32, optimizer=Optimizer.ADAMW, batch_size=args.batch_size,
                          seq_len=args.seq_len)
    modes = ("plain", "tracker", "tracker+hooks")
    times: dict[str, list[float]] = {m: [] for m in modes}
    shares: list[float] = []
    timed_run(model, setup, "plain")   # warm-up: imports, kernel selection
    for rep in range(args.reps):
        for mode in modes[rep % 3:] + modes[:rep % 3]:   # rotated: no configuration always runs first
            per_step, share = timed_run(model, setup, mode)
            times[mode].append(per_step)
            if mode == "tracker+hooks":
                shares.append(share)
            print(f"rep {rep + 1}/{args.reps} {mode}: {per_step:.2f} CPU s per step", file=sys.stderr)
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\n{args.model}, batch {args.batch_size} x {args.seq_len} tokens, fp32, steady-state step, "
          f"torch {torch.__version__}, 1 thread, CPU time, median of {args.reps}\n")
    print(f"(a hooked module call costs {CALL_EXTRA_S * 1e6:.2f} us more than a plain one)\n")
    print("| configuration | CPU s per step | vs plain | vs tracker | hooks' own cost |")
    print("|---|---|---|---|---|")
    for mode in modes:
        inside = f"{100 * statistics.median(shares):.2f}% of the step" if mode == "tracker+hooks" else ""
        print(f"| {mode} | {med[mode]:.3f} | {100 * (med[mode] / med['plain'] - 1):+.1f}% "
              f"| {100 * (med[mode] / med['tracker'] - 1):+.1f}% | {inside} |")


if __name__ == "__main__":
    main()
