"""Reserved memory of accuracy-matrix setups, from the caching allocator model. Prints a table.

    python benchmarks/allocator.py [--max-params 2e9] [--match TEXT] [--limit 10] [--all]
    python benchmarks/allocator.py --sweep llama-3.2-1b      # one model, full and LoRA, 4 token counts
    python benchmarks/allocator.py --sweep llama-3.2-1b --fsdp 8   # the same as rank 0 of FSDP2 (full shard)
    python benchmarks/allocator.py --sweep llama-3.1-8b --fsdp 8 --shapes 1x512,2x1024

Each setup (profiler/matrix.py MATRIX, smallest models first; without --all, the first case of
each model and method) is simulated once (the real step
under FakeTensorMode, its storage allocations logged), then the log is replayed through
gpuplan.planner.memory.allocator under three PYTORCH_CUDA_ALLOC_CONF settings: the default,
expandable_segments:True and max_split_size_mb:128. Columns: peak allocated (the allocator's block
bytes), peak reserved, reserved/allocated, the largest cached free block when reserved peaked,
and the number of segments then. GiB = 2**30 bytes. Progress goes to stderr.

The figures come from the allocator's source, not from a GPU: no real trace has checked them yet,
and they leave out what the tracker cannot see (cuBLAS workspaces, the CUDA context).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

from gpuplan.planner import param_counts, resolve_model
from gpuplan.profiler.allocator_replay import replay_events, simulated_events
from gpuplan.profiler.matrix import MATRIX, Case, select

GIB = 2**30
CONFIGS = ("", "expandable_segments:True", "max_split_size_mb:128")
SWEEP_SHAPES = ((1, 256), (2, 256), (4, 512), (4, 2048))
SWEEP_SETUPS = ({}, {"method": "lora"})


def sweep_cases(model: str, fsdp_world: int = 1, shapes=SWEEP_SHAPES) -> list[Case]:
    """`model` under full fine-tuning and LoRA (gpuplan's defaults) at a few batch x sequence shapes,
    on one GPU or as rank 0 of an FSDP2 full-shard job of `fsdp_world` GPUs."""
    par = {"parallel": {"gpus": fsdp_world, "fsdp": "full"}} if fsdp_world > 1 else {}
    return [Case("sweep", model, {**setup, **par}, b, s) for setup in SWEEP_SETUPS for b, s in shapes]


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(b), int(s)) for b, s in (item.split("x") for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BxS[,BxS...] such as 1x512,2x1024, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", type=float, default=2e9, help="largest model, parameters (default 2e9)")
    parser.add_argument("--match", default=None, help="only cases whose name contains this")
    parser.add_argument("--limit", type=int, default=10, help="at most this many cases (default 10)")
    parser.add_argument("--all", action="store_true", help="every case, not one per model and method")
    parser.add_argument("--sweep", metavar="MODEL", default=None,
                        help="instead of the matrix: MODEL, full and LoRA, at b x s = 1x256, 2x256, 4x512, 4x2048")
    parser.add_argument("--fsdp", metavar="WORLD", type=int, default=1,
                        help="with --sweep: rank 0 of an FSDP2 full-shard job of WORLD GPUs")
    parser.add_argument("--shapes", type=_shapes, default=SWEEP_SHAPES,
                        help="with --sweep: batch x sequence shapes, e.g. 1x512,2x1024")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.sweep:
        cases = sweep_cases(args.sweep, args.fsdp, args.shapes)
    else:
        cases = select(MATRIX, max_params=args.max_params, match=args.match)
        cases.sort(key=lambda c: param_counts(resolve_model(c.model)).total)
    if not args.all and not args.sweep:
        seen: set[tuple[str, str]] = set()
        cases = [c for c in cases if not ((c.model, c.setup.get("method", "full")) in seen
                                          or seen.add((c.model, c.setup.get("method", "full"))))]
    cases = cases[:args.limit]
    rows = []
    for i, case in enumerate(cases, 1):
        start = time.perf_counter()
        try:
            sim = simulated_events(resolve_model(case.model), case.training_setup())
        except Exception as exc:  # noqa: BLE001  (a benchmark reports what failed and goes on)
            print(f"[{i}/{len(cases)}] {case.name}: simulate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        simulated = time.perf_counter() - start
        for conf in CONFIGS:
            t = time.perf_counter()
            r = replay_events(sim, conf)
            rows.append((case.name, conf or "default", r.peak_allocated, r.peak_reserved,
                         r.reserved_over_allocated, r.largest_free_at_peak_reserved, r.stats.segments.peak,
                         r.peak_reserved_at, sim.tracker_peak_allocated))
            print(f"[{i}/{len(cases)}] {case.name} [{conf or 'default'}]: {len(sim.events)} events, "
                  f"simulate {simulated:.1f} s, replay {time.perf_counter() - t:.1f} s", file=sys.stderr)
    header = f"{'case':58} {'config':26} {'alloc GiB':>9} {'resv GiB':>9} {'resv/alloc':>10} " \
             f"{'max free GiB':>12} {'segs':>5} {'peak in':>9} {'alloc-tracker MiB':>17}"
    print(header)
    print("-" * len(header))
    for name, conf, alloc, resv, ratio, free, segs, phase, tracked in rows:
        print(f"{name[:58]:58} {conf:26} {alloc / GIB:9.3f} {resv / GIB:9.3f} {ratio:10.3f} "
              f"{free / GIB:12.3f} {segs:5d} {phase:>9} {(alloc - tracked) / 2**20:17.1f}")


if __name__ == "__main__":
    main()
