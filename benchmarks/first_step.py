"""The first optimizer step (RunPhase.FIRST_STEP): the estimate (planner/memory/load.py
first_step_allocated) against the simulated first step (profiler.simulate with steps=1: the tracker
resets its peaks before step 1, so the peak is step 1's), beside the steady step.

    python benchmarks/first_step.py            # a markdown table; about a minute per row on one core
"""
from __future__ import annotations

from gpuplan.planner import Method, Optimizer, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.load import first_step_allocated
from gpuplan.profiler.simulate import simulate

ROWS = (
    ("pythia-160m", dict(optimizer=Optimizer.ADAMW)),
    ("smollm-2-135m", dict()),
    ("smollm-2-135m", dict(method=Method.LORA)),
    ("smollm-2-135m", dict(grad_accum=2)),
)


def main() -> None:
    print("| model | setup | estimate step 1 | simulated step 1 | error | estimate step 2 | simulated step 2 | error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw in ROWS:
        model, setup = resolve_model(name), TrainingSetup(batch_size=2, seq_len=256, **kw)
        est = estimate(model, setup)
        first, steady = simulate(model, setup, steps=1).peak_allocated_bytes, simulate(model, setup).peak_allocated_bytes
        mine = first_step_allocated(est, setup)
        label = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in kw.items()) or "defaults"
        print(f"| {name} | {label} | {mine:,} | {first:,} | {100 * (mine - first) / first:+.3f}% | "
              f"{est.peak_allocated_bytes:,} | {steady:,} | {100 * (est.peak_allocated_bytes - steady) / steady:+.3f}% |")


if __name__ == "__main__":
    main()
