"""compare(): the planner's estimate against a measurement, as signed errors per figure, component
and phase. Positive error: the estimate is above what was measured (safe side)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuplan.planner import Component, MemoryEstimate, Phase

if TYPE_CHECKING:   # compare() only reads a Measurement's fields: this module stays free of torch
    from .measurement import Measurement

FIGURES = ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes")
WHOLE_RUN = (Component.ALLOCATOR_SLACK, Component.CUDA_CONTEXT)   # not per phase: from `.components`


@dataclass(frozen=True)
class Row:
    name: str
    estimate: int | None     # bytes
    measured: int | None     # bytes; None where the device cannot measure it

    @property
    def error_pct(self) -> float | None:
        """(estimate - measured) / measured in percent; None without both figures."""
        if self.estimate is None or not self.measured:
            return None
        return 100.0 * (self.estimate - self.measured) / self.measured

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "estimate_bytes": self.estimate, "measured_bytes": self.measured,
                "error_pct": None if self.error_pct is None else round(self.error_pct, 2)}


@dataclass(frozen=True)
class Comparison:
    phase: Phase                  # the measured peak phase, where components are compared
    figures: tuple[Row, ...]
    components: tuple[Row, ...]
    phases: tuple[Row, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase.value,
                "figures": [r.to_dict() for r in self.figures],
                "components": [r.to_dict() for r in self.components],
                "phases": [r.to_dict() for r in self.phases]}


def compare(estimate: MemoryEstimate, measured: Measurement) -> Comparison:
    """Rows for the three figures, each component at the measured peak phase, and each phase's peak."""
    phase = measured.peak_phase
    est_at = estimate.phase_components.get(phase, {})
    meas_at = measured.phase_components.get(phase, {})
    components = [Row(c.value, est_at.get(c), meas_at.get(c)) for c in Component.tensor_components()]
    components += [Row(c.value, estimate.components.get(c), measured.components.get(c)) for c in WHOLE_RUN]
    return Comparison(
        phase=phase,
        figures=tuple(Row(f, getattr(estimate, f), getattr(measured, f)) for f in FIGURES),
        components=tuple(components),
        phases=tuple(Row(p.value, estimate.phases.get(p), measured.phases.get(p)) for p in Phase),
    )
