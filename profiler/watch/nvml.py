"""The watch's NVML sampler: per GPU, what `nvidia-smi` shows, and how much of it is the run's.

nvidia-ml-py (`pynvml`) calls, one sample each (every call may raise NVMLError_NotSupported on a
given board; that figure is then null):
- nvmlDeviceGetMemoryInfo: device-wide used/total bytes
- nvmlDeviceGetComputeRunningProcesses: per-process used bytes (usedGpuMemory; None under MIG/WDDM)
- nvmlDeviceGetUtilizationRates: .gpu (kernel busy %), .memory (memory-controller busy %)
- nvmlDeviceGetPowerUsage (mW), nvmlDeviceGetClockInfo(SM / MEM) (MHz), nvmlDeviceGetTemperature (C)
- nvmlDeviceGetCurrentClocksEventReasons (driver >= 535; the name before that:
  nvmlDeviceGetCurrentClocksThrottleReasons, deprecated in nvidia-ml-py 12.535): a bit mask, decoded
  with the module's own `nvmlClocksEventReason*` / `nvmlClocksThrottleReason*` constants

The run's memory: NVML lists processes by PID in its own (the host's) PID namespace. Where a run's
PID is listed, the run's bytes are the sum over its processes (0 on a GPU where none is listed; and
0 everywhere while NVML lists no process at all). In a container the listed PIDs are the host's and
none matches, and under MIG per-process memory is unavailable (the call fails, or usedGpuMemory is
None): the run's bytes then fall back to the device-wide used memory, and the sample says so.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

FALLBACK_NOTE = ("NVML lists no process of this run by PID (a container's PID namespace hides the host PIDs, or "
                 "MIG hides per-process memory): the run's GPU memory is the device-wide used memory, other "
                 "processes on the GPU included")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def reason_names(nvml: Any) -> list[tuple[int, str]]:
    """(bit, name) of every clock-event reason the module defines, under either of NVML's names
    (`nvmlClocksEventReasonSwPowerCap` and the older `nvmlClocksThrottleReasonSwPowerCap` -> sw_power_cap)."""
    bits: dict[int, str] = {}
    for attr in dir(nvml):
        m = re.fullmatch(r"nvmlClocks(?:Event|Throttle)Reason(\w+)", attr)
        if not m or m.group(1) in ("All", "None"):
            continue
        value = getattr(nvml, attr)
        if isinstance(value, int) and value and value & (value - 1) == 0:   # one bit: not a union mask
            bits.setdefault(value, _snake(m.group(1)))
    return sorted(bits.items())


class NvmlSampler:
    """Opens NVML once; `sample(pids)` reads every GPU. `available` is False (with `reason`) where
    nvidia-ml-py is missing or there is no driver: the watch then samples /proc and the hook only."""

    def __init__(self, nvml: Any = None) -> None:
        self.available, self.reason = False, None
        self.nvml = nvml
        self.handles: list[Any] = []
        self.names: list[str] = []
        try:
            if self.nvml is None:
                import pynvml  # lazy: nvidia-ml-py is optional (the profile extra); absent, the sampler says so

                self.nvml = pynvml
            self.nvml.nvmlInit()
            count = self.nvml.nvmlDeviceGetCount()
            self.handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.names = [_text(self.nvml.nvmlDeviceGetName(h)) for h in self.handles]
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py): no GPU figures"
            return
        except Exception as e:   # NVMLError_LibraryNotFound / DriverNotLoaded: a machine without a GPU
            self.reason = f"NVML is not available ({type(e).__name__}: {e}): no GPU figures"
            return
        self.available = bool(self.handles)
        if not self.handles:
            self.reason = "NVML sees no GPU"
        self._reasons = reason_names(self.nvml)
        self._event_reasons = (getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                               or getattr(self.nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        # read once, while NVML is open: the record is written after close()
        self._driver = _text(self._call(getattr(self.nvml, "nvmlSystemGetDriverVersion", None)))
        self._cuda_driver = self._call(getattr(self.nvml, "nvmlSystemGetCudaDriverVersion", None))

    def _call(self, fn: Callable[..., Any] | None, *args: Any) -> Any:
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception:   # NVMLError_NotSupported / NoPermission on this board: the figure is null
            return None

    def driver(self) -> str | None:
        return self._driver if self.available else None

    def cuda_driver(self) -> str | None:
        """The CUDA version the driver supports ("12.8"), nvmlSystemGetCudaDriverVersion's 12080."""
        v = self._cuda_driver if self.available else None
        return None if v is None else f"{v // 1000}.{(v % 1000) // 10}"

    def sample(self, pids: Iterable[int]) -> tuple[list[dict[str, Any]], list[str]]:
        """(one dict per GPU, notes). `run_memory_bytes` is the run's processes' bytes on that GPU
        (`run_memory_source` "process"), or the device-wide used bytes (`"device"`) where NVML lists
        none of the run's PIDs on any GPU."""
        if not self.available:
            return [], []
        nv, pids = self.nvml, set(pids)
        gpus, matched, listed, unreadable = [], False, False, set()
        for index, h in enumerate(self.handles):
            mem = self._call(nv.nvmlDeviceGetMemoryInfo, h)
            util = self._call(nv.nvmlDeviceGetUtilizationRates, h)
            procs = self._call(nv.nvmlDeviceGetComputeRunningProcesses, h)
            ours = [p for p in (procs or []) if p.pid in pids]
            matched, listed = matched or bool(ours), listed or bool(procs)
            if procs is None:
                unreadable.add(index)
            known = bool(ours) and all(p.usedGpuMemory is not None for p in ours)
            power = self._call(nv.nvmlDeviceGetPowerUsage, h)
            reasons = self._call(self._event_reasons, h)
            gpus.append({
                "index": index, "name": self.names[index],
                "memory_total_bytes": None if mem is None else int(mem.total),
                "memory_used_bytes": None if mem is None else int(mem.used),
                "run_memory_bytes": sum(int(p.usedGpuMemory) for p in ours) if known else (0 if not ours else None),
                "run_memory_source": "process",
                "run_pids": sorted(p.pid for p in ours),
                "utilization_pct": None if util is None else int(util.gpu),
                "memory_utilization_pct": None if util is None else int(util.memory),
                "power_w": None if power is None else power / 1000,
                "sm_clock_mhz": self._call(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
                "memory_clock_mhz": self._call(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
                "temperature_c": self._call(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
                "clock_event_reasons": None if reasons is None else [n for bit, n in self._reasons if reasons & bit],
            })
        notes = []
        # NVML's PIDs are not ours where it lists processes and none of them is the run's
        foreign = listed and not matched
        fallback = [g for g in gpus if foreign or g["run_memory_bytes"] is None or g["index"] in unreadable]
        for g in fallback:
            g["run_memory_bytes"], g["run_memory_source"] = g["memory_used_bytes"], "device"
        if fallback:
            notes.append(FALLBACK_NOTE)
        return gpus, notes

    def close(self) -> None:
        if self.available:
            self._call(self.nvml.nvmlShutdown)


def _text(value: Any) -> str | None:
    """NVML strings are bytes in older nvidia-ml-py releases, str in newer ones."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
