"""FSDP2 training steps across ranks: simulated for any world size on one CPU, or real with gloo.

Simulated: one process plays rank 0 of a `world`-rank job. torch's fake process group answers
every collective instantly without peers [torch/testing/_internal/distributed/fake_pg.py], and
FakeTensorMode makes every tensor cost nothing while knowing its bytes, so a 70B model on 64
"GPUs" runs on a laptop. The model is wrapped as HF accelerate wraps it for FSDP2 (each decoder
layer `fully_shard`-ed, then the root), with the engine's MixedPrecisionPolicy
(planner/engines.py); the step is profiler/step.py's.

Counting bytes under FSDP2 needs two things a plain dispatch-mode tracker misses
[DESIGN.md, "Counting bytes without a GPU: pitfalls"]: parameters, gradients and optimizer state
are DTensors, wrapper subclasses whose own storage is a global-size shell, so the tracker counts
their local tensors; and FSDP2 frees and regrows unsharded parameters in place with
`untyped_storage().resize_` [torch/distributed/fsdp/_fully_shard/_fsdp_common.py: _alloc_storage,
_free_storage], which the tracker follows by wrapping `UntypedStorage.resize_` as PyTorch's own
MemTracker does [torch/distributed/_tools/mem_tracker.py].

Real: `run_gloo` spawns `world` CPU processes with the gloo backend and runs the same FSDP2 step,
or DDP (which cannot run on fake tensors: its C++ reducer reads tensor data), with real tensors
(small models), returning every rank's measurement. A torchrun launcher for GPUs is not written
yet (no GPU to check it on); `fsdp_step` is the per-rank body it would call.
"""
from __future__ import annotations

import contextlib
import os
import queue as queues
import tempfile
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.testing._internal.distributed.fake_pg import FakeStore   # registers the "fake" backend
from torch.utils._pytree import tree_iter

from gpuplan.planner import (Component, Engine, ModelSpec, Offload, ParallelSpec, Phase, PlannerError, TrainingSetup,
                             computes_without_autocast, engine_of)

from .build import Built, autocast_for, build, build_model, build_optimizer
from .device import Device
from .dtypes import TORCH_DTYPES
from .measurement import Measurement, from_tracker
from .step import run_steps
from .tracker import StorageTracker, allocator_bytes


_COLLECTIVE_BUFFER = {"_allgather_base_": 0, "_reduce_scatter_base_": 1, "allreduce_": 0}


def _local(t: torch.Tensor) -> list[torch.Tensor]:
    """The tensors that own memory behind `t`: itself, or a wrapper subclass's inner tensors."""
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.Tensor and not _is_fake(t):
        names, _ = t.__tensor_flatten__()
        inner = [getattr(t, n) for n in names]
        return [x for i in inner if isinstance(i, torch.Tensor) for x in _local(i)]
    return [t]


def _is_fake(t: torch.Tensor) -> bool:
    return isinstance(t, FakeTensor)


