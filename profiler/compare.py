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


# a component's gap is worth explaining past this share of the measured peak
NOTABLE_SHARE = 0.01


def explain(c: dict[str, Any]) -> list[str]:
    """Plain-language lines for a comparison (`Comparison.to_dict()`, as profile JSON stores it): where
    the components' gaps at the peak cancel, the bytes moved between components rather than being
    missing (the two peaks fall at different moments of the phase, or a tensor is counted under
    another component); then the peak phase's total, which is the figure that decides the fit."""
    rows = {r["name"]: r for r in c["components"] if r["name"] in {x.value for x in Component.tensor_components()}}
    phase = next((r for r in c["phases"] if r["name"] == c["phase"]), None)
    if phase is None or not phase["measured_bytes"]:
        return []
    total = phase["measured_bytes"]
    gaps = {n: (r["estimate_bytes"] or 0) - (r["measured_bytes"] or 0) for n, r in rows.items()}
    notable = {n: g for n, g in gaps.items() if abs(g) > NOTABLE_SHARE * total}
    lines = []
    more = {n: g for n, g in notable.items() if g > 0}
    less = {n: -g for n, g in notable.items() if g < 0}
    net = sum(gaps.values())
    if more and less:
        moved = min(sum(more.values()), sum(less.values()))
        lines.append(f"at the {c['phase']} peak the estimate counts more {_list(more)} and less {_list(less)}: "
                     f"{_gib(moved)} moved between components (the estimated and the measured peak fall at "
                     "different moments of the phase, or a tensor is counted under another component), "
                     f"not missing; net {_signed(net)}")
    elif notable:
        lines.append(f"at the {c['phase']} peak the estimate counts {'more' if net > 0 else 'less'} "
                     f"{_list(more or less)}: net {_signed(net)}")
    for n, r in rows.items():
        if n not in notable:
            continue
        if not r["estimate_bytes"]:
            lines.append(f"{n}: none at the estimate's peak moment (-100% reads as {n} freed before that moment, "
                         "not as bytes the estimate lacks)")
        elif not r["measured_bytes"]:
            lines.append(f"{n}: none alive at the measured peak moment (the measured peak fell after they were freed)")
    err = phase["error_pct"]
    if err is not None:
        lines.append(f"the {c['phase']} phase in total: {_signed((phase['estimate_bytes'] or 0) - total)} "
                     f"({err:+.2f}%): this, and the peak figures above, decide the fit")
    return lines


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if abs(n) >= 2**30 / 10 else f"{n / 2**20:,.1f} MiB"


def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + _gib(abs(n))


def _list(d: dict[str, int]) -> str:
    return ", ".join(f"{n} ({_gib(v)})" for n, v in sorted(d.items(), key=lambda kv: -kv[1]))
