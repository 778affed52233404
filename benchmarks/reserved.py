"""The estimate's reserved memory against the caching allocator replay of the simulated step. Prints a table.

    python benchmarks/reserved.py [--matrix core|sharded|sweep|all] [--limit N] [--match TEXT] [--record]

For each setup the simulator runs the real step under FakeTensorMode and logs every storage
allocation (profiler/allocator_replay.py); that log replayed through the allocator model gives
the simulated reserved/allocated ratio. The estimate's own figure comes from a compact synthetic
step built from its pieces (planner/memory/reserved.py), with its decoder layers merged into at
most 8 groups (`full` column: every layer replayed). Columns: both ratios, their difference, the
fixed 6% slack's difference for comparison, the estimate's reserved bytes against the simulated
replay's, and the largest cached free block at the peak in both. Default allocator settings.

`core`: the accuracy matrix's setups up to 1.6 B parameters; `sharded`: rank 0 of FSDP2 jobs;
`sweep`: larger micro-batches (4 x 512, 4 x 2048). `--record` writes
data/measurements/reserved_replay.json, which tests/planner/memory/test_reserved.py holds the
estimate to. Progress goes to stderr. Simulations take 5-60 s each.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import statistics
import sys
import time
import warnings
from pathlib import Path

from gpuplan.planner import param_counts, resolve_model
from gpuplan.planner.memory import reserved as R
from gpuplan.planner.memory.estimate import estimate
from gpuplan.profiler.matrix import MATRIX, Case

RECORD = Path(__file__).resolve().parent.parent / "data" / "measurements" / "reserved_replay.json"
OTHER_CONFS = ("expandable_segments:True", "max_split_size_mb:128")   # recorded besides the defaults
FIXED_SLACK = 0.06   # what the estimate assumed before (data/assumptions.json allocator_slack_fraction)


def _fsdp(world: int, extra: dict | None = None, mode: str = "full") -> dict:
    return {"parallel": {"gpus": world, "fsdp": mode}, **(extra or {})}


SHARDED = (
    Case("fsdp", "llama-3.2-1b", _fsdp(8), 1, 256), Case("fsdp", "llama-3.2-1b", _fsdp(8), 4, 2048),
    Case("fsdp", "llama-3.2-1b", _fsdp(8, {"method": "lora"}), 2, 512),
    Case("fsdp", "qwen-2.5-0.5b", _fsdp(2), 1, 256),
    Case("fsdp", "qwen-2.5-0.5b", _fsdp(2, {"checkpointing": "none"}), 2, 512),
    Case("fsdp", "tinyllama-1.1b", _fsdp(16), 1, 256), Case("fsdp", "qwen-2.5-0.5b", _fsdp(8, mode="grad-op"), 1, 256),
    Case("fsdp", "qwen-2.5-1.5b", _fsdp(4, {"method": "lora", "lora": {"targets": ["all-linear"]}}), 4, 512),
)
SWEEP = tuple(Case("sweep", m, d, b, s) for m in ("llama-3.2-1b", "qwen-2.5-0.5b")
              for d in ({}, {"method": "lora"}, {"checkpointing": "none"}, {"method": "qlora"})
              for b, s in ((4, 512), (4, 2048))) + (
    Case("sweep", "gpt-2-small", {}, 8, 1024),
    Case("sweep", "tinyllama-1.1b", {"method": "lora", "checkpointing": "none"}, 2, 2048))


def matrix(name: str) -> list[Case]:
    core = [c for c in MATRIX if param_counts(resolve_model(c.model)).total <= 1.6e9]
    return {"core": core, "sharded": list(SHARDED), "sweep": list(SWEEP),
            "all": core + list(SHARDED) + list(SWEEP)}[name]


def estimate_ratios(case: Case) -> tuple[float, float, int, int, int]:
    """(ratio of the estimate, ratio with every layer replayed, estimate's allocated, reserved, largest free)."""
    m, setup = resolve_model(case.model), case.training_setup()
    est = estimate(m, setup)
    res = est.allocator
    full = R.replay_shape(R.step_shape(est_model(m, setup), res_setup(m, setup), est.phase_components), res.conf)
    return res.ratio, full.ratio, est.peak_allocated_bytes, est.peak_reserved_bytes, res.largest_free_at_peak


def est_model(m, setup):
    """The model slice the estimate planned (TP/PP; memory/slices.py)."""
    from gpuplan.planner.memory.slices import local_model

    s = res_setup(m, setup)
    return m if s.parallel.single_gpu else local_model(m, s.parallel)


def res_setup(m, setup):
    """The setup as the estimate runs it (padding-free rows: techniques/masks.py)."""
    from gpuplan.planner.techniques import masks

    return masks.run_setup(setup.for_model(m))


def simulated(case: Case, logs: Path | None) -> tuple[int, int, int, dict[str, int]]:
    """(peak allocated, peak reserved, largest free block at the peak) of the simulated step's replay,
    and its peak reserved under each of OTHER_CONFS; with `logs`, the simulated log is kept there
    (pickled) and read back on the next run."""
    from gpuplan.profiler.allocator_replay import replay_events, simulated_events

    path = logs / (hashlib.sha1(case.name.encode()).hexdigest()[:16] + ".pkl") if logs else None
    if path is not None and path.exists():
        sim = pickle.loads(path.read_bytes())
    else:
        sim = simulated_events(resolve_model(case.model), case.training_setup())
        if path is not None:
            path.write_bytes(pickle.dumps(sim))
    r = replay_events(sim)
    others = {conf: replay_events(sim, conf).peak_reserved for conf in OTHER_CONFS}
    return r.peak_allocated, r.peak_reserved, r.largest_free_at_peak_reserved, others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", choices=("core", "sharded", "sweep", "all"), default="all")
    ap.add_argument("--limit", type=int, default=0, help="at most N cases (0: all)")
    ap.add_argument("--match", default=None, help="only cases whose name contains this")
    ap.add_argument("--logs", type=Path, default=None, help="keep the simulated logs in this folder and reuse them")
    ap.add_argument("--record", action="store_true", help=f"write {RECORD.relative_to(RECORD.parents[2])}")
    args = ap.parse_args()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    cases = [c for c in matrix(args.matrix) if not args.match or args.match in c.name]
    if args.limit:
        cases = cases[:args.limit]
    rows = []
    for i, case in enumerate(cases, 1):
        t = time.perf_counter()
        try:
            sim_alloc, sim_resv, sim_free, others = simulated(case, args.logs)
        except Exception as exc:  # noqa: BLE001  (a benchmark reports what failed and goes on)
            print(f"[{i}/{len(cases)}] {case.name}: simulate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        ratio, full, est_alloc, est_resv, est_free = estimate_ratios(case)
        rows.append({"case": case.name, "family": case.family, "model": case.model, "setup": case.setup,
                     "batch_size": case.batch_size, "seq_len": case.seq_len,
                     "simulated_allocated_bytes": sim_alloc, "simulated_reserved_bytes": sim_resv,
                     "simulated_largest_free_bytes": sim_free, "simulated_reserved_bytes_by_conf": others,
                     "estimate_ratio": round(ratio, 4),
                     "estimate_full_ratio": round(full, 4), "estimate_reserved_bytes": est_resv,
                     "estimate_largest_free_bytes": est_free})
        print(f"[{i}/{len(cases)}] {case.name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    header = (f"{'case':64} {'sim r/a':>7} {'est r/a':>7} {'full':>6} {'est-sim':>7} {'6%-sim':>7} "
              f"{'resv err':>8} {'free sim MiB':>12} {'free est MiB':>12}")
    print(header)
    print("-" * len(header))
    d_est, d_fixed = [], []
    for r in rows:
        sim = r["simulated_reserved_bytes"] / r["simulated_allocated_bytes"]
        d_est.append(r["estimate_ratio"] - sim)
        d_fixed.append(1 + FIXED_SLACK - sim)
        err = r["estimate_reserved_bytes"] / r["simulated_reserved_bytes"] - 1
        print(f"{r['case'][:64]:64} {sim:7.3f} {r['estimate_ratio']:7.3f} {r['estimate_full_ratio']:6.3f} "
              f"{d_est[-1]:+7.3f} {d_fixed[-1]:+7.3f} {100 * err:+7.1f}% "
              f"{r['simulated_largest_free_bytes'] / 2**20:12,.0f} {r['estimate_largest_free_bytes'] / 2**20:12,.0f}")
    if rows:
        print(f"|est - sim| of reserved/allocated: median {statistics.median(map(abs, d_est)):.3f}, "
              f"worst {max(map(abs, d_est)):.3f}; fixed 6% slack: median {statistics.median(map(abs, d_fixed)):.3f}, "
              f"worst {max(map(abs, d_fixed)):.3f} ({len(rows)} setups)")
    if args.record:
        RECORD.write_text(json.dumps({
            "what": "simulated steps (profiler/allocator_replay.py) replayed through the caching allocator model "
                    "(planner/memory/allocator.py, default PYTORCH_CUDA_ALLOC_CONF), against the estimate's "
                    "synthetic replay (planner/memory/reserved.py); written by benchmarks/reserved.py --record",
            "rows": rows}, indent=1) + "\n")
        print(f"wrote {RECORD}", file=sys.stderr)


if __name__ == "__main__":
    main()
