"""fit(): the largest micro-batch and sequence length of a setup on one GPU, and, when it does not
fit, the cheapest knobs that make it fit (cheapest: the most tokens/s after the change).

API: `fit(model, setup, gpu) -> FitResult`; `FitResult.to_dict()`.
Memory grows with batch and sequence length (tests/planner/test_fit.py), so both are bisected.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any, Callable

from ..techniques import images   # an image batch's image tokens set the shortest sequence
from ..specs.gpu import GpuSpec
from ..specs.enums import Loss, Method, Optimizer, Precision
from ..memory.load import run_device_bounds
from ..specs.model import ModelSpec
from ..specs.errors import PlannerError
from ..techniques.fp8 import check_gpu as fp8_check_gpu   # no fp8 tensor cores: refused
from ..specs.setup import Checkpointing, TrainingSetup
from ..speed.throughput import step_time
from ..io.published import load_published
from .evidence import memory_errors

MAX_BATCH = 4096
SEQ_STEP = 64          # sequence lengths are searched in multiples of this


def _largest(ok: Callable[[int], bool], lo: int, limit: int) -> int:
    """Largest n in [lo, limit] with ok(n) (ok monotone decreasing); lo - 1 if not even ok(lo)."""
    if not ok(lo):
        return lo - 1
    hi = lo
    while hi < limit and ok(min(hi * 2, limit)):
        hi = min(hi * 2, limit)
    if hi == limit:
        return hi
    top = min(hi * 2, limit)          # ok(hi), not ok(top)
    while top - hi > 1:
        mid = (hi + top) // 2
        hi, top = (mid, top) if ok(mid) else (hi, mid)
    return hi


def max_context(model: ModelSpec) -> int:
    # a config without a context length: assume 128k, Llama-3.1's
    return model.max_positions or 131072


@dataclass(frozen=True)
class KnobOption:
    """A change of one or two knobs, with what it gives on the GPU."""

    changes: tuple[tuple[str, str], ...]      # (flag, value), as typed on the command line
    batch_size: int                           # the largest micro-batch that fits after the change
    device_total_bytes: int                   # at that micro-batch
    tokens_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"changes": dict(self.changes), "batch_size": self.batch_size,
                "device_total_bytes": self.device_total_bytes, "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class FitResult:
    gpu: GpuSpec
    setup: TrainingSetup
    device_total_bytes: int                 # of the setup as given
    max_batch: int                          # at the setup's sequence length (0: not even batch 1)
    max_batch_total_bytes: int | None
    max_seq_len: int                        # at the setup's micro-batch (0: none)
    max_seq_len_batch1: int                 # at micro-batch 1 (GRPO: the smallest its generation groups allow)
    knobs: tuple[KnobOption, ...] = field(default=())   # when the setup does not fit: best first
    safe_max_batch: int = 0                 # the largest micro-batch that leaves `margin` of the GPU free
    margin: float = 0.0                     # fraction of the GPU kept free (safety_margin)
    margin_source: str = ""
    source: str = "closed-form"             # which path answered (Source values): closed-form or fitted
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.device_total_bytes <= self.gpu.memory_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu.name, "memory_bytes": self.gpu.memory_bytes, "fits": self.fits,
                "device_total_bytes": self.device_total_bytes, "headroom_bytes": self.gpu.memory_bytes - self.device_total_bytes,
                "max_batch_size": self.max_batch, "max_batch_device_total_bytes": self.max_batch_total_bytes,
                "max_seq_len": self.max_seq_len, "max_seq_len_batch_1": self.max_seq_len_batch1,
                "setup": self.setup.to_dict(), "knobs": [k.to_dict() for k in self.knobs],
                "safe_max_batch_size": self.safe_max_batch, "safety_margin": self.margin,
                "safety_margin_source": self.margin_source, **({"source": self.source, "notes": list(self.notes)}
                                                               if self.source != "closed-form" else {})}


TASK_KNOBS = ("--seq-len",)   # knobs that change what is trained, not how: never a memory fix


def _knobs(setup: TrainingSetup) -> list[tuple[str, str, dict[str, Any]]]:
    """Single changes that lower memory, each as (flag, value, TrainingSetup fields)."""
    out = []
    if setup.checkpointing is Checkpointing.NONE:
        out.append(("--grad-ckpt", "on", {"checkpointing": Checkpointing.FULL}))
    if setup.loss is Loss.HF:
        out.append(("--loss", "chunked", {"loss": Loss.CHUNKED}))
    if not setup.optimizer.eight_bit:
        out.append(("--optimizer", "adamw-8bit", {"optimizer": Optimizer.ADAMW_8BIT}))
        out.append(("--optimizer", "paged-adamw-8bit", {"optimizer": Optimizer.PAGED_ADAMW_8BIT}))
    if setup.precision.autocast:
        true16 = Precision.BF16_TRUE if setup.precision is Precision.BF16_MIXED else Precision.FP16_TRUE
        out.append(("--precision", true16.value, {"precision": true16}))
    if setup.method is Method.FULL:
        out.append(("--method", "lora", {"method": Method.LORA}))
    if setup.method is not Method.QLORA:
        out.append(("--method", "qlora", {"method": Method.QLORA}))
    if setup.seq_len > 256:   # halving shorter sequences saves little next to weights and states
        out.append(("--seq-len", str(setup.seq_len // 2), {"seq_len": setup.seq_len // 2}))
    return out


class _Bounded:
    """Device totals of setups, memoized, each with a lower bound that needs no allocator replay
    (memory/load.py run_device_bounds): fits() settles on the bound what does not fit even then."""

    def __init__(self, model: ModelSpec, extra: int = 0) -> None:
        self.model, self.extra, self.bounds, self.totals = model, extra, {}, {}

    def _bounds(self, setup: TrainingSetup) -> tuple[int, Callable[[], int]]:
        if setup not in self.bounds:
            self.bounds[setup] = run_device_bounds(self.model, setup)
        return self.bounds[setup]

    def __call__(self, setup: TrainingSetup) -> int:
        if setup not in self.totals:
            self.totals[setup] = self._bounds(setup)[1]() + self.extra
        return self.totals[setup]

    def fits(self, setup: TrainingSetup, memory: float) -> bool:
        return self._bounds(setup)[0] + self.extra <= memory and self(setup) <= memory


def _try(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec) -> tuple[int, int]:
    """(largest micro-batch, its device total) for `setup` on `gpu`; (0, total at 1) if none."""
    totals = _Bounded(model)

    def total(b: int) -> int:
        return totals(setup.with_(batch_size=b))

    u = setup.batch_unit()   # GRPO: the micro-batches its generation groups divide
    top = min(setup.batch_size, MAX_BATCH, setup.max_micro_batch() or MAX_BATCH)
    k = _largest(lambda n: totals.fits(setup.with_(batch_size=n * u), gpu.memory_bytes), 1, max(top // u, 1))
    return (k * u, total(k * u)) if k > 0 else (0, total(u))


@lru_cache(maxsize=8)
def safety_margin(method: Method) -> tuple[float, str]:
    """(fraction of the GPU to keep free, where it comes from): how far published real runs of this
    method on the HF stack measured above gpuplan's device figure (data/published, planner/plans/
    evidence.py). The worst under-estimate among runs with nothing unmodelled; with fewer than two
    such runs, the median under-estimate of all of them (their packing, padding or evaluation is
    part of that gap, and the source says so); 0 where the estimate is not below the runs."""
    runs = [r for r in load_published() if r.mapping is not None and r.stack == "hf" and r.setup().method is method
            and any(f.kind.compared_with == "device_total_bytes" for f in r.memory_figures)]   # only these are estimated
    rows = [r for r in memory_errors(runs) if r.compared_with == "device_total_bytes"]
    clean = [r.error_pct for r in rows if not r.flagged]
    if len(clean) >= 2:
        under = -min(clean)
        what = f"the worst under-estimate of {len(clean)} published HF-stack {method.value} runs (nvidia-smi)"
    elif rows:
        errors = sorted(r.error_pct for r in rows)
        under = -errors[len(errors) // 2]
        what = (f"the median under-estimate of {len(rows)} published HF-stack {method.value} runs (nvidia-smi), "
                "most with features gpuplan does not model yet (packing, padding, evaluation)")
    else:
        return 0.0, f"no published HF-stack {method.value} run to take a margin from"
    return max(under, 0.0) / 100, what


def fit(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, max_knob_options: int = 5,
        memory_only: bool = False, device_total: Callable[[TrainingSetup], int] | None = None,
        source: str = "closed-form", notes: tuple[str, ...] = ()) -> FitResult:
    """FitResult of `setup` on `gpu` (one GPU as setup.parallel says). memory_only: offer only knobs
    that keep the task (no --seq-len halving) and that buy something a smaller micro-batch does not
    (a larger micro-batch than the setup's own largest, or a fit where no micro-batch fits).

    device_total: the run's device bytes of `setup` at another batch or sequence length, for a setup
    without a closed form (the app passes a sweep fitted to simulations, profiler/answer.py fitted);
    its `source` and `notes` are reported. Knobs are searched only on the closed form: any other
    change of the setup would need simulations of its own."""
    setup.validate()
    fp8_check_gpu(setup, gpu)
    vllm = int(gpu.memory_bytes * setup.vllm_colocate)   # GRPO's colocated vLLM takes its share of the GPU first
    if device_total is None:
        bounded = _Bounded(model, vllm)
        total_of, fits_in = bounded, bounded.fits
    else:
        memo: dict[TrainingSetup, int] = {}

        def total_of(s: TrainingSetup) -> int:
            if s not in memo:
                memo[s] = device_total(s) + vllm
            return memo[s]

        def fits_in(s: TrainingSetup, memory: float) -> bool:
            return total_of(s) <= memory
    given = total_of(setup)   # the run's largest phase: load, first step or step
    mem = gpu.memory_bytes

    def total_b(b: int) -> int:
        return total_of(setup.with_(batch_size=b))

    u = setup.batch_unit()   # GRPO: only multiples of this are valid micro-batches (1 otherwise)
    top = min(MAX_BATCH, setup.max_micro_batch() or MAX_BATCH)   # llama3 context parallelism: batch 1 only
    max_b = max(_largest(lambda k: fits_in(setup.with_(batch_size=k * u), mem), 1, max(top // u, 1)), 0) * u
    margin, margin_source = safety_margin(setup.method)
    safe_b = max(_largest(lambda k: fits_in(setup.with_(batch_size=k * u), mem * (1 - margin)), 1,
                          max(max_b // u, 1)), 0) * u if max_b > 0 else 0
    ctx = max_context(model) // SEQ_STEP

    def seq_ok(batch: int) -> Callable[[int], bool]:
        return lambda k: fits_in(setup.with_(batch_size=batch, seq_len=k * SEQ_STEP), mem)

    lo = -(-setup.min_seq_len() // SEQ_STEP)   # GRPO: a prompt beyond the completion
    lo = max(lo, images.image_tokens(model, setup) // SEQ_STEP + 1)   # an image batch: a text token beyond its images

    def longest(batch: int) -> int:
        k = _largest(seq_ok(batch), lo, ctx)
        return k * SEQ_STEP if k >= lo else 0   # none fits

    max_s = longest(setup.batch_size)
    max_s1 = longest(u) if setup.batch_size > u else max_s
    knobs: tuple[KnobOption, ...] = ()
    if given > mem and device_total is None:
        floor = min(max(max_b, 0), setup.batch_size) if memory_only else 0   # the setup alone reaches this
        knobs = _cheapest_knobs(model, setup, gpu, max_knob_options, memory_only, floor)
    return FitResult(gpu, setup, given, max(max_b, 0), total_b(max_b) if max_b > 0 else None, max_s, max_s1, knobs,
                     max(safe_b, 0), margin, margin_source, source, notes)


def _cheapest_knobs(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, limit: int, memory_only: bool = False,
                    floor: int = 0) -> tuple[KnobOption, ...]:
    """Single knobs, then pairs, that fit at some micro-batch above `floor`; ranked by tokens/s after
    the change. memory_only drops the knobs that change the task (TASK_KNOBS)."""
    singles = [k for k in _knobs(setup) if not (memory_only and k[0] in TASK_KNOBS)]
    found: list[KnobOption] = []
    for size in (1, 2, 3):
        for combo in itertools.combinations(singles, size):
            flags = [c[0] for c in combo]
            if len(set(flags)) < len(flags):
                continue     # two values of one flag
            changes: dict[str, Any] = {}
            for _, _, ch in combo:
                changes.update(ch)
            s = setup.with_(**changes)
            try:
                s.validate()
                if s.parallel.single_gpu is False:
                    s.parallel.validate(model=model, optimizer=s.optimizer)
                b, total = _try(model, s, gpu)
            except PlannerError:
                continue     # an impossible combination (QLoRA in fp32, 8-bit Adam with ZeRO offload, ...)
            if b <= floor:
                continue     # no fit, or no better than a smaller micro-batch of the setup as it is
            grown = s.with_(batch_size=b, grad_accum=max(1, setup.batch_size * setup.grad_accum // b))
            tps = step_time(model, grown, gpu).tokens_per_s
            found.append(KnobOption(tuple((c[0], c[1]) for c in combo), b, total, tps))
        if found:
            break        # the fewest changes that fit: do not list bigger combinations
    return tuple(sorted(found, key=lambda k: -k.tokens_per_s)[:limit])
