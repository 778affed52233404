"""How fast `recommend` searches: configurations considered per second (target: >= 10,000 in <= 2 s).

A configuration is one (GPU type, GPU count, sharding, method, precision, optimizer, checkpointing,
micro-batch) the search decides on; the bisection over micro-batches means most are settled
without their own estimate (the `estimates` column counts estimate() calls). Prints a table;
median of 3 cold runs (each run builds its memo from scratch).

    python benchmarks/recommend_speed.py
"""
from __future__ import annotations

import statistics
import sys
import time

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.enums import Optimizer
from gpuplan.planner.plans.recommend import Constraints, SearchSpace, recommend

CASES = [
    ("qwen-2.5-7b", "defaults (8 GPUs max)", Constraints(), SearchSpace()),
    ("qwen-2.5-7b", "all 8 optimizers, micro-batch <= 256", Constraints(),
     SearchSpace(optimizers=tuple(Optimizer), max_micro_batch=256)),
    ("llama-3.1-8b", "all optimizers, seq-len 4096", Constraints(),
     SearchSpace(optimizers=tuple(Optimizer), max_micro_batch=256, seq_len=4096)),
    ("llama-3.1-70b", "all optimizers, up to 64 GPUs", Constraints(max_gpus=64),
     SearchSpace(optimizers=tuple(Optimizer), max_micro_batch=256)),
]


def main() -> None:
    rows = []
    for name, label, c, space in CASES:
        m = resolve_model(name)
        times, rec = [], None
        for _ in range(3):
            t = time.perf_counter()
            rec = recommend(m, 200_000_000, 1.0, c, space)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        rows.append((name, label, rec.considered, rec.estimates, rec.fitting, sec, rec.considered / sec,
                     c.max_gpus > 1))
        print(f"  {name}: {label} done", file=sys.stderr)
    print(f"{'model':14s} {'search':42s} {'considered':>10s} {'estimates':>9s} {'fit':>6s} {'seconds':>8s} "
          f"{'configs/s':>10s} multi-GPU")
    for r in rows:
        print(f"{r[0]:14s} {r[1]:42s} {r[2]:10,d} {r[3]:9,d} {r[4]:6,d} {r[5]:8.3f} {r[6]:10,.0f} {'yes' if r[7] else 'no'}")
    ok = any(r[2] >= 10_000 and r[5] <= 2.0 for r in rows) and all(r[6] >= 5_000 for r in rows)
    print(f"target: a search of >= 10,000 configurations in <= 2 s, and >= 5,000 configurations/s in every "
          f"search: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
