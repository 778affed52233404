"""Device memory outside the tensors: cuBLAS/cuBLASLt workspaces and the CUDA context (data/device.json).

The workspaces come from the caching allocator (so they count in reserved memory and go through
`CachingAllocator` like any request); the context does not (nvidia-smi shows it, torch does not).
Not yet wired into estimate(): the lead decides where these enter the device total.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..io.catalog import data_dir

_PAIR = re.compile(r":([0-9]+):([0-9]+)")        # parseChosenWorkspaceSize's regex


@lru_cache(maxsize=1)
def load_device_table() -> dict[str, Any]:
    """data/device.json as stored (every figure with its source)."""
    with open(data_dir() / "device.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class DeviceOverheads:
    """Bytes a training process holds on one GPU besides its tensors."""
    cublas_workspace: int            # per cuBLAS handle and stream
    cublaslt_workspace: int          # per cuBLASLt handle and stream, when cuBLASLt runs
    workspaces: int                  # handles a training step uses (assumed: forward and backward threads)
    cuda_context: int                # assumed; outside the caching allocator

    @property
    def allocator_requests(self) -> tuple[int, ...]:
        """The workspace requests the caching allocator serves, in the order a step makes them."""
        return (self.cublas_workspace, self.cublaslt_workspace) * self.workspaces


def _default_cublas_bytes(architecture: str, table: dict[str, Any]) -> int:
    defaults = table["cublas_workspace"]["defaults"]
    if architecture == "cdna3":      # MI300 (gfx942): the gfx94x/gfx95x default
        return next(d["bytes"] for d in defaults if d.get("arch") == "gfx94x/gfx95x")
    if architecture == "hopper":     # every Hopper GPU in data/gpus.json is sm90
        return next(d["bytes"] for d in defaults if d.get("compute_capability") == "9.0")
    return next(d["bytes"] for d in defaults if d["platform"] == "cuda" and d.get("compute_capability") == "other")


def cublas_workspace_bytes(architecture: str, cublas_workspace_config: str | None = None) -> int:
    """One cuBLAS workspace in bytes for a GPU architecture (data/gpus.json `architecture`) and an
    optional CUBLAS_WORKSPACE_CONFIG value, as parseChosenWorkspaceSize() computes it."""
    table = load_device_table()
    if cublas_workspace_config:
        pairs = _PAIR.findall(cublas_workspace_config)
        if pairs:
            return sum(int(size) * 1024 * int(count) for size, count in pairs)
    return _default_cublas_bytes(architecture, table)


def device_overheads(architecture: str, cublas_workspace_config: str | None = None) -> DeviceOverheads:
    """The cuBLAS/cuBLASLt workspaces and CUDA context of one training process on this architecture."""
    table = load_device_table()
    rocm = architecture == "cdna3"
    lt = table["cublaslt_workspace"]["bytes_rocm" if rocm else "bytes_cuda"]
    return DeviceOverheads(cublas_workspace_bytes(architecture, cublas_workspace_config), lt,
                           table["workspaces_per_training_process"]["value"],
                           table["cuda_context"]["assumed_bytes"])
