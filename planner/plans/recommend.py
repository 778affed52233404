"""recommend(): the cheapest, the fastest and the time-vs-cost Pareto frontier of ways to run a job.

API (pure; the CLI and the dashboard call it):
    recommend(model, dataset_tokens, epochs, Constraints(...), SearchSpace(...)) -> Recommendation
    Recommendation.cheapest / .fastest / .frontier (Plans), .closest (Hints when nothing qualifies),
    .to_dict() (JSON/records), .considered (configurations looked at).

The search: GPU type x count x sharding x method x precision x optimizer x checkpointing x
micro-batch (the largest that fits). Memory does not depend on the GPU type, so each setup is
estimated once and its device total checked against every GPU; the micro-batch is found by
bisection over the (monotone) totals of batch 1, 2, 4, ... Every fitting (setup, GPU, count) is
timed (planner/speed/throughput.py) and priced (planner/plans/cost.py).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from ..io.catalog import all_gpus, resolve_gpu
from ..specs.gpu import GpuSpec
from ..specs.enums import Loss, Method, Objective, Optimizer, Precision
from ..specs.errors import PlannerError
from ..memory.fsdp1 import step_setup
from ..memory.load import run_device_bounds
from ..specs.model import ModelSpec
from ..specs.parallel import Fsdp, ParallelSpec
from .cost import parse_duration, parse_usd
from .plan import Plan, make_plan
from ..memory.result import GIB
from ..specs.setup import Checkpointing, TrainingSetup


@dataclass(frozen=True)
class Constraints:
    """What the user allows; None means no limit."""

    methods: tuple[Method, ...] = tuple(Method)
    max_gpus: int = 8
    deadline_s: float | None = None
    budget_usd: float | None = None
    providers: tuple[str, ...] | None = None
    gpus: tuple[str, ...] | None = None        # catalog names allowed (None: all)
    spot: bool = False                         # price at spot where a spot price is recorded
    require_price: bool = True                 # only GPUs some allowed provider rents


@dataclass(frozen=True)
class SearchSpace:
    """The knobs searched besides GPU type, count and method."""

    seq_len: int = 1024
    global_batch: int = 64                     # sequences per optimizer step (grad-accum fills it)
    precisions: tuple[Precision, ...] = (Precision.BF16_MIXED, Precision.BF16_TRUE,
                                         Precision.FP16_MIXED, Precision.FP16_TRUE)
    optimizers: tuple[Optimizer, ...] = (Optimizer.ADAMW_FUSED, Optimizer.ADAMW_8BIT)
    checkpointing: tuple[Checkpointing, ...] = (Checkpointing.NONE, Checkpointing.FULL)
    max_micro_batch: int = 64
    min_micro_batch: int = 1                   # KTOTrainer needs 2 (its KL pairs)
    base: TrainingSetup = field(default_factory=TrainingSetup)   # LoRA rank, targets, attention, loss
    mfu: float | None = None
    fsdp_version: int = 2                      # the FSDP candidates' step: 1 FSDP1's where modelled (memory/fsdp1.py)


@dataclass(frozen=True)
class Hint:
    """A knob that gets closest when nothing qualifies, and by how much."""

    knob: str
    message: str
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "message": self.message, "plan": self.plan.to_dict() if self.plan else None}


@dataclass(frozen=True)
class Recommendation:
    cheapest: Plan | None
    fastest: Plan | None
    frontier: tuple[Plan, ...]                 # fastest first; each cheaper than every faster one
    considered: int                            # configurations (setup x GPU x count x micro-batch) looked at
    fitting: int                               # (setup, GPU, count) with a micro-batch that fits
    qualifying: int                            # of those, within deadline, budget and priced
    estimates: int                             # memory estimates computed
    closest: tuple[Hint, ...] = ()
    notes: tuple[str, ...] = ()
    plans: tuple[Plan, ...] = field(default=(), repr=False)   # every qualifying plan

    def counts(self) -> str:
        """One line on how much was searched, for the CLI and the dashboard."""
        return (f"{self.considered:,} configurations considered, {self.estimates:,} memory estimates, "
                f"{self.fitting:,} fit, {self.qualifying:,} meet the constraints")

    def to_dict(self) -> dict[str, Any]:
        return {
            "cheapest": self.cheapest.to_dict() if self.cheapest else None,
            "fastest": self.fastest.to_dict() if self.fastest else None,
            "frontier": [p.to_dict() for p in self.frontier],
            "considered": self.considered, "fitting": self.fitting, "qualifying": self.qualifying,
            "estimates": self.estimates, "closest": [h.to_dict() for h in self.closest],
            "notes": list(self.notes),
        }


def _has_bf16(gpu: GpuSpec) -> bool:
    return gpu.raw["peak_flops"].get("bf16") is not None


def _precision_ok(p: Precision, gpu: GpuSpec) -> bool:
    """bf16 where the card has it; fp16 only on cards without bf16 (T4, V100): no loss scaling else."""
    if p is Precision.FP32:
        return True
    return (p.compute_dtype.value == "bf16") == _has_bf16(gpu)


def _counts(max_gpus: int) -> list[int]:
    out, n = [], 1
    while n <= max_gpus:
        out.append(n)
        n *= 2
    return out


def parallel_specs(count: int) -> list[ParallelSpec]:
    """Ways to spread over `count` GPUs: DDP, ZeRO-2, FSDP full-shard; 8 GPUs per node."""
    if count == 1:
        return [ParallelSpec()]
    per_node = min(count, 8)
    nodes = count // per_node
    return [ParallelSpec(gpus=per_node, nodes=nodes), ParallelSpec(gpus=per_node, nodes=nodes, zero=2),
            ParallelSpec(gpus=per_node, nodes=nodes, fsdp=Fsdp.FULL)]


class _Totals:
    """Device totals per setup, memoized: estimate() runs once per distinct setup, and the caching
    allocator is replayed only for a setup whose lower bound (reserved taken as allocated) fits."""

    def __init__(self, model: ModelSpec) -> None:
        self.model, self.cache, self.bounds, self.count = model, {}, {}, 0

    def low(self, setup: TrainingSetup) -> int:
        """A lower bound of the device total, without the allocator's replay (memory/load.py run_device_bounds)."""
        if setup not in self.bounds:
            self.bounds[setup] = run_device_bounds(self.model, setup)
            self.count += 1
        return self.bounds[setup][0]

    def __call__(self, setup: TrainingSetup) -> int:
        if setup not in self.cache:
            self.low(setup)
            self.cache[setup] = self.bounds[setup][1]()   # the run's largest phase, replayed (memory/load.py)
        return self.cache[setup]


