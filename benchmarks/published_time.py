"""Throughput: gpuplan's step_time tokens/s against published real-GPU runs (data/published/), signed error per run.

For each mapped run with a published tokens/s on a GPU in the catalog, the published figure over
all GPUs (a per-GPU figure times the GPU count) is compared with
`step_time(model, setup, gpu).tokens_per_s` for the run's mapping (with its `time_overrides`, e.g.
peft's mean sample length). error = (gpuplan - published) / published: negative means gpuplan
promises fewer tokens/s than the run got. This is the raw error of today's time model, no
calibration; tables by GPU family, method, micro-batch tokens, GPU count and source, tuned and
held-out sources apart.

    python benchmarks/published_time.py            # print the tables (markdown)
    python benchmarks/published_time.py --record   # also write the time errors to data/published/errors_recorded.json
"""
from __future__ import annotations

import argparse
import sys

from _published_common import fmt, record, table

from gpuplan.planner.plans.evidence import time_errors


def tokens_bucket(tokens: int) -> str:
    """Micro-batch tokens per GPU, in the bands where the time model's small-batch factor changes."""
    for limit, name in ((1024, "1: <1k"), (4096, "2: 1k-4k"), (16384, "3: 4k-16k")):
        if tokens < limit:
            return name
    return "4: >=16k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write today's errors to data/published/errors_recorded.json")
    args = parser.parse_args()
    rows = time_errors()
    print(f"# gpuplan step_time tokens/s against {len(rows)} published throughputs\n")
    for held, title in ((False, "Tuned sources"), (True, "Held-out sources (split.json; never used for fitting)")):
        part = [r for r in rows if r.held_out is held]
        print(table(f"{title}: by source", part, lambda r: (r.run.file,), ("source",)))
        print(table(f"{title}: by GPU family and method", part, lambda r: (r.gpu_family, r.run.mapping["method"]), ("GPU family", "method")))
        print(table(f"{title}: by micro-batch tokens", part, lambda r: (tokens_bucket(r.micro_batch_tokens),), ("micro-batch tokens per GPU",)))
        print(table(f"{title}: by GPU count", part, lambda r: (str(r.run.gpu_count),), ("GPUs",)))
    print(table("All sources: by GPU family", rows, lambda r: (r.gpu_family,), ("GPU family",)))
    print("\n**Every run** (`*`: has features gpuplan does not model)\n")
    print("| run | source | held out | GPU | GPUs | micro-batch tokens | published tok/s | gpuplan tok/s | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.held_out, r.run.file, r.run.id)):
        print(f"| {r.run.id}{' *' if r.flagged else ''} | {r.run.file} | {'yes' if r.held_out else 'no'} | {r.run.gpu_catalog} | "
              f"{r.run.gpu_count} | {r.micro_batch_tokens} | {r.published_tokens_per_s:.0f} | {r.estimate_tokens_per_s:.0f} | "
              f"{fmt(r.error_pct, True)} |")
    if args.record:
        print(f"\nrecorded {len(rows)} errors to {record('time', rows)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
