"""simulate_reserved(): a simulated training step's storage allocations replayed through the CUDA
caching allocator model, for the reserved memory a real run would hold.

The step is `profiler/simulate.py`'s (the real HF model and loop under FakeTensorMode), or for
FSDP2 setups rank 0 of `profiler/distributed.py`'s; the tracker logs every storage allocation and
free in order (profiler/tracker.py, `log_events`), and `gpuplan.planner.memory.replay.replay`
feeds them to the allocator. FSDP2's in-place `resize_` of unsharded parameters is logged as the
free of the old bytes and the allocation of the new (one of the two is always 0 in FSDP2;
a CUDA resize between two non-zero sizes allocates before it frees, which this order reverses),
and its side streams are followed (all-gather and reduce-scatter buffers live in their own pools).

What the log cannot show (so neither can the replay): memory kernels take without a tensor
(cuBLAS/cuDNN workspaces, pass them as `persistent`), the CUDA context, NCCL's own buffers, the
timing of other streams (a block is reusable as soon as it is freed: FSDP2 holds its collective
buffers until the consuming stream waited, and calls no record_stream), and host tensors the
tracker counts until it is told they live on the host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import ModelSpec, TrainingSetup
from gpuplan.planner.memory.alloc_config import AllocatorConfig
from gpuplan.planner.memory.replay import Event, Op, ReplayResult, replay

from .build import build
from .distributed import ShardAwareTracker
from .kernels.dropout import cuda_dropout
from .step import run_steps
from .tracker import StorageTracker


@dataclass
class SimulatedEvents:
    """A simulated run's allocation log and the tracker's own peak (its breakdown by phase too)."""
    events: list[Event]
    tracker_peak_allocated: int
    tracker_phase_peaks: dict[str, int] = field(default_factory=dict)


def simulated_events(model: ModelSpec, setup: TrainingSetup, steps: int = 2) -> SimulatedEvents:
    """The allocation log of `steps` simulated steps; peaks reset before the last (steady state)."""
    if setup.parallel.world > 1:
        return simulated_events_fsdp(model, setup, steps)
    setup.validate()
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    with cuda_dropout(), fake:
        tracker = StorageTracker(log_events=True)
        with tracker:
            run_steps(built, setup, tracker, steps)
    return _result(tracker)


class _LoggingShardAwareTracker(ShardAwareTracker):
    """profiler/distributed.py's tracker with the event log: it follows FSDP2's in-place resizes and
    the stream each storage is allocated on. FSDP2 allocates its all-gather buffers under
    `device_handle.stream(all_gather_copy_in_stream)` and its reduce-scatter outputs (the sharded
    gradients) under `reduce_scatter_stream` [torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py:
    foreach_all_gather, foreach_reduce]; on the CPU, `torch.cpu.stream` really switches
    `torch.cpu.current_stream()`, so the log can name the stream as CUDA's allocator would see it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.events = []
        self._streams = {id(torch.cpu.current_stream()): 0}

    def stream_id(self) -> int:
        return self._streams.setdefault(id(torch.cpu.current_stream()), len(self._streams))

    def resized(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        known = storage._cdata in self._live
        super().resized(storage, nbytes)      # an unknown storage is _add-ed (and logged) there
        if known:
            self.events += [Event(Op.FREE, storage._cdata), Event(Op.MALLOC, storage._cdata, nbytes, self.stream_id())]


def simulated_events_fsdp(model: ModelSpec, setup: TrainingSetup, steps: int = 2) -> SimulatedEvents:
    """The allocation log of rank 0 of an FSDP2 job, simulated as `simulate_distributed` does
    (profiler/distributed.py run_fsdp_steps, with a logging tracker)."""
    from .distributed import fake_world, mesh_shape, run_fsdp_steps  # lazy: FSDP2 setups only

    setup.validate()
    setup.parallel.validate(model)
    with fake_world(setup.parallel.world, *mesh_shape(setup.parallel)) as mesh:
        tracker, _, _ = run_fsdp_steps(model, setup, torch.device("cpu"), mesh, FakeTensorMode(allow_non_fake_inputs=True),
                                       steps, _LoggingShardAwareTracker)
    return _result(tracker)


def _result(tracker: StorageTracker) -> SimulatedEvents:
    return SimulatedEvents(list(tracker.events or []), tracker.peak.total,
                           {p.value: pk.total for p, pk in tracker.peaks.items()})


def replay_events(sim: SimulatedEvents, config: AllocatorConfig | str | None = None, capacity: int | None = None,
                  persistent: Sequence[int] = ()) -> ReplayResult:
    """Replays a simulated log; `persistent`: allocations made first and never freed (workspaces)."""
    head = [Event(Op.MALLOC, -1 - i, size) for i, size in enumerate(persistent)]
    return replay(head + sim.events, config, capacity)


def simulate_reserved(model: ModelSpec, setup: TrainingSetup, config: AllocatorConfig | str | None = None,
                      capacity: int | None = None, steps: int = 2,
                      persistent: Sequence[int] = ()) -> tuple[int, int, dict[str, Any]]:
    """(peak allocated, peak reserved, details) in bytes of a simulated steady-state step on the
    caching allocator configured by `config` (a PYTORCH_CUDA_ALLOC_CONF string or AllocatorConfig).

    Peak allocated is the allocator's own figure (block sizes, as torch.cuda.max_memory_allocated
    reports): it exceeds the tracker's 512-rounded sum where a large-pool block is handed out
    without splitting off a remainder of 1 MiB or less. `capacity` gives the OOM verdict in details.
    """
    sim = simulated_events(model, setup, steps)
    result = replay_events(sim, config, capacity, persistent)
    details = {
        "tracker_peak_allocated_bytes": sim.tracker_peak_allocated,
        "peak_requested_bytes": result.peak_requested,
        "largest_free_block_at_peak_reserved_bytes": result.largest_free_at_peak_reserved,
        "peak_reserved_phase": result.peak_reserved_at,
        "segments_at_peak": result.stats.segments.peak,
        "alloc_retries": result.stats.num_alloc_retries,
        "events": len(sim.events),
        "fits": result.fits,
        "oom": None if result.oom is None else str(result.oom),
        "oom_fragmentation": None if result.oom is None else result.oom.fragmentation,
        "largest_free_block_at_marks": [(label, size) for _, label, size in result.largest_free],
        "config": (config if isinstance(config, AllocatorConfig) else AllocatorConfig.parse(config)).to_conf(),
    }
    return result.peak_allocated, result.peak_reserved, details
