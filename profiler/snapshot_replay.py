"""Replays a real allocator trace (`torch.cuda.memory._snapshot()` / `_dump_snapshot` pickle)
through the caching allocator model and compares the simulated reserved memory with the trace's.

Format (torch/cuda/memory.py `_snapshot` docstring; names from torch/csrc/cuda/Module.cpp
`action_to_str`): `{"segments": [...], "device_traces": [[TraceEntry, ...] per device],
"allocator_settings": {"PYTORCH_CUDA_ALLOC_CONF": ...}}`; a TraceEntry is a dict with `action`
(`alloc`, `free_requested`, `free_completed`, `segment_alloc`, `segment_free`, `segment_map`,
`segment_unmap`, `oom`, `snapshot`), `addr`, `size`, `stream` (and `device_free` for `oom`).
`alloc` carries the size as requested (CUDACachingAllocator.cpp alloc_found_block records
`orig_size`); segment actions carry segment (or mapped range) sizes.

How the trace becomes model events: `alloc` -> malloc; a `free_requested` followed at once by its
`free_completed` -> free; one whose `free_completed` comes later (the block was used on another
stream) -> record_stream on a stream of its own, free, and a synchronize of that stream where
the trace completes it. A run of `segment_free`/`segment_unmap` that is not followed by a new
segment for the next `alloc` is an `empty_cache()`; one that is (the allocator freed its cache
to retry a cudaMalloc) is left to the model, which does the same given the `capacity`.
No real trace has been replayed yet: the tests use hand-written traces in this format.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuplan.planner import PlannerError
from gpuplan.planner.memory.alloc_config import AllocatorConfig
from gpuplan.planner.memory.replay import Event, Op, ReplayResult, replay

_SEGMENT_UP = ("segment_alloc", "segment_map")
_SEGMENT_DOWN = ("segment_free", "segment_unmap")


class _PlainUnpickler(pickle.Unpickler):
    """A snapshot is plain dicts, lists, strings and numbers: refuse anything that names a class."""

    def find_class(self, module: str, name: str):
        raise PlannerError(f"the snapshot pickle refers to {module}.{name}: not a torch.cuda.memory snapshot "
                           "(only plain dicts, lists, strings and numbers are read)")


def load_snapshot(path: str | Path) -> dict[str, Any]:
    """The dict a `torch.cuda.memory._dump_snapshot(path)` file holds."""
    try:
        data = _PlainUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise PlannerError(f"could not read the snapshot {path}: {e}") from None
    if not isinstance(data, dict) or "device_traces" not in data:
        raise PlannerError(f"{path} is not a torch.cuda.memory snapshot (no 'device_traces'); record one with "
                           "torch.cuda.memory._record_memory_history() then _dump_snapshot()")
    return data


@dataclass
class TraceComparison:
    """One device's trace next to its replay through the model (bytes)."""
    device: int
    entries: int
    allocs: int
    unmatched_frees: int              # frees of blocks allocated before the trace began
    empty_caches: int                 # segment releases read as empty_cache()
    retry_releases: int               # segment releases inside a malloc, left to the model
    trace_ooms: int
    trace_reserved_start: int         # reserved when the trace began (end minus the trace's net change)
    trace_reserved_peak: int
    trace_reserved_end: int | None    # the snapshot's segments of this device (None: none listed)
    trace_segments: list[tuple[str, int]]
    simulated: ReplayResult
    notes: list[str] = field(default_factory=list)

    @property
    def segments_match(self) -> bool:
        """The model asked the device for the same segments (or pages), in the same order."""
        return self.trace_segments == (self.simulated.segment_log or [])

    @property
    def reserved_error(self) -> int:
        """Simulated minus traced reserved peak."""
        return self.simulated.peak_reserved - self.trace_reserved_peak


