"""FSDP1 training steps (`FullyShardedDataParallel`, FULL_SHARD) run for real on CPU processes with gloo
(small models): each rank's bytes per phase, to check planner/memory/fsdp1.py.

The model is wrapped as accelerate's FSDP1 TRANSFORMER_BASED_WRAP wraps it: one FSDP unit (one
FlatParameter) per decoder layer and the root holding the rest (embedding, final norm, lm_head),
`use_orig_params=True` (HF Trainer's default), `limit_all_gathers=True`, forward prefetch off,
`BackwardPrefetch.BACKWARD_PRE` [accelerate 1.15 utils/dataclasses.py FullyShardedDataParallelPlugin
defaults]. Under bf16-/fp16-mixed the unit computes in 16 bit through `MixedPrecision(param_dtype=16 bit,
reduce_dtype=fp32)`, the same policy the FSDP2 runs use (profiler/distributed.py shard), without autocast.
The step is profiler/step.py's; the tracker (profiler/distributed.py ShardAwareTracker) follows FSDP1's
in-place `resize_` of the unsharded FlatParameter [torch/distributed/utils.py _alloc_storage, _free_storage].
On a CPU every collective is synchronous, so bytes are counted in program order: the order a GPU's
caching allocator counts `memory_allocated` in, since FSDP1 frees on the CPU thread (record_stream
defers reuse, not the count) [torch 2.13 fsdp/_flat_param.py _free_unsharded_flat_param].
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Iterator

import torch
import torch.distributed as dist

from gpuplan.planner import ModelSpec, PlannerError, TrainingSetup, computes_without_autocast, engine_of
from gpuplan.planner.specs.engines import Engine

from .build import Built, autocast_for, build_model, build_optimizer, initialize, materialize
from .distributed import ShardAwareTracker, decoder_layers, follow_resizes, spawn_gloo
from .dtypes import TORCH_DTYPES
from .step import run_steps


def wrap_fsdp1(lm: torch.nn.Module, setup: TrainingSetup) -> torch.nn.Module:
    """`lm` wrapped as accelerate's FSDP1 plugin wraps it (see the module docstring)."""
    from torch.distributed.fsdp import BackwardPrefetch, MixedPrecision, ShardingStrategy   # lazy: worker only
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP                      # lazy: worker only
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy                                 # lazy: worker only

    eng = engine_of(setup.parallel)
    mp_policy = None
    if computes_without_autocast(setup.precision, eng):
        mp_policy = MixedPrecision(param_dtype=TORCH_DTYPES[setup.precision.compute_dtype],
                                   reduce_dtype=torch.float32)
    policy = ModuleWrapPolicy({type(decoder_layers(lm)[0])})
    if setup.peft:   # HF Trainer's update_fsdp_plugin_peft: peft's policy, every trainable leaf its own unit
        from peft.utils.other import fsdp_auto_wrap_policy   # lazy: worker only

        policy = fsdp_auto_wrap_policy(lm)
    return FSDP(lm, auto_wrap_policy=policy, device_id=torch.device("cpu"),
                sharding_strategy=ShardingStrategy.FULL_SHARD, mixed_precision=mp_policy,
                backward_prefetch=BackwardPrefetch.BACKWARD_PRE, forward_prefetch=False,
                limit_all_gathers=True, use_orig_params=setup.parallel.fsdp1_orig_params)


class Fsdp1Tracker(ShardAwareTracker):
    """ShardAwareTracker that leaves out what the backend allocates inside a collective. FSDP1 allocates
    every collective's buffers itself before the call (the unsharded FlatParameter, the reduce-scatter's
    padded input and 1/n output) [_flat_param.py _all_gather_flat_param, _runtime_utils.py
    _get_reduce_scatter_tensors]; gloo's reduce-scatter then makes a full-size copy of its input on its own
    side (seen as a new storage first met through an `aten.split` during the root's reduce-scatter), which
    NCCL's in-place ncclReduceScatter does not make."""

    in_collective = False

    def _add(self, storage: torch.UntypedStorage, component) -> None:
        if not self.in_collective:
            super()._add(storage, component)


@contextlib.contextmanager
def backend_buffers_left_out(tracker: Fsdp1Tracker) -> Iterator[None]:
    """Marks the collectives FSDP1 calls [_runtime_utils.py _reduce_grad: dist.reduce_scatter_single;
    _flat_param.py _all_gather_flat_param: dist.all_gather_into_tensor] for the tracker while open."""
    originals = {name: getattr(dist, name) for name in ("reduce_scatter_single", "all_gather_into_tensor")}

    def marked(original):
        def call(*args, **kwargs):
            tracker.in_collective = True
            try:
                return original(*args, **kwargs)
            finally:
                tracker.in_collective = False
        return call

    for name, original in originals.items():
        setattr(dist, name, marked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def _worker(rank: int, world: int, store_path: str, model: ModelSpec, setup: TrainingSetup, steps: int,
            queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        one = replace(setup, parallel=type(setup.parallel)())
        lm, notes = build_model(model, one, torch.device("meta"))
        materialize(lm, torch.device("cpu"))
        initialize(lm)
        wrapped = wrap_fsdp1(lm, setup)
        optimizer = build_optimizer(wrapped, setup)
        autocast = autocast_for(setup, torch.device("cpu"))
        if computes_without_autocast(setup.precision, engine_of(setup.parallel)) and not setup.peft:
            autocast = contextlib.nullcontext
        tracker = Fsdp1Tracker(wrapped)
        with tracker, follow_resizes(tracker), backend_buffers_left_out(tracker):
            run_steps(Built(wrapped, optimizer, autocast, torch.device("cpu"), notes), setup, tracker, steps)
        queue.put((rank, {p.value: {"total": pk.total, **{c.value: b for c, b in pk.components.items()}}
                          for p, pk in tracker.peaks.items()}))
    finally:
        dist.destroy_process_group()


def measure_fsdp1_steps(model: ModelSpec, setup: TrainingSetup, steps: int = 2,
                        timeout: float = 300) -> list[dict[str, dict[str, int]]]:
    """Real FSDP1 FULL_SHARD steps in `setup.parallel.world` CPU processes (gloo): per rank, {phase: {"total":
    peak allocated bytes of the last step, component: its bytes at that peak}}."""
    setup.validate()
    setup.parallel.validate(model)
    if engine_of(setup.parallel) is not Engine.FSDP_FULL:
        raise PlannerError("the FSDP1 check runs FULL_SHARD only: use --fsdp full")
    return spawn_gloo(_worker, setup.parallel.world, (model, setup, steps), timeout, prefix="gpuplan-fsdp1-")
