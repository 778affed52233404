"""Fitting the time model's constants on measured step times, and cross-validation leaving one
source out.

API: `fit(samples, base) -> TimeConstants`, `loso(samples, base) -> dict[id, predicted seconds]`.

A sample is one measured run: its `Columns` (planner/speed/throughput.py: the step's parts at unit
constants), its GPU family, its source and the measured step seconds. The model is linear in the
inverse efficiencies and the launch costs,

    t = g / e_gemm[family] + (m + d) / e_mem + (L + X) t_layer + A t_adapter + t_step
        + max(network - overlap busy, (1 - eta) network) + offload,

(dequantization shares the memory efficiency and an MoE expert's pass the layer's launch cost:
one bandwidth-bound class, one cost per block pass), so the fit is a non-negative least squares
of the relative error (t_pred / t_meas - 1), solved by the normal equations with an active set, re-weighted (Huber, 15 %) so that one odd run does not
set a constant, and iterated for the exposed communication (which depends on the busy time).
A family gets its own GEMM efficiency only with MIN_FAMILY_RUNS runs or more; the others share
the cross-family constant, itself fitted over every family pooled.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .throughput import Columns, TimeConstants, assemble, exposed_comm

MIN_FAMILY_RUNS = 5
HUBER = 0.15
MAX_EFFICIENCY = 0.95   # no memory-bound kernel class runs above 95% of the datasheet bandwidth
# GEMM efficiencies are fractions of the card's measured matmul ceiling (planner/speed/ceiling.py), a
# rate that a GEMM has been measured to reach: none runs above it
MAX_GEMM_FRACTION = 1.0
SHARED = ("memory", "dequant", "layer", "adapter", "step")


@dataclass(frozen=True)
class Sample:
    id: str
    source: str
    family: str
    method: str
    columns: Columns
    measured_s: float       # seconds of one optimizer step per GPU


def _solve(rows: list[list[float]], y: list[float], w: list[float], lower: list[float]) -> list[float]:
    """Weighted least squares with x >= lower, by the normal equations and an active set."""
    y = [yi - sum(r[j] * lower[j] for j in range(len(lower))) for r, yi in zip(rows, y)]
    return [a + b for a, b in zip(_nnls(rows, y, w), lower)]


def _nnls(rows: list[list[float]], y: list[float], w: list[float]) -> list[float]:
    n = len(rows[0])
    active = [j for j in range(n) if any(r[j] for r in rows)]
    x = [0.0] * n
    while active:
        k = len(active)
        A = [[sum(wi * r[a] * r[b] for r, wi in zip(rows, w)) for b in active] for a in active]
        rhs = [sum(wi * r[a] * yi for r, yi, wi in zip(rows, y, w)) for a in active]
        for i in range(k):                     # a tiny ridge keeps collinear columns solvable
            A[i][i] += 1e-9 * (A[i][i] or 1.0)
        sol = _gauss(A, rhs)
        if min(sol) >= 0:
            for a, v in zip(active, sol):
                x[a] = v
            return x
        active.pop(min(range(k), key=lambda i: sol[i]))
    return x


def _gauss(A: list[list[float]], b: list[float]) -> list[float]:
    n = len(b)
    M = [row[:] + [bi] for row, bi in zip(A, b)]
    for i in range(n):
        p = max(range(i, n), key=lambda r: abs(M[r][i]))
        M[i], M[p] = M[p], M[i]
        if M[i][i] == 0:
            continue
        for r in range(n):
            if r != i and M[r][i]:
                f = M[r][i] / M[i][i]
                M[r] = [a - f * c for a, c in zip(M[r], M[i])]
    return [M[i][n] / M[i][i] if M[i][i] else 0.0 for i in range(n)]


def _design(s: Sample, fam_index: dict[str, int], c: TimeConstants) -> tuple[list[float], float]:
    """(the sample's row at unit constants, its fixed seconds): in the regime where the never-overlapped
    share of the collectives sets the exposed time, that time is network x (1 - overlap efficiency),
    linear in the efficiency (its column is -network); otherwise the exposed time is fixed by the busy time."""
    col = s.columns
    g = [0.0] * len(fam_index)
    g[fam_index[s.family] if s.family in fam_index else fam_index["*"]] = col.gemm + col.attention / c.attention_ratio
    busy = sum(assemble(col, c, c.efficiency(s.family)[0])[:5])
    exposed = exposed_comm(col, c, busy)
    floor = col.network > 0 and exposed == (1 - c.overlap_efficiency) * col.network and exposed > 0
    # dequantization is a bandwidth-bound kernel like the others: its bytes share the memory efficiency
    # (no constant of its own: fitted alone it swung from 0.38 to the 0.95 bound between folds)
    # an MoE expert's pass launches a sequence of kernels like a decoder layer's: one cost per block pass
    row = g + [col.memory + col.dequant, 0.0, col.layer_passes + col.expert_calls, col.adapter_calls, 1.0, 0.0,
               -col.network if floor else 0.0]
    return row, (col.network if floor else exposed) + col.offload


def _lower(k: int) -> list[float]:
    """Bounds: no GEMM efficiency above MAX_GEMM_FRACTION of the matmul ceiling, no memory efficiency above
    MAX_EFFICIENCY of the datasheet bandwidth (inverse efficiency >= 1 / it), launch costs >= 0."""
    return [1 / MAX_GEMM_FRACTION] * k + [1 / MAX_EFFICIENCY] * 2 + [0.0, 0.0, 0.0, 0.0, 0.0]


def _constants(x: list[float], fams: list[str], c: TimeConstants, cross: float | None,
               any_floor: bool = True) -> TimeConstants:
    k = len(fams)
    inv = lambda v, old: 1.0 / v if v > 0 else old        # noqa: E731  a zero column keeps the old value
    eff = {f: inv(x[i], c.cross_family) for i, f in enumerate(fams)}
    cross_value = cross if cross is not None else eff.get("*", c.cross_family)
    return replace(c, gemm_efficiency=tuple(sorted((f, v) for f, v in eff.items() if f != "*")),
                   cross_family=cross_value, memory_efficiency=inv(x[k], c.memory_efficiency),
                   dequant_efficiency=inv(x[k], c.memory_efficiency), per_layer_pass_s=x[k + 2],
                   per_adapter_call_s=x[k + 3], per_step_s=x[k + 4], per_expert_call_s=x[k + 2],
                   overlap_efficiency=min(1.0, x[k + 6]) if any_floor else c.overlap_efficiency, error_bands=())


def _fit(samples: list[Sample], base: TimeConstants, fams: list[str], cross: float | None) -> TimeConstants:
    index = {f: i for i, f in enumerate(fams)}
    c = base
    w = [1.0] * len(samples)
    for _ in range(8):
        rows, y = [], []
        for s in samples:
            row, fixed = _design(s, index, c)
            rows.append([v / s.measured_s for v in row])
            y.append(1.0 - fixed / s.measured_s)
        x = _solve(rows, y, w, _lower(len(fams)))
        c = _constants(x, fams, c, cross, any(r[-1] for r in rows))
        resid = [sum(a * b for a, b in zip(r, x)) - yi for r, yi in zip(rows, y)]
        w = [1.0 if abs(r) <= HUBER else HUBER / abs(r) for r in resid]
    return c


def fit(samples: list[Sample], base: TimeConstants) -> TimeConstants:
    """Constants fitted on `samples`: the cross-family GEMM efficiency (every family pooled), then a
    family's own where it has MIN_FAMILY_RUNS runs, with the shared constants refitted alongside."""
    if not samples:
        raise ValueError("no samples to fit")
    # the overlap efficiency starts at one half: from 1 no run would sit in the regime that informs it
    pooled = _fit(samples, replace(base, gemm_efficiency=(), overlap_efficiency=0.5), ["*"], None)
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.family] = counts.get(s.family, 0) + 1
    own = sorted(f for f, n in counts.items() if n >= MIN_FAMILY_RUNS)
    fams = own + (["*"] if any(counts[f] < MIN_FAMILY_RUNS for f in counts) else [])
    start = replace(pooled, gemm_efficiency=tuple((f, pooled.cross_family) for f in own))
    return _fit(samples, start, fams, pooled.cross_family)


def predict(s: Sample, c: TimeConstants) -> float:
    """Predicted seconds of one optimizer step per GPU for a sample under constants `c`."""
    return sum(assemble(s.columns, c, c.efficiency(s.family)[0])) + s.columns.offload


def loso(samples: list[Sample], base: TimeConstants, evaluate: list[Sample] | None = None) -> dict[str, float]:
    """{sample id: predicted seconds} for every sample of `evaluate` (default: `samples`), each
    predicted by constants fitted on `samples` of the other sources only."""
    out = {}
    for source in sorted({s.source for s in (evaluate or samples)}):
        train = [s for s in samples if s.source != source]
        c = fit(train, base)
        for s in (evaluate or samples):
            if s.source == source:
                out[s.id] = predict(s, c)
    return out