# the loss each TRL trainer runs: DPO, KTO and GRPO score with TRL's fused LM head; ORPO and reward
# modelling read the model's own logits / scores (their setup checks in specs/setup.py say so)
OBJECTIVE_LOSS = {Objective.SFT: Loss.HF, Objective.DPO: Loss.TRL, Objective.KTO: Loss.TRL, Objective.GRPO: Loss.TRL,
                  Objective.ORPO: Loss.HF, Objective.RM: Loss.HF}


def objective_base(objective: Objective) -> TrainingSetup:
    """The base setup recommend searches around for `objective`: its trainer's loss, GRPOConfig's defaults."""
    if objective not in OBJECTIVE_LOSS:
        raise PlannerError(f"recommend does not search --objective {objective.value} (TRL 1.12's PPOTrainer is planned "
                           "on one GPU by `gpuplan estimate --objective ppo`): recommend plans "
                           + ", ".join(o.value for o in OBJECTIVE_LOSS))
    return TrainingSetup(objective=objective, loss=OBJECTIVE_LOSS[objective])


def _refused(setup: TrainingSetup) -> bool:
    """Whether the objective refuses this candidate (e.g. planned on one GPU only): skipped, not an error."""
    try:
        setup.validate()
    except PlannerError:
        return True
    return False


REFUSED_TOTAL = 2**62   # the device total of a micro-batch the objective refuses: it fits no GPU


