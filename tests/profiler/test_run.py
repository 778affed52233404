"""profiler/run.py measure(): the one entry point of the CLI, the dashboard and the accuracy matrix,
giving what each device's own profiler gives, with progress and one-line errors."""
from __future__ import annotations

import pytest

import gpuplan.profiler.simulate
from gpuplan.planner import Checkpointing, Fsdp, ParallelSpec, PlannerError, TrainingSetup
from gpuplan.profiler import Device, measure, profile_json
from gpuplan.profiler.cpu import measure_cpu
from gpuplan.profiler.distributed import simulate_distributed
from gpuplan.profiler.simulate import simulate

SETUP = TrainingSetup(batch_size=2, seq_len=32, checkpointing=Checkpointing.NONE)


def test_measure_is_the_device_s_own_profiler(tiny):
    assert measure(tiny, SETUP).to_dict() == simulate(tiny, SETUP).to_dict()
    assert measure(tiny, SETUP, Device.CPU).to_dict() == measure_cpu(tiny, SETUP).to_dict()
    sharded = SETUP.with_(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    assert measure(tiny, sharded).to_dict() == simulate_distributed(tiny, sharded).to_dict()


def test_progress_runs_from_0_to_1_with_the_device_s_default_steps(tiny):
    seen: list[tuple[float, str]] = []
    measure(tiny, SETUP, Device.SIMULATE, progress=lambda fraction, message: seen.append((fraction, message)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert seen[-1][1].startswith("simulating: tiny-llama, 2 steps, done in")
    assert [d.default_steps for d in Device] == [2, 2, 3]


def test_a_library_refusing_the_setup_is_a_planner_error(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("Gemma2ForCausalLM does not support sdpa yet.\nPlease request it.")

    monkeypatch.setattr(gpuplan.profiler.simulate, "simulate", refuse)
    with pytest.raises(PlannerError, match=r"^ValueError from the model's library: Gemma2ForCausalLM does not "
                                           r"support sdpa yet\.$"):
        measure(tiny, SETUP)


def test_multi_gpu_setups_go_to_the_distributed_profiler(tiny):
    sharded = SETUP.with_(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    with pytest.raises(PlannerError, match="--per-module is not available for multi-GPU"):
        measure(tiny, sharded, per_module=True)
    with pytest.raises(PlannerError, match="torchrun"):
        measure(tiny, sharded, Device.CUDA)


def test_profile_json_compares_with_the_estimate_only_when_asked(tiny):
    result = measure(tiny, SETUP)
    with_estimate, without = profile_json(tiny, SETUP, result), profile_json(tiny, SETUP, result, with_estimate=False)
    assert without == result.to_dict() and "comparison" not in without
    rows = {r["name"]: r for r in with_estimate["comparison"]["figures"]}
    assert rows["peak_allocated_bytes"]["measured_bytes"] == result.peak_allocated_bytes
    assert rows["peak_reserved_bytes"]["measured_bytes"] is None   # simulate cannot measure it
