"""data/device.json: cuBLAS workspaces as CublasHandlePool.cpp sizes them, each figure sourced."""
from __future__ import annotations

import pytest

from gpuplan.planner.memory.allocator import CachingAllocator
from gpuplan.planner.memory.device_overheads import cublas_workspace_bytes, device_overheads, load_device_table

MiB = 2**20


@pytest.mark.parametrize("arch, config, expected", [
    ("hopper", None, 32 * MiB),                      # :4096:8 on sm90
    ("ampere", None, 8_519_680),                     # :4096:2:16:8 = 4096 KiB x 2 + 16 KiB x 8
    ("blackwell", None, 8_519_680),                  # sm100/sm120 are not major == 9 at this commit
    ("cdna3", None, 128 * MiB),
    ("ampere", ":4096:8", 32 * MiB),                 # CUBLAS_WORKSPACE_CONFIG overrides
    ("hopper", ":16:8", 128 * 1024),
    ("hopper", "garbage", 32 * MiB),                 # no ':SIZE:COUNT' pair: the default
])
def test_cublas_workspace_bytes(arch, config, expected):
    assert cublas_workspace_bytes(arch, config) == expected


def test_overheads_and_their_allocator_cost():
    o = device_overheads("ampere")
    assert (o.cublas_workspace, o.cublaslt_workspace, o.workspaces) == (8_519_680, MiB, 2)
    a = CachingAllocator()
    for size in o.allocator_requests:
        a.malloc(size)
    # each 8,519,680 B workspace is a large request under 10 MiB: its own 20 MiB segment, then the
    # 1 MiB cuBLASLt workspace fits a 2 MiB small segment; the second pair reuses the remainders
    # (20 MiB - 8,519,680 B holds another workspace; the small segment another 1 MiB)
    assert a.stats.reserved.current == 20 * MiB + 2 * MiB
    assert a.stats.allocated.current == 2 * 8_519_680 + 2 * MiB


def test_every_figure_has_a_source():
    table = load_device_table()
    for key in ("cublas_workspace", "cublaslt_workspace", "workspaces_per_training_process", "cuda_context"):
        assert table[key]["source"]
    assert table["cuda_context"]["assumption"] is True
