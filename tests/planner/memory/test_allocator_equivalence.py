"""The caching allocator model's cheaper hot path (packed pool keys, inlined statistics) against the
implementation it replaced, kept verbatim in reference_allocator.py: random logs of malloc, free,
record_stream, synchronize, empty_cache and reset_peaks under several configurations and capacities
must give the same handles, statistics, segments, largest free blocks and OOM verdicts after every
event; and the estimate's synthetic steps (memory/reserved.py) must replay alike through both."""
from __future__ import annotations

import dataclasses
import random

import pytest
import reference_allocator as ref
from hypothesis import given, settings, strategies as st

from gpuplan.planner import Checkpointing, Method, Optimizer, Precision, TrainingSetup, estimate
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory import reserved as R
from gpuplan.planner.memory.alloc_config import AllocatorConfig
from gpuplan.planner.memory.allocator import AllocatorOOM, CachingAllocator
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec

MiB = 2**20
CONFS = ("", "expandable_segments:True", "max_split_size_mb:64", "max_split_size_mb:40,max_non_split_rounding_mb:30",
         "roundup_power2_divisions:4", "garbage_collection_threshold:0.6", "roundup_power2_divisions:[256:1,512:2,>:8]")


def _state(a) -> tuple:
    """Everything the allocator shows, as plain values (the two modules' classes differ)."""
    segs = [(s.address, s.stream, s.small, s.expandable, tuple(s.blocks)) for s in a.segments()]
    return (dataclasses.astuple(a.stats), a.largest_free_block(), a.total_allocated_memory, segs,
            tuple(a.segment_log or ()), sorted((h, b.size) for h, b in a.active.items()))


def _run(alloc, ops: list[tuple], oom_type) -> list:
    """Each op's outcome on `alloc`, and its state after it."""
    out, live = [], []
    for op, x, stream in ops:
        try:
            if op == "malloc":
                h = alloc.malloc(x, stream)
                live.append(h)
                out.append(("malloc", h))
            elif op == "free" and live:
                alloc.free(live.pop(x % len(live)))
            elif op == "record" and live:
                alloc.record_stream(live[x % len(live)], stream)
            elif op == "sync":
                alloc.synchronize(None if x == 3 else x)
            elif op == "empty":
                alloc.empty_cache()
            elif op == "reset":
                alloc.reset_peaks()
        except oom_type as err:
            out.append(("oom", dataclasses.astuple(err.oom), err.oom.fragmentation, str(err.oom)))
        out.append(_state(alloc))
    return out


def _both(ops, conf: str, capacity, fraction) -> None:
    cfg = AllocatorConfig.parse(conf)
    new = CachingAllocator(cfg, capacity, fraction, record_segments=True)
    old = ref.CachingAllocator(cfg, capacity, fraction, record_segments=True)
    assert _run(new, ops, AllocatorOOM) == _run(old, ops, ref.AllocatorOOM)


_SIZES = st.one_of(st.integers(1, 4096), st.integers(1, MiB), st.integers(MiB + 1, 10 * MiB),
                   st.integers(10 * MiB, 300 * MiB), st.sampled_from([512, MiB, 2 * MiB, 10 * MiB, 20 * MiB]))
_OPS = st.lists(st.one_of(st.tuples(st.just("malloc"), _SIZES, st.integers(0, 2)),
                          st.tuples(st.just("malloc"), _SIZES, st.just(0)),
                          st.tuples(st.just("free"), st.integers(0, 10**6), st.just(0)),
                          st.tuples(st.just("free"), st.integers(0, 10**6), st.just(0)),
                          st.tuples(st.just("record"), st.integers(0, 10**6), st.integers(0, 2)),
                          st.tuples(st.just("sync"), st.integers(0, 3), st.just(0)),
                          st.tuples(st.just("empty"), st.just(0), st.just(0)),
                          st.tuples(st.just("reset"), st.just(0), st.just(0))), max_size=80)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, conf=st.sampled_from(CONFS), capacity=st.sampled_from([None, 64 * MiB, 256 * MiB, 1024 * MiB]),
       fraction=st.sampled_from([None, 0.5, 0.9]))