def _batches(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(limit)) + 1)]


def _grad_accum(global_batch: int, micro: int, dp: int) -> int:
    return max(1, math.ceil(global_batch / (micro * dp)))


def _largest_fitting(total: Callable[[int], int], memory: int, space: SearchSpace, dp: int = 1,
                     low: Callable[[int], int] | None = None) -> tuple[int, int, int]:
    """(micro-batch, its device total, micro-batches decided); micro-batch 0 (and the total at 1) if none fits.

    Bisection over powers of two: memory grows with the micro-batch (tests/planner/test_fit.py).
    The micro-batch times the data-parallel ranks stays within the global batch (the user's choice).
    `low`: a lower bound of `total` (no allocator replay): where it exceeds `memory`, so does the total.
    With no micro-batch fitting, the total at 1 is returned as a function (it is replayed only if asked)."""
    low = low or total
    cap = max(1, min(space.max_micro_batch, space.global_batch // max(dp, 1)))
    batches = [b for b in _batches(space.max_micro_batch) if b <= cap and b >= space.min_micro_batch]
    if not batches:
        return 0, lambda: total(space.min_micro_batch), 1
    if low(batches[0]) > memory or total(batches[0]) > memory:
        return 0, lambda: total(batches[0]), len(batches)
    best, lo, hi = (batches[0], total(batches[0])), 1, len(batches) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if low(batches[mid]) <= memory and (t := total(batches[mid])) <= memory:
            best, lo = (batches[mid], t), mid + 1
        else:
            hi = mid - 1
    return best[0], best[1], len(batches)


def _batch_totals(totals: _Totals, base: TrainingSetup,
                  space: SearchSpace) -> tuple[Callable[[int], int], Callable[[int], int]]:
    """(device total, its lower bound without the allocator's replay) of `base` at micro-batch b
    (grad-accum filling the global batch): the same base is checked against every GPU type."""
    dp = base.parallel.dp
    made: dict[int, TrainingSetup] = {}   # the bisections ask for a micro-batch several times

    def at(b: int) -> TrainingSetup:
        setup = made.get(b)
        if setup is None:
            setup = made[b] = base.with_(batch_size=b, grad_accum=_grad_accum(space.global_batch, b, dp))
        return setup

    def checked(measure: Callable[[TrainingSetup], int]) -> Callable[[int], int]:
        def total(b: int) -> int:
            setup = at(b)
            if base.objective is not Objective.SFT and _refused(setup):   # e.g. GRPO's generation-batch multiple
                return REFUSED_TOTAL
            return measure(setup)
        return total
    return checked(totals), checked(totals.low)


def _base_setups(model: ModelSpec, c: Constraints, space: SearchSpace, multi: bool) -> Iterable[TrainingSetup]:
    counts = _counts(c.max_gpus) if multi else [1]
    for method, prec, opt, ckpt, count in itertools.product(c.methods, space.precisions, space.optimizers,
                                                            space.checkpointing, counts):
        if method is Method.QLORA and prec is Precision.FP32:
            continue
        if method is not Method.FULL and opt.full_only:
            continue   # GaLore, torchao's and Adam-mini's states are planned per full weight (specs/optim.py refuses)
        for par in parallel_specs(count):
            if method is not Method.FULL and par.zero == 2:
                continue   # adapters' gradients are tiny: ZeRO-2 buys LoRA nothing over DDP
            setup = space.base.with_(method=method, precision=prec, optimizer=opt, checkpointing=ckpt,
                                     seq_len=space.seq_len, parallel=par, batch_size=1, grad_accum=1,
                                     base_dtype=None if method is Method.FULL else space.base.base_dtype,
                                     # the search picks --precision presets: a recipe's own choices are not searched
                                     weights=None, autocast=None, kbit_upcast=None)
            yield step_setup(model, setup, space.fsdp_version)[0] if space.fsdp_version == 1 else setup


def pareto_frontier(plans: Iterable[Plan]) -> tuple[Plan, ...]:
    """Plans no other plan beats on both hours and dollars; fastest first, each cheaper than the last.

    A slower plan joins only if it is at least 0.1% cheaper: plans that cost the same to the cent
    (DDP of adapters scales almost linearly) are one point, the fastest of them."""
    out: list[Plan] = []
    for p in sorted(plans, key=lambda p: (p.hours, p.usd)):
        if not out or p.usd < out[-1].usd * (1 - FRONTIER_TOLERANCE):
            out.append(p)
    return tuple(out)


FRONTIER_TOLERANCE = 1e-3


def _search(model: ModelSpec, c: Constraints, space: SearchSpace, totals: _Totals, dataset_tokens: int,
            epochs: float, skipped: list | None = None) -> tuple[list[Plan], list[tuple[int, TrainingSetup, GpuSpec]], int]:
    """(every fitting plan, the non-fitting (shortfall, setup, gpu), configurations considered); candidates
    the objective refuses (multi-GPU ones of an objective planned on one GPU) go to `skipped`."""
    gpus = [resolve_gpu(g) for g in c.gpus] if c.gpus else all_gpus()
    if c.require_price:
        gpus = [g for g in gpus if any(not c.providers or p.provider in c.providers for p in g.prices)]
    multi = c.max_gpus > 1
    plans, misses, considered = [], [], 0
    for base in _base_setups(model, c, space, multi):
        first = space.min_micro_batch   # the search's first micro-batch, grad-accum filling the global batch
        if base.objective is not Objective.SFT and _refused(base.with_(
                batch_size=first, grad_accum=_grad_accum(space.global_batch, first, base.parallel.dp))):
            if skipped is not None:
                skipped.append(base)
            continue
        if base.peft:
            base.lora_targets(model)
        by_batch, low = _batch_totals(totals, base, space)
        for gpu in gpus:
            if not _precision_ok(base.precision, gpu):
                continue
            b, total, decided = _largest_fitting(by_batch, gpu.memory_bytes, space, base.parallel.dp, low)
            considered += decided     # the micro-batches the bisection settled
            if b == 0:   # (shortfall at micro-batch 1, its lower bound), base, gpu
                misses.append(((lambda t=total, m=gpu.memory_bytes: t() - m), low(1) - gpu.memory_bytes, base, gpu))
                continue
            setup = base.with_(batch_size=b, grad_accum=_grad_accum(space.global_batch, b, base.parallel.dp))
            plans.append(make_plan(model, setup, gpu, dataset_tokens, epochs, total, c.providers, space.mfu, c.spot))
    return plans, misses, considered


def _qualifies(p: Plan, c: Constraints) -> bool:
    if c.require_price and not p.costs:
        return False
    if c.deadline_s is not None and p.seconds > c.deadline_s:
        return False
    return c.budget_usd is None or p.usd <= c.budget_usd


def _different(a: Plan, b: Plan) -> bool:
    """A runner-up worth naming: another GPU type, count or method, not a sibling knob."""
    return (a.gpu.name, a.gpus, a.setup.method) != (b.gpu.name, b.gpus, b.setup.method)


def _why_cheapest(best: Plan, others: list[Plan]) -> str:
    b = best.best
    rate = f"${b.usd_per_gpu_hour:.2f}/GPU-h at {b.provider}" if b else "no price"
    runner = min((p for p in others if _different(p, best)), key=lambda p: p.usd, default=None)
    tail = (f"; the next cheapest ({runner.describe()}) costs ${runner.usd:,.2f} (+{100 * (runner.usd / best.usd - 1):.0f}%)"
            if runner and best.usd > 0 else "")
    return (f"lowest cost: {best.gpus} GPU(s) x {best.hours:.2f} h x {rate} = ${best.usd:,.2f}, "
            f"{best.step.tokens_per_s:,.0f} tokens/s{tail}")


def _why_fastest(best: Plan, others: list[Plan]) -> str:
    runner = min((p for p in others if _different(p, best)), key=lambda p: p.hours, default=None)
    tail = (f"; the next fastest ({runner.describe()}) takes {runner.hours:.2f} h (+{100 * (runner.hours / best.hours - 1):.0f}%)"
            if runner else "")
    return f"shortest time: {best.hours:.2f} h at {best.step.tokens_per_s:,.0f} tokens/s for ${best.usd:,.2f}{tail}"


def _within_range(cheapest: Plan, fastest: Plan, good: list[Plan]) -> list[str]:
    """Notes where the runner-up lies inside the winner's cross-validated range: the time model
    cannot tell them apart, so the ranking between them is not settled by it."""
    notes = []
    runner = min((p for p in good if _different(p, cheapest)), key=lambda p: p.usd, default=None)
    rng = cheapest.usd_range
    if runner and rng and runner.usd <= rng[1]:
        notes.append(f"cheapest: the next cheapest ({runner.describe()}, ${runner.usd:,.2f}) is within the cheapest's "
                     f"cost range ${rng[0]:,.2f}-${rng[1]:,.2f} (cross-validated time error of {cheapest.gpu.architecture} "
                     f"{cheapest.setup.method.value}); either may be cheaper in practice")
    runner = min((p for p in good if _different(p, fastest)), key=lambda p: p.hours, default=None)
    lo, hi = fastest.hours_range
    if runner and runner.hours <= hi:
        notes.append(f"fastest: the next fastest ({runner.describe()}, {runner.hours:.2f} h) is within the fastest's "
                     f"time range {lo:.2f}-{hi:.2f} h (cross-validated time error of {fastest.gpu.architecture} "
                     f"{fastest.setup.method.value}); either may be faster in practice")
    return notes


def _closest(model: ModelSpec, c: Constraints, space: SearchSpace, totals: _Totals, plans: list[Plan],
             misses: list, dataset_tokens: int, epochs: float) -> tuple[Hint, ...]:
    """When nothing qualifies: the knobs that get closest, each with what it would give."""
    hints: list[Hint] = []
    priced = [p for p in plans if p.costs or not c.require_price]
    if not priced:
        if misses:
            short, setup, gpu = _least_short(misses)
            hints.append(Hint("memory", f"nothing fits: closest is {setup.method.value}, {setup.precision.value}, "
                                        f"{setup.optimizer.value}, checkpointing {setup.checkpointing.value}, micro-batch 1 x "
                                        f"{setup.seq_len} on {setup.parallel.world}x {gpu.name}, short by "
                                        f"{short / GIB:.1f} GiB per GPU"))
        relax = [("methods", replace(c, methods=tuple(Method)), "--methods full,lora,qlora"),
                 ("max-gpus", replace(c, max_gpus=max(c.max_gpus * 4, 8)), f"--max-gpus {max(c.max_gpus * 4, 8)}"),
                 ("gpus", replace(c, gpus=None), "all catalog GPUs"),
                 ("providers", replace(c, providers=None), "all providers")]
        seq = max(space.seq_len // 2, 128)
        for knob, rc, flag in relax + [("seq-len", c, f"--seq-len {seq}")]:
            if rc == c and knob != "seq-len":
                continue
            sp = replace(space, seq_len=seq) if knob == "seq-len" else space
            found, _, _ = _search(model, rc, sp, totals, dataset_tokens, epochs)
            found = [p for p in found if p.costs or not rc.require_price]
            if found:
                best = min(found, key=lambda p: p.usd)
                hints.append(Hint(knob, f"{flag}: fits with {best.describe()}, {best.hours:.1f} h, ${best.usd:,.2f}", best))
        return tuple(hints)
    if c.deadline_s is not None:
        fast = min(priced, key=lambda p: p.seconds)
        if fast.seconds > c.deadline_s:
            over = fast.seconds - c.deadline_s
            hints.append(Hint("deadline", f"the fastest plan takes {fast.hours:.1f} h, {over / 3600:.1f} h "
                                          f"({100 * over / c.deadline_s:.0f}%) over the deadline: {fast.describe()}", fast))
            more = replace(c, max_gpus=c.max_gpus * 4, deadline_s=None, budget_usd=None)
            found, _, _ = _search(model, more, space, totals, dataset_tokens, epochs)
            ok = [p for p in found if p.seconds <= c.deadline_s and (p.costs or not c.require_price)]
            if ok:
                best = min(ok, key=lambda p: p.usd)
                hints.append(Hint("max-gpus", f"--max-gpus {best.gpus}: {best.describe()} meets it in {best.hours:.1f} h "
                                              f"for ${best.usd:,.2f}", best))
    if c.budget_usd is not None:
        within_deadline = [p for p in priced if c.deadline_s is None or p.seconds <= c.deadline_s] or priced
        cheap = min(within_deadline, key=lambda p: p.usd)
        if cheap.usd > c.budget_usd:
            over = cheap.usd - c.budget_usd
            hints.append(Hint("budget", f"the cheapest plan costs ${cheap.usd:,.2f}, ${over:,.2f} "
                                        f"({100 * over / c.budget_usd:.0f}%) over the budget: {cheap.describe()}", cheap))
    if not c.spot and any(p.costs and any(x.spot_usd is not None for x in p.costs) for p in priced):
        spot = [p for p in (replace(p, spot=True) for p in priced) if _qualifies(p, replace(c, spot=True))]
        if spot:
            best = min(spot, key=lambda p: p.usd)
            hints.append(Hint("spot", f"--spot: {best.describe()} qualifies at spot prices, ${best.usd:,.2f}", best))
    return tuple(hints)


def _least_short(misses: list) -> tuple[int, TrainingSetup, GpuSpec]:
    """(shortfall, setup, gpu) of the miss short by the least at micro-batch 1 (the first of equals),
    replaying only the misses whose lower-bound shortfall could still be the least."""
    best: tuple[int, int] | None = None
    for i in sorted(range(len(misses)), key=lambda i: misses[i][1]):
        if best is not None and misses[i][1] > best[0]:
            break
        short = misses[i][0]()
        if best is None or (short, i) < best:
            best = (short, i)
    _, _, setup, gpu = misses[best[1]]
    return best[0], setup, gpu


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(x.strip().lower() for x in items if x and x.strip())


def search_from_inputs(methods: str | Iterable[str] = "full,lora,qlora", max_gpus: int = 8,
                       deadline: str | None = None, budget: str | None = None,
                       providers: str | Iterable[str] | None = None, gpus: str | Iterable[str] | None = None,
                       spot: bool = False, seq_len: int = 1024, global_batch: int = 64,
                       mfu: float | None = None, objective: str = "sft",
                       fsdp_version: int = 2) -> tuple[Constraints, SearchSpace]:
    """(Constraints, SearchSpace) from what a person types (the CLI's flags, the dashboard's fields):
    comma lists or sequences of names, '48h', '$500'; raises PlannerError naming the bad input."""
    try:
        method_list = tuple(Method(x) for x in _names(methods))
    except ValueError:
        raise PlannerError(f"--methods {methods!r}: choose from {', '.join(Method.values())}") from None
    if seq_len < 1 or global_batch < 1:
        raise PlannerError("--seq-len and --global-batch must be at least 1")
    if mfu is not None and not 0 < mfu <= 1:
        raise PlannerError(f"--mfu is a fraction of peak in (0, 1], got {mfu}")
    gpu_names = tuple(resolve_gpu(g).name for g in _names(gpus)) or None
    c = Constraints(methods=method_list, max_gpus=max_gpus,
                    deadline_s=parse_duration(deadline) if deadline and deadline.strip() else None,
                    budget_usd=parse_usd(budget) if budget and budget.strip() else None,
                    providers=_names(providers) or None, gpus=gpu_names, spot=spot)
    try:
        obj = Objective(objective)
    except ValueError:
        raise PlannerError(f"--objective {objective!r}: choose from {', '.join(Objective.values())}") from None
    if fsdp_version not in (1, 2):
        raise PlannerError(f"--fsdp-version must be 1 or 2, got {fsdp_version}")
    if obj is Objective.SFT:   # today's search, untouched
        return c, SearchSpace(seq_len=seq_len, global_batch=global_batch, mfu=mfu, fsdp_version=fsdp_version)
    return c, SearchSpace(seq_len=seq_len, global_batch=global_batch, mfu=mfu, base=objective_base(obj),
                          min_micro_batch=2 if obj is Objective.KTO else 1, fsdp_version=fsdp_version)


def _fsdp1_notes(model: ModelSpec, c: Constraints, space: SearchSpace) -> list[str]:
    """--fsdp-version 1: one line per method whose FSDP candidates still plan FSDP2's step, saying why."""
    if space.fsdp_version != 1:
        return []
    out = []
    for method in c.methods:
        probe = space.base.with_(method=method, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
        note = step_setup(model, probe, 1)[1]
        if note:
            out.append(f"--methods {method.value}: {note}")
    return out


def _objective_notes(base: TrainingSetup, skipped: list[TrainingSetup]) -> list[str]:
    """What a non-SFT objective changes in the search, one line each."""
    if base.objective is Objective.SFT:
        return []
    notes = [f"--objective {base.objective.value}: each candidate's fit holds its trainer's step and run phases "
             f"(--loss {base.loss.value}); "
             + ("the time and cost include GRPO's rollouts with HF generate (planner/speed/rollout.py: the step's "
                "constants applied to generate's forwards, no published GRPO run checks them) and its log-prob "
                "passes" if base.objective is Objective.GRPO else
                "the time and cost count the objective's sequences and no-grad forwards "
                "(techniques/preference.py time_sequences), tokens/s the tokens of every sequence through the policy")]
    if skipped:
        multi = sum(1 for s in skipped if not s.parallel.single_gpu)
        notes.append(f"--objective {base.objective.value} refuses {len(skipped)} candidate setups"
                     + (f" ({multi} multi-GPU: the objective is planned on one GPU only)" if multi else "")
                     + ": skipped")
    return notes


def recommend(model: ModelSpec, dataset_tokens: int, epochs: float = 1.0, constraints: Constraints | None = None,
              space: SearchSpace | None = None) -> Recommendation:
    """Recommendation for training `model` on `dataset_tokens` x `epochs` under `constraints`."""
    c = constraints or Constraints()
    space = space or SearchSpace()
    if dataset_tokens <= 0 or epochs <= 0:
        raise PlannerError("--dataset-tokens and --epochs must be positive")
    if c.max_gpus < 1:
        raise PlannerError(f"--max-gpus must be at least 1, got {c.max_gpus}")
    if not c.methods:
        raise PlannerError("--methods is empty; choose from full, lora, qlora")
    if c.providers:
        known = {p.provider for g in all_gpus() for p in g.prices}
        unknown = [p for p in c.providers if p not in known]
        if unknown:
            raise PlannerError(f"unknown provider(s) {', '.join(unknown)}; the catalog has {', '.join(sorted(known))}")
    totals = _Totals(model)
    skipped: list[TrainingSetup] = []
    plans, misses, considered = _search(model, c, space, totals, dataset_tokens, epochs, skipped)
    good = [p for p in plans if _qualifies(p, c)]
    notes: list[str] = _objective_notes(space.base, skipped) + _fsdp1_notes(model, c, space)
    if not good:
        return Recommendation(None, None, (), considered, len(plans), 0, totals.count,
                              _closest(model, c, space, totals, plans, misses, dataset_tokens, epochs), tuple(notes))
    cheapest = min(good, key=lambda p: (p.usd, p.hours))
    fastest = min(good, key=lambda p: (p.hours, p.usd))
    notes += _within_range(cheapest, fastest, good)
    frontier = tuple(replace(p, why=f"on the time-cost frontier: no plan is both faster than {p.hours:.2f} h "
                                    f"and cheaper than ${p.usd:,.2f}") for p in pareto_frontier(good))
    return Recommendation(replace(cheapest, why=_why_cheapest(cheapest, good)),
                          replace(fastest, why=_why_fastest(fastest, good)), frontier, considered, len(plans),
                          len(good), totals.count, (), tuple(notes), tuple(good))
