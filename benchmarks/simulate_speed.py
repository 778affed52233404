"""simulate() wall time for full fine-tuning of an 8B and a 70B model on this CPU. Prints a table.

    python benchmarks/simulate_speed.py [--batch-size 1] [--seq-len 2048]

Models come from the presets in data/models/ (llama-3.1-8b, llama-3.1-70b); where a preset is
missing, from the public config.json numbers below. The setup is gpuplan's default full fine-tuning
(bf16-mixed, fused AdamW, checkpointing), two optimizer steps as simulate() always runs. A 2-layer
model is simulated first, untimed in the table, so that imports and first-call caches (a cost
every `gpuplan profile` process pays once) are reported apart.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from gpuplan.planner import ModelSpec, PlannerError, TrainingSetup, model_from_config, resolve_model
from gpuplan.profiler.simulate import simulate

GIB = 2**30
# config.json of meta-llama/Llama-3.1-8B and -70B (architecture fields only)
_LLAMA31 = dict(model_type="llama", vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
                rope_theta=500000.0, tie_word_embeddings=False, num_key_value_heads=8,
                rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"})
FALLBACK = {
    "llama-3.1-8b": dict(_LLAMA31, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                         num_hidden_layers=32),
    "llama-3.1-70b": dict(_LLAMA31, hidden_size=8192, intermediate_size=28672, num_attention_heads=64,
                          num_hidden_layers=80),
}


def load(name: str) -> tuple[ModelSpec, str]:
    """The model and where its numbers came from."""
    try:
        return resolve_model(name), "preset"
    except PlannerError:
        return model_from_config(FALLBACK[name], name=name), "built-in config"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=2048)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    setup = TrainingSetup(batch_size=args.batch_size, seq_len=args.seq_len)
    start = time.perf_counter()
    simulate(model_from_config(dict(FALLBACK["llama-3.1-8b"], num_hidden_layers=2), name="warm-up"), setup)
    warm_up = time.perf_counter() - start
    print(f"warm-up (imports, first-call caches, a 2-layer model): {warm_up:.1f} s", file=sys.stderr)
    rows = []
    for name in FALLBACK:
        model, source = load(name)
        print(f"simulating {name} ({source}): full fine-tuning, 2 steps ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        cpu_start = time.process_time()
        result = simulate(model, setup)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"  done in {wall:.1f} s", file=sys.stderr)
        rows.append((name, source, wall, cpu, result.peak_allocated_bytes / GIB, result.peak_phase.value))
    print(f"\nsimulate(), full fine-tuning bf16-mixed + fused AdamW + checkpointing, batch {args.batch_size} "
          f"x {args.seq_len} tokens, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"before these, a one-off warm-up took {warm_up:.1f} s\n")
    print("| model | source | wall s | CPU s | peak allocated GiB | peak phase |\n|---|---|---|---|---|---|")
    for name, source, wall, cpu, peak, phase in rows:
        print(f"| {name} | {source} | {wall:.1f} | {cpu:.1f} | {peak:,.1f} | {phase} |")


if __name__ == "__main__":
    main()
