"""CachingAllocator: hand-built event sequences whose outcome follows from CUDACachingAllocator.cpp
(@ eb42ad6), asserted to the byte. Each test names the rule (and the C++ function) it checks."""
from __future__ import annotations

import pytest

from gpuplan.planner.memory.alloc_config import AllocatorConfig
from gpuplan.planner.memory.allocator import (
    AllocatorOOM, CachingAllocator, allocation_size, round_size, roundup_power2_next_division,
)
from gpuplan.planner.memory.replay import Event, Op, replay

MiB = 2**20
KiB = 2**10
DEFAULT = AllocatorConfig()
EXPANDABLE = AllocatorConfig(expandable_segments=True)


# --- round_size ------------------------------------------------------------------------------
@pytest.mark.parametrize("size, rounded", [(1, 512), (511, 512), (512, 512), (513, 1024), (1200, 1536),
                                           (MiB + 1, MiB + 512)])
def test_sizes_round_up_to_512(size, rounded):
    assert round_size(size, DEFAULT) == rounded
    a = CachingAllocator()
    h = a.malloc(size)
    assert a.size_of(h) == rounded
    assert a.stats.allocated.current == rounded
    assert a.stats.requested.current == size


def test_roundup_power2_divisions():
    # the source's own example: 1200 with 4 divisions lies in [1024, 2048): 1024, 1280, 1536, 1792 -> 1280
    assert roundup_power2_next_division(1200, 4) == 1280
    assert roundup_power2_next_division(4096, 4) == 4096           # a power of two stays
    four = AllocatorConfig.parse("roundup_power2_divisions:4")
    assert round_size(1200, four) == 1536           # not > 512 x 4: plain 512 rounding
    assert round_size(5000, four) == 5120           # [4096, 8192) in steps of 1024
    assert round_size(MiB + MiB // 5, four) == MiB + MiB // 4    # 1.2 MiB -> 1.25 MiB
    assert round_size(5000, DEFAULT) == 5120        # 512 rounding gives the same here
    assert round_size(5 * MiB + 1, four) == 6 * MiB              # [4, 8) MiB in 1 MiB steps
    assert round_size(5 * MiB + 1, DEFAULT) == 5 * MiB + 512


# --- segment sizes (get_allocation_size) ---------------------------------------------------------
@pytest.mark.parametrize("size, segment", [
    (1000, 2 * MiB),                  # small (<= 1 MiB): 2 MiB segments
    (MiB, 2 * MiB),                   # exactly 1 MiB is still small
    (MiB + 1, 20 * MiB),              # large under 10 MiB: a 20 MiB segment
    (10 * MiB - 512, 20 * MiB),
    (10 * MiB, 10 * MiB),             # 10 MiB and more: rounded up to 2 MiB
    (10 * MiB + 1, 12 * MiB),
    (25 * MiB, 26 * MiB),
])
def test_segment_sizes(size, segment):
    assert allocation_size(round_size(size, DEFAULT)) == segment
    a = CachingAllocator()
    a.malloc(size)
    assert a.stats.reserved.current == segment
    assert a.stats.segments.current == 1


# --- should_split ---------------------------------------------------------------------------------
def test_small_pool_splits_down_to_512_bytes():
    a = CachingAllocator()
    a.malloc(MiB)
    a.malloc(MiB - 512)               # leaves exactly 512 B: split off (>= kMinBlockSize)
    assert a.largest_free_block() == 512
    h = a.malloc(100)                 # served from that last 512 B piece
    assert a.size_of(h) == 512
    assert a.stats.reserved.current == 2 * MiB and a.stats.segments.current == 1
    assert a.largest_free_block() == 0


@pytest.mark.parametrize("size, block, free_left", [
    (4 * MiB, 4 * MiB, 16 * MiB),             # a 20 MiB segment: remainder 16 MiB, split
    (19 * MiB - 512, 19 * MiB - 512, MiB + 512),   # a 20 MiB segment (19 MiB rounded to 2 MiB)
    (19 * MiB, 20 * MiB, 0),                  # remainder exactly 1 MiB: not split, the block is all 20 MiB
    (18 * MiB, 18 * MiB, 0),                  # >= 10 MiB: the segment is the request rounded to 2 MiB
])
def test_large_pool_splits_only_remainders_over_1_mib(size, block, free_left):
    a = CachingAllocator()
    h = a.malloc(size)
    assert a.size_of(h) == block
    assert a.stats.allocated.current == block          # allocated counts the whole unsplit block
    assert a.largest_free_block() == free_left


def test_a_cached_block_is_split_only_for_a_remainder_over_1_mib():
    a = CachingAllocator()
    a.free(a.malloc(12 * MiB))
    h = a.malloc(11 * MiB)
    assert a.size_of(h) == 12 * MiB and a.stats.allocated.current == 12 * MiB
    a.free(h)
    h = a.malloc(11 * MiB - 512)
    assert a.size_of(h) == 11 * MiB - 512 and a.largest_free_block() == MiB + 512


# --- best fit (get_free_block) ---------------------------------------------------------------------
def test_best_fit_takes_the_smallest_block_that_holds_the_request():
    a = CachingAllocator()
    for h in [a.malloc(12 * MiB), a.malloc(14 * MiB), a.malloc(16 * MiB)]:
        a.free(h)
    assert a.stats.reserved.current == 42 * MiB
    assert a.size_of(a.malloc(13 * MiB)) == 14 * MiB     # remainder 1 MiB: not split
    assert a.size_of(a.malloc(11 * MiB)) == 12 * MiB
    assert a.size_of(a.malloc(15 * MiB)) == 16 * MiB
    assert a.stats.reserved.current == 42 * MiB and a.stats.segments.current == 3
    a.malloc(11 * MiB)                                    # nothing cached is left: a new segment
    assert a.stats.reserved.current == 42 * MiB + 12 * MiB


def test_blocks_are_reused_on_their_own_stream_only():
    a = CachingAllocator()
    a.free(a.malloc(12 * MiB, stream=1))
    a.malloc(12 * MiB, stream=0)
    assert a.stats.reserved.current == 24 * MiB
    a.malloc(12 * MiB, stream=1)                          # stream 1's cached block
    assert a.stats.reserved.current == 24 * MiB


# --- merging (free_block, try_merge_blocks) -------------------------------------------------------
def test_freed_neighbours_merge_and_only_whole_segments_are_released():
    a = CachingAllocator()
    h = [a.malloc(512 * KiB) for _ in range(4)]         # fills one 2 MiB segment exactly
    assert a.stats.reserved.current == 2 * MiB and a.largest_free_block() == 0
    a.free(h[1])
    a.free(h[2])
    assert a.largest_free_block() == MiB
    a.free(h[0])
    assert a.largest_free_block() == 1536 * KiB
    a.empty_cache()                                       # the segment is split: kept
    assert a.stats.reserved.current == 2 * MiB
    a.free(h[3])
    assert a.largest_free_block() == 2 * MiB
    a.empty_cache()
    assert a.stats.reserved.current == 0 and a.stats.segments.current == 0


def test_large_blocks_merge_back_into_their_segment():
    a = CachingAllocator()
    x, y, z = (a.malloc(4 * MiB) for _ in range(3))     # one 20 MiB segment: 4 | 4 | 4 | 8 free
    assert a.stats.reserved.current == 20 * MiB and a.largest_free_block() == 8 * MiB
    a.free(y)
    assert a.largest_free_block() == 8 * MiB              # 4 MiB hole, 8 MiB tail: apart
    a.free(x)
    assert a.largest_free_block() == 8 * MiB              # x + y = 8 MiB
    a.free(z)
    assert a.largest_free_block() == 20 * MiB


# --- max_split_size / max_non_split_rounding ----------------------------------------------------------
def test_oversize_blocks_are_not_split_for_smaller_requests():
    for conf, reserved in [("", 200 * MiB), ("max_split_size_mb:128", 300 * MiB)]:
        a = CachingAllocator(AllocatorConfig.parse(conf))
        a.free(a.malloc(200 * MiB))
        a.malloc(100 * MiB)
        assert a.stats.reserved.current == reserved, conf


def test_oversize_blocks_serve_requests_within_max_non_split_rounding():
    cfg = AllocatorConfig.parse("max_split_size_mb:128")
    a = CachingAllocator(cfg)
    a.free(a.malloc(200 * MiB))
    h = a.malloc(190 * MiB)                              # 200 < 190 + 20: reused whole, not split
    assert a.size_of(h) == 200 * MiB and a.stats.reserved.current == 200 * MiB
    a.free(h)
    a.malloc(180 * MiB)                                  # 200 >= 180 + 20: refused, a new segment
    assert a.stats.reserved.current == 380 * MiB
    wider = CachingAllocator(AllocatorConfig.parse("max_split_size_mb:128,max_non_split_rounding_mb:40"))
    wider.free(wider.malloc(200 * MiB))
    assert wider.size_of(wider.malloc(180 * MiB)) == 200 * MiB


def test_max_split_size_frees_an_oversize_block_before_giving_up():
    """release_available_cached_blocks: the first fallback after a failed cudaMalloc."""
    a = CachingAllocator(AllocatorConfig.parse("max_split_size_mb:128"), capacity=300 * MiB)
    a.free(a.malloc(200 * MiB))
    a.malloc(150 * MiB)                                  # 200 >= 150 + 20 refused; 200 + 150 > 300
    assert a.stats.reserved.current == 150 * MiB
    assert a.stats.num_alloc_retries == 0                # freed by the first fallback, not the retry


# --- expandable segments --------------------------------------------------------------------------------
def test_expandable_segments_grow_by_pages():
    a = CachingAllocator(EXPANDABLE)
    a.malloc(1000)
    assert a.stats.reserved.current == 2 * MiB            # small pool: 2 MiB pages
    a.malloc(3 * MiB)
    assert a.stats.reserved.current == 22 * MiB           # large pool: 20 MiB pages
    a.malloc(25 * MiB)                                    # 17 MiB free + one more page, one block
    assert a.stats.reserved.current == 42 * MiB
    plain = CachingAllocator()
    for size in (1000, 3 * MiB, 25 * MiB):
        plain.malloc(size)
    assert plain.stats.reserved.current == 2 * MiB + 20 * MiB + 26 * MiB


def test_expandable_small_pool_extends_its_segment():
    a = CachingAllocator(EXPANDABLE)
    a.malloc(1000)
    a.malloc(MiB)
    a.malloc(MiB)                                          # 1 MiB - 1 KiB free + a second 2 MiB page
    assert a.stats.reserved.current == 4 * MiB
    assert a.largest_free_block() == 4 * MiB - 1024 - 2 * MiB


def test_expandable_segments_repeated_requests():
    a = CachingAllocator(EXPANDABLE)
    for _ in range(3):
        a.malloc(21 * MiB)                                 # 40, then 60, then 80 MiB mapped
    assert a.stats.reserved.current == 80 * MiB
    assert a.stats.allocated.current == 63 * MiB
    assert a.largest_free_block() == 17 * MiB


def test_expandable_empty_cache_unmaps_whole_free_pages_only():
    a = CachingAllocator(EXPANDABLE)
    x = a.malloc(21 * MiB)
    a.malloc(40 * MiB)                                     # [x 21 | 40 | 19 free], 80 MiB mapped
    assert a.stats.reserved.current == 80 * MiB
    a.free(x)
    a.empty_cache()          # page 0 lies inside x's 21 MiB: unmapped; the 19 MiB tail holds no whole page
    assert a.stats.reserved.current == 60 * MiB
    assert a.largest_free_block() == 19 * MiB


def test_expandable_segment_is_released_when_empty():
    a = CachingAllocator(EXPANDABLE)
    x, y = a.malloc(3 * MiB), a.malloc(25 * MiB)
    a.free(x)
    a.free(y)
    assert a.largest_free_block() == 40 * MiB
    a.empty_cache()
    assert a.stats.reserved.current == 0
    a.malloc(3 * MiB)
    assert a.stats.reserved.current == 20 * MiB


# --- garbage_collection_threshold -----------------------------------------------------------------------
def _gc_sequence(a: CachingAllocator) -> None:
    a.free(a.malloc(30 * MiB))      # cached since the 1st get_free_block call
    a.free(a.malloc(34 * MiB))      # cached since the 2nd
    a.malloc(40 * MiB)              # 3rd call finds nothing: GC, then cudaMalloc


def test_garbage_collection_frees_old_cached_blocks_above_the_threshold():
    cfg = AllocatorConfig.parse("garbage_collection_threshold:0.5")
    a = CachingAllocator(cfg, capacity=100 * MiB, memory_fraction=1.0)
    _gc_sequence(a)
    # 64 MiB cached > 50 MiB: ages 2 and 1, mean 1.5, so only the 30 MiB block goes
    assert a.stats.reserved.current == 34 * MiB + 40 * MiB
    assert a.largest_free_block() == 34 * MiB
    assert a.stats.num_alloc_retries == 0


def test_garbage_collection_needs_a_memory_fraction():
    cfg = AllocatorConfig.parse("garbage_collection_threshold:0.5")
    a = CachingAllocator(cfg, capacity=100 * MiB)
    _gc_sequence(a)          # no GC: 64 + 40 > 100, so the OOM path frees the whole cache and retries
    assert a.stats.reserved.current == 40 * MiB
    assert a.stats.num_alloc_retries == 1
    assert a.stats.reserved.peak == 64 * MiB


# --- OOM: release_cached_blocks and retry, then report -------------------------------------------------
def test_oom_frees_the_cache_and_retries():
    a = CachingAllocator(capacity=64 * MiB)
    a.free(a.malloc(30 * MiB))
    a.malloc(40 * MiB)
    assert a.stats.reserved.current == 40 * MiB and a.stats.num_alloc_retries == 1


def test_oom_when_the_memory_is_not_there():
    a = CachingAllocator(capacity=64 * MiB)
    a.malloc(40 * MiB)
    with pytest.raises(AllocatorOOM) as err:
        a.malloc(30 * MiB)
    oom = err.value.oom
    assert (oom.alloc_size, oom.allocated, oom.reserved, oom.free_total) == (30 * MiB, 40 * MiB, 40 * MiB, 24 * MiB)
    assert not oom.fragmentation
    assert a.stats.num_ooms == 1


def test_fragmentation_oom():
    a = CachingAllocator(capacity=40 * MiB)
    blocks = [a.malloc(4 * MiB) for _ in range(10)]    # two 20 MiB segments, five 4 MiB blocks each
    assert a.stats.reserved.current == 40 * MiB
    for i in (0, 2, 4, 6, 8):
        a.free(blocks[i])                              # 20 MiB free, in 4 MiB pieces that do not touch
    assert a.largest_free_block() == 4 * MiB
    with pytest.raises(AllocatorOOM) as err:
        a.malloc(8 * MiB)
    oom = err.value.oom
    assert oom.fragmentation and oom.free_total == 20 * MiB and oom.largest_free_block == 4 * MiB
    assert "fragmentation" in str(oom)


# --- streams and record_stream -------------------------------------------------------------------------
def test_record_stream_defers_reuse_until_that_stream_synchronizes():
    for sync, reserved in [(None, 24 * MiB), (2, 24 * MiB), (1, 12 * MiB)]:
        a = CachingAllocator()
        h = a.malloc(12 * MiB, stream=0)
        a.record_stream(h, 1)
        a.free(h)
        assert a.stats.allocated.current == 0        # allocated drops at free(), the block stays busy
        if sync is not None:
            a.synchronize(sync)
        a.malloc(12 * MiB, stream=0)
        assert a.stats.reserved.current == reserved, sync


def test_record_stream_on_the_allocation_stream_is_ignored():
    a = CachingAllocator()
    h = a.malloc(12 * MiB, stream=3)
    a.record_stream(h, 3)
    a.free(h)
    a.malloc(12 * MiB, stream=3)
    assert a.stats.reserved.current == 12 * MiB


def test_empty_cache_waits_for_pending_events():
    a = CachingAllocator()
    h = a.malloc(12 * MiB)
    a.record_stream(h, 1)
    a.free(h)
    a.empty_cache()                                  # synchronize_and_free_events, then release
    assert a.stats.reserved.current == 0


def test_block_used_on_two_streams_waits_for_both():
    a = CachingAllocator()
    h = a.malloc(12 * MiB)
    a.record_stream(h, 1)
    a.record_stream(h, 2)
    a.free(h)
    a.synchronize(1)
    a.malloc(12 * MiB)
    assert a.stats.reserved.current == 24 * MiB      # stream 2's event is still pending
    a.synchronize(2)
    a.malloc(12 * MiB)
    assert a.stats.reserved.current == 24 * MiB


# --- replay of an event log ----------------------------------------------------------------------------
def test_replay_reports_peaks_since_the_last_reset_and_the_oom_event():
    events = [Event(Op.MALLOC, 1, 30 * MiB), Event(Op.FREE, 1), Event(Op.RESET_PEAKS),
              Event(Op.MALLOC, 2, 10 * MiB), Event(Op.MALLOC, 3, 10 * MiB)]
    r = replay(events)
    # after the reset both 10 MiB requests are split off the cached 30 MiB segment
    assert r.peak_allocated == 20 * MiB
    assert r.peak_reserved == 30 * MiB
    assert r.fits and r.reserved_over_allocated == 1.5
    r = replay(events, capacity=25 * MiB)
    assert not r.fits and r.oom_at_event == 0


def test_replay_size_zero_allocates_nothing():
    r = replay([Event(Op.MALLOC, 1, 0), Event(Op.FREE, 1)])
    assert (r.peak_allocated, r.peak_reserved) == (0, 0)


def test_oom_for_want_of_a_whole_segment_is_not_fragmentation():
    a = CachingAllocator(capacity=MiB)
    with pytest.raises(AllocatorOOM) as err:
        a.malloc(64 * KiB)                         # 64 KiB would fit in 1 MiB; its 2 MiB segment does not
    oom = err.value.oom
    assert oom.alloc_size == 2 * MiB and oom.free_total == MiB and oom.cached_free == 0
    assert not oom.fragmentation


# --- invariants under random sequences ----------------------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

_SIZES = st.one_of(st.integers(1, MiB), st.integers(MiB + 1, 10 * MiB), st.integers(10 * MiB, 300 * MiB))
_OPS = st.lists(st.one_of(st.tuples(st.just("malloc"), _SIZES, st.integers(0, 1)),
                          st.tuples(st.just("free"), st.integers(0, 10**6), st.just(0)),
                          st.tuples(st.just("record"), st.integers(0, 10**6), st.integers(0, 2)),
                          st.tuples(st.just("sync"), st.integers(0, 2), st.just(0)),
                          st.tuples(st.just("empty"), st.just(0), st.just(0))), max_size=60)


def _check(a: CachingAllocator) -> None:
    segments = a.segments()
    assert sum(s.total_size for s in segments) == a.stats.reserved.current
    assert sum(s.allocated_size for s in segments) == a.stats.allocated.current
    assert all(s.total_size % (2 * MiB) == 0 for s in segments)        # segments and pages: 2 MiB multiples
    if a.capacity is not None:
        assert a.stats.reserved.current <= a.capacity


@settings(max_examples=40, deadline=None)
@given(ops=_OPS, conf=st.sampled_from(["", "expandable_segments:True", "max_split_size_mb:64",
                                       "roundup_power2_divisions:4"]),
       capacity=st.sampled_from([None, 256 * MiB]))
def test_segments_account_for_reserved_and_everything_comes_back(ops, conf, capacity):
    a = CachingAllocator(AllocatorConfig.parse(conf), capacity=capacity)
    live: list[int] = []
    for op, x, stream in ops:
        if op == "malloc":
            try:
                live.append(a.malloc(x, stream))
            except AllocatorOOM as err:
                assert capacity is not None          # (expandable segments map pages, not alloc_size)
                assert err.oom.alloc_size > capacity - err.oom.reserved or a.config.expandable_segments
        elif op == "free" and live:
            a.free(live.pop(x % len(live)))
        elif op == "record" and live:
            a.record_stream(live[x % len(live)], stream)
        elif op == "sync":
            a.synchronize(x)
        elif op == "empty":
            a.empty_cache()
        _check(a)
    for h in live:
        a.free(h)
    a.empty_cache()
    assert a.stats.allocated.current == 0 and a.stats.reserved.current == 0 and a.segments() == []
