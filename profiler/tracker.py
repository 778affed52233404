"""StorageTracker: counts the bytes of every live tensor storage, as the CUDA caching allocator
would, with a running peak per phase and its breakdown by component.

It is exact only because it counts *storages* (views share one), follows their deaths through
weak references, and is told by the step driver which phase it is in. Works on real CPU tensors
and under FakeTensorMode (fake storages report their would-be size).

With `log_events`, it also keeps `events`: every storage allocation and free in order, with the
bytes the CUDA caching allocator would be asked for (`storage.nbytes()`, before its rounding),
plus the phase marks and peak resets, as `gpuplan.planner.memory.allocator.Event`s for
`profiler/allocator_replay.py` to replay through the simulated allocator.

Known limitations: storages resized in place (FSDP2's `resize_(0)`) are not followed; memory
allocated outside torch (bitsandbytes paged optimizers use cudaMallocManaged) is invisible.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_iter

from gpuplan.planner import Component, Phase
from gpuplan.planner.memory.replay import Event, Op

# The caching allocator rounds every block up to a multiple of 512 bytes
# [c10/cuda/CUDACachingAllocator.cpp: kMinBlockSize = 512, round_size()].
ALLOCATOR_ROUNDING = 512


def allocator_bytes(nbytes: int) -> int:
    """Bytes the CUDA caching allocator counts as allocated for a request of `nbytes`."""
    if nbytes == 0:
        return 0
    return -(-nbytes // ALLOCATOR_ROUNDING) * ALLOCATOR_ROUNDING


@dataclass
class PhasePeak:
    total: int = 0
    components: dict[Component, int] = field(default_factory=dict)


class StorageTracker(TorchDispatchMode):
    """A dispatch mode that sees every op's outputs and keeps a ledger of live storages."""

    def __init__(self, log_events: bool = False) -> None:
        super().__init__()
        self.events: list[Event] | None = [] if log_events else None
        self._live: dict[int, tuple[int, Component]] = {}   # storage key -> (bytes, component)
        self.totals: dict[Component, int] = {c: 0 for c in Component.tensor_components()}
        self.current = 0
        self.phase: Phase = Phase.FORWARD
        self.default_component = Component.ACTIVATIONS
        self.peaks: dict[Phase, PhasePeak] = {p: PhasePeak() for p in Phase}
        self.timeline: list[tuple[str, int]] = []            # (phase, live bytes) at phase marks

    # --- ledger ---------------------------------------------------------------------------
    def _add(self, storage: torch.UntypedStorage, component: Component) -> None:
        key = storage._cdata
        if key in self._live:
            return
        nbytes = allocator_bytes(storage.nbytes())
        if self.events is not None:
            self.events.append(Event(Op.MALLOC, key, storage.nbytes(), self.stream_id()))
        self._live[key] = (nbytes, component)
        self.totals[component] += nbytes
        self.current += nbytes
        weakref.finalize(storage, self._free, key)
        self._update_peak()

    def stream_id(self) -> int:
        """The stream new storages are allocated on, for the event log: one stream (0) unless a
        subclass knows better (profiler/allocator_replay.py does for FSDP2's streams)."""
        return 0

    def _update_peak(self) -> None:
        peak = self.peaks[self.phase]
        if self.current > peak.total:
            peak.total = self.current
            peak.components = dict(self.totals)

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            if self.events is not None:
                self.events.append(Event(Op.FREE, key))
            nbytes, component = entry
            self.totals[component] -= nbytes
            self.current -= nbytes

    def track(self, tensors: Iterable[torch.Tensor], component: Component) -> None:
        """Count (or re-label) the storages of tensors that already exist."""
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            entry = self._live.get(storage._cdata)
            if entry is None:
                self._add(storage, component)
            elif entry[1] is not component:
                self.totals[entry[1]] -= entry[0]
                self.totals[component] += entry[0]
                self._live[storage._cdata] = (entry[0], component)

    def untrack(self, tensors: Iterable[torch.Tensor]) -> None:
        """Stop counting storages that live off the device (e.g. host-side optimizer counters)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._free(t.untyped_storage()._cdata)

    def mark(self, phase: Phase, component: Component) -> None:
        """The step driver says where it is: new storages get `component` until the next mark."""
        self.phase = phase
        self.default_component = component
        if self.events is not None:
            self.events.append(Event(Op.MARK, label=phase.value))
        self.timeline.append((phase.value, self.current))
        self._update_peak()

    def reset_peaks(self) -> None:
        self.peaks = {p: PhasePeak() for p in Phase}
        self.timeline = []
        if self.events is not None:
            self.events.append(Event(Op.RESET_PEAKS))

    # --- dispatch -----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_iter(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._add(t.untyped_storage(), self.default_component)
        return out

    @property
    def peak(self) -> PhasePeak:
        return max(self.peaks.values(), key=lambda p: p.total)


class NullTracker:
    """What the step driver and the hooks ask of a tracker, counting nothing: for timing plain steps."""

    phase, current = Phase.FORWARD, 0
    peaks: dict = {}

    def track(self, tensors: Iterable[torch.Tensor], component: Component) -> None: ...
    def untrack(self, tensors: Iterable[torch.Tensor]) -> None: ...
    def mark(self, phase: Phase, component: Component) -> None: self.phase = phase
    def reset_peaks(self) -> None: ...
    def __enter__(self) -> "NullTracker": return self
    def __exit__(self, *exc) -> None: ...
