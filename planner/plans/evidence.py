"""Signed errors of today's planner against the published runs (data/published/).

API: `memory_errors() -> list[MemoryError_]`, `time_errors() -> list[TimeError]`, `summarize(rows, keys)`.
error = (gpuplan - published) / published, in percent: negative means gpuplan is under the
measurement (the direction that makes a user run out of memory, or pay for more hours).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..io.catalog import resolve_gpu, resolve_model
from ..memory.estimate import estimate
from ..specs.enums import Compile
from ..speed.calibrate import Sample, fit, loso, predict
from ..speed.throughput import TimeConstants, step_time, time_columns

from ..io.published import FigureKind, PublishedRun, held_out_sources, load_published


@dataclass(frozen=True)
class MemoryError_:
    """One published memory figure against the gpuplan figure it is comparable to."""

    run: PublishedRun
    kind: FigureKind
    compared_with: str        # MemoryEstimate attribute: peak_allocated_bytes, peak_reserved_bytes, device_total_bytes
    published_bytes: int
    estimate_bytes: int
    held_out: bool

    @property
    def key(self) -> str:
        return f"{self.run.id}|{self.kind.value}"

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.estimate_bytes - self.published_bytes) / self.published_bytes

    @property
    def flagged(self) -> bool:
        return bool(self.run.unmodelled)


# Unmodelled features that change a run's time in ways the time model cannot represent: such runs
# are never fitted on and are reported apart. Matched as substrings of the run's `unmodelled` lines.
TIME_DISTORTING = (
    ("torch.compile", "compiled kernels where the run's time setup does not say --compile (planner/speed/compiled.py "
                      "counts inductor's fused kernels when it does)"),
    ("power limited", "power-limited cards on a PCIe rig without NVLink"),
    ("eval generation", "generation during evaluation counted in the run's time"),
    ("activation offloading", "activation copies to the host"),
    ("optimizer_in_bwd", "optimizer step fused into the backward"),
    ("CPU offload", "the optimizer on the CPU copy"),
    ("settings that differ", "settings not stated"),
    ("DoRA", "DoRA's weight-norm work in every forward"),
    ("empty_cache", "the allocator emptied every few steps"),
    ("at capacity", "device memory at the card's capacity: on a failed cudaMalloc the caching allocator frees its "
                    "cached blocks after synchronizing and retries (torch c10/cuda/CUDACachingAllocator.cpp "
                    "DeviceCachingAllocator::malloc, release_cached_blocks, alloc_block isRetry: num_alloc_retries)"),
)
# A published nvidia-smi peak this close to the card's memory means the allocator retried: the five
# runs at 98.6-99.1% (fms-acceleration-liger a100_80gb.csv, full fine-tuning on 2-4 GPUs) are 13-40%
# slower than the same setups at <= 97.5%, and no published run lies between.
AT_CAPACITY = 0.985
# Features the model does not represent but that change kernels, not the work: fitted on, reported apart.
TIME_MILD = (
    ("fused-ops-and-kernels", "Triton fused LoRA, norm, RoPE and loss kernels"),
    ("packed dataset", "packed sequences (per-document masks)"),
    ("padding with a mask", "padded batches (mean length used)"),
    ("NF4 path", "torchao NF4 dequantization"),
)


def _time_unmodelled(run: PublishedRun) -> list[str]:
    """The run's unmodelled features that its time setup leaves unmodelled: torch.compile is modelled
    for time where the setup compiles (`time_overrides` or the mapping), whatever the memory mapping says."""
    compiles = run.mapping is not None and run.time_setup().compile is not Compile.NONE
    lines = [u for u in run.unmodelled if not (compiles and "torch.compile" in u)]
    device = run.figure(FigureKind.NVIDIA_SMI)
    if device is not None and run.gpu_catalog is not None:
        total = resolve_gpu(run.gpu_catalog).memory_bytes
        if device.bytes >= AT_CAPACITY * total:
            lines.append(f"device memory at capacity (nvidia-smi {device.bytes / 2**20:.0f} of {total / 2**20:.0f} MiB)")
    return lines


def time_class(run: PublishedRun) -> str:
    """'distorting', 'mild' or 'clean': how far the run's unmodelled features bear on its time."""
    lines = " | ".join(_time_unmodelled(run))
    if any(k in lines for k, _ in TIME_DISTORTING):
        return "distorting"
    if any(k in lines for k, _ in TIME_MILD):
        return "mild"
    return "clean"


