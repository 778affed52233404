"""DeviceMemorySampler: what `nvidia-smi` shows for this process, sampled in a background thread.

The caching allocator's statistics stop at `reserved`; the CUDA context, cuBLAS/cuDNN handles and
loaded kernels sit outside it. NVML sees them. Sources, best first:
1. NVML's per-process used memory (`nvmlDeviceGetComputeRunningProcesses`), as nvidia-smi's
   process table shows it; absent in containers whose PID namespace hides the host PID.
2. NVML's device-wide used memory (includes other processes on the same GPU).
3. `torch.cuda.mem_get_info` (cudaMemGetInfo), device-wide, when nvidia-ml-py is not installed.
"""
from __future__ import annotations

import os
import threading
from typing import Callable

import torch

SAMPLE_INTERVAL_S = 0.005   # a sample costs ~0.1 ms of NVML time; 5 ms catches a phase of any real step


def _nvml_reader(device: torch.device) -> tuple[Callable[[], int], str | None] | None:
    """A function returning used bytes from NVML, and a note on what it counts; None without NVML."""
    try:
        import pynvml   # optional (nvidia-ml-py): without it, cudaMemGetInfo answers

        pynvml.nvmlInit()
        index = device.index or 0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:   # NVML numbers all GPUs; torch only the visible ones
            index = int(visible.split(",")[index])
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:   # not installed, no driver, a UUID in CUDA_VISIBLE_DEVICES: use the fallback
        return None
    pid = os.getpid()

    def process_used() -> int | None:
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
        return None

    def device_used() -> int:
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)

    torch.cuda.init()   # a context, so that this process is listed
    try:
        if process_used() is not None:
            return lambda: process_used() or 0, None
    except Exception:   # NVML_ERROR_NOT_SUPPORTED on some drivers and vGPUs
        pass
    return device_used, "device total is NVML's device-wide used memory (this process is not listed by PID)"


def _mem_get_info_reader(device: torch.device) -> Callable[[], int]:
    def used() -> int:
        free, total = torch.cuda.mem_get_info(device)
        return int(total - free)
    return used


class DeviceMemorySampler:
    """Context manager: samples used device bytes every SAMPLE_INTERVAL_S; `peak` is the largest seen."""

    def __init__(self, device: torch.device, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak = 0
        self.note: str | None = None
        self._read: Callable[[], int] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()   # reset() and the sampling thread both write `peak`
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Reads used bytes now and folds them into `peak`; returns them."""
        used = self._read() if self._read else 0
        with self._lock:
            self.peak = max(self.peak, used)
        return used

    def reset(self) -> None:
        """Forgets the peak so far (the tracker's measured window starts now)."""
        with self._lock:
            self.peak = 0
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "DeviceMemorySampler":
        nvml = _nvml_reader(self.device)
        if nvml is None:
            self._read = _mem_get_info_reader(self.device)
            self.note = "device total is cudaMemGetInfo's device-wide used memory (nvidia-ml-py not available)"
        else:
            self._read, self.note = nvml
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="gpuplan-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
