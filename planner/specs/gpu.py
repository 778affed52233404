"""GpuSpec: one GPU type of the catalog (data/gpus.json, schema in data/README.md), and its prices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import PlannerError


@dataclass(frozen=True)
class GpuPrice:
    """One cloud's price for one GPU-hour; `spot_usd_per_hour` is None where none was recorded."""

    provider: str
    usd_per_hour: float
    spot_usd_per_hour: float | None
    source: str
    as_of: str
    verified: bool = False


@dataclass(frozen=True, eq=False)
class GpuSpec:
    """One catalog entry (data/gpus.json, schema in data/README.md); `raw` keeps every field."""

    name: str
    memory_bytes: int
    raw: dict[str, Any]

    @property
    def label(self) -> str:
        return self.raw.get("display_name") or self.name

    @property
    def architecture(self) -> str:
        return self.raw.get("architecture", "unknown")

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for `dtype` (bf16, fp16, fp32, tf32, fp8); bf16 falls back to fp16
        on cards without bf16 tensor cores (T4, V100 compute bf16 far slower: fp32 rate)."""
        flops = self.raw["peak_flops"]
        value = flops.get(dtype)
        if value is None and dtype == "bf16":
            value = flops.get("fp32")   # Turing/Volta emulate bf16 without tensor cores
        if value is None:
            raise PlannerError(f"{self.name} has no {dtype} FLOP/s in the GPU catalog")
        return float(value)

    @property
    def memory_bandwidth(self) -> float:
        """Bytes per second."""
        return float(self.raw["memory_bandwidth_bytes_per_s"])

    @property
    def interconnect_kind(self) -> str:
        return self.raw["interconnect"]["kind"]

    @property
    def interconnect_bandwidth(self) -> float:
        """GPU-to-GPU bytes per second, one direction, per GPU."""
        return float(self.raw["interconnect"]["bytes_per_s"])

    @property
    def nvlink(self) -> bool:
        return not self.interconnect_kind.startswith("pcie")

    @property
    def host_bandwidth(self) -> float:
        """Bytes per second to host memory (PCIe), one direction: the offload path."""
        host = self.raw.get("host_link", {}).get("bytes_per_s")
        if host:
            return float(host)
        # PCIe generation of the card [PCI-SIG: x16 gen3 16 GB/s, gen4 32 GB/s, gen5 64 GB/s];
        # NVLink cards sit on a PCIe gen4 (Ampere, Volta) or gen5 (Hopper, Blackwell) host link
        return float(_HOST_LINK.get(self.architecture, 32e9))

    @property
    def power_watts(self) -> int:
        return int(self.raw["power_watts"])

    @property
    def purchase_usd(self) -> float | None:
        return self.raw.get("purchase_usd")

    @property
    def prices(self) -> tuple[GpuPrice, ...]:
        return tuple(GpuPrice(p["provider"], float(p["usd_per_hour"]), p.get("spot_usd_per_hour"),
                              p.get("source", ""), p.get("as_of", ""), bool(p.get("verified", False)))
                     for p in self.raw.get("prices", []))


_HOST_LINK = {"hopper": 64e9, "blackwell": 64e9, "cdna3": 64e9, "ampere": 32e9, "ada": 32e9,
              "turing": 16e9, "volta": 16e9}
