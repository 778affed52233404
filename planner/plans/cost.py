"""Dollars of a run: GPU-hours times each provider's on-demand and spot $/GPU-hour.

API: `run_cost(gpu, gpus, hours, providers=None) -> tuple[ProviderCost, ...]` (cheapest first),
`parse_tokens("200M")`, `parse_duration("48h")`, `parse_usd("$500")`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..specs.gpu import GpuSpec
from ..specs.errors import PlannerError


@dataclass(frozen=True)
class ProviderCost:
    provider: str
    usd_per_gpu_hour: float
    usd: float                          # on-demand, whole run
    spot_usd_per_gpu_hour: float | None
    spot_usd: float | None              # None where no spot price is recorded
    source: str
    as_of: str
    verified: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_cost(gpu: GpuSpec, gpus: int, hours: float, providers: tuple[str, ...] | None = None) -> tuple[ProviderCost, ...]:
    """Cost of `gpus` x `hours` of `gpu` at each provider (filtered to `providers`), cheapest first."""
    rows = []
    for p in gpu.prices:
        if providers and p.provider not in providers:
            continue
        spot = p.spot_usd_per_hour
        rows.append(ProviderCost(p.provider, p.usd_per_hour, gpus * hours * p.usd_per_hour, spot,
                                 gpus * hours * spot if spot is not None else None, p.source, p.as_of, p.verified))
    return tuple(sorted(rows, key=lambda r: r.usd))


_SI = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_tokens(text: str | int | float) -> int:
    """Tokens from '200M', '1.5B', '2e9' or a plain number."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not m:
        raise PlannerError(f"cannot read {text!r} as a token count; write e.g. 200M, 1.5B or 2e9")
    return int(float(m.group(1)) * _SI[m.group(2).lower()])


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from '48h', '2d', '90m', '1.5h' (a bare number is hours)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|m|min|h|d|w)?\s*", str(text).lower())
    if not m:
        raise PlannerError(f"cannot read {text!r} as a duration; write e.g. 48h, 2d or 90m")
    return float(m.group(1)) * _UNITS[m.group(2) or "h"]


_BYTES = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bandwidth(text: str | float) -> float:
    """Bytes per second from '1.5GB/s', '800MB/s', '2 GiB/s' or a plain number of bytes per second."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmgt]i?)?b?(?:/s)?\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise PlannerError(f"cannot read {text!r} as a bandwidth; write e.g. 1.5GB/s or 800MB/s")
    return float(m.group(1)) * _BYTES[m.group(2) or ""]


def parse_usd(text: str | float) -> float:
    """USD from '$500', '500', '1.2k'."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*\$?\s*([0-9.]+)\s*([kK]?)\s*", str(text))
    if not m:
        raise PlannerError(f"cannot read {text!r} as dollars; write e.g. 500 or $1.2k")
    return float(m.group(1)) * (1e3 if m.group(2) else 1)
