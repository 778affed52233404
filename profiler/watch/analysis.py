"""What the watch concludes from its series: OOM risk, a leak, the run's summary. Pure functions on
plain numbers (bytes as ints, seconds as floats); tested on synthetic series.

OOM warning: the run has survived its steps so far, but the data may still hold a longer sequence.
    projected = max over steps of (peak reserved) + growth + overhead
    growth    = estimate(seq_len = longest sequence the data can produce).peak_reserved
                - estimate(seq_len = the run's).peak_reserved               (the planner's answer)
    overhead  = what the device holds for the run outside the allocator (CUDA context, cuBLAS
                workspaces, NCCL): the run's NVML bytes minus its reserved bytes, where both are known
    warn when projected > capacity x (1 - margin)
Leak: the allocated bytes between steps (after optimizer.step and zero_grad) of a steady run are
flat; rising at every one of the last K steps is a leak (a loss tensor kept with its graph, a list
of outputs growing).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

# Assumption, uncalibrated: the share of the GPU kept free of the projected peak. It covers what the
# projection does not model: the caching allocator's fragmentation when a new, longer batch asks for
# larger blocks than the run has cached (c10/cuda/CUDACachingAllocator.cpp splits and caches blocks per
# size; a new size may need a new segment while the old ones stay reserved). No gpuplan GPU run has
# measured it yet; --oom-margin overrides it.
OOM_MARGIN_FRACTION = 0.05
# Steps of rising between-step allocated bytes that make a leak; a choice (--leak-steps overrides it):
# long enough that the first steps (the optimizer's lazily allocated state in step 1, a
# DataLoader warming up) do not trip it, short enough to warn within a minute of a typical run.
LEAK_STEPS = 8
GIB = 2**30


def fmt_bytes(nbytes: int | None) -> str:
    """Bytes in GiB (2**30), or in MiB / KiB below one GiB / MiB (the tiny models of tests)."""
    if nbytes is None:
        return "-"
    for unit, size in (("GiB", GIB), ("MiB", 2**20)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:,.2f} {unit}"
    return f"{nbytes / 2**10:,.1f} KiB"


@dataclass(frozen=True)
class OomWarning:
    step: int                 # the step whose peak projects highest
    peak_reserved_bytes: int
    growth_bytes: int
    overhead_bytes: int
    projected_bytes: int
    limit_bytes: int          # capacity x (1 - margin)
    capacity_bytes: int

    @property
    def message(self) -> str:
        b = fmt_bytes
        return (f"OOM risk: step {self.step}'s peak reserved {b(self.peak_reserved_bytes)} "
                f"+ {b(self.growth_bytes)} for the longest sequence + {b(self.overhead_bytes)} outside the "
                f"allocator = {b(self.projected_bytes)} > {b(self.limit_bytes)} ({b(self.capacity_bytes)} less the margin)")


def oom_warning(peak_reserved_by_step: Mapping[int, int], growth_bytes: int, capacity_bytes: int,
                overhead_bytes: int = 0, margin: float = OOM_MARGIN_FRACTION) -> OomWarning | None:
    """The OOM warning for a run whose steps so far peaked at `peak_reserved_by_step` (step -> bytes),
    or None while the projection stays within capacity x (1 - margin)."""
    if not peak_reserved_by_step:
        return None
    step = max(peak_reserved_by_step, key=lambda s: peak_reserved_by_step[s])
    peak = peak_reserved_by_step[step]
    projected = peak + max(growth_bytes, 0) + max(overhead_bytes, 0)
    limit = int(capacity_bytes * (1 - margin))
    if projected <= limit:
        return None
    return OomWarning(step, peak, max(growth_bytes, 0), max(overhead_bytes, 0), projected, limit, capacity_bytes)


@dataclass(frozen=True)
class Leak:
    steps: int               # over how many steps it rose
    first_step: int
    last_step: int
    rise_bytes: int

    @property
    def message(self) -> str:
        return (f"leak: allocated between steps rose at each of the last {self.steps} steps "
                f"(steps {self.first_step}-{self.last_step}, +{self.rise_bytes / 2**20:,.1f} MiB)")


def leak(allocated_by_step: Mapping[int, int], k: int = LEAK_STEPS) -> Leak | None:
    """A Leak where the between-step allocated bytes (step -> bytes) rose at each of the last `k`
    steps, else None."""
    steps = sorted(allocated_by_step)
    if len(steps) < k + 1:
        return None
    last = steps[-(k + 1):]
    values = [allocated_by_step[s] for s in last]
    if all(b > a for a, b in zip(values, values[1:])):
        return Leak(k, last[0], last[-1], values[-1] - values[0])
    return None


def _error_pct(measured: float | None, estimated: float | None) -> float | None:
    """Signed error of the estimate against the measurement, in percent (positive: over-estimate)."""
    if measured is None or estimated is None or measured == 0:
        return None
    return round((estimated - measured) / measured * 100, 2)


def steady(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The steady-state steps: from step 2 on (step 1 allocates the optimizer state lazily), or all
    of them where there is only one."""
    later = [s for s in steps if s.get("step", 0) >= 2]
    return later or list(steps)


def _max(values: Iterable[Any]) -> Any:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def measured_figures(steps_by_rank: Mapping[Any, Sequence[Mapping[str, Any]]],
                     samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's measured figures: peaks over every rank's steady steps, NVML's peak of the run's
    memory on any one GPU, the process tree's peak RSS, the median step time of the steady steps
    (of the rank with the most steps) and tokens/s summed over ranks."""
    all_steady = [s for steps in steps_by_rank.values() for s in steady(steps)]
    first = [s for steps in steps_by_rank.values() for s in steps if s.get("step") == 1]
    times: list[float] = []
    tokens_per_s = 0.0
    counted = False
    for steps in steps_by_rank.values():
        timed = [s for s in steady(steps) if s.get("step_time_s")]
        rank_times = [s["step_time_s"] for s in timed]
        if len(rank_times) > len(times):
            times = rank_times
        with_tokens = [s for s in timed if s.get("tokens") is not None]
        if with_tokens:
            tokens_per_s += sum(s["tokens"] for s in with_tokens) / sum(s["step_time_s"] for s in with_tokens)
            counted = True
    device = _max(g.get("run_memory_bytes") for s in samples for g in s.get("gpus", []))
    return {
        "peak_allocated_bytes": _max(s.get("peak_allocated_bytes") for s in all_steady),
        "peak_reserved_bytes": _max(s.get("peak_reserved_bytes") for s in all_steady),
        "device_total_bytes": device,
        "first_step_peak_allocated_bytes": _max(s.get("peak_allocated_bytes") for s in first),
        "first_step_peak_reserved_bytes": _max(s.get("peak_reserved_bytes") for s in first),
        "peak_rss_bytes": _max(s.get("rss_bytes") for s in samples),
        "step_time_s": statistics.median(times) if times else None,
        "steps_timed": len(times),
        "tokens_per_s": tokens_per_s if counted else None,
        "steps": max((len(v) for v in steps_by_rank.values()), default=0),
    }


FIGURES = ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes", "tokens_per_s")


def comparison(measured: Mapping[str, Any], expected: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per figure: measured, estimated and the estimate's signed error in percent."""
    expected = expected or {}
    return [{"name": f, "measured": measured.get(f), "estimated": expected.get(f),
             "error_pct": _error_pct(measured.get(f), expected.get(f))} for f in FIGURES]
