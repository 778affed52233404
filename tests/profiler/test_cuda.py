"""measure_cuda(): the no-GPU message, OOM as an answer, the batch search; a real run where a GPU is."""
from __future__ import annotations

import json

import pytest
import torch

from gpuplan.planner import Component, Phase, PlannerError, TrainingSetup
from gpuplan.profiler import cuda, nvml
from gpuplan.profiler.measurement import Measurement

SETUP = TrainingSetup(batch_size=2, seq_len=16)
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB\nmore detail"


def test_no_gpu_names_the_alternatives(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PlannerError) as e:
        cuda.measure_cuda(tiny, SETUP)
    assert "no CUDA GPU" in str(e.value)
    assert "--device simulate" in str(e.value) and "--device cpu" in str(e.value)


def test_missing_gpu_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PlannerError, match=r"GPU index 5 does not exist: this machine has 2 \(0..1\)"):
        cuda.require_cuda(5)


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda as a 80 GiB GPU whose allocator reports fixed figures, with no device behind it."""
    stats = {"allocated": 70 * 2**30, "reserved": 72 * 2**30}
    for name, value in {
        "is_available": lambda: True, "device_count": lambda: 1,
        "get_device_name": lambda d=None: "Fake GPU 80GB",
        "max_memory_allocated": lambda d=None: stats["allocated"],
        "max_memory_reserved": lambda d=None: stats["reserved"],
        "reset_peak_memory_stats": lambda d=None: None, "empty_cache": lambda: None,
        "synchronize": lambda d=None: None,
        "mem_get_info": lambda d=None: (2 * 2**30, 80 * 2**30),
    }.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(nvml, "_nvml_reader", lambda device: None)   # cudaMemGetInfo path
    return stats


def test_out_of_memory_is_an_answer_not_a_crash(tiny, fake_gpu, monkeypatch):
    def run(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(OOM)

    monkeypatch.setattr(cuda, "_run", run)
    result = cuda.measure_cuda(tiny, SETUP)
    assert isinstance(result, Measurement) and result.fits is False
    assert result.notes[0] == "does not fit: CUDA out of memory. Tried to allocate 2.00 GiB. " \
                              "GPU 0 has a total capacity of 79.19 GiB"
    assert result.device == "cuda:0 (Fake GPU 80GB)"
    assert result.peak_allocated_bytes == fake_gpu["allocated"]
    assert result.peak_reserved_bytes == fake_gpu["reserved"]
    assert result.device_total_bytes == 78 * 2**30          # total - free from cudaMemGetInfo
    assert result.to_dict()["fits"] is False


def test_a_run_that_fits_combines_allocator_nvml_and_tracker(tiny, fake_gpu, monkeypatch):
    """The success path end to end, with the CPU standing in for the GPU and fixed allocator figures."""
    from gpuplan.profiler.cpu import measure_cpu

    monkeypatch.setattr(cuda, "require_cuda", lambda device=0: torch.device("cpu"))
    result = cuda.measure_cuda(tiny, SETUP, steps=2)
    assert result.fits is True
    assert set(result.phases) == set(Phase) and result.peak_allocated_bytes == fake_gpu["allocated"]
    assert result.components[Component.ALLOCATOR_SLACK] == fake_gpu["reserved"] - fake_gpu["allocated"]
    assert result.components[Component.CUDA_CONTEXT] == 78 * 2**30 - fake_gpu["reserved"]
    assert result.phase_components == measure_cpu(tiny, SETUP).phase_components   # the tracker's breakdown
    assert any("cudaMemGetInfo" in note for note in result.notes)
    record = result.to_dict()   # untracked steps timed: the record calibrates the time model
    assert record["gpu"] == "Fake GPU 80GB" and record["timing"]["step_time_s"] > 0
    assert record["setup"]["model"] == tiny.name


def test_a_recorded_gpu_run_calibrates_the_mfu(tiny_config, tmp_path, monkeypatch):
    """profile --output JSON of a GPU run, copied into data/measurements/, sets the MFU."""
    from gpuplan.planner import resolve_gpu, resolve_model
    from gpuplan.planner.io import catalog
    from gpuplan.planner.speed import ceiling, throughput
    from gpuplan.planner.speed.flops import step_flops

    model = resolve_model("llama-3.2-1b")
    setup = SETUP.with_(batch_size=4, seq_len=1024)
    gpu = resolve_gpu("h100-sxm-80gb")
    flops = step_flops(model, setup).hardware * setup.batch_size * setup.seq_len
    step = flops / (0.4 * gpu.peak_flops("bf16"))            # a step that ran at 40% MFU
    m = Measurement(device="cuda:0 (NVIDIA H100 80GB HBM3)", peak_allocated_bytes=1, components={},
                    phases={p: 1 for p in Phase}, phase_components={p: {} for p in Phase}, setup={**setup.to_dict(model), "model": model.name},
                    gpu="NVIDIA H100 80GB HBM3", timing={"step_time_s": step, "steps_timed": 3})
    (tmp_path / "measurements").mkdir()
    (tmp_path / "measurements" / "h100-run.json").write_text(json.dumps(m.to_dict()))
    monkeypatch.setattr(catalog, "measurements_dir", lambda: tmp_path / "measurements")
    throughput.calibrated_mfu.cache_clear()
    try:
        mfu, source = throughput.calibrated_mfu(gpu.name)
    finally:
        throughput.calibrated_mfu.cache_clear()
    # the calibration is a fraction of the card's measured matmul ceiling (planner/speed/ceiling.py)
    ceil = ceiling.matmul_ceiling(gpu, "bf16")
    assert mfu == pytest.approx(0.4 / ceil.ratio) and "h100-run.json" in source


def test_other_errors_are_not_swallowed(tiny, fake_gpu, monkeypatch):
    def run(*args, **kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(cuda, "_run", run)
    with pytest.raises(RuntimeError, match="a real bug"):
        cuda.measure_cuda(tiny, SETUP)


@pytest.mark.parametrize("largest, limit", [(0, 64), (1, 64), (37, 4096), (64, 64), (100, 100), (3, 4096)])
def test_largest_fitting_doubles_then_bisects(largest, limit):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= largest

    assert cuda.largest_fitting(fits, limit) == largest
    assert len(tried) <= 2 * max(limit, 2).bit_length() + 1
    assert all(n <= limit for n in tried)


def test_find_max_batch_runs_fresh_trials(tiny, fake_gpu, monkeypatch):
    seen = []

    def measure(model, setup, steps, device):
        seen.append(setup.batch_size)
        return Measurement("cuda:0", 0, {}, {}, {}, fits=setup.batch_size <= 12)

    monkeypatch.setattr(cuda, "measure_cuda", measure)
    trials = []
    assert cuda.find_max_batch(tiny, SETUP, on_trial=lambda b, r: trials.append((b, r.fits))) == 12
    assert seen[:5] == [1, 2, 4, 8, 16] and (12, True) in trials and (13, False) in trials


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_step(tiny):
    result = cuda.measure_cuda(tiny, SETUP, per_module=True)
    assert result.fits is True
    assert result.device.startswith("cuda:0 (")
    assert 0 < result.peak_allocated_bytes <= result.peak_reserved_bytes <= result.device_total_bytes
    tracked = sum(result.phase_components[result.peak_phase].values())
    assert tracked <= result.peak_allocated_bytes            # kernel workspaces are only in the allocator's
    assert result.components[Component.ALLOCATOR_SLACK] >= 0 and result.components[Component.CUDA_CONTEXT] > 0
    assert result.per_module["param_bytes"] == result.components[Component.WEIGHTS]
