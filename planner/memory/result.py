"""MemoryEstimate: the planner's answer, per phase and per component, with the three figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..specs.enums import Component, Phase, Source
from ..specs.params import ParamCounts

GIB = 2**30


def figures_dict(x: Any) -> dict[str, Any]:
    """The keys an estimate and a measurement share in JSON: the three figures, components, phases."""
    return {
        "peak_allocated_bytes": x.peak_allocated_bytes,
        "peak_reserved_bytes": x.peak_reserved_bytes,
        "device_total_bytes": x.device_total_bytes,
        "peak_phase": x.peak_phase.value,
        "components": {c.value: v for c, v in x.components.items()},
        "phases": {p.value: v for p, v in x.phases.items()},
        "phase_components": {p.value: {c.value: v for c, v in comps.items()}
                             for p, comps in x.phase_components.items()},
    }


@dataclass(frozen=True)
class Assumption:
    """A constant no formula derives, shown to the user with where it came from."""

    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class MemoryEstimate:
    peak_allocated_bytes: int                        # torch.cuda.max_memory_allocated()
    peak_reserved_bytes: int                         # torch.cuda.max_memory_reserved()
    device_total_bytes: int                          # what nvidia-smi shows for the process
    peak_phase: Phase
    components: dict[Component, int]                # at the peak phase, incl. slack and context
    phases: dict[Phase, int]                         # allocated bytes at each phase's peak
    phase_components: dict[Phase, dict[Component, int]]
    params: ParamCounts
    trainable_params: int
    setup: dict[str, Any]
    assumptions: tuple[Assumption, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # multi-GPU and offload (planner/memory/sharded.py); single-GPU plans leave them at their defaults
    host_bytes_per_node: int = 0                     # CPU RAM offload needs on each node
    nvme_bytes_per_node: int = 0                     # NVMe space ZeRO-Infinity needs on each node
    communication: Any = None                        # planner.comm.CommVolume per GPU per step
    # which path answered: "closed-form" (this planner) or "simulated" (gpuplan.profiler.answer)
    source: Source = Source.CLOSED_FORM
    # activation offloading (planner/techniques/activation_offload.py): pinned host memory per GPU
    activation_host_bytes: int = 0
    # the caching allocator's replay of this step (planner/memory/reserved.py Reserved), for fits()
    allocator: Any = field(default=None, compare=False, repr=False)
    # estimate(replay=False): what memory/estimate.py replayed() needs to replay it (reserved = allocated till then)
    pending: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` schema (documented in README.md)."""
        return {
            **figures_dict(self),
            "params": {"total": self.params.total, "trainable": self.trainable_params,
                       "embedding": self.params.embedding, "attention": self.params.attention,
                       "mlp": self.params.mlp, "norms": self.params.norms, "lm_head": self.params.lm_head,
                       **({"vision": self.params.vision} if self.params.vision else {})},   # a multimodal wrapper's
            "setup": self.setup,
            "assumptions": [{"name": a.name, "value": a.value, "unit": a.unit, "source": a.source}
                            for a in self.assumptions],
            "notes": list(self.notes),
            "source": self.source.value,      # which path answered: closed-form, simulated or fitted
            **({"host_bytes_per_node": self.host_bytes_per_node, "nvme_bytes_per_node": self.nvme_bytes_per_node,
                "communication": self.communication.to_dict()} if self.communication is not None else {}),
            **({"activation_host_bytes": self.activation_host_bytes} if self.activation_host_bytes else {}),
        }
