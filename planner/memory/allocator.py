"""CachingAllocator: PyTorch's CUDA caching allocator replayed in pure Python, byte for byte.

Every rule follows `DeviceCachingAllocator` in c10/cuda/CUDACachingAllocator.cpp at pytorch/pytorch
commit eb42ad6eca0ce61e7c581212b4bf32f991425571 (cited below as [CCA: function]); the
configuration keys follow c10/core/AllocatorConfig.cpp (see alloc_config.py). It takes
`malloc(size, stream)`, `free(handle)`, `record_stream(handle, stream)`, `synchronize(stream)`
and `empty_cache()` (replay.py replays logs of them) and keeps the allocator's own statistics:
allocated bytes (block sizes, what `torch.cuda.max_memory_allocated` reports), reserved bytes
(segments, `max_memory_reserved`), the largest cached free block (`cacheInfo`), and an
out-of-memory verdict for a capacity.

Known limitations: device addresses are made up (a bump pointer, 2 MiB aligned), so the choice
between two free blocks of the same size and stream may differ from a real run where the real
addresses order them differently; CUDA graph private pools, IPC and the free-memory callbacks
are not modelled; an event recorded on a stream completes at that stream's next `synchronize`
(the allocator itself learns of it at its next `malloc`, through `process_events`).
"""
from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

from .alloc_config import LARGE_BUFFER, SIZE_MAX, AllocatorConfig

MiB = 2**20
# [CCA: file-level constants]
MIN_BLOCK_SIZE = 512           # kMinBlockSize: all sizes are rounded to at least 512 bytes
SMALL_SIZE = MiB               # kSmallSize: largest "small" allocation is 1 MiB
SMALL_BUFFER = 2 * MiB         # kSmallBuffer: "small" allocations are packed in 2 MiB blocks
MIN_LARGE_ALLOC = 10 * MiB     # kMinLargeAlloc: allocations between 1 and 10 MiB may use kLargeBuffer
ROUND_LARGE = 2 * MiB          # kRoundLarge: round up large allocations to 2 MiB
UNLIMITED_CAPACITY = 2**48     # address space of an expandable segment when no capacity is given
# the sorted pools pack a block's (stream, size, ptr) into one int, each below 2**64 (16 EiB): ints
# order as those tuples do, and compare and bisect without building tuples
_BITS = 64
_LOW = (1 << _BITS) - 1
_STREAM = 2 * _BITS            # size_key >> _STREAM is the stream


