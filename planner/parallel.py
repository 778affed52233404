"""ParallelSpec: how one training step is spread over GPUs and offloaded to the host.

The single-GPU estimate is the case `ParallelSpec()` (one GPU, nothing sharded or offloaded).
Semantics follow the engines as users run them: DeepSpeed ZeRO stages, PyTorch FSDP2
`fully_shard`, Megatron-style tensor and pipeline parallelism, DDP gradient buckets.
"""
from __future__ import annotations

from dataclasses import dataclass

from .enums import Choice


class Fsdp(Choice):
    NONE = "none"
    FULL = "full"          # FSDP2 reshard_after_forward=True: params, grads, optimizer sharded
    GRAD_OP = "grad-op"    # reshard_after_forward=False (ZeRO-2-like): params stay gathered fwd->bwd
    HYBRID = "hybrid"      # shard inside a node, replicate across nodes


class Offload(Choice):
    NONE = "none"
    OPTIMIZER = "optimizer"   # optimizer state (and its step) on the host: ZeRO-Offload, FSDP CPUOffload
    PARAMS = "params"         # optimizer state and parameters on the host (ZeRO-3 offload_param)


class OffloadDevice(Choice):
    CPU = "cpu"
    NVME = "nvme"             # ZeRO-Infinity


@dataclass(frozen=True)
class ParallelSpec:
    gpus: int = 1                       # GPUs per node
    nodes: int = 1
    zero: int = 0                       # DeepSpeed ZeRO stage 0-3 (0: plain DDP when world > 1)
    fsdp: Fsdp = Fsdp.NONE
    offload: Offload = Offload.NONE
    offload_device: OffloadDevice = OffloadDevice.CPU
    tp: int = 1                         # tensor-parallel degree
    pp: int = 1                         # pipeline stages

    @property
    def world(self) -> int:
        return self.gpus * self.nodes

    @property
    def dp(self) -> int:
        """Data-parallel degree: the world divided among tensor and pipeline groups."""
        return self.world // (self.tp * self.pp)

    @property
    def single_gpu(self) -> bool:
        return self == ParallelSpec()
