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
from ..speed.throughput import step_time

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


@dataclass(frozen=True)
class TimeError:
    """One published throughput (over all GPUs) against gpuplan's step_time tokens/s."""

    run: PublishedRun
    published_tokens_per_s: float   # global: a per-GPU figure times the GPU count
    estimate_tokens_per_s: float
    micro_batch_tokens: int         # batch x seq_len of the setup the time model saw (per GPU)
    gpu_family: str
    held_out: bool

    @property
    def key(self) -> str:
        return self.run.id

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.estimate_tokens_per_s - self.published_tokens_per_s) / self.published_tokens_per_s

    @property
    def flagged(self) -> bool:
        return bool(self.run.unmodelled)


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


def time_errors(runs: Iterable[PublishedRun] | None = None) -> list[TimeError]:
    """Every mapped run with a published tokens/s on a catalog GPU, against step_time's tokens/s."""
    held = held_out_sources()
    rows = []
    for run in _mapped(runs):
        fig = run.figure(FigureKind.TOKENS_PER_S)
        if fig is None or run.gpu_catalog is None:
            continue
        published = fig.value * (run.gpu_count if fig.scope == "per_gpu" else 1)
        gpu = resolve_gpu(run.gpu_catalog)
        setup = run.time_setup()
        st = step_time(resolve_model(run.model), setup, gpu)
        rows.append(TimeError(run, published, st.tokens_per_s, setup.batch_size * setup.seq_len, gpu.architecture,
                              run.file in held))
    return rows


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
