"""The watch's NVML sampler against a fake NVML: the run's memory by PID, the container and MIG
fallbacks, clock-event reasons under either NVML name, unsupported calls, no NVML at all."""
import sys

from fake_nvml import GIB, H100, FakeNvml

from gpuplan.profiler.watch.nvml import FALLBACK_NOTE, NvmlSampler, reason_names


def test_the_runs_memory_is_the_sum_over_its_processes():
    nv = FakeNvml([H100, {**H100, "used": 3 * GIB}],
                  processes=lambda i: [(100, 5 * GIB), (101, 2 * GIB), (999, 9 * GIB)] if i == 0 else [(999, GIB)])
    gpus, notes = NvmlSampler(nv).sample([100, 101, 102])
    assert notes == []
    g0, g1 = gpus
    assert (g0["run_memory_bytes"], g0["run_memory_source"], g0["run_pids"]) == (7 * GIB, "process", [100, 101])
    assert (g1["run_memory_bytes"], g1["run_memory_source"]) == (0, "process")   # NVML's PIDs are ours: none here
    assert g0["memory_used_bytes"] == 20 * GIB and g0["memory_total_bytes"] == 81559 * 2**20
    assert (g0["utilization_pct"], g0["memory_utilization_pct"], g0["power_w"]) == (97, 41, 612.0)
    assert (g0["sm_clock_mhz"], g0["memory_clock_mhz"], g0["temperature_c"]) == (1980, 2619, 63)
    assert g0["name"] == "NVIDIA H100 80GB HBM3"   # bytes from NVML decoded


def test_container_host_pids_fall_back_to_the_device_total_and_say_so():
    nv = FakeNvml([H100], processes=lambda i: [(48213, 19 * GIB)])   # the host's PID, not ours
    gpus, notes = NvmlSampler(nv).sample([7, 8])
    assert (gpus[0]["run_memory_bytes"], gpus[0]["run_memory_source"]) == (20 * GIB, "device")
    assert notes == [FALLBACK_NOTE]


def test_mig_without_per_process_memory_falls_back():
    nv = FakeNvml([H100], processes=lambda i: [(7, None)])   # usedGpuMemory unavailable
    gpus, notes = NvmlSampler(nv).sample([7])
    assert gpus[0]["run_memory_source"] == "device" and gpus[0]["run_memory_bytes"] == 20 * GIB and notes
    nv = FakeNvml([H100], unsupported=("nvmlDeviceGetComputeRunningProcesses",))
    gpus, notes = NvmlSampler(nv).sample([7])
    assert gpus[0]["run_memory_source"] == "device" and notes


def test_no_process_on_any_gpu_is_zero_not_a_fallback():
    gpus, notes = NvmlSampler(FakeNvml([H100])).sample([7])
    assert (gpus[0]["run_memory_bytes"], gpus[0]["run_memory_source"], notes) == (0, "process", [])


def test_clock_event_reasons_under_either_nvml_name():
    for old in (False, True):
        nv = FakeNvml([{**H100, "reasons": 0x4 | 0x40 | 0x1}], old_names=old)
        gpus, _ = NvmlSampler(nv).sample([])
        assert gpus[0]["clock_event_reasons"] == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"], old


def test_reason_names_from_the_real_module_cover_both_names():
    import pynvml

    names = dict(reason_names(pynvml))
    assert names[0x4] == "sw_power_cap" and names[0x40] == "hw_thermal_slowdown"
    assert 0x1ff not in names and 0 not in names          # the All / None masks are not reasons


def test_unsupported_calls_are_null_figures():
    nv = FakeNvml([H100], unsupported=("nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature", "reasons"))
    g = NvmlSampler(nv).sample([])[0][0]
    assert g["power_w"] is None and g["temperature_c"] is None and g["clock_event_reasons"] is None
    assert g["utilization_pct"] == 97


def test_without_nvml_the_sampler_says_why(monkeypatch):
    s = NvmlSampler(FakeNvml([], init_error=True))
    assert not s.available and "NVML is not available" in s.reason and s.sample([1]) == ([], [])
    monkeypatch.setitem(sys.modules, "pynvml", None)   # import pynvml raises ImportError
    s = NvmlSampler()
    assert not s.available and "nvidia-ml-py is not installed" in s.reason


def test_driver_and_cuda_versions_outlive_close():
    s = NvmlSampler(FakeNvml([H100]))
    s.close()   # the watch writes its record after closing NVML (the fake, as NVML, then refuses every call)
    assert (s.driver(), s.cuda_driver()) == ("580.65.06", "12.8")