@dataclass(frozen=True)
class TimeError:
    """One published throughput (over all GPUs) against gpuplan's tokens/s: with today's constants
    (`estimate_tokens_per_s`) and out of sample (`oos_tokens_per_s`: constants fitted without the
    run's source; for a held-out source, fitted on every tuned source)."""

    run: PublishedRun
    published_tokens_per_s: float   # global: a per-GPU figure times the GPU count
    estimate_tokens_per_s: float
    micro_batch_tokens: int         # batch x seq_len of the setup the time model saw (per GPU)
    gpu_family: str
    held_out: bool
    oos_tokens_per_s: float = 0.0
    time_class: str = "clean"

    @property
    def key(self) -> str:
        return self.run.id

    @property
    def method(self) -> str:
        return self.run.mapping["method"]

    @property
    def error_pct(self) -> float:
        """Out-of-sample error (the headline): (oos - published) / published."""
        return 100.0 * (self.oos_tokens_per_s - self.published_tokens_per_s) / self.published_tokens_per_s

    @property
    def fitted_error_pct(self) -> float:
        """Error under today's constants (fitted on this run where its source is tuned)."""
        return 100.0 * (self.estimate_tokens_per_s - self.published_tokens_per_s) / self.published_tokens_per_s

    @property
    def flagged(self) -> bool:
        return self.time_class != "clean"


def _mapped(runs: Iterable[PublishedRun] | None) -> list[PublishedRun]:
    return [r for r in (load_published() if runs is None else runs) if r.mapping is not None]


def memory_errors(runs: Iterable[PublishedRun] | None = None) -> list[MemoryError_]:
    """Every memory figure of every mapped run, compared with the estimate of its mapping."""
    held = held_out_sources()
    rows = []
    for run in _mapped(runs):
        est = estimate(resolve_model(run.model), run.setup())
        for fig in run.memory_figures:
            rows.append(MemoryError_(run, fig.kind, fig.kind.compared_with, fig.bytes, getattr(est, fig.kind.compared_with),
                                     run.file in held))
    return rows


def _time_runs(runs: Iterable[PublishedRun] | None) -> list[PublishedRun]:
    return [r for r in _mapped(runs) if r.figure(FigureKind.TOKENS_PER_S) is not None and r.gpu_catalog is not None]


def _published_tps(run: PublishedRun) -> float:
    fig = run.figure(FigureKind.TOKENS_PER_S)
    return fig.value * (run.gpu_count if fig.scope == "per_gpu" else 1)


def time_samples(runs: Iterable[PublishedRun] | None = None) -> list[Sample]:
    """Every mapped run with a published tokens/s, as a calibration sample (measured step seconds per GPU)."""
    out = []
    for run in _time_runs(runs):
        gpu = resolve_gpu(run.gpu_catalog)
        setup = run.time_setup()
        cols = time_columns(resolve_model(run.model), setup, gpu)
        out.append(Sample(run.id, run.file, gpu.architecture, run.mapping["method"], cols,
                          cols.tokens_per_step / _published_tps(run)))
    return out


def fit_samples(samples: list[Sample], runs: Iterable[PublishedRun] | None = None) -> list[Sample]:
    """The samples the constants are fitted on: tuned sources, no time-distorting feature."""
    held = held_out_sources()
    by_id = {r.id: r for r in _time_runs(runs)}
    return [s for s in samples if s.source not in held and time_class(by_id[s.id]) != "distorting"]


def fitted_constants(runs: Iterable[PublishedRun] | None = None) -> tuple[TimeConstants, list[Sample]]:
    """(constants fitted on every fit sample, those samples)."""
    samples = fit_samples(time_samples(runs), runs)
    return fit(samples, TimeConstants.load()), samples


