"""The real-GPU range of a memory figure: how far published runs of the same kind of setup measured
from gpuplan's estimate, held out by source.

API: `setup_kind(setup, stack) -> Kind`, `figure_range(kind, figure) -> Range`, `bounds(nbytes, r)`,
`headroom(capacity, nbytes, r)`; for the recorder: `evidence_rows(memory_errors)`, `simulated_rows()`,
`build_table(rows, sim)`. The estimate reads only the recorded table (data/published/ranges_recorded.json,
written by `python benchmarks/published.py --record`), never the evidence itself, so it stays fast.

A kind is (stack, method, figure):
- stack: the evidence's `stack` field collapsed to what an estimate can know about its user.
  `hf` = transformers' modelling code with peft's adapters (HF Trainer/TRL, and peft's own plain
  loop: `peft-loop`), gpuplan's default; `torchtune`; `other` = stacks with their own model code or
  training loop (LitGPT, Answer.AI's FSDP1 script, and any stack a new source names).
- method: full / lora / qlora, with the adapter when it is not plain LoRA (`lora-dora`, `lora-ia3`)
  and the objective when it is not SFT (`lora+grpo`): every published run is SFT with LoRA or none.
- figure: the MemoryEstimate figure a published figure is compared with (planner/io/published.py).

What "held out" means here. No memory constant is fitted on the published runs, so every row's error
is already out of sample: the estimate never saw the run. What is learnt from the rows is the range
itself, above all its bias (the kind's typical signed error). That is what is held out by source: a
row's held-out error is `b + (e - b_without)`, its signed error e taken relative to the bias b_without
that the kind's *other* sources give, and put back on the bias b of all sources. Where the sources of
a kind agree, this is e; where they disagree, it is further out than e (a new source may be as far
from the pool as each known one was), which is what a user of a source not in the evidence faces.
(This is the cross-validation interval of a bias-only predictor with sources as folds: the bias plus
the quantiles of its out-of-fold residuals, as in the CV/jackknife intervals of Barber, Candes, Ramdas
and Tibshirani, "Predictive inference with the jackknife+", Ann. Statist. 49(1), 2021, Sec. 1-2,
kept signed here because the errors are not symmetric.)
The bias of a set of rows is the median of its per-source medians (every source one vote, so a
131-run CSV does not outvote a README table). The range is the 10th to 90th percentile of the
held-out errors, each source's rows sharing one vote (`quantile`: weighted, midpoint rule, clamped to
the lowest and highest; with two or three sources that is close to the lowest and highest).

A kind needs MIN_SOURCES sources and MIN_ROWS rows for a range of its own; otherwise the range of
all stacks with that method and figure is used, then of every method with that figure, each widened
to cover the kind's own rows (said so in `fallback` and `why`). A method no published run covers
gets the simulator's agreement with the estimate (data/measurements/accuracy_simulate_*.json) and a
statement that no real-GPU evidence covers it.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from ..io.catalog import data_dir
from ..io.published import RANGES_FILE
from ..specs.enums import Choice, Objective
from ..specs.setup import TrainingSetup

FIGURES = ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes")
FIGURE_NAMES = {"peak_allocated_bytes": "peak allocated", "peak_reserved_bytes": "peak reserved",
                "device_total_bytes": "device total"}
QUANTILES = (0.1, 0.9)
MIN_SOURCES = 2      # leave one source out needs another source to learn the bias from
MIN_ROWS = 5
ANY = "*"
MIN_ERROR = -0.9     # a range reaching below -90% would put the real figure at 10x the estimate or more: clamped


class EvidenceStack(Choice):
    HF = "hf"
    TORCHTUNE = "torchtune"
    OTHER = "other"


class Evidence(Choice):
    PUBLISHED = "published"       # real-GPU runs others published (data/published/)
    SIMULATED = "simulated"       # gpuplan's simulator (data/measurements/accuracy_simulate_*.json)


class Fallback(Choice):
    NONE = ""                                  # the kind's own rows
    ALL_STACKS = "all stacks"                  # every stack's rows of the method and figure
    ALL_METHODS = "all stacks and methods"     # every row of the figure
    SIMULATOR = "simulator"                    # no published row has the method


# data/published/*.json `stack` -> the kind's stack (data/published/README.md lists the stacks)
_EVIDENCE_STACKS = {"hf": EvidenceStack.HF, "peft-loop": EvidenceStack.HF, "torchtune": EvidenceStack.TORCHTUNE}


def evidence_stack(published_stack: str) -> EvidenceStack:
    """The kind's stack for a published source's `stack` field: `other` for any stack not listed."""
    return _EVIDENCE_STACKS.get(published_stack, EvidenceStack.OTHER)


def method_label(setup: TrainingSetup) -> str:
    """full / lora / qlora, '-<adapter>' for DoRA or a non-LoRA peft method, '+<objective>' beyond SFT."""
    label = setup.method.value
    if setup.adapter is not None:
        label += "-" + setup.adapter.peft_type.lower().replace("_", "-")
    elif setup.method.value != "full" and setup.lora.use_dora:
        label += "-dora"
    if setup.objective is not Objective.SFT:
        label += "+" + setup.objective.value
    return label


@dataclass(frozen=True)
class Kind:
    stack: EvidenceStack
    method: str


def setup_kind(setup: TrainingSetup, stack: EvidenceStack = EvidenceStack.HF) -> Kind:
    return Kind(stack, method_label(setup))


@dataclass(frozen=True)
class EvidenceRow:
    """One published memory figure's signed error (a fraction: (estimate - published) / published)."""

    key: str              # run id | published figure kind (errors_recorded.json's key)
    source: str           # data/published file
    stack: str            # EvidenceStack value
    method: str           # method_label of the run's mapping
    figure: str           # MemoryEstimate attribute compared with
    error: float
    held_out: bool        # split.json: a source never looked at while tuning


