"""How fast each path answers a PEFT question: closed form, first simulation, cached simulation,
sweep fit (built once, then evaluated). Prints a table; the cache is a fresh temporary folder.

    python benchmarks/peft_paths.py [--model PRESET_OR_CONFIG] [-b 2] [-s 256]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen-2.5-0.5b")
    ap.add_argument("-b", type=int, default=2)
    ap.add_argument("-s", type=int, default=256)
    args = ap.parse_args()
    os.environ["GPUPLAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpuplan-bench-")
    warnings.simplefilter("ignore")
    from gpuplan.planner import Checkpointing, Method, TrainingSetup, estimate, resolve_model
    from gpuplan.planner.specs.setup import LoraSpec, PeftSpec
    from gpuplan.profiler.answer import estimate_or_simulate, fitted

    m = resolve_model(args.model)
    dora = TrainingSetup(method=Method.LORA, batch_size=args.b, seq_len=args.s, lora=LoraSpec(use_dora=True))
    prompt = dora.with_(lora=LoraSpec(), checkpointing=Checkpointing.NONE,
                        adapter=PeftSpec.of("PREFIX_TUNING", {"num_virtual_tokens": 20}))
    rows = []

    def timed(name: str, fn) -> object:
        t = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - t))
        return out

    timed("closed form (DoRA)", lambda: estimate(m, dora))
    timed("simulated, first (prefix tuning)", lambda: estimate_or_simulate(m, prompt))
    timed("simulated, cached", lambda: estimate_or_simulate(m, prompt))
    fit = timed("sweep fit, built (7 simulations)", lambda: fitted(m, prompt))
    timed("sweep fit, from the cache", lambda: fitted(m, prompt))
    timed("sweep fit, evaluated at (4, 512)", lambda: fit.estimate(4, 512))
    print(f"{args.model} b{args.b} x s{args.s}; fit residual {fit.residual_pct:.2f}% (held out)")
    print(f"{'path':40s} {'ms':>12s}")
    for name, seconds in rows:
        print(f"{name:40s} {seconds * 1000:12.2f}")


if __name__ == "__main__":
    main()