def round_size(size: int, config: AllocatorConfig) -> int:
    """Bytes of the block a request of `size` bytes gets [CCA: round_size]."""
    if size < MIN_BLOCK_SIZE:
        return MIN_BLOCK_SIZE
    divisions = config.divisions_for(size)
    if divisions > 0 and size > MIN_BLOCK_SIZE * divisions:
        return roundup_power2_next_division(size, divisions)
    return MIN_BLOCK_SIZE * (-(-size // MIN_BLOCK_SIZE))


def roundup_power2_next_division(size: int, divisions: int) -> int:
    """The next of `divisions` equal steps between two powers of two [CCA: roundup_power2_next_division]."""
    if size <= 4 or divisions <= 1 or size & (size - 1) == 0:
        return size
    floor = 1 << (size.bit_length() - 1)
    step = floor >> (divisions.bit_length() - 1)
    if step == 0:
        return floor << 1
    low = size & ~(step - 1)
    return size if low == size else low + step


def allocation_size(size: int) -> int:
    """Bytes of the segment cudaMalloc'd for a rounded request no cached block serves [CCA: get_allocation_size]."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * (-(-size // ROUND_LARGE))


class _Segment:
    """An expandable segment: reserved address space mapped page by page [CCA: struct ExpandableSegment]."""

    def __init__(self, base: int, page: int, pages: int) -> None:
        self.base, self.page, self.pages = base, page, pages

    @property
    def size(self) -> int:
        return self.page * self.pages

    def left(self, addr: int) -> int:        # segmentLeft
        return (addr - self.base) // self.page

    def right(self, addr: int) -> int:       # segmentRight (numSegments: rounds up)
        return -(-(addr - self.base) // self.page)


class _Block:
    __slots__ = ("stream", "size", "ptr", "small", "allocated", "prev", "next", "requested",
                 "mapped", "segment", "stream_uses", "event_count", "gc_base")

    def __init__(self, stream: int, size: int, ptr: int, small: bool, segment: _Segment | None = None) -> None:
        self.stream, self.size, self.ptr, self.small = stream, size, ptr, small
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None
        self.requested = 0
        self.mapped = True
        self.segment = segment
        self.stream_uses: set[int] | None = None   # other streams using it (None: none yet)
        self.event_count = 0
        self.gc_base = 0

    def is_split(self) -> bool:
        return self.prev is not None or self.next is not None

    def splice(self, before: "_Block | None", after: "_Block | None") -> None:   # Block::splice
        if before is not None:
            before.next = self
        self.prev = before
        if after is not None:
            after.prev = self
        self.next = after


def size_key(stream: int, size: int, ptr: int = 0) -> int:
    """(stream, size, ptr) packed in one int that orders as the tuple [CCA: BlockComparatorSize]."""
    return (((stream << _BITS) | size) << _BITS) | ptr


def address_key(stream: int, ptr: int = 0) -> int:
    """(stream, ptr) packed in one int that orders as the tuple [CCA: BlockComparatorAddress]."""
    return (stream << _BITS) | ptr


class _SortedBlocks:
    """A std::set<Block*> ordered by (stream, size, ptr) or (stream, ptr) [CCA: BlockComparatorSize/Address],
    kept as a sorted list of packed keys (size_key, address_key) and the blocks in the same order."""

    def __init__(self, by_size: bool) -> None:
        self.by_size = by_size
        self.keys: list[int] = []
        self.blocks: list[_Block] = []

    def key(self, b: _Block) -> int:
        return (((b.stream << _BITS) | b.size) << _BITS) | b.ptr if self.by_size else (b.stream << _BITS) | b.ptr

    def add(self, b: _Block) -> None:
        k = (((b.stream << _BITS) | b.size) << _BITS) | b.ptr if self.by_size else (b.stream << _BITS) | b.ptr
        i = bisect_left(self.keys, k)
        self.keys.insert(i, k)
        self.blocks.insert(i, b)

    def remove(self, b: _Block) -> None:
        keys = self.keys
        i = bisect_left(keys, (((b.stream << _BITS) | b.size) << _BITS) | b.ptr if self.by_size
                        else (b.stream << _BITS) | b.ptr)
        assert self.blocks[i] is b, "allocator model: block not where its key says"
        del keys[i], self.blocks[i]

    def lower_bound(self, key: int) -> int:
        return bisect_left(self.keys, key)

    def __len__(self) -> int:
        return len(self.blocks)


class _Pool:
    """A BlockPool: cached free blocks, and the unmapped ranges of expandable segments [CCA: struct BlockPool]."""

    def __init__(self, small: bool) -> None:
        self.small = small
        self.blocks = _SortedBlocks(by_size=True)
        self.unmapped = _SortedBlocks(by_size=False)
        self.free_block_calls = 0          # get_free_blocks_call_count

    def insert(self, b: _Block) -> None:   # BlockPool::insert_into_blocks
        b.gc_base = self.free_block_calls
        self.blocks.add(b)

    def largest(self) -> int:
        """The largest free block of any stream (each stream's blocks end with its largest)."""
        best, keys, i = 0, self.blocks.keys, len(self.blocks.keys)
        while i:
            k = keys[i - 1]
            size = (k >> _BITS) & _LOW
            if size > best:
                best = size
            i = bisect_left(keys, (k >> _STREAM) << _STREAM)
        return best


@dataclass
class Stat:
    current: int = 0
    peak: int = 0

    def add(self, n: int) -> None:         # increase_stat / decrease_stat
        self.current += n
        if self.current > self.peak:
            self.peak = self.current


@dataclass(frozen=True)
class OutOfMemory:
    """What the allocator's OOM message says, and whether fragmentation caused it."""
    requested: int            # bytes asked for (before rounding)
    rounded: int              # the block size it needed
    alloc_size: int           # the segment it tried to cudaMalloc ("Tried to allocate")
    allocated: int
    reserved: int
    capacity: int | None
    largest_free_block: int   # largest cached free block after the allocator freed what it could

    @property
    def free_total(self) -> int:
        """Cached free bytes plus what the device still has: all the memory not holding tensors."""
        return (self.capacity or 0) - self.allocated

    @property
    def cached_free(self) -> int:
        """Reserved but unallocated: free pieces of segments the allocator could not release."""
        return self.reserved - self.allocated

    @property
    def fragmentation(self) -> bool:
        """The free bytes (cached and the device's) would hold the request, but no one piece
        does: part of them is cached in split segments. With nothing cached, the OOM is the
        device's (less left than the segment the request needs), not fragmentation."""
        return (self.free_total >= self.rounded and self.largest_free_block < self.rounded
                and self.cached_free > 0)

    def __str__(self) -> str:
        kind = "fragmentation: enough free bytes, no piece large enough" if self.fragmentation else "too little memory"
        return (f"CUDA out of memory ({kind}). Tried to allocate {self.alloc_size / MiB:.2f} MiB; "
                f"{self.allocated / MiB:.2f} MiB allocated, {(self.reserved - self.allocated) / MiB:.2f} MiB "
                f"reserved but unallocated, largest free block {self.largest_free_block / MiB:.2f} MiB")


@dataclass
class SegmentInfo:
    """One segment as torch.cuda.memory_snapshot() lists it: its blocks (size, allocated) in address order."""
    address: int
    stream: int
    small: bool
    expandable: bool
    blocks: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        return sum(size for size, _ in self.blocks)

    @property
    def allocated_size(self) -> int:
        return sum(size for size, allocated in self.blocks if allocated)


class AllocatorOOM(RuntimeError):
    def __init__(self, oom: OutOfMemory) -> None:
        super().__init__(str(oom))
        self.oom = oom


@dataclass
class Stats:
    allocated: Stat = field(default_factory=Stat)     # stats.allocated_bytes (block sizes)
    reserved: Stat = field(default_factory=Stat)      # stats.reserved_bytes
    requested: Stat = field(default_factory=Stat)     # stats.requested_bytes (sizes as asked)
    segments: Stat = field(default_factory=Stat)      # stats.segment (cudaMalloc'd segments)
    num_alloc_retries: int = 0
    num_ooms: int = 0
    num_device_alloc: int = 0
    num_device_free: int = 0
    largest_free_at_peak_reserved: int = 0            # cacheInfo when reserved peaked


class CachingAllocator:
    """One device's caching allocator. `capacity`: bytes cudaMalloc can give it in all (None: no
    limit); `memory_fraction`: torch.cuda.set_per_process_memory_fraction, a fraction of
    `capacity` (only then does garbage_collection_threshold act [CCA: malloc])."""

    def __init__(self, config: AllocatorConfig | None = None, capacity: int | None = None,
                 memory_fraction: float | None = None, record_segments: bool = False) -> None:
        self.config = config or AllocatorConfig()
        self.capacity = capacity
        self.set_fraction = memory_fraction is not None
        self.allowed_maximum = int((memory_fraction or 0.0) * (capacity or 0))
        self.small, self.large = _Pool(True), _Pool(False)
        self.stats = Stats()
        self.total_allocated_memory = 0          # bytes held from the device (== reserved)
        self.active: dict[int, _Block] = {}      # handle -> allocated block
        self.events: dict[int, deque[list]] = {} # stream -> [[done, block], ...] (cuda_events)
        self.segment_log: list[tuple[str, int]] | None = [] if record_segments else None
        self._handles = itertools.count(1)
        self._next_addr = 0
        self._at_new_peak = False
        self._rounded: dict[int, int] = {}       # round_size memo (the config is fixed)
        self._gc_counts = self.set_fraction and self.config.garbage_collection_threshold > 0.0
        self._max_split = self.config.max_split_size
        self._non_split = self.config.max_non_split_rounding
        self._expandable = self.config.expandable_segments

    # --- public events ----------------------------------------------------------------------
    def malloc(self, size: int, stream: int = 0) -> int:
        """A handle to a block for `size` bytes on `stream`; AllocatorOOM if none can be had [CCA: malloc].
        Size 0 allocates nothing and returns handle 0 [CCA: NativeCachingAllocator::allocate]."""
        if size == 0:
            return 0
        if self.events:
            self.process_events()
        rounded = self._rounded.get(size)
        if rounded is None:
            rounded = self._rounded[size] = round_size(size, self.config)
        pool = self.small if rounded <= SMALL_SIZE else self.large       # get_pool
        # best fit, inline for an ordinary block [CCA: get_free_block] (the estimate's replays make millions)
        if self._gc_counts:
            pool.free_block_calls += 1
        sb = pool.blocks
        keys = sb.keys
        i = bisect_left(keys, ((stream << _BITS) | rounded) << _BITS)
        block = sb.blocks[i] if i < len(keys) and keys[i] >> _STREAM == stream else None
        if block is not None:
            if block.segment is not None:
                block = self._best_fit(pool, i, rounded, stream)
            elif (block.size < self._max_split if rounded < self._max_split
                  else block.size < rounded + self._non_split):
                del keys[i], sb.blocks[i]
            else:
                block = None
        if block is None:
            alloc_size = allocation_size(rounded)
            if self._gc_counts:
                self._garbage_collect()
            block = (self._alloc_block(pool, rounded, alloc_size, stream)
                     or (self._release_available_cached_blocks(pool, rounded, stream)
                         and self._alloc_block(pool, rounded, alloc_size, stream))
                     or (self.release_cached_blocks()
                         and self._alloc_block(pool, rounded, alloc_size, stream, retry=True)))
            if not block:
                self.stats.num_ooms += 1
                self._at_new_peak = False
                limit = self.allowed_maximum if self.set_fraction else self.capacity
                raise AllocatorOOM(OutOfMemory(size, rounded, alloc_size, self.stats.allocated.current,
                                               self.stats.reserved.current, limit, self.largest_free_block()))
        # hand it out, first splitting off the remainder [CCA: alloc_found_block]
        remaining = block.size - rounded
        if (remaining >= MIN_BLOCK_SIZE if block.small or self._expandable
                else rounded < self._max_split and remaining > SMALL_SIZE):    # should_split
            rest = block
            block = _Block(stream, rounded, rest.ptr, pool.small, rest.segment)
            block.prev = rest.prev
            if block.prev is not None:
                block.prev.next = block
            block.next = rest
            rest.prev = block
            rest.ptr += rounded
            rest.size = remaining
            rest.gc_base = pool.free_block_calls     # pool.insert(rest)
            k = (((rest.stream << _BITS) | remaining) << _BITS) | rest.ptr
            i = bisect_left(keys, k)
            keys.insert(i, k)
            sb.blocks.insert(i, rest)
        block.allocated = True
        block.requested = size
        handle = next(self._handles)
        self.active[handle] = block
        st = self.stats
        stat = st.allocated                 # Stat.add, inline
        stat.current += block.size
        if stat.current > stat.peak:
            stat.peak = stat.current
        stat = st.requested
        stat.current += size
        if stat.current > stat.peak:
            stat.peak = stat.current
        if self._at_new_peak:   # cacheInfo once this malloc is done (the split remainder is cached)
            st.largest_free_at_peak_reserved = self.largest_free_block()
            self._at_new_peak = False
        return handle

    def free(self, handle: int) -> None:
        """Returns the block to its pool, or defers that while other streams use it [CCA: free]."""
        if handle == 0:
            return
        block = self.active.pop(handle)
        block.allocated = False
        st = self.stats
        st.allocated.current -= block.size   # a decrease never moves the peak (peak >= current)
        if block.stream_uses:
            self._insert_events(block)
            return
        self._free_block(block)

    def record_stream(self, handle: int, stream: int) -> None:
        """The block is used on `stream` too; uses on its own stream need nothing [CCA: recordStream]."""
        if handle == 0:
            return
        block = self.active[handle]
        if stream != block.stream:
            if block.stream_uses is None:
                block.stream_uses = set()
            block.stream_uses.add(stream)

    def synchronize(self, stream: int | None = None) -> None:
        """`stream` (all streams if None) finished its work: its recorded events have completed.
        The allocator reclaims their blocks at its next malloc (process_events) or empty_cache."""
        for s, queue in self.events.items():
            if stream is None or s == stream:
                for entry in queue:
                    entry[0] = True

    def empty_cache(self) -> None:
        """torch.cuda.empty_cache() [CCA: emptyCache -> release_cached_blocks]."""
        self.release_cached_blocks()

    def reset_peaks(self) -> None:
        """torch.cuda.reset_peak_memory_stats() [CCA: resetPeakStats: peak = current]."""
        for stat in (self.stats.allocated, self.stats.reserved, self.stats.requested, self.stats.segments):
            stat.peak = stat.current
        self.stats.largest_free_at_peak_reserved = self.largest_free_block()

    def largest_free_block(self) -> int:
        """Size of the largest unused block the cache holds [CCA: cacheInfo / cache_info_aux]."""
        return max(self.small.largest(), self.large.largest())

    def size_of(self, handle: int) -> int:
        return self.active[handle].size

    def segments(self) -> list["SegmentInfo"]:
        """The segments the allocator holds, by address; an expandable segment counts as one per
        contiguous mapped range [CCA: snapshot]."""
        pools = (self.small, self.large)
        pending = {id(b): b for queue in self.events.values() for _, b in queue}   # freed, awaiting events
        blocks = (list(self.active.values()) + list(pending.values())
                  + [b for p in pools for b in p.blocks.blocks + p.unmapped.blocks])
        out = []
        for head in blocks:
            if not head.mapped or (head.prev is not None and head.prev.mapped):
                continue
            seg, b = SegmentInfo(head.ptr, head.stream, head.small, head.segment is not None), head
            while b is not None and b.mapped:
                seg.blocks.append((b.size, b.allocated))
                b = b.next
            out.append(seg)
        return sorted(out, key=lambda s: s.address)

    # --- events across streams ----------------------------------------------------------------
    def _insert_events(self, block: _Block) -> None:          # insert_events
        streams, block.stream_uses = block.stream_uses, None
        for s in sorted(streams):
            block.event_count += 1
            self.events.setdefault(s, deque()).append([False, block])

    def process_events(self) -> None:
        """Frees the blocks whose last recorded event has completed [CCA: process_events]."""
        for s in list(self.events):
            queue = self.events[s]
            while queue and queue[0][0]:
                block = queue.popleft()[1]
                block.event_count -= 1
                if block.event_count == 0:
                    self._free_block(block)
            if not queue:
                del self.events[s]

    def _synchronize_and_free_events(self) -> None:          # synchronize_and_free_events
        for queue in self.events.values():
            for _, block in queue:
                block.event_count -= 1
                if block.event_count == 0:
                    self._free_block(block)
        self.events.clear()

    # --- finding and making blocks ------------------------------------------------------------
    def _best_fit(self, pool: _Pool, i: int, size: int, stream: int) -> _Block | None:
        """Best fit from index `i`, the pool's first block of `stream` holding `size` [CCA: get_free_block]."""
        cfg = self.config
        keys, blocks = pool.blocks.keys, pool.blocks.blocks
        n = len(keys)
        if blocks[i].segment is not None:
            if cfg.expandable_segments:
                # a block followed by unmapped pages counts as the size it can grow to
                def expandable_size(b: _Block) -> int:
                    return b.size + (b.next.size if b.next is not None and not b.next.mapped else 0)
                while (blocks[i].segment is not None and i + 1 < n and keys[i + 1] >> _STREAM == stream
                       and expandable_size(blocks[i + 1]) < expandable_size(blocks[i])):
                    i += 1
            else:   # expandable segments switched off: only ordinary blocks
                i += 1
                while i < n and blocks[i].segment is not None and keys[i] >> _STREAM == stream:
                    i += 1
                if i == n or keys[i] >> _STREAM != stream:
                    return None
        found = blocks[i]
        # an oversize block is not handed to a request under max_split_size, and serves an
        # oversize request only within max_non_split_rounding of its size
        limit = cfg.max_split_size
        if size < limit:
            if found.size >= limit:
                return None
        elif found.size >= size + cfg.max_non_split_rounding:
            return None
        del keys[i], blocks[i]      # pool.blocks.remove(found): it sits at i (keys are unique)
        return found

    def _device_alloc_ok(self, size: int) -> bool:
        """cudaMalloc (or cuMemCreate) succeeds: the device has `size` more bytes."""
        return self.capacity is None or self.total_allocated_memory + size <= self.capacity

    def _new_address(self, size: int) -> int:
        addr = self._next_addr
        self._next_addr += -(-size // SMALL_BUFFER) * SMALL_BUFFER
        if self._next_addr > _LOW:   # every block lies in a segment, so its size and ptr fit a pool key
            raise ValueError("allocator model: more than 16 EiB of address space")
        return addr

    def _alloc_block(self, pool: _Pool, size: int, alloc_size: int, stream: int, retry: bool = False) -> _Block | None:
        """A new segment from the device [CCA: alloc_block]; with expandable segments, pages mapped
        onto this stream's segment for `size` bytes (not alloc_size) [CCA: try_allocate_expandable_block]."""
        if retry:
            self.stats.num_alloc_retries += 1
        if self.set_fraction and self.total_allocated_memory + alloc_size > self.allowed_maximum:
            return None
        if self.config.expandable_segments:
            return self._try_allocate_expandable_block(pool, size, stream)
        if not self._device_alloc_ok(alloc_size):
            return None
        self.total_allocated_memory += alloc_size
        block = _Block(stream, alloc_size, self._new_address(alloc_size), pool.small)
        self.stats.segments.add(1)
        self._add_reserved(alloc_size)
        self.stats.num_device_alloc += 1
        self._log("segment_alloc", alloc_size)
        return block

    def _add_reserved(self, n: int) -> None:
        self.stats.reserved.add(n)
        self._at_new_peak = self._at_new_peak or (n > 0 and self.stats.reserved.current == self.stats.reserved.peak)

    def _log(self, action: str, size: int) -> None:
        if self.segment_log is not None:
            self.segment_log.append((action, size))

    def _free_block(self, block: _Block) -> None:
        """Back into the pool, merged with free neighbours of its segment [CCA: free_block]."""
        pool = self.small if block.small else self.large
        self.stats.requested.current -= block.requested   # a decrease never moves the peak
        block.requested = 0
        prev, after = block.prev, block.next
        if prev is not None and not prev.allocated:
            self._try_merge_blocks(block, prev, pool)
        if after is not None and not after.allocated:
            self._try_merge_blocks(block, after, pool)
        block.gc_base = pool.free_block_calls               # pool.insert(block)
        pool.blocks.add(block)

    def _try_merge_blocks(self, dst: _Block, src: _Block | None, pool: _Pool) -> int:
        """Absorbs `src` into `dst` if it is free, has no pending uses and is mapped alike [CCA: try_merge_blocks]."""
        if (src is None or src.allocated or src.event_count > 0 or src.stream_uses
                or dst.mapped != src.mapped):
            return 0
        (pool.blocks if src.mapped else pool.unmapped).remove(src)
        if dst.prev is src:     # [src dst]
            dst.ptr = src.ptr
            dst.prev = src.prev
            if dst.prev is not None:
                dst.prev.next = dst
        else:                   # [dst src]
            dst.next = src.next
            if dst.next is not None:
                dst.next.prev = dst
        dst.size += src.size
        return src.size

    # --- expandable segments -------------------------------------------------------------------
    def _find_expandable_block(self, pool: _Pool, size: int, stream: int) -> _Block:
        """The lowest-address run of free and unmapped blocks of this stream holding `size`, else a
        new segment of address space [CCA: find_expandable_block]."""
        def allocatable(b: _Block | None) -> bool:
            return b is not None and not b.allocated and b.event_count == 0 and not b.stream_uses

        def has_room(b: _Block | None) -> bool:
            total = 0
            while total < size and allocatable(b):
                total += b.size
                b = b.next
            return total >= size

        unmapped = pool.unmapped
        i = unmapped.lower_bound(address_key(stream))
        while i < len(unmapped) and unmapped.keys[i] >> _BITS == stream:
            c = unmapped.blocks[i]
            if allocatable(c.prev):
                c = c.prev
            if has_room(c):
                return c
            i += 1
        # pages of 2 MiB in the small pool and 20 MiB in the large one; address space for 1 1/8 of the
        # device [ExpandableSegment ctor: max_handles_ = numSegments(total + total / 8)]
        page = SMALL_BUFFER if pool.small else LARGE_BUFFER
        capacity = self.capacity or UNLIMITED_CAPACITY
        pages = -(-(capacity + capacity // 8) // page)
        segment = _Segment(self._new_address(page * pages), page, pages)
        candidate = _Block(stream, segment.size, segment.base, pool.small, segment)
        candidate.mapped = False
        unmapped.add(candidate)
        return candidate

    def _map_block(self, to_map: _Block, size: int, pool: _Pool) -> bool:
        """Maps the pages under the first `size` bytes of an unmapped block [CCA: map_block, ExpandableSegment::map]."""
        seg = to_map.segment
        begin, end = seg.left(to_map.ptr), seg.right(to_map.ptr + size)
        mapped = (end - begin) * seg.page
        if begin == end or not self._device_alloc_ok(mapped):   # cuMemCreate OOM releases what it made
            return False
        pool.unmapped.remove(to_map)
        to_map.mapped = True
        if mapped < to_map.size:
            rest = _Block(to_map.stream, to_map.size - mapped, to_map.ptr + mapped, pool.small, seg)
            rest.mapped = False
            rest.splice(to_map, to_map.next)
            pool.unmapped.add(rest)
            to_map.size = mapped
        self._try_merge_blocks(to_map, to_map.prev, pool)
        self._try_merge_blocks(to_map, to_map.next, pool)
        pool.insert(to_map)
        self.total_allocated_memory += mapped
        self._add_reserved(mapped)
        self.stats.num_device_alloc += 1
        self._log("segment_map", mapped)
        return True

    def _try_allocate_expandable_block(self, pool: _Pool, size: int, stream: int) -> _Block | None:
        """[CCA: try_allocate_expandable_block]"""
        candidate = self._find_expandable_block(pool, size, stream)
        if not candidate.mapped and not self._map_block(candidate, min(candidate.size, size), pool):
            return None
        while candidate.size < size:
            following = candidate.next
            if not self._map_block(following, min(size - candidate.size, following.size), pool):
                return None
            candidate = following
        pool.blocks.remove(candidate)
        return candidate

    def _unmap_block(self, block: _Block, pool: _Pool) -> None:
        """Returns the whole pages inside a free block to the device [CCA: unmap_block, ExpandableSegment::unmap]."""
        seg = block.segment
        begin, end = seg.right(block.ptr), seg.left(block.ptr + block.size)
        if begin >= end:
            return
        start, length = seg.base + begin * seg.page, (end - begin) * seg.page
        pool.blocks.remove(block)
        before = start - block.ptr
        if before > 0:
            head = _Block(block.stream, before, block.ptr, pool.small, seg)
            head.splice(block.prev, block)
            pool.insert(head)
        after = block.size - (before + length)
        if after > 0:
            tail = _Block(block.stream, after, start + length, pool.small, seg)
            tail.splice(block, block.next)
            pool.insert(tail)
        block.ptr, block.size, block.mapped = start, length, False
        self._try_merge_blocks(block, block.prev, pool)
        self._try_merge_blocks(block, block.next, pool)
        pool.unmapped.add(block)
        self.total_allocated_memory -= length
        self.stats.reserved.add(-length)
        self.stats.num_device_free += 1
        self._log("segment_unmap", length)

    # --- giving memory back ----------------------------------------------------------------------
    def release_cached_blocks(self) -> bool:
        """Waits for every pending event, then frees every cached block that is a whole segment, and
        unmaps the free pages of expandable segments [CCA: release_cached_blocks, release_blocks]."""
        self._synchronize_and_free_events()
        for pool in (self.large, self.small):
            to_unmap = []
            for block in list(pool.blocks.blocks):
                if block.segment is not None:
                    to_unmap.append(block)
                elif not block.is_split():
                    self._release_block(block, pool)
            for block in to_unmap:
                self._unmap_block(block, pool)
                if not block.is_split() and not block.mapped:   # release_expandable_segment
                    pool.unmapped.remove(block)
        return True

    def _release_block(self, block: _Block, pool: _Pool) -> None:
        """cudaFree of a whole cached segment [CCA: release_block]."""
        self.total_allocated_memory -= block.size
        self.stats.segments.add(-1)
        self.stats.reserved.add(-block.size)
        self.stats.num_device_free += 1
        pool.blocks.remove(block)
        self._log("segment_free", block.size)

    def _release_available_cached_blocks(self, pool: _Pool, size: int, stream: int) -> bool:
        """With max_split_size set: frees one oversize cached block large enough, else oversize
        blocks from the largest down until enough is freed [CCA: release_available_cached_blocks]."""
        limit = self.config.max_split_size
        if limit == SIZE_MAX:
            return False
        need = max(size, limit)
        keys, blocks = pool.blocks.keys, pool.blocks.blocks
        i = pool.blocks.lower_bound(size_key(stream, need))
        if i < len(keys) and keys[i] >> _STREAM == stream:
            self._release_block(blocks[i], pool)
            return True
        if i == 0:
            return False
        released, i = 0, i - 1
        while released < need and i >= 0 and blocks[i].size >= limit and blocks[i].stream == stream:
            released += blocks[i].size
            self._release_block(blocks[i], pool)
            i -= 1
        return released >= need

    def _garbage_collect(self) -> None:
        """Frees cached whole segments older than the average, until reserved is back under
        garbage_collection_threshold x the allowed memory [CCA: garbage_collect_cached_blocks]."""
        threshold = int(self.config.garbage_collection_threshold * self.allowed_maximum)
        if self.total_allocated_memory <= threshold:
            return
        target, reclaimed = self.total_allocated_memory - threshold, 0
        pool = self.large

        def age(b: _Block) -> int:                       # Block::gc_count
            return pool.free_block_calls - b.gc_base

        freeable = [b for b in pool.blocks.blocks if not b.is_split()]
        total_age, count = float(sum(age(b) for b in freeable)), len(freeable)
        if count == 0:
            return
        freed = True
        while reclaimed < target and freed and count > 0:
            threshold_age = total_age / count
            freed = False
            for block in list(pool.blocks.blocks):
                if not block.is_split() and age(block) >= threshold_age:
                    freed = True
                    reclaimed += block.size
                    total_age -= age(block)
                    count -= 1
                    self._release_block(block, pool)