def time_errors(runs: Iterable[PublishedRun] | None = None) -> list[TimeError]:
    """Every mapped run with a published tokens/s on a catalog GPU: today's and out-of-sample tokens/s.

    Out of sample: a tuned source's runs are predicted by constants fitted on the other tuned sources
    (leave one source out); a held-out source's by the constants fitted on every tuned source."""
    held = held_out_sources()
    runs_l = _time_runs(runs)
    samples = time_samples(runs_l)
    train = fit_samples(samples, runs_l)
    base = TimeConstants.load()
    all_fit = fit(train, base) if train else base
    tuned_eval = [s for s in samples if s.source not in held]
    oos = loso(train, base, tuned_eval) if len({s.source for s in train}) > 1 else {}
    rows = []
    for run, s in zip(runs_l, samples):
        seconds = oos.get(s.id) if s.source not in held else predict(s, all_fit)
        if seconds is None:            # a tuned source with no fit sample of its own: fitted without it anyway
            seconds = predict(s, fit([t for t in train if t.source != s.source], base)) if any(
                t.source != s.source for t in train) else predict(s, base)
        setup = run.time_setup()
        st = step_time(resolve_model(run.model), setup, resolve_gpu(run.gpu_catalog))
        rows.append(TimeError(run, _published_tps(run), st.tokens_per_s, setup.batch_size * setup.seq_len,
                              s.family, run.file in held, s.columns.tokens_per_step / seconds, time_class(run)))
    return rows


def error_bands(rows: list[TimeError]) -> dict[str, dict[str, Any]]:
    """{"family|method", "*|method", "*|*": {lo, hi, runs}}: the lowest and highest out-of-sample
    signed error (a fraction) of the runs without a time-distorting feature, per group."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.time_class == "distorting":
            continue
        for key in (f"{r.gpu_family}|{r.method}", f"*|{r.method}", "*|*"):
            groups.setdefault(key, []).append(r.error_pct / 100)
    return {k: {"lo": round(min(v), 4), "hi": round(max(v), 4), "runs": len(v)} for k, v in sorted(groups.items())}


@dataclass(frozen=True)
class Summary:
    group: tuple[str, ...]
    n: int
    flagged: int
    median_abs: float
    worst: float               # the signed error of largest magnitude
    median_signed: float
    median_abs_unflagged: float | None


def summarize(rows: list[Any], key: Callable[[Any], tuple[str, ...]]) -> list[Summary]:
    """Median and worst |error| per group (sorted by group)."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = []
    for g, rs in sorted(groups.items()):
        errs = [r.error_pct for r in rs]
        clean = [abs(r.error_pct) for r in rs if not r.flagged]
        out.append(Summary(g, len(rs), sum(r.flagged for r in rs), statistics.median(abs(e) for e in errs),
                           max(errs, key=abs), statistics.median(errs), statistics.median(clean) if clean else None))
    return out


def recorded(rows: list[Any]) -> dict[str, float]:
    """{key: error_pct rounded to 1e-4 %}: what --record writes."""
    return {r.key: round(r.error_pct, 4) for r in rows}


def regressions(today: dict[str, float], before: dict[str, float], slack_pct: float = 0.5) -> list[str]:
    """One line per run whose |error| grew by more than `slack_pct` points, whose estimate fell
    further below the measurement, or that is new or gone since the errors were recorded."""
    problems = []
    for key in sorted(set(today) | set(before)):
        if key not in before:
            problems.append(f"{key}: no recorded error (a new run or mapping): re-record with --record")
        elif key not in today:
            problems.append(f"{key}: recorded but no longer compared: re-record with --record")
        else:
            new, old = today[key], before[key]
            if abs(new) > abs(old) + slack_pct:
                problems.append(f"{key}: |error| grew from {abs(old):.2f}% to {abs(new):.2f}%")
            elif new < 0 and new < old - 1e-3:
                problems.append(f"{key}: estimate fell further below the measurement ({old:+.2f}% -> {new:+.2f}%)")
    return problems
