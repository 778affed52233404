"""torch.compile's saved set: the planner's closed form (planner/techniques/compile.py) against AOTAutograd's
min-cut partitioner run on the real HF model's fake-tensor graph (profiler/compiled.py), and eager's.

    nice python benchmarks/compile_saved.py            # prints the table (about a minute)
    nice python benchmarks/compile_saved.py --record   # also writes data/measurements/compile_saved.json

Each row: a truncated model (its first layers, so that each trace takes seconds), the bytes the compiled
forward saves for backward (activations; autocast's weight copies apart), the estimate, the signed error,
and what the default partitioner (eager's saved set) keeps instead.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import warnings
from pathlib import Path

import torch
import transformers

from gpuplan.planner import resolve_model
from gpuplan.planner.io.files import write_json_atomic
from gpuplan.profiler.compiled import CASES, case_setup, compare, saved_for_backward, truncated

MIB = 2**20
OUT = Path(__file__).resolve().parent.parent / "data" / "measurements" / "compile_saved.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    rows = []
    print(f"{'case':70s} {'partitioner':>12s} {'estimate':>12s} {'error':>8s} {'eager':>10s}")
    for name, layers, overrides in CASES:
        setup = case_setup(overrides)
        row = compare(resolve_model(name), setup, layers)
        row["default_partitioner_bytes"] = saved_for_backward(truncated(resolve_model(name), layers), setup,
                                                              "default").activations
        rows.append(row)
        label = f"{name}[:{layers}] b{setup.batch_size}x{setup.seq_len} " + " ".join(f"{k}={v}" for k, v in overrides.items())
        print(f"{label:70s} {row['partitioner_bytes'] / MIB:10.2f}Mi {row['estimate_bytes'] / MIB:10.2f}Mi "
              f"{row['error_pct']:+7.3f}% {row['default_partitioner_bytes'] / MIB:8.2f}Mi")
    worst = max(abs(r["error_pct"]) for r in rows)
    print(f"worst |error| {worst:.3f}% (target 1%)")
    if args.record:
        write_json_atomic(OUT, {"date": dt.date.today().isoformat(), "torch": torch.__version__,
                                "transformers": transformers.__version__, "python": platform.python_version(),
                                "partitioner": "min_cut_rematerialization_partition(compiler='inductor') with "
                                               "select_decomp_table()", "rows": rows})
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
