"""The three memory figures (allocated, reserved, device total) from the live bytes of each phase."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..io.catalog import assumptions
from ..specs.enums import Component as C
from ..specs.enums import Phase
from .result import Assumption


@dataclass(frozen=True)
class Figures:
    peak_phase: Phase
    totals: dict[Phase, int]           # allocated bytes at each phase's peak
    allocated: int
    reserved: int
    device_total: int
    components: dict[C, int]           # at the peak, with allocator slack and CUDA context
    assumptions: tuple[Assumption, ...]


def peak_figures(phases: dict[Phase, dict[C, int]], outside_allocator: int = 0,
                 allocator: Any = None) -> Figures:
    """The three figures from tensor bytes per phase and component: allocated at the largest
    phase; reserved is allocated times the reserved/allocated ratio of `allocator` (a
    memory/reserved.py Reserved: the caching allocator replayed on the step's shape), or without
    one the fixed slack fraction of data/assumptions.json (the simulator's answers); the device
    total adds the CUDA context and `outside_allocator` (paged optimizer state, NCCL buffers)."""
    totals = {p: sum(comps.values()) for p, comps in phases.items()}
    peak_phase = max(totals, key=lambda p: totals[p])
    allocated = totals[peak_phase]
    a = assumptions()
    context = int(a["cuda_context_bytes"]["value"])
    if allocator is None:
        slack = int(allocated * a["allocator_slack_fraction"]["value"])
        slack_used = Assumption("allocator_slack_fraction", a["allocator_slack_fraction"]["value"], "fraction",
                                a["allocator_slack_fraction"]["source"])
    else:
        slack = max(int(allocated * allocator.ratio) - allocated, 0)
        slack_used = allocator.assumption()
    components = dict(phases[peak_phase])
    components[C.ALLOCATOR_SLACK] = slack
    components[C.CUDA_CONTEXT] = context + outside_allocator
    used = (
        Assumption("cuda_context_bytes", context, "bytes", a["cuda_context_bytes"]["source"]),
        slack_used,
    )
    return Figures(peak_phase, totals, allocated, allocated + slack, allocated + slack + context + outside_allocator,
                   components, used)


def worst_phases(fwd: list[dict], bwd: list[dict], opt: dict) -> dict:
    """Each phase's largest candidate live set, every component filled (keys w/g/a/l/t may stand
    for weights, gradients, activations, logits, temporaries)."""
    names = {"w": C.WEIGHTS, "g": C.GRADIENTS, "a": C.ACTIVATIONS, "l": C.LOGITS, "t": C.TEMPORARIES}

    def norm(d: dict) -> dict:
        out = {c: 0 for c in C.tensor_components()}
        for key, v in d.items():
            out[names.get(key, key)] = out.get(names.get(key, key), 0) + int(v)
        return out

    worst = lambda cands: max((norm(c) for c in cands), key=lambda c: sum(c.values()))  # noqa: E731
    return {Phase.FORWARD: worst(fwd), Phase.BACKWARD: worst(bwd), Phase.OPTIMIZER: norm(opt)}