@dataclass(frozen=True)
class Range:
    """The signed-error range of one kind's figure, and where it comes from."""

    group: str                    # "stack|method|figure" the rows came from ("*" for any)
    evidence: Evidence
    rows: int
    sources: tuple[str, ...]
    bias: float                   # median of per-source median signed errors (fraction)
    low: float                    # 10th percentile of the held-out errors (fraction)
    high: float                   # 90th percentile
    median_abs: float             # median |held-out error| (sources one vote each)
    worst: float                  # the held-out error of largest magnitude
    held_out: bool                # False only where a single source leaves nothing to hold out
    fallback: Fallback = Fallback.NONE
    why: str = ""                 # how the range was found where not from the kind's own rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(sources=list(self.sources), evidence=self.evidence.value, fallback=self.fallback.value)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Range":
        return Range(**{**d, "sources": tuple(d["sources"]), "evidence": Evidence(d["evidence"]),
                        "fallback": Fallback(d["fallback"])})


def quantile(values: list[float], p: float, weights: list[float] | None = None) -> float:
    """Weighted quantile, midpoint rule: the sorted values sit at the middle of their cumulative weight,
    p is interpolated between them and clamped to the lowest and highest (equal weights: Hazen's rule)."""
    w = weights or [1.0] * len(values)
    pairs = sorted(zip(values, w))
    total = sum(x for _, x in pairs)
    pos, cum = [], 0.0
    for _, x in pairs:
        pos.append((cum + x / 2) / total)
        cum += x
    if p <= pos[0]:
        return pairs[0][0]
    for i in range(1, len(pairs)):
        if p <= pos[i]:
            t = (p - pos[i - 1]) / (pos[i] - pos[i - 1])
            return pairs[i - 1][0] + t * (pairs[i][0] - pairs[i - 1][0])
    return pairs[-1][0]


def source_weights(rows: list["EvidenceRow"]) -> list[float]:
    """1 / (rows of the row's source): every source one vote in a quantile, as in the bias."""
    n: dict[str, int] = {}
    for r in rows:
        n[r.source] = n.get(r.source, 0) + 1
    return [1.0 / n[r.source] for r in rows]


