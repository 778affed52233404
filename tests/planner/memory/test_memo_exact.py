"""The estimate's memos are exact: what a warm cache answers equals what a cold one computes.

Covered: the allocator replay's grid, shared by the setups that differ in batch size and sequence
length only (reserved._grid_of); the step shape a replay keeps for fragmentation_risk, built only
when read (Reserved.shape); one tensor/pipeline-parallel slice object per model and (tp, pp)
(slices.local_model); compute_setup; and estimate() computing its figures once with the replay,
as replayed() of the estimate without it does.
"""
from __future__ import annotations

import dataclasses

import pytest

from gpuplan.planner import Checkpointing, Method, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory import reserved as R
from gpuplan.planner.memory.estimate import replayed
from gpuplan.planner.memory.pieces import _compute_setup, compute_setup
from gpuplan.planner.memory.slices import _slice, local_model
from gpuplan.planner.specs.engines import Engine, engine_of
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec

NAME = "qwen-2.5-0.5b"
FIELDS = ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes", "components", "phases",
          "assumptions", "notes", "setup")


def _figures(est) -> tuple:
    return tuple(getattr(est, f) for f in FIELDS) + (dataclasses.astuple(est.allocator)[:6],)


SETUPS = [TrainingSetup(method=Method.LORA, batch_size=b, seq_len=s, checkpointing=ck)
          for b, s, ck in [(1, 512, Checkpointing.FULL), (3, 700, Checkpointing.FULL), (8, 2048, Checkpointing.FULL),
                           (2, 300, Checkpointing.NONE), (1, 4096, Checkpointing.NONE)]]
# one field apart from SETUPS[1] (the grid must not be shared with it: two micro-batches replayed)
SETUPS += [TrainingSetup(method=Method.LORA, batch_size=3, seq_len=700, checkpointing=Checkpointing.FULL, grad_accum=4)]
SETUPS += [TrainingSetup(batch_size=2, seq_len=1024, parallel=ParallelSpec(gpus=4, fsdp=Fsdp.FULL)),
           TrainingSetup(batch_size=4, seq_len=1024, parallel=ParallelSpec(gpus=4, fsdp=Fsdp.FULL)),
           TrainingSetup(batch_size=2, seq_len=512, grad_accum=4, parallel=ParallelSpec(gpus=4, tp=2)),
           TrainingSetup(batch_size=5, seq_len=512, grad_accum=4, parallel=ParallelSpec(gpus=4, tp=2))]


@pytest.mark.parametrize("i", range(len(SETUPS)))
def test_a_warm_cache_answers_what_a_cold_one_computes(i):
    warm = resolve_model(NAME)
    for s in SETUPS:                        # fill the grid memo from the other setups first
        estimate(warm, s)
    R._CACHE.clear()                        # the replays themselves too
    cold = resolve_model(NAME)              # a new model object: no per-model memo holds it
    assert _figures(estimate(warm, SETUPS[i])) == _figures(estimate(cold, SETUPS[i]))


@pytest.mark.parametrize("i", [0, 2, 5, 7])
def test_the_kept_step_shape_is_the_one_built_eagerly(i):
    m, s = resolve_model(NAME), SETUPS[i]
    est = estimate(m, s)
    assert callable(est.allocator.shape_of)             # not built yet
    low = estimate(m, s, replay=False)
    local, run, _, _ = low.pending
    eager = R.merged(R.step_shape(local, run, low.phase_components))
    assert est.allocator.shape == eager and est.allocator.shape_of == eager


@pytest.mark.parametrize("i", range(len(SETUPS)))
def test_estimate_with_the_replay_is_replayed_of_the_estimate_without_it(i):
    m = resolve_model(NAME)
    a, b = estimate(m, SETUPS[i]), replayed(estimate(m, SETUPS[i], replay=False))
    assert _figures(a) == _figures(b) and a.peak_phase == b.peak_phase and a.pending is b.pending is None


def test_one_slice_object_per_model_and_degrees():
    m = resolve_model(NAME)
    p = ParallelSpec(gpus=8, tp=2, pp=2)
    assert local_model(m, p) is local_model(m, ParallelSpec(gpus=4, tp=2, pp=2))
    assert local_model(m, p) == _slice(m, p) and local_model(m, p) is not local_model(m, ParallelSpec(gpus=2, tp=2))
    assert local_model(resolve_model(NAME), p) is not local_model(m, p)   # keyed by the model object
    assert local_model(m, ParallelSpec(gpus=4, fsdp=Fsdp.FULL)) is m


@pytest.mark.parametrize("setup", SETUPS + [TrainingSetup(method=Method.QLORA, parallel=ParallelSpec(gpus=2, zero=3))])
def test_compute_setup_memo_is_the_function(setup):
    for eng in {engine_of(setup.parallel), Engine.DDP}:
        assert compute_setup(setup, eng) == _compute_setup(setup, eng) == compute_setup(setup, eng)