class ShardAwareTracker(StorageTracker):
    """StorageTracker that looks inside DTensors and follows in-place storage resizes."""

    def __init__(self, model: torch.nn.Module | None = None) -> None:
        super().__init__()
        self._model = model
        self.collectives: list[tuple[str, int]] = []   # (op, full-size buffer bytes) since reset_peaks

    def reset_peaks(self) -> None:
        super().reset_peaks()
        self.collectives = []

    def track(self, tensors, component: Component) -> None:
        super().track([x for t in tensors if isinstance(t, torch.Tensor) for x in _local(t)], component)

    def mark(self, phase: Phase, component: Component) -> None:
        # FSDP2 assigns reduce-scattered gradients to the sharded parameters directly (no
        # post-accumulate-grad hook fires); label them once backward is done
        if phase is Phase.OPTIMIZER and self._model is not None:
            self.track([p.grad for p in self._model.parameters() if p.grad is not None], Component.GRADIENTS)
        super().mark(phase, component)

    def resized(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        key = storage._cdata
        entry = self._live.get(key)
        if entry is None:
            if nbytes:
                self._add(storage, self.default_component)
            return
        old, component = entry
        new = allocator_bytes(nbytes)
        # storages FSDP2 regrows are unsharded parameters: weights, as planner/memory/sharded.py counts them
        self._live[key] = (new, Component.WEIGHTS)
        self.totals[component] -= old
        self.totals[Component.WEIGHTS] += new
        self.current += new - old
        self._update_peak()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "c10d" and func.__name__.split(".")[0] in _COLLECTIVE_BUFFER:
            # the full-size buffer: all-gather's output, reduce-scatter's input [c10d/Ops.cpp signatures]
            name = func.__name__.split(".")[0]
            buf = args[_COLLECTIVE_BUFFER[name]]
            tensors = buf if isinstance(buf, (list, tuple)) else [buf]   # allreduce_ takes a list
            self.collectives.append((name, sum(t.numel() * t.element_size() for t in tensors)))
            if name == "_allgather_base_":   # the flat all-gather output holds parameters
                self.track(tensors, Component.WEIGHTS)
        for t in tree_iter(out):
            if isinstance(t, torch.Tensor):
                for x in _local(t):
                    if x.device.type != "meta":
                        self._add(x.untyped_storage(), self.default_component)
        return out


@contextlib.contextmanager
def follow_resizes(tracker: ShardAwareTracker) -> Iterator[None]:
    """Routes `UntypedStorage.resize_` through the tracker while the context is open."""
    original = torch.UntypedStorage.resize_

    def resize_(self, size):
        out = original(self, size)
        tracker.resized(self, int(size))
        return out

    torch.UntypedStorage.resize_ = resize_
    try:
        yield
    finally:
        torch.UntypedStorage.resize_ = original


def check_supported(setup: TrainingSetup, real: bool = False) -> Engine:
    p = setup.parallel
    eng = engine_of(p)
    if eng is Engine.DDP and not real:
        raise PlannerError("DDP cannot be simulated: its C++ reducer reads tensor data, which fake tensors lack; "
                           "use --device cpu (real gloo processes, small models)")
    if not eng.fsdp and eng is not Engine.DDP:
        raise PlannerError(f"the distributed profiler runs FSDP2 (--fsdp full, grad-op or hybrid) and DDP, not "
                           f"{eng.value}; ZeRO needs the deepspeed package and a GPU")
    if p.tp > 1 or p.pp > 1:
        raise PlannerError("the distributed profiler runs FSDP2 data parallelism only: use --tp 1 --pp 1")
    if p.offload is not Offload.NONE:
        raise PlannerError("the distributed profiler does not simulate CPU offload (host memory is not tracked)")
    return eng


def decoder_layers(lm: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers (model.layers, transformer.h, gpt_neox.layers...): its
    longest ModuleList, what accelerate's transformer_layer_cls_to_wrap names by class."""
    lists = [m for m in lm.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise PlannerError("found no stack of decoder layers to shard in this model")
    return max(lists, key=len)


def shard(lm: torch.nn.Module, setup: TrainingSetup, mesh) -> torch.nn.Module:
    """fully_shard every decoder layer, then the root, as accelerate's FSDP2 TRANSFORMER_BASED_WRAP does,
    passing the same reshard_after_forward to both [accelerate/utils/fsdp_utils.py: fsdp2_prepare_model].
    """
    eng = engine_of(setup.parallel)
    policy = MixedPrecisionPolicy()
    if computes_without_autocast(setup.precision, eng):
        policy = MixedPrecisionPolicy(param_dtype=TORCH_DTYPES[setup.precision.compute_dtype],
                                      reduce_dtype=torch.float32)
    reshard = eng is not Engine.FSDP_GRAD_OP
    for layer in decoder_layers(lm):
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    fully_shard(lm, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    return lm


def run_fsdp_steps(model: ModelSpec, setup: TrainingSetup, device: torch.device, mesh,
                   fake_mode: contextlib.AbstractContextManager | None, steps: int,
                   make_tracker: Callable[[torch.nn.Module], ShardAwareTracker] = None) -> tuple[Any, list[str], Engine]:
    """Builds, shards and runs `steps` steps on this rank under a tracker made by `make_tracker`
    (a ShardAwareTracker by default); (the tracker, the build's notes, the engine)."""
    eng = check_supported(setup, real=fake_mode is None)
    lm, notes = build_model(model, setup, torch.device("meta"), simulated=fake_mode is not None)
    shard(lm, setup, mesh)
    autocast = autocast_for(setup, device)
    if computes_without_autocast(setup.precision, eng):
        autocast = contextlib.nullcontext   # MixedPrecisionPolicy computes in 16 bit instead
    with fake_mode or contextlib.nullcontext():
        lm.to_empty(device=device)
        if fake_mode is None:
            with torch.no_grad():
                for p in lm.parameters():
                    p.normal_(0.0, 0.02)
        optimizer = build_optimizer(lm, setup)
        built = Built(lm, optimizer, autocast, device, notes)
        tracker = (make_tracker or ShardAwareTracker)(lm)
        with tracker, follow_resizes(tracker):
            run_steps(built, setup, tracker, steps)
    return tracker, list(notes), eng


def fsdp_step(model: ModelSpec, setup: TrainingSetup, device: torch.device, mesh,
              fake_mode: contextlib.AbstractContextManager | None, steps: int, label: str) -> Measurement:
    """Builds, shards and runs `steps` steps on this rank; the tracked Measurement of this rank."""
    tracker, notes, eng = run_fsdp_steps(model, setup, device, mesh, fake_mode, steps)
    notes = notes + [f"FSDP2 {eng.value}: rank {dist.get_rank()} of {setup.parallel.world}"]
    result = from_tracker(tracker, model, setup, device=label, notes=notes)
    result.collectives = list(tracker.collectives)   # the last step's, for checking planner/comm.py
    return result


def mesh_shape(p: ParallelSpec) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
    """The device mesh FSDP2 gets: 1-D over all ranks, or (replicate, shard) = (nodes, GPUs) for HSDP."""
    if engine_of(p) is Engine.FSDP_HYBRID:
        return (p.nodes, p.gpus), ("replicate", "shard")
    return (p.world,), None


@contextlib.contextmanager
def fake_world(world: int, shape: tuple[int, ...] | None = None,
               names: tuple[str, ...] | None = None) -> Iterator[Any]:
    """A fake process group of `world` ranks (this process is rank 0) and its CPU mesh (1-D by default)."""
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialized in this process")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    try:
        yield init_device_mesh("cpu", shape or (world,), mesh_dim_names=names)
    finally:
        dist.destroy_process_group()


def simulate_distributed(model: ModelSpec, setup: TrainingSetup, steps: int = 2) -> Measurement:
    """Per-GPU peak of rank 0 of an FSDP2 job of `setup.parallel.world` ranks, simulated on one CPU."""
    setup.validate()
    setup.parallel.validate(model)
    check_supported(setup)
    with fake_world(setup.parallel.world, *mesh_shape(setup.parallel)) as mesh:
        return fsdp_step(model, setup, torch.device("cpu"), mesh, FakeTensorMode(allow_non_fake_inputs=True),
                         steps, f"simulate (FSDP2, {setup.parallel.world} ranks)")


# --- real runs with gloo ------------------------------------------------------------------------
class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that answers what profiler/step.py asks of a transformers model."""

    def get_output_embeddings(self):
        return self.module.get_output_embeddings()

    @property
    def config(self):
        return self.module.config


def ddp_step(model: ModelSpec, setup: TrainingSetup, steps: int, label: str) -> Measurement:
    """This rank's Measurement of `steps` DDP steps with real CPU tensors (gloo), as HF accelerate
    wraps the model: DistributedDataParallel with its defaults (25 MiB buckets,
    gradient_as_bucket_view=False) [torch/nn/parallel/distributed.py]."""
    built = build(model, replace_parallel(setup), torch.device("cpu"))
    tracker = ShardAwareTracker(built.model)
    with tracker, follow_resizes(tracker):
        tracker.default_component = Component.GRADIENTS   # the reducer's bucket tensors
        ddp = _DDP(built.model)
        run_steps(Built(ddp, built.optimizer, built.autocast, built.device, built.notes), setup, tracker, steps)
    notes = list(built.notes) + [f"DDP: rank {dist.get_rank()} of {setup.parallel.world}"]
    return from_tracker(tracker, model, setup, device=label, notes=notes)


def replace_parallel(setup: TrainingSetup) -> TrainingSetup:
    """The same setup on one GPU (what each DDP rank builds before wrapping)."""
    return replace(setup, parallel=ParallelSpec())



def _gloo_worker(rank: int, world: int, store_path: str, model: ModelSpec, setup: TrainingSetup, steps: int,
                 queue) -> None:
    # a file store: no TCP port to pick, so concurrent runs (parallel test sessions) cannot collide
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)
        if engine_of(setup.parallel) is Engine.DDP:
            result = ddp_step(model, setup, steps, f"cpu (DDP gloo, {world} ranks)")
        else:
            shape, names = mesh_shape(setup.parallel)
            mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
            result = fsdp_step(model, setup, torch.device("cpu"), mesh, None, steps, f"cpu (FSDP2 gloo, {world} ranks)")
        queue.put((rank, result))
    finally:
        dist.destroy_process_group()


def spawn_gloo(worker, world: int, args: tuple, timeout: float, prefix: str = "gpuplan-gloo-") -> list:
    """Runs `worker(rank, world, store_path, *args, results)` in `world` spawned CPU processes sharing a
    file store, and returns what each rank put on `results` as (rank, value), in rank order; a rank that
    dies stops the wait at once instead of at the timeout."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    store_path = os.path.join(tmp.name, "store")
    procs = [ctx.Process(target=worker, args=(r, world, store_path, *args, results)) for r in range(world)]
    for proc in procs:
        proc.start()
    out: dict[int, object] = {}
    waited = 0.0
    try:
        while len(out) < world:
            try:
                rank, value = results.get(timeout=2)
            except queues.Empty:
                waited += 2
                if waited >= timeout or any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError(f"gloo ranks did not finish in {waited:.0f} s "
                                       f"(exit codes {[p.exitcode for p in procs]})") from None
                continue
            out[rank] = value
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        tmp.cleanup()
    return [out[r] for r in range(world)]


def run_gloo(model: ModelSpec, setup: TrainingSetup, steps: int = 2, timeout: float = 120) -> list[Measurement]:
    """Real FSDP2 or DDP steps in `setup.parallel.world` CPU processes (gloo); each rank's Measurement."""
    setup.validate()
    setup.parallel.validate(model)
    check_supported(setup, real=True)
    return spawn_gloo(_gloo_worker, setup.parallel.world, (model, setup, steps), timeout)


def measure_distributed(model: ModelSpec, setup: TrainingSetup, device: Device, steps: int = 2,
                        per_module: bool = False) -> Measurement:
    """`gpuplan profile` with a multi-GPU setup: rank 0's Measurement (simulate, or cpu with gloo)."""
    if per_module:
        raise PlannerError("--per-module is not available for multi-GPU profiles yet")
    if device is Device.SIMULATE:
        return simulate_distributed(model, setup, steps)
    if device is Device.CPU:
        return run_gloo(model, setup, steps)[0]
    raise PlannerError("multi-GPU runs on GPUs go through torchrun (one process per GPU), not --device cuda; "
                       "use --device simulate for any size, or --device cpu for a small model with gloo")