def trace_events(entries: list[dict[str, Any]]) -> tuple[list[Event], dict[str, int]]:
    """Model events for one device's trace entries, and counts of what was read how."""
    events: list[Event] = []
    counts = {"allocs": 0, "unmatched_frees": 0, "empty_caches": 0, "retry_releases": 0, "ooms": 0}
    live: set[int] = set()
    deferred: dict[int, int] = {}       # addr -> the stream of its own its pending free waits on
    next_stream = -1
    i, n = 0, len(entries)
    while i < n:
        e = entries[i]
        action, addr = e.get("action"), e.get("addr", 0)
        if action == "alloc":
            events.append(Event(Op.MALLOC, addr, int(e["size"]), int(e.get("stream", 0))))
            live.add(addr)
            counts["allocs"] += 1
        elif action == "free_requested":
            if addr not in live:
                counts["unmatched_frees"] += 1
            else:
                live.discard(addr)
                following = entries[i + 1] if i + 1 < n else {}
                if following.get("action") == "free_completed" and following.get("addr") == addr:
                    events.append(Event(Op.FREE, addr))
                    i += 1
                else:
                    deferred[addr] = next_stream
                    events += [Event(Op.RECORD_STREAM, addr, stream=next_stream), Event(Op.FREE, addr)]
                    next_stream -= 1
        elif action == "free_completed":
            if addr in deferred:
                events.append(Event(Op.SYNCHRONIZE, stream=deferred.pop(addr)))
        elif action in _SEGMENT_DOWN:
            j = i
            while j < n and entries[j].get("action") in _SEGMENT_DOWN:
                j += 1
            if j < n and entries[j].get("action") in _SEGMENT_UP:
                counts["retry_releases"] += 1
            else:
                events.append(Event(Op.EMPTY_CACHE))
                counts["empty_caches"] += 1
            i = j - 1
        elif action == "oom":
            counts["ooms"] += 1
        i += 1
    return events, counts


def _trace_reserved(entries: list[dict[str, Any]]) -> tuple[list[tuple[str, int]], int, int]:
    """(segment actions, peak and final net change of reserved bytes) of the trace itself."""
    segments, current, peak = [], 0, 0
    for e in entries:
        action = e.get("action")
        if action in _SEGMENT_UP or action in _SEGMENT_DOWN:
            size = int(e["size"])
            segments.append((action, size))
            current += size if action in _SEGMENT_UP else -size
            peak = max(peak, current)
    return segments, peak, current


def compare_snapshot(snapshot: dict[str, Any] | str | Path, config: AllocatorConfig | str | None = None,
                     capacity: int | None = None) -> list[TraceComparison]:
    """Each device's trace replayed through the model (with the snapshot's own
    PYTORCH_CUDA_ALLOC_CONF unless `config` is given), next to what the trace recorded."""
    data = snapshot if isinstance(snapshot, dict) else load_snapshot(snapshot)
    if config is None:
        config = (data.get("allocator_settings") or {}).get("PYTORCH_CUDA_ALLOC_CONF") or ""
    cfg = config if isinstance(config, AllocatorConfig) else AllocatorConfig.parse(config)
    out = []
    for device, entries in enumerate(data.get("device_traces") or []):
        if not entries:
            continue
        events, counts = trace_events(entries)
        segments, peak_delta, net = _trace_reserved(entries)
        listed = [s for s in data.get("segments") or [] if s.get("device", device) == device]
        end = sum(int(s["total_size"]) for s in listed) if listed else None
        start = end - net if end is not None else 0
        notes = []
        if start:
            notes.append(f"{start} B were reserved before the trace began: the model starts empty")
        if counts["unmatched_frees"]:
            notes.append(f"{counts['unmatched_frees']} frees of blocks allocated before the trace began were skipped")
        if counts["retry_releases"] and capacity is None:
            notes.append("the trace freed its cache to retry a cudaMalloc: give the capacity to replay that")
        result = replay(events, cfg, capacity, record_segments=True)
        out.append(TraceComparison(device, len(entries), counts["allocs"], counts["unmatched_frees"],
                                   counts["empty_caches"], counts["retry_releases"], counts["ooms"],
                                   start, start + peak_delta, end, segments, result, notes))
    return out
