"""Links and their bandwidths: NVLink, PCIe (generation x lanes), InfiniBand/Ethernet, host memory,
disk. One module so that every time term (collectives, offload copies, checkpoint saves) reads the
same figures.

API: `pcie(gen, lanes) -> LinkSpec`, `gpu_peer_link(gpu)`, `gpu_host_link(gpu)`, `network_link(gpu)`,
`host_memory()`, `disk()`; `LinkSpec.effective` is bytes/s one direction as a collective or copy
achieves it (datasheet x efficiency), the figure the time model divides by.

Every default below cites a datasheet or a measurement; a user's GPU file overrides them per GPU
(`interconnect.bytes_per_s`, `host_link.bytes_per_s`, `inter_node_bytes_per_s`, `peer_to_peer`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Choice
from ..specs.gpu import GpuSpec


class LinkKind(Choice):
    NVLINK = "nvlink"
    PCIE = "pcie"                 # GPU to GPU over PCIe peer-to-peer
    PCIE_VIA_HOST = "pcie-host"   # GPU to GPU without P2P: staged through host memory (NCCL SHM transport)
    HOST = "host"                 # GPU to host memory (offload copies)
    NETWORK = "network"           # InfiniBand / RoCE / Ethernet between nodes
    HOST_MEMORY = "host-memory"   # CPU DRAM (the CPU optimizer's pass over its state)
    DISK = "disk"                 # NVMe (ZeRO-Infinity, checkpoint saves)


@dataclass(frozen=True)
class LinkSpec:
    kind: LinkKind
    datasheet: float      # bytes/s one direction
    efficiency: float     # fraction of datasheet a collective or copy achieves
    source: str

    @property
    def effective(self) -> float:
        return self.datasheet * self.efficiency


# PCI-SIG: 8 GT/s (gen3), 16 (gen4), 32 (gen5), 64 (gen6) per lane with 128b/130b encoding (gen6:
# FLIT, ~ the same payload rate): ~0.985 GB/s per lane at gen3, doubling each generation.
_PCIE_LANE = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.877e9}
# nccl-tests doc/PERFORMANCE.md defines bus bandwidth; published busbw for all-reduce on 8x A100
# SXM (NVLink3, 300 GB/s per direction) is ~230-240 GB/s and on 8x H100 (450 GB/s) ~360-370:
# ~0.8 of datasheet.
NVLINK_EFFICIENCY = 0.8
# Host-to-device copies of pinned memory reach ~80% of the PCIe payload rate (CUDA samples
# bandwidthTest: ~25-26 GB/s on a gen4 x16 slot of 31.5 GB/s payload).
PCIE_EFFICIENCY = 0.8
# Without P2P (GeForce cards: NVIDIA disables PCIe P2P on RTX 4090; RTX 3090 has P2P only over its
# NVLink bridge) NCCL stages every chunk through host memory (SHM transport): each byte crosses
# PCIe twice and is copied once in DRAM, so a ring step runs at about half the P2P rate.
VIA_HOST_FACTOR = 0.5
GEFORCE = ("rtx-3090", "rtx-4090", "rtx-5090")


def pcie(gen: int, lanes: int = 16) -> LinkSpec:
    """A PCIe link of `gen` x `lanes`, one direction."""
    per_lane = _PCIE_LANE.get(gen)
    if per_lane is None:
        raise ValueError(f"PCIe generation {gen} is not one of {sorted(_PCIE_LANE)}")
    return LinkSpec(LinkKind.PCIE, per_lane * lanes, PCIE_EFFICIENCY,
                    f"PCI-SIG PCIe {gen}.0 x{lanes} payload rate; ~80% achieved by pinned copies (bandwidthTest)")


def _pcie_gen(kind: str) -> int | None:
    return int(kind[4:]) if kind.startswith("pcie") and kind[4:].isdigit() else None


def peer_to_peer(gpu: GpuSpec) -> bool:
    """Whether NCCL can use PCIe/NVLink P2P between two of these cards (GPU file: `peer_to_peer`)."""
    if "peer_to_peer" in gpu.raw:
        return bool(gpu.raw["peer_to_peer"])
    return gpu.name not in GEFORCE


def gpu_peer_link(gpu: GpuSpec) -> LinkSpec:
    """The link between GPUs of one node, as the catalog's `interconnect` gives it."""
    kind, bw = gpu.interconnect_kind, gpu.interconnect_bandwidth
    gen = _pcie_gen(kind)
    if gen is None:
        return LinkSpec(LinkKind.NVLINK, bw, NVLINK_EFFICIENCY,
                        f"{kind} {bw / 1e9:.0f} GB/s per direction (catalog); nccl-tests busbw ~0.8 of it")
    if not peer_to_peer(gpu):
        return LinkSpec(LinkKind.PCIE_VIA_HOST, bw, PCIE_EFFICIENCY * VIA_HOST_FACTOR,
                        f"{kind} x16 {bw / 1e9:.0f} GB/s without P2P: NCCL SHM through host memory, half the P2P rate")
    return LinkSpec(LinkKind.PCIE, bw, PCIE_EFFICIENCY, f"{kind} x16 {bw / 1e9:.0f} GB/s P2P (catalog)")


def gpu_host_link(gpu: GpuSpec) -> LinkSpec:
    """GPU to host memory (offload traffic): the card's PCIe link."""
    return LinkSpec(LinkKind.HOST, gpu.host_bandwidth, PCIE_EFFICIENCY,
                    f"host link {gpu.host_bandwidth / 1e9:.0f} GB/s (catalog or the card's PCIe generation)")


# NVIDIA DGX H100 user guide: 8x ConnectX-7 400 Gb/s InfiniBand NDR, one per GPU (50 GB/s).
# NCCL all-reduce over IB reaches ~0.8-0.9 of line rate in nccl-tests on such systems.
INTER_NODE_BYTES_PER_S = 50e9
NETWORK_EFFICIENCY = 0.8


def network_link(gpu: GpuSpec) -> LinkSpec:
    """Between nodes, per GPU (GPU file: `inter_node_bytes_per_s`)."""
    bw = float(gpu.raw.get("inter_node_bytes_per_s") or INTER_NODE_BYTES_PER_S)
    return LinkSpec(LinkKind.NETWORK, bw, NETWORK_EFFICIENCY,
                    f"{bw * 8 / 1e9:.0f} Gb/s per GPU (DGX H100: one 400 Gb/s NDR port per GPU)")


def host_memory() -> LinkSpec:
    """CPU DRAM as a CPU optimizer streams it: 8-channel DDR5-4800 is 307 GB/s per socket (JEDEC
    38.4 GB/s per channel); DeepSpeed CPUAdam reaches far less (AVX-512 Adam, ~20 GB/s of state
    per socket: ZeRO-Offload paper, Ren et al. 2021, Fig. 7, ~6x faster than PyTorch's CPU Adam)."""
    return LinkSpec(LinkKind.HOST_MEMORY, 20e9, 1.0,
                    "DeepSpeed CPUAdam ~20 GB/s of optimizer state per socket (ZeRO-Offload, Ren et al. 2021)")


def disk() -> LinkSpec:
    """One PCIe 4.0 NVMe drive: ~7 GB/s sequential read, ~5-6 GB/s write (Samsung 990 Pro datasheet:
    7,450 / 6,900 MB/s); sustained large writes of checkpoints run lower, taken at 0.7."""
    return LinkSpec(LinkKind.DISK, 7e9, 0.7, "PCIe 4.0 NVMe, ~7 GB/s sequential (Samsung 990 Pro datasheet)")
