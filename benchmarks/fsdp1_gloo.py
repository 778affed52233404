"""FSDP1's step (planner/memory/fsdp1.py) against real FSDP1 FULL_SHARD on CPU processes with gloo.

    python benchmarks/fsdp1_gloo.py            # print estimate vs measured per row and phase
    python benchmarks/fsdp1_gloo.py --record   # also write data/measurements/fsdp1_step_gloo.json

Each row runs profiler/fsdp1_step.py (two steps, the second's peaks, rank 0); the recorded file is what
tests/planner/memory/test_fsdp1.py checks today's estimates against (within 1% per phase).
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib

import torch

from gpuplan.planner import Fsdp, ParallelSpec, TrainingSetup, estimate, model_from_config
from gpuplan.planner.specs.enums import Precision
from gpuplan.profiler.fsdp1_step import measure_fsdp1_steps

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "measurements" / "fsdp1_step_gloo.json"

# small Llama-shaped models: a 32k vocabulary so the root unit is as large a share as in a real model's
SMALL = dict(model_type="llama", hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=4,
             num_hidden_layers=6, vocab_size=32000, max_position_embeddings=512, tie_word_embeddings=False)
TINY = dict(model_type="llama", hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
            num_hidden_layers=4, vocab_size=8192, max_position_embeddings=512, tie_word_embeddings=False)
# wide layers and a small vocabulary: the backward peaks inside a decoder layer, not at the root's end
WIDE = dict(model_type="llama", hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_key_value_heads=8,
            num_hidden_layers=4, vocab_size=512, max_position_embeddings=512, tie_word_embeddings=False)
ALL16 = {"r": 16, "alpha": 16, "dropout": 0.0, "adapter_dtype": "fp32",
         "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
def flat(ranks: int) -> dict:
    """A row's parallel dict with use_orig_params=False."""
    return {"gpus": ranks, "fsdp": "full", "fsdp_version": 1, "fsdp1_orig_params": False}


ROWS = [  # (name, config, precision, ranks, batch, seq[, TrainingSetup fields]); full checkpointing unless said
    ("small fp32 x2 b1 s256", SMALL, "fp32", 2, 1, 256),
    ("small bf16-mixed x2 b1 s256", SMALL, "bf16-mixed", 2, 1, 256),
    ("small fp32 x3 b1 s128", SMALL, "fp32", 3, 1, 128),      # FlatParameters padded to a multiple of 3
    ("small bf16-mixed x4 b2 s128", SMALL, "bf16-mixed", 4, 2, 128),
    ("tiny bf16-mixed x2 b2 s64", TINY, "bf16-mixed", 2, 2, 64),
    ("small bf16-mixed x2 b1 s256 no-ckpt", SMALL, "bf16-mixed", 2, 1, 256, {"checkpointing": "none"}),
    ("small bf16-mixed x2 b1 s128 ga2", SMALL, "bf16-mixed", 2, 1, 128, {"grad_accum": 2}),
    ("wide fp32 x2 b1 s128", WIDE, "fp32", 2, 1, 128),
    ("wide bf16-mixed x3 b1 s128", WIDE, "bf16-mixed", 3, 1, 128),
    # LoRA (peft's wrap policy, as HF Trainer sets it; bf16-mixed under autocast as accelerate runs it)
    ("small lora fp32 x2 b1 s256", SMALL, "fp32", 2, 1, 256, {"method": "lora"}),
    ("small lora bf16-mixed x2 b1 s256", SMALL, "bf16-mixed", 2, 1, 256, {"method": "lora"}),
    ("small lora bf16-true x3 b1 s128", SMALL, "bf16-true", 3, 1, 128, {"method": "lora"}),
    ("small lora bf16-mixed x2 b1 s128 ga2", SMALL, "bf16-mixed", 2, 1, 128, {"method": "lora", "grad_accum": 2}),
    ("wide lora fp32 x2 b1 s128", WIDE, "fp32", 2, 1, 128, {"method": "lora"}),
    ("wide lora all-linear r16 fp32 x3 b1 s128", WIDE, "fp32", 3, 1, 128, {"method": "lora", "lora": ALL16}),
    ("wide lora all-linear r16 bf16-mixed x3 b1 s128", WIDE, "bf16-mixed", 3, 1, 128, {"method": "lora", "lora": ALL16}),
    ("wide lora bf16-mixed x2 b2 s256", WIDE, "bf16-mixed", 2, 2, 256, {"method": "lora"}),
    ("wide lora fp32 x2 b1 s256 no-ckpt", WIDE, "fp32", 2, 1, 256, {"method": "lora", "checkpointing": "none"}),
    # use_orig_params=False (accelerate's own default): unpadded FlatParameters, gradients freed at zero_grad
    ("small flat-params fp32 x3 b1 s128", SMALL, "fp32", 3, 1, 128, {"parallel": flat(3)}),
    ("small flat-params lora bf16-mixed x2 b1 s256", SMALL, "bf16-mixed", 2, 1, 256,
     {"method": "lora", "parallel": flat(2)}),
]


def setup_of(precision: str, ranks: int, batch: int, seq: int, extra: dict | None = None) -> TrainingSetup:
    """The row's setup; `extra` as TrainingSetup.to_dict spells its fields."""
    base = TrainingSetup(parallel=ParallelSpec(gpus=ranks, fsdp=Fsdp.FULL, fsdp_version=1),
                         precision=Precision(precision), batch_size=batch, seq_len=seq)
    return TrainingSetup.from_dict({**base.to_dict(), **(extra or {})}) if extra else base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--only", default=None, help="run the rows whose name contains this")
    args = ap.parse_args()
    rows = []
    for name, config, precision, ranks, batch, seq, *extra in ROWS:
        if args.only and args.only not in name:
            continue
        model = model_from_config(config, name=name.split()[0] + "-llama")
        setup = setup_of(precision, ranks, batch, seq, *extra)
        measured = measure_fsdp1_steps(model, setup)[0]
        est = estimate(model, setup)
        print(name)
        for phase, comps in measured.items():
            planned = next(v for k, v in est.phases.items() if getattr(k, "value", k) == phase)
            print(f"  {phase:9s} measured {comps['total']:>12,d}  estimate {planned:>12,d}  "
                  f"{100 * (planned - comps['total']) / comps['total']:+.2f}%", flush=True)
        rows.append(dict(name=name, config=config, precision=precision, ranks=ranks, batch_size=batch, seq_len=seq,
                         extra=extra[0] if extra else {}, measured_rank0=measured))
    if args.record:
        if args.only and OUT.exists():   # keep the rows not rerun, in ROWS' order
            ran = {r["name"]: r for r in rows}
            kept = {r["name"]: r for r in json.loads(OUT.read_text())["rows"]}
            rows = [ran.get(name) or kept[name] for name, *_ in ROWS if name in ran or name in kept]
        OUT.write_text(json.dumps(dict(
            source=("profiler/fsdp1_step.py: real FSDP1 FULL_SHARD (TRANSFORMER_BASED_WRAP, use_orig_params, "
                    "limit_all_gathers, BACKWARD_PRE) on CPU processes with gloo; rank 0's peak allocated bytes "
                    "per phase of the second step, gloo's own reduce-scatter copy left out"),
            torch=torch.__version__, date=datetime.date.today().isoformat(), rows=rows), indent=1) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
