"""The GEMM rate a card reaches: its measured matmul throughput, not the datasheet peak.

API: `matmul_ceiling(gpu, dtype) -> Ceiling` (FLOP/s, ratio to the datasheet, source).

Datasheet peaks assume the boost clock on every SM at once. What a dense GEMM reaches differs by
card, not only by generation: power-limited data-centre and workstation parts sit below the
datasheet (H100 SXM 794.5 of 989 TFLOP/s, L40S 269 of 362), GeForce cards boost past the clock
their datasheet quotes (RTX 3090 77 of 71, RTX 4090 ~165 of 165): data/matmul.json, measured with
stas00's mamf-finder.py and zzc0721's square-matmul test (sources and table rows quoted there). A
GEMM efficiency fitted on one card's runs and applied to another card's datasheet carries that
card's ratio with it (the ada constant, fitted on RTX 4090 runs at ~1.0 of their datasheet, promised
an RTX 6000 Ada 0.95 x 364 TFLOP/s; the cross-family one promised an H100 857 TFLOP/s, above the
794.5 measured): the time model therefore divides GEMM FLOPs by this ceiling, and its fitted GEMM
efficiency is a fraction of it (planner/speed/calibrate.py bounds it at 1).

A card's ratio is its measured bf16 rate over its bf16 datasheet peak: the mamf-finder figure where there is
one, else the median of its square-matmul runs. The ratio applies to each
dtype's datasheet figure (the same clocks and power limit throttle every tensor path). A card with
no measurement takes a named sibling's ratio (the same die and SM count) or, without one, the
median ratio of every measured card. A user GPU file may give `matmul_flops: {"bf16": FLOP/s}` (its
own mamf-finder run), which wins.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache

from ..io import catalog
from ..specs.gpu import GpuSpec


@dataclass(frozen=True)
class Ceiling:
    flops: float    # FLOP/s a dense GEMM reaches in the dtype
    ratio: float    # of the datasheet peak
    source: str


def _measured(name: str) -> list[float]:
    """The card's bf16 measurements that set its ceiling: its mamf-finder figures where it has one (a search
    for the best shape), else its square-matmul runs (five sizes: a lower bound of the best)."""
    entry = catalog.matmul_measurements()["gpus"].get(name, {})
    runs = entry.get("bf16", [])
    mamf = [float(e["flops"]) for e in runs if e.get("method") == "mamf"]
    return mamf or [float(e["flops"]) for e in runs]


def _datasheet_bf16(gpu: GpuSpec) -> float:
    return gpu.peak_flops("bf16")


@lru_cache(maxsize=1)
def median_ratio() -> tuple[float, int]:
    """(median measured / datasheet bf16 ratio over the measured catalog cards, how many)."""
    ratios = []
    for gpu in catalog.all_gpus():
        values = _measured(gpu.name)
        if values:
            ratios.append(statistics.median(values) / _datasheet_bf16(gpu))
    return statistics.median(ratios), len(ratios)


def measured_ratio(gpu: GpuSpec) -> tuple[float, str]:
    """(measured bf16 matmul FLOP/s over the datasheet bf16 peak, where it comes from) for `gpu`."""
    own = gpu.raw.get("matmul_flops", {}).get("bf16")
    if own:
        return float(own) / _datasheet_bf16(gpu), f"matmul_flops.bf16 {own / 1e12:.1f} TFLOP/s (user GPU file)"
    values = _measured(gpu.name)
    if values:
        m = statistics.median(values)
        return m / _datasheet_bf16(gpu), (f"measured bf16 matmul {m / 1e12:.1f} of {_datasheet_bf16(gpu) / 1e12:.1f} "
                                          f"TFLOP/s datasheet ({len(values)} run(s), data/matmul.json)")
    entry = catalog.matmul_measurements()["gpus"].get(gpu.name, {})
    sibling = entry.get("sibling")
    if sibling:
        r, why = measured_ratio(catalog.resolve_gpu(sibling))
        return r, f"no measurement of {gpu.name}: its sibling {sibling}'s ratio ({why})"
    r, n = median_ratio()
    return r, f"no measurement of {gpu.name}: the median ratio of the {n} measured cards (data/matmul.json)"


def matmul_ceiling(gpu: GpuSpec, dtype: str) -> Ceiling:
    """The dense GEMM FLOP/s `gpu` reaches in `dtype`: its datasheet peak x its measured ratio."""
    r, why = measured_ratio(gpu)
    return Ceiling(gpu.peak_flops(dtype) * r, r, why)
