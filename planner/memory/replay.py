"""Event logs of allocations, and their replay through a fresh CachingAllocator.

profiler/tracker.py writes these logs from a simulated step; profiler/snapshot_replay.py makes
them from a trace recorded on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .alloc_config import AllocatorConfig
from .allocator import AllocatorOOM, CachingAllocator, OutOfMemory, Stats


class Op(Enum):
    """One event of an allocation log (profiler/tracker.py writes them, the replays read them)."""
    MALLOC = "malloc"
    FREE = "free"
    RECORD_STREAM = "record_stream"
    SYNCHRONIZE = "synchronize"
    EMPTY_CACHE = "empty_cache"
    RESET_PEAKS = "reset_peaks"      # torch.cuda.reset_peak_memory_stats()
    MARK = "mark"                    # a label (the step driver's phase), no effect on memory


@dataclass(frozen=True, slots=True)
class Event:
    op: Op
    key: int = 0          # which allocation (any int the log chooses; freed keys may come back)
    size: int = 0         # MALLOC: bytes requested, before the allocator rounds them
    stream: int | None = 0
    label: str = ""


@dataclass
class ReplayResult:
    """What a replayed log left: the allocator's peaks since the last RESET_PEAKS, and an OOM verdict."""
    peak_allocated: int
    peak_reserved: int
    peak_requested: int
    largest_free_at_peak_reserved: int
    peak_reserved_at: str            # label of the last MARK before reserved last rose to its peak
    oom: OutOfMemory | None
    oom_at_event: int | None
    stats: Stats
    largest_free: list[tuple[int, str, int]] = field(default_factory=list)   # (event, label, bytes)
    segment_log: list[tuple[str, int]] | None = None

    @property
    def fits(self) -> bool:
        return self.oom is None

    @property
    def reserved_over_allocated(self) -> float:
        return self.peak_reserved / self.peak_allocated if self.peak_allocated else 0.0


def replay(events, config: AllocatorConfig | str | None = None, capacity: int | None = None,
           memory_fraction: float | None = None, largest_free_every: int = 0,
           record_segments: bool = False) -> ReplayResult:
    """Replays `events` (an iterable of Event) through a fresh CachingAllocator.

    The replay stops at the first OOM. The largest cached free block is sampled at every MARK
    and, if `largest_free_every` > 0, every that many events.
    """
    if not isinstance(config, AllocatorConfig):
        config = AllocatorConfig.parse(config)
    alloc = CachingAllocator(config, capacity, memory_fraction, record_segments)
    reserved = alloc.stats.reserved
    handles: dict[int, int] = {}
    oom, at, samples, label, peak_label = None, None, [], "", ""
    for n, e in enumerate(events):
        op, before = e.op, reserved.peak
        try:
            if op is Op.MALLOC:
                handles[e.key] = alloc.malloc(e.size, e.stream or 0)
            elif op is Op.FREE:
                alloc.free(handles.pop(e.key))
            elif op is Op.RECORD_STREAM:
                alloc.record_stream(handles[e.key], e.stream or 0)
            elif op is Op.SYNCHRONIZE:
                alloc.synchronize(e.stream)
            elif op is Op.EMPTY_CACHE:
                alloc.empty_cache()
            elif op is Op.RESET_PEAKS:
                alloc.reset_peaks()
                peak_label = label
            elif op is Op.MARK:
                label = e.label
        except AllocatorOOM as exc:
            oom, at = exc.oom, n
            break
        if reserved.peak > before:
            peak_label = label
        if op is Op.MARK or (largest_free_every and n % largest_free_every == 0):
            samples.append((n, label, alloc.largest_free_block()))
    s = alloc.stats
    return ReplayResult(s.allocated.peak, s.reserved.peak, s.requested.peak, s.largest_free_at_peak_reserved,
                        peak_label, oom, at, s, samples, alloc.segment_log)
