"""simulate_reserved: the tracker's allocation log replayed through the caching allocator model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan.planner import TrainingSetup, model_from_config
from gpuplan.planner.memory.replay import Op
from gpuplan.profiler.allocator_replay import replay_events, simulate_reserved, simulated_events
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.tracker import allocator_bytes

FIXTURE = Path(__file__).parents[1] / "app" / "fixtures" / "tiny-llama-config.json"
MiB = 2**20


@pytest.fixture(scope="module")
def tiny_model():
    return model_from_config(json.loads(FIXTURE.read_text()), name="tiny-llama")


@pytest.fixture(scope="module")
def setup():
    return TrainingSetup.from_dict({"batch_size": 2, "seq_len": 64})


@pytest.fixture(scope="module")
def sim(tiny_model, setup):
    return simulated_events(tiny_model, setup)


def test_replay_allocated_peak_equals_the_trackers(tiny_model, setup, sim):
    result = replay_events(sim)
    assert result.peak_allocated == simulate(tiny_model, setup).peak_allocated_bytes   # an independent run
    assert result.peak_allocated == sim.tracker_peak_allocated
    assert result.peak_reserved >= result.peak_allocated and result.peak_reserved % (2 * MiB) == 0
    assert result.fits and result.peak_reserved_at in {"forward", "backward", "optimizer"}


def test_the_log_is_the_trackers_ledger(sim):
    """Replaying the log's sizes with the tracker's own rounding gives its peak: the log misses nothing."""
    live, current, peak = {}, 0, 0
    for e in sim.events:
        if e.op is Op.MALLOC:
            live[e.key] = allocator_bytes(e.size)
            current += live[e.key]
            peak = max(peak, current)
        elif e.op is Op.FREE:
            current -= live.pop(e.key)
        elif e.op is Op.RESET_PEAKS:
            peak = current
    assert peak == sim.tracker_peak_allocated
    assert [e.label for e in sim.events if e.op is Op.MARK][:3] == ["forward", "forward", "backward"]


def test_configs_and_capacity_change_the_verdict(sim):
    default = replay_events(sim)
    expandable = replay_events(sim, "expandable_segments:True")
    assert expandable.peak_allocated == default.peak_allocated
    assert expandable.peak_reserved % (2 * MiB) == 0
    tight = replay_events(sim, capacity=default.peak_allocated // 2)
    assert not tight.fits and not tight.oom.fragmentation
    workspace = replay_events(sim, persistent=[32 * MiB])    # a cuBLAS workspace on Hopper
    assert workspace.peak_allocated == default.peak_allocated + 32 * MiB


def test_fsdp2_replay_follows_in_place_resizes(tiny_model):
    from gpuplan.planner import Fsdp, ParallelSpec
    from gpuplan.profiler.distributed import simulate_distributed

    setup = TrainingSetup(batch_size=2, seq_len=32, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    allocated, reserved, details = simulate_reserved(tiny_model, setup, "expandable_segments:True")
    assert allocated == simulate_distributed(tiny_model, setup).peak_allocated_bytes
    assert allocated == details["tracker_peak_allocated_bytes"] and reserved >= allocated
    assert details["fits"] and details["config"] == "expandable_segments:True"


def test_fsdp2_collective_buffers_are_logged_on_their_own_streams(tiny_model):
    from gpuplan.planner import Fsdp, ParallelSpec
    from gpuplan.profiler.allocator_replay import simulated_events_fsdp

    setup = TrainingSetup(batch_size=2, seq_len=32, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    sim = simulated_events_fsdp(tiny_model, setup)
    streams = {e.stream for e in sim.events if e.op is Op.MALLOC}
    assert streams == {0, 1, 2}     # default, all-gather copy-in, reduce-scatter
    assert replay_events(sim).peak_allocated == sim.tracker_peak_allocated
