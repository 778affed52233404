"""Planner speed: `gpuplan estimate` cold start (target <= 0.4 s) and estimates/s (target >= 20,000).

Two in-process rates: a sweep over micro-batch sizes of one setup (what fit, recommend and the
dashboard's curves do; estimate() memoizes what does not depend on the batch), and distinct
setups every call (methods x precisions x optimizers x checkpointing x sequence lengths), which
memoizes nothing.
"""
import itertools
import statistics
import subprocess
import sys
import time

from gpuplan.planner import Checkpointing, Method, Optimizer, Precision, TrainingSetup, estimate
from gpuplan.planner.io.catalog import resolve_model


def rate(calls, seconds: float = 2.0) -> float:
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        calls[n % len(calls)]()
        n += 1
    return n / (time.perf_counter() - t)


cmd = [sys.executable, "-m", "gpuplan", "estimate", "--model", "llama-3.1-8b", "--method", "qlora", "--json"]
cold = []
for i in range(5):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    cold.append(time.perf_counter() - t)
    print(f"cold start run {i + 1}/5: {cold[-1]:.3f} s", file=sys.stderr)
model = resolve_model("llama-3.1-8b")
sweep = TrainingSetup(method=Method.LORA)
batch_sweep = [lambda b=b: estimate(model, sweep.with_(batch_size=b)) for b in range(1, 17)]
distinct = [TrainingSetup(method=m, precision=p, optimizer=o, checkpointing=c, seq_len=s)
            for m, p, o, c, s in itertools.product(
                (Method.FULL, Method.LORA), (Precision.BF16_MIXED, Precision.BF16_TRUE),
                (Optimizer.ADAMW, Optimizer.ADAMW_8BIT), tuple(Checkpointing), range(512, 512 + 400 * 64, 64))]
print(f"estimating {len(distinct):,} distinct setups, uncached, 5 times", file=sys.stderr)
cold_rates = []
for _ in range(5):
    fresh = resolve_model("llama-3.1-8b")   # a new model object: nothing memoized for it yet
    t = time.perf_counter()
    for s in distinct:
        estimate(fresh, s)
    cold_rates.append(len(distinct) / (time.perf_counter() - t))
cold_rate = statistics.median(cold_rates)
warm_rate = rate(batch_sweep)
print("| benchmark | result | target |\n|---|---|---|")
print(f"| `gpuplan estimate` cold start (median of 5) | {statistics.median(cold):.3f} s | <= 0.4 s |")
print(f"| in-process estimates per second, batch-size sweep | {warm_rate:,.0f} | >= 20,000 |")
print(f"| in-process estimates per second, {len(distinct):,} distinct setups (median of 5) | {cold_rate:,.0f} | >= 20,000 |")
