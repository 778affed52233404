"""compare_snapshot: a hand-written trace in torch.cuda.memory._snapshot()'s format (field names from
torch/cuda/memory.py and Module.cpp), replayed through the allocator model. No real trace yet."""
from __future__ import annotations

import pickle

import pytest

from gpuplan.planner import PlannerError
from gpuplan.profiler.snapshot_replay import compare_snapshot, load_snapshot, trace_events
from gpuplan.planner.memory.replay import Op

MiB = 2**20
A, B, C = 0x7F0000000000, 0x7F0000200000, 0x7F0001600000     # segment addresses as cudaMalloc gave them


def _e(action, addr, size, stream=0):
    return {"action": action, "addr": addr, "size": size, "stream": stream, "frames": []}


def _trace():
    """What the real allocator records for this program (default settings, one stream):
    x = 1000 B; y = 4 MiB; z = 4 MiB; del y; w = 14 MiB (no cached piece holds it), used on a side
    stream, del w; v = 1000 B; (side stream done) u = 14 MiB; del z; torch.cuda.empty_cache()."""
    return [
        _e("segment_alloc", A, 2 * MiB), _e("alloc", A, 1000),
        _e("segment_alloc", B, 20 * MiB), _e("alloc", B, 4 * MiB),
        _e("alloc", B + 4 * MiB, 4 * MiB),
        _e("free_requested", B, 4 * MiB), _e("free_completed", B, 4 * MiB),
        _e("segment_alloc", C, 14 * MiB), _e("alloc", C, 14 * MiB),
        _e("free_requested", C, 14 * MiB),                     # completes later: recorded on a side stream
        _e("alloc", A + 1024, 1000),
        _e("free_completed", C, 14 * MiB), _e("alloc", C, 14 * MiB),   # reused, no new segment
        _e("free_requested", B + 4 * MiB, 4 * MiB), _e("free_completed", B + 4 * MiB, 4 * MiB),
        _e("segment_free", B, 20 * MiB),                       # empty_cache: the 20 MiB segment is whole again
    ]


def _snapshot(trace, conf=""):
    segments = [{"device": 0, "address": A, "total_size": 2 * MiB, "stream": 0, "segment_type": "large",
                 "allocated_size": 2048, "active_size": 2048, "blocks": []},
                {"device": 0, "address": C, "total_size": 14 * MiB, "stream": 0, "segment_type": "large",
                 "allocated_size": 14 * MiB, "active_size": 14 * MiB, "blocks": []}]
    return {"segments": segments, "device_traces": [trace],
            "allocator_settings": {"PYTORCH_CUDA_ALLOC_CONF": conf, "expandable_segments": False}}


def test_the_trace_is_read_as_model_events():
    events, counts = trace_events(_trace())
    ops = [e.op for e in events]
    assert ops.count(Op.MALLOC) == 6 and ops.count(Op.FREE) == 3
    assert ops.count(Op.RECORD_STREAM) == 1 and ops.count(Op.SYNCHRONIZE) == 1 and ops.count(Op.EMPTY_CACHE) == 1
    assert counts["allocs"] == 6 and counts["unmatched_frees"] == 0


def test_replay_reproduces_the_traced_segments_and_reserved(tmp_path):
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps(_snapshot(_trace())))
    (cmp,) = compare_snapshot(load_snapshot(path))
    assert cmp.trace_reserved_peak == 36 * MiB and cmp.trace_reserved_end == 16 * MiB and cmp.trace_reserved_start == 0
    assert cmp.simulated.peak_reserved == 36 * MiB and cmp.reserved_error == 0
    assert cmp.segments_match
    assert cmp.simulated.stats.reserved.current == cmp.trace_reserved_end


def test_a_trace_the_model_disagrees_with_is_reported():
    # under expandable segments w would extend the 20 MiB segment by a 20 MiB page instead of a
    # 14 MiB cudaMalloc, and empty_cache would find no whole free page: the replay disagrees
    (cmp,) = compare_snapshot(_snapshot(_trace()), config="expandable_segments:True")
    assert not cmp.segments_match
    assert cmp.simulated.segment_log == [("segment_map", 2 * MiB), ("segment_map", 20 * MiB), ("segment_map", 20 * MiB)]
    assert cmp.simulated.peak_reserved == 42 * MiB and cmp.reserved_error == 6 * MiB


def test_frees_from_before_the_trace_are_counted_and_skipped():
    trace = [_e("free_requested", 0x1234, 512), _e("free_completed", 0x1234, 512)] + _trace()
    (cmp,) = compare_snapshot(_snapshot(trace))
    assert cmp.unmatched_frees == 1 and cmp.segments_match and any("before the trace" in n for n in cmp.notes)


def test_a_pickle_with_classes_is_refused(tmp_path):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"device_traces": [], "x": PlannerError("x")}))
    with pytest.raises(PlannerError, match="not a torch.cuda.memory snapshot"):
        load_snapshot(path)
    path.write_bytes(pickle.dumps({"segments": []}))
    with pytest.raises(PlannerError, match="device_traces"):
        load_snapshot(path)
