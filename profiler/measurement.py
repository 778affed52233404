"""Measurement: what the profiler saw, with the same keys as the planner's estimate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuplan.planner import Component, ModelSpec, Phase, TrainingSetup, figures_dict

from .tracker import StorageTracker


@dataclass
class Measurement:
    device: str                                   # "simulate", "cpu" or "cuda:0 (NVIDIA H100 ...)"
    peak_allocated_bytes: int
    components: dict[Component, int]              # at the overall peak
    phases: dict[Phase, int]                      # peak of each phase
    phase_components: dict[Phase, dict[Component, int]]
    peak_reserved_bytes: int | None = None        # only a real CUDA run measures these two
    device_total_bytes: int | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fits: bool | None = None                      # a real device ran it (True) or ran out of memory
    per_module: dict[str, Any] | None = None      # profiler/hooks.py ModuleAttribution.to_dict()
    gpu: str | None = None                        # torch.cuda.get_device_name() of a real GPU run
    timing: dict[str, float] | None = None        # step time of untracked steps (GPU runs only)

    @property
    def peak_phase(self) -> Phase:
        return max(self.phases, key=lambda p: self.phases[p])

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            **figures_dict(self),
            "setup": self.setup,
            "notes": self.notes,
            "fits": self.fits,
            # a GPU run's record calibrates the time model's MFU once it is copied into
            # data/measurements/ (planner/throughput.py calibrated_mfu reads gpu, setup, timing)
            **({"gpu": self.gpu, "timing": self.timing} if self.timing is not None else {}),
            **({"per_module": self.per_module} if self.per_module is not None else {}),
        }


def from_tracker(tracker: StorageTracker, model: ModelSpec, setup: TrainingSetup, device: str,
                 notes: list[str] | None = None) -> Measurement:
    peaks = tracker.peaks
    top = max(peaks.values(), key=lambda p: p.total)
    return Measurement(
        device=device,
        peak_allocated_bytes=top.total,
        components=dict(top.components),
        phases={p: pk.total for p, pk in peaks.items()},
        phase_components={p: dict(pk.components) for p, pk in peaks.items()},
        setup={**setup.to_dict(model), "model": model.name},
        notes=list(notes or []),
    )
