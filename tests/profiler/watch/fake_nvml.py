"""A fake NVML module (imported by name: `from fake_nvml import FakeNvml`) for the watch's tests (never a GPU): the nvidia-ml-py functions the sampler calls,
with devices, processes and unsupported calls set by each test."""
from __future__ import annotations

import types
from types import SimpleNamespace
from typing import Callable

GIB = 2**30


class NVMLError(Exception):
    pass


class FakeNvml(types.ModuleType):
    """Module-like: `FakeNvml(devices, processes=lambda index: [(pid, bytes), ...])`.

    old_names: only the pre-535 `nvmlDeviceGetCurrentClocksThrottleReasons` / `nvmlClocksThrottleReason*`
    names exist (as in nvidia-ml-py < 12.535); otherwise only the new `ClocksEvent` ones.
    unsupported: function names that raise NVMLError (NotSupported on this board)."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, devices: list[dict], processes: Callable[[int], list] = lambda i: [],
                 old_names: bool = False, unsupported: tuple[str, ...] = (), init_error: bool = False) -> None:
        super().__init__("pynvml")
        self.devices, self.processes, self.unsupported, self.init_error = devices, processes, set(unsupported), init_error
        self.calls = 0
        self.initialized = False
        prefix = "nvmlClocksThrottleReason" if old_names else "nvmlClocksEventReason"
        # bit values as nvidia-ml-py 13.615 defines them (pynvml.py)
        for name, bit in (("GpuIdle", 0x1), ("ApplicationsClocksSetting", 0x2), ("SwPowerCap", 0x4),
                          ("HwSlowdown", 0x8), ("SyncBoost", 0x10), ("SwThermalSlowdown", 0x20),
                          ("HwThermalSlowdown", 0x40), ("HwPowerBrakeSlowdown", 0x80), ("None", 0x0), ("All", 0x1ff)):
            setattr(self, prefix + name, bit)
        reasons = self._reasons
        if old_names:
            self.nvmlDeviceGetCurrentClocksThrottleReasons = reasons
        else:
            self.nvmlDeviceGetCurrentClocksEventReasons = reasons

    def _check(self, name: str) -> None:
        self.calls += 1
        if not self.initialized:   # as the real library: every call after nvmlShutdown fails
            raise NVMLError(f"{name}: Uninitialized")
        if name in self.unsupported:
            raise NVMLError(f"{name}: Not Supported")

    def nvmlInit(self):
        if self.init_error:
            raise NVMLError("NVML Shared Library Not Found")
        self.initialized = True

    def nvmlShutdown(self):
        self.initialized = False

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.devices[h]["name"].encode()   # bytes, as older nvidia-ml-py returns

    def nvmlSystemGetDriverVersion(self):
        self._check("nvmlSystemGetDriverVersion")
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion(self):
        self._check("nvmlSystemGetCudaDriverVersion")
        return 12080

    def nvmlDeviceGetMemoryInfo(self, h):
        self._check("nvmlDeviceGetMemoryInfo")
        d = self.devices[h]
        return SimpleNamespace(total=d["total"], used=d["used"], free=d["total"] - d["used"])

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes(h)]

    def nvmlDeviceGetUtilizationRates(self, h):
        self._check("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self.devices[h].get("util", 97), memory=self.devices[h].get("mem_util", 41))

    def nvmlDeviceGetPowerUsage(self, h):
        self._check("nvmlDeviceGetPowerUsage")
        return self.devices[h].get("power_mw", 612_000)

    def nvmlDeviceGetClockInfo(self, h, kind):
        self._check("nvmlDeviceGetClockInfo")
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, h, kind):
        self._check("nvmlDeviceGetTemperature")
        return 63

    def _reasons(self, h):
        self._check("reasons")
        return self.devices[h].get("reasons", 0x4)


H100 = {"name": "NVIDIA H100 80GB HBM3", "total": 81559 * 2**20, "used": 20 * GIB}