def bias(rows: Iterable[EvidenceRow]) -> float:
    """Median of the per-source median signed errors: every source one vote."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r.source, []).append(r.error)
    return statistics.median(statistics.median(v) for v in by.values())


def held_out_errors(rows: list[EvidenceRow]) -> list[float]:
    """b + (e - b_without) per row, b_without the bias of the rows of every other source (one source
    left out at a time); needs at least two sources."""
    sources = {r.source for r in rows}
    if len(sources) < 2:
        raise ValueError("leaving one source out needs at least two sources")
    b = bias(rows)
    without = {s: bias([r for r in rows if r.source != s]) for s in sources}
    return [b + (r.error - without[r.source]) for r in rows]


def _summary(group: str, rows: list[EvidenceRow], cover: list[float] = (), fallback: Fallback = Fallback.NONE,
             why: str = "") -> Range:
    """The Range of `rows` held out by source, widened to cover the errors `cover` (a kind's own rows)."""
    sources = tuple(sorted({r.source for r in rows}))
    if len(sources) >= 2:
        errs, held = held_out_errors(rows), True
    else:
        errs, held = [r.error for r in rows], False
    w = source_weights(rows)
    lo, hi = quantile(errs, QUANTILES[0], w), quantile(errs, QUANTILES[1], w)
    if cover:
        lo, hi = min(lo, *cover), max(hi, *cover)
    return Range(group, Evidence.PUBLISHED, len(rows), sources, round(bias(rows), 4), round(lo, 4), round(hi, 4),
                 round(quantile([abs(e) for e in errs], 0.5, w), 4), round(max(errs, key=abs), 4), held,
                 fallback, why)


def _enough(rows: list[EvidenceRow]) -> bool:
    return len(rows) >= MIN_ROWS and len({r.source for r in rows}) >= MIN_SOURCES


def group_ranges(rows: list[EvidenceRow]) -> dict[str, Range]:
    """{"stack|method|figure": Range} of every group with enough rows, at the three levels (the kind,
    all stacks, all stacks and methods): the table benchmarks print."""
    groups: dict[str, list[EvidenceRow]] = {}
    for r in rows:
        for key in (f"{r.stack}|{r.method}|{r.figure}", f"{ANY}|{r.method}|{r.figure}", f"{ANY}|{ANY}|{r.figure}"):
            groups.setdefault(key, []).append(r)
    return {k: _summary(k, v) for k, v in sorted(groups.items()) if _enough(v) or k.startswith(f"{ANY}|{ANY}|")}


def kind_range(rows: list[EvidenceRow], stack: str, method: str, figure: str) -> Range | None:
    """The range for (stack, method, figure) from published rows, with the fallback chain; None where
    no published row has this method (the simulator answers)."""
    if not any(r.method == method for r in rows):
        return None
    own = [r for r in rows if r.stack == stack and r.method == method and r.figure == figure]
    name = f"{stack} {method} {FIGURE_NAMES[figure]}"
    if _enough(own):
        return _summary(f"{stack}|{method}|{figure}", own)
    cover = [r.error for r in own]
    have = f"{len(own)} run(s) from {len({r.source for r in own})} source(s)" if own else "no published run"
    for key, pick, fallback in ((f"{ANY}|{method}|{figure}", lambda r: r.method == method, Fallback.ALL_STACKS),
                                (f"{ANY}|{ANY}|{figure}", lambda r: True, Fallback.ALL_METHODS)):
        pool = [r for r in rows if r.figure == figure and pick(r)]
        if _enough(pool) or (fallback is Fallback.ALL_METHODS and pool):
            why = (f"{name}: {have}, too few for a range of its own; the range of {fallback.value} for "
                    f"{FIGURE_NAMES[figure]}" + (", widened to cover its own runs" if own else ""))
            return _summary(key, pool, cover, fallback, why)
    return None


def coverage(rows: list[EvidenceRow]) -> list[tuple[EvidenceRow, Range | None, bool]]:
    """(row, the range its kind gets from every *other* source, whether the row's error lies inside):
    the check of the ranges themselves, one source held out at a time, through the same fallbacks an
    estimate takes. A nominal 10th-90th percentile range should hold about 80% of the rows."""
    out = []
    for source in sorted({r.source for r in rows}):
        rest = [r for r in rows if r.source != source]
        seen: dict[tuple[str, str, str], Range | None] = {}
        for r in (r for r in rows if r.source == source):
            k = (r.stack, r.method, r.figure)
            if k not in seen:
                seen[k] = kind_range(rest, *k)
            rng = seen[k]
            out.append((r, rng, rng is not None and rng.low <= r.error <= rng.high))
    return out


@dataclass(frozen=True)
class SimRow:
    method: str
    error: float          # (estimate - simulated) / simulated, a fraction
    matrix: str           # accuracy_simulate_<topic>.json


def simulated_rows() -> list[SimRow]:
    """Every recorded simulator accuracy row (data/measurements/accuracy_simulate*.json) that ran."""
    out = []
    for path in sorted((data_dir() / "measurements").glob("accuracy_simulate*.json")):
        for r in json.loads(path.read_text()).get("results", []):
            if r.get("error") or r.get("error_pct") is None:
                continue
            out.append(SimRow(method_label(TrainingSetup.from_dict(r.get("setup", {}))), r["error_pct"] / 100, path.name))
    return out


def simulated_range(sim: list[SimRow], method: str | None) -> Range:
    """The estimate's agreement with the simulator for `method`; every simulated row where none has
    it (or for method None: the table's entry for methods it does not know, `{method}` in its text)."""
    own = [s for s in sim if s.method == method]
    pool, group = (own, f"sim|{method}") if own else (sim, f"sim|{ANY}")
    errs = [s.error for s in pool]
    return Range(group, Evidence.SIMULATED, len(pool), tuple(sorted({s.matrix for s in pool})),
                 round(statistics.median(errs), 4), round(min(errs), 4), round(max(errs), 4),
                 round(statistics.median(abs(e) for e in errs), 4), round(max(errs, key=abs), 4), False, Fallback.SIMULATOR,
                 f"no real-GPU evidence covers {method or '{method}'}: the range is the estimate against the simulated "
                 f"step ({len(pool)} simulated rows{'' if own else ' of every method'}, lowest to highest), which leaves "
                 "out what a real GPU adds (allocator, CUDA context, a stack's own code)")


def build_table(rows: list[EvidenceRow], sim: list[SimRow]) -> dict[str, Any]:
    """The content of ranges_recorded.json: the rows, the group table, and the resolved range of every
    (stack, method, figure) an estimate can ask for."""
    methods = sorted({r.method for r in rows} | {s.method for s in sim})
    kinds: dict[str, Any] = {}
    for stack in EvidenceStack:
        for method in methods:
            for figure in FIGURES:
                r = kind_range(rows, stack.value, method, figure) or (simulated_range(sim, method) if sim else None)
                if r is not None:
                    kinds[f"{stack.value}|{method}|{figure}"] = r.to_dict()
    return {"about": ("memory ranges per kind of setup (planner/plans/ranges.py: held out by source, "
                      f"{int(QUANTILES[0] * 100)}th-{int(QUANTILES[1] * 100)}th percentile), written by "
                      "benchmarks/published.py --record from the same errors as errors_recorded.json"),
            "quantiles": list(QUANTILES), "min_sources": MIN_SOURCES, "min_rows": MIN_ROWS,
            "groups": {k: v.to_dict() for k, v in group_ranges(rows).items()},
            "simulated_only": simulated_range(sim, None).to_dict() if sim else None,
            "kinds": kinds,
            "rows": [asdict(r) for r in rows]}


def evidence_rows(errors: Iterable[Any]) -> list[EvidenceRow]:
    """EvidenceRows of planner/plans/evidence.py MemoryError_ rows."""
    return [EvidenceRow(e.key, e.run.file, evidence_stack(e.run.stack).value, method_label(e.run.setup()),
                        e.compared_with, round(e.error_pct / 100, 6), e.held_out) for e in errors]


# ---- estimate time: the recorded table only -------------------------------------------------------

def ranges_path():
    return data_dir() / "published" / RANGES_FILE


@lru_cache(maxsize=1)
def recorded_table() -> dict[str, Any]:
    """ranges_recorded.json ({} where it was never recorded)."""
    path = ranges_path()
    return json.loads(path.read_text()) if path.exists() else {}


def figure_range(kind: Kind, figure: str, table: dict[str, Any] | None = None) -> Range | None:
    """The recorded range of `kind`'s `figure`; a method the table does not know gets the simulator's
    range of every method; None where nothing was recorded."""
    t = recorded_table() if table is None else table
    hit = t.get("kinds", {}).get(f"{kind.stack.value}|{kind.method}|{figure}")
    if hit is not None:
        return Range.from_dict(hit)
    sim = t.get("simulated_only")
    if sim is None:
        return None
    return Range.from_dict({**sim, "why": sim["why"].replace("{method}", kind.method)})


def bounds(nbytes: int, r: Range) -> tuple[int, int]:
    """(lowest, highest) real figure the range allows for an estimate of `nbytes`: published =
    estimate / (1 + error), so the highest comes from the lowest (most negative) error."""
    lo, hi = max(r.low, MIN_ERROR), max(r.high, MIN_ERROR)
    return round(nbytes / (1 + hi)), round(nbytes / (1 + lo))


@dataclass(frozen=True)
class Headroom:
    """What is left of `capacity` by the estimate and at both ends of the range (negative: over)."""

    estimate: int
    low: int              # at the range's highest real figure
    high: int             # at its lowest
    verdict: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {"headroom_bytes": self.estimate, "headroom_low_bytes": self.low, "headroom_high_bytes": self.high,
                "verdict": self.verdict}


def headroom(capacity: int, nbytes: int, r: Range) -> Headroom:
    """Headroom of an estimate of `nbytes` on `capacity` bytes, over the range: 'fits' (even at the
    range's top), 'may not fit' (fits by the estimate, not at the top), 'may fit' (does not fit by the
    estimate, does at the bottom) or 'does not fit'."""
    lo_b, hi_b = bounds(nbytes, r)
    est, low, high = capacity - nbytes, capacity - hi_b, capacity - lo_b
    if est >= 0:
        verdict = "fits" if low >= 0 else "may not fit"
    else:
        verdict = "may fit" if high >= 0 else "does not fit"
    return Headroom(est, low, high, verdict)