def test_random_logs_replay_alike_through_the_old_and_the_new_allocator(ops, conf, capacity, fraction):
    _both(ops, conf, capacity, fraction if capacity else None)


@pytest.mark.parametrize("seed", range(6))
def test_long_random_logs_replay_alike(seed):
    """Longer logs than hypothesis draws: pools of hundreds of blocks, many streams' events."""
    rng = random.Random(seed)
    ops = []
    for _ in range(1500):
        r = rng.random()
        if r < 0.45:
            size = rng.choice([rng.randint(1, MiB), rng.randint(MiB, 12 * MiB), rng.randint(10 * MiB, 120 * MiB)])
            ops.append(("malloc", size, rng.choice([0, 0, 0, 1, 2])))
        elif r < 0.85:
            ops.append(("free", rng.randint(0, 10**6), 0))
        elif r < 0.92:
            ops.append(("record", rng.randint(0, 10**6), rng.randint(0, 2)))
        elif r < 0.97:
            ops.append(("sync", rng.randint(0, 3), 0))
        elif r < 0.99:
            ops.append(("reset", 0, 0))
        else:
            ops.append(("empty", 0, 0))
    conf = CONFS[seed % len(CONFS)]
    _both(ops, conf, [None, 2048 * MiB][seed % 2], 0.8 if "garbage" in conf else None)


def _setups():
    m = resolve_model("qwen-2.5-0.5b")
    yield m, TrainingSetup()
    for i, (meth, prec, opt, ck, b, s, ga, par, conf) in enumerate([
            (Method.LORA, Precision.BF16_MIXED, Optimizer.ADAMW, Checkpointing.FULL, 2, 512, 1, ParallelSpec(), ""),
            (Method.FULL, Precision.BF16_TRUE, Optimizer.ADAMW_8BIT, Checkpointing.NONE, 1, 1024, 4, ParallelSpec(), ""),
            (Method.QLORA, Precision.BF16_MIXED, Optimizer.ADAMW, Checkpointing.SAVE_ATTENTION, 3, 700, 2,
             ParallelSpec(), "expandable_segments:True"),
            (Method.FULL, Precision.BF16_MIXED, Optimizer.ADAMW, Checkpointing.FULL, 2, 1024, 1,
             ParallelSpec(gpus=8, fsdp=Fsdp.FULL), ""),
            (Method.LORA, Precision.BF16_MIXED, Optimizer.ADAMW, Checkpointing.NONE, 4, 256, 1,
             ParallelSpec(gpus=4, fsdp=Fsdp.GRAD_OP), "max_split_size_mb:128"),
            (Method.FULL, Precision.FP32, Optimizer.SGD, Checkpointing.FULL, 1, 2048, 1, ParallelSpec(),
             "roundup_power2_divisions:4")]):
        yield m, TrainingSetup(method=meth, precision=prec, optimizer=opt, checkpointing=ck, batch_size=b,
                               seq_len=s, grad_accum=ga, parallel=par, alloc_conf=conf)


@pytest.mark.parametrize("case", range(7))
def test_the_estimates_synthetic_steps_replay_alike(case):
    m, setup = list(_setups())[case]
    res = estimate(m, setup).allocator
    cfg = R.allocator_config(res.conf)
    for shape in (res.shape, R.merged(dataclasses.replace(res.shape, layers=res.shape.layers + 3), 4)):
        for capacity in (None, int(res.peak_reserved * 0.7) if res.peak_reserved else None):
            new, old = CachingAllocator(cfg, capacity), ref.CachingAllocator(cfg, capacity)
            outcome = []
            for alloc, oom in ((new, AllocatorOOM), (old, ref.AllocatorOOM)):
                log = R._Direct(alloc)
                try:
                    large = R._steps(log, shape)
                except oom as err:
                    large = dataclasses.astuple(err.oom)
                outcome.append((large, log.largest, _state(alloc)))
            assert outcome[0] == outcome[1]
