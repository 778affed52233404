"""The accuracy matrix: setups across architecture families and techniques, each estimated by the
planner and run by the profiler, with the signed error of every figure and component.

`benchmarks/accuracy.py` runs it and prints the table; `gpuplan validate` runs any part of it;
`data/measurements/accuracy_simulate.json` records the simulated peaks so that CI checks the
estimates against them without simulating (tests/planner/test_recorded_accuracy.py).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from gpuplan.planner import Component, TrainingSetup, estimate, param_counts, resolve_model

from .compare import compare
from .device import Device
from .run import measure

# accuracy targets [issue 3]: median |error| <= 2%, worst |error| <= 5%, no under-estimate below -3%
TARGET_MEDIAN_PCT, TARGET_WORST_PCT, TARGET_UNDER_PCT = 2.0, 5.0, -3.0


@dataclass(frozen=True)
class Case:
    family: str
    model: str                       # a preset name
    setup: dict[str, Any]            # TrainingSetup.from_dict overrides of the defaults
    batch_size: int = 2
    seq_len: int = 256

    @property
    def name(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.setup.items()]
        return f"{self.model} b{self.batch_size}x{self.seq_len} " + (" ".join(parts) or "defaults")

    def training_setup(self) -> TrainingSetup:
        return TrainingSetup.from_dict({**self.setup, "batch_size": self.batch_size, "seq_len": self.seq_len})


def _short(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


NO_CKPT = {"checkpointing": "none"}
LORA_WIDE = {"method": "lora", "lora": {"r": 64, "alpha": 128, "dropout": 0.05, "targets": ["all-linear"]}}

MATRIX: tuple[Case, ...] = (
    # Llama: every precision, checkpointing on/off, the optimizers, eager attention
    Case("llama", "llama-3.2-1b", {}),
    Case("llama", "llama-3.2-1b", NO_CKPT),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true"}),
    Case("llama", "llama-3.2-1b", {"precision": "fp16-mixed", "optimizer": "adamw"}),
    Case("llama", "llama-3.2-1b", {"precision": "fp32", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true", "optimizer": "adamw-8bit"}),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true", "optimizer": "paged-adamw-8bit"}),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true", "optimizer": "adafactor"}),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"precision": "bf16-true", "optimizer": "lion"}),
    Case("llama", "llama-3.2-1b", {"attention": "eager", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"grad_accum": 4}),
    Case("llama", "llama-3.2-1b", {"method": "lora"}),
    Case("llama", "llama-3.2-1b", {"method": "lora", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", LORA_WIDE),
    Case("llama", "llama-3.2-1b", {**LORA_WIDE, **NO_CKPT, "base_dtype": "bf16"}),
    Case("llama", "llama-3.2-1b", {"method": "lora", "precision": "bf16-true", **NO_CKPT,
                                   "lora": {"adapter_dtype": "bf16", "targets": ["all-linear"]}}),
    Case("llama", "llama-3.2-1b", {"method": "qlora"}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "precision": "bf16-true", **NO_CKPT,
                                   "lora": {"targets": ["all-linear"]}}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "lora": {"r": 16, "targets": ["all-linear"]},
                                   "quant": {"quant_type": "fp4", "double_quant": False}}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "precision": "bf16-true", "attention": "eager"}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "quant": {"quant_type": "int8"}}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "quant": {"quant_type": "int8"}, **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"loss": "chunked"}),
    Case("llama", "llama-3.2-1b", {"loss": "chunked", "method": "lora", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"loss": "chunked", "method": "qlora"}),
    Case("llama", "tinyllama-1.1b", {}, batch_size=4, seq_len=512),
    Case("llama", "tinyllama-1.1b", {"method": "lora", "lora": {"r": 32, "dropout": 0.1}}, batch_size=1, seq_len=1024),
    Case("llama", "llama-3.1-8b", {"precision": "bf16-true"}, batch_size=1, seq_len=2048),
    Case("llama", "llama-3.1-8b", {"method": "qlora"}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.1-70b", {"precision": "bf16-true", "optimizer": "adamw-8bit"}, batch_size=1, seq_len=1024),
    Case("llama", "llama-3.1-70b", {"method": "qlora", "lora": {"r": 16, "targets": ["all-linear"]}}, batch_size=1, seq_len=2048),
    # Mistral
    Case("mistral", "mistral-7b-v0.3", {"method": "lora", "base_dtype": "bf16"}, batch_size=2, seq_len=1024),
    Case("mistral", "mistral-7b-v0.3", {"method": "qlora", **NO_CKPT}, batch_size=1, seq_len=512),
    # Qwen: tied embeddings (2.5), q/k norms (3)
    Case("qwen", "qwen-2.5-0.5b", {}),
    Case("qwen", "qwen-2.5-0.5b", NO_CKPT),
    Case("qwen", "qwen-2.5-0.5b", {"precision": "bf16-true", **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "lora": {"r": 16, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "qlora", "lora": {"targets": ["all-linear"], "dropout": 0.05}}),
    Case("qwen", "qwen-3-0.6b", {}),
    Case("qwen", "qwen-3-0.6b", {"method": "lora", **NO_CKPT}),
    Case("qwen", "qwen-2.5-7b", {"method": "qlora"}, batch_size=2, seq_len=2048),
    # Gemma: 256k vocabulary, head_dim 256, 4 norms per layer, logit soft-capping (Gemma-2)
    Case("gemma", "gemma-2-2b", {"attention": "eager"}, batch_size=1, seq_len=256),
    Case("gemma", "gemma-2-2b", {"method": "lora", "attention": "eager"}, batch_size=1, seq_len=256),
    Case("gemma", "gemma-2-2b", {"method": "qlora"}, batch_size=1, seq_len=512),   # sdpa -> eager
    Case("gemma", "gemma-3-1b", {}),
    Case("gemma", "gemma-3-1b", {"loss": "chunked", "precision": "bf16-true"}, batch_size=4, seq_len=512),
    Case("gemma", "gemma-3-1b", {"method": "lora", **NO_CKPT}),
    # Phi-3: fused qkv / gate_up projections
    Case("phi3", "phi-3-mini-4k-instruct", {"precision": "bf16-true"}),
    Case("phi3", "phi-3-mini-4k-instruct", {"method": "lora", **NO_CKPT}),
    Case("phi3", "phi-3-mini-4k-instruct", {"method": "qlora", "lora": {"targets": ["all-linear"]}}),
    # GPT-2 (dropout, learned positions, LayerNorm, biases) and GPT-NeoX (Pythia)
    Case("gpt2", "gpt-2-small", {}),
    Case("gpt2", "gpt-2-small", NO_CKPT),
    Case("gpt2", "gpt-2-small", {"precision": "fp32", "optimizer": "adamw", **NO_CKPT}),
    Case("gpt2", "gpt-2-medium", {"method": "lora", "lora": {"r": 16, "dropout": 0.1}}),
    Case("gpt2", "gpt-2-small", {"attention": "eager", **NO_CKPT}),
    Case("neox", "pythia-160m", {}),
    Case("neox", "pythia-1b", {"method": "lora", **NO_CKPT}),
    # OLMo-2: post-norm
    Case("olmo2", "olmo-2-7b", {"method": "lora", "base_dtype": "bf16"}, batch_size=1, seq_len=1024),
    # MoE: all experts' weights held, routed top-k activations
    Case("moe", "qwen-3-30b-a3b", {"method": "lora", "base_dtype": "bf16"}, batch_size=1, seq_len=512),
    # QLoRA of MoE models is left out: transformers 5 fuses each layer's experts into 3-D
    # parameters that bitsandbytes does not quantize, and prepare_model_for_kbit_training's fp32
    # upcast leaves them in a dtype torch._grouped_mm refuses (it takes bf16 only)
    Case("moe", "mixtral-8x7b", {"method": "lora", "base_dtype": "bf16", "precision": "bf16-true"}, batch_size=1, seq_len=512),
)

# peft methods beyond plain LoRA with a closed form (docs/readme/peft-methods.md), registered as "peft"
# (tests/golden/cases.py replays every registered matrix, each under its name)
IA3_QWEN2 = {"peft_type": "IA3", "options": {"target_modules": ["q_proj", "v_proj", "down_proj"],
                                              "feedforward_modules": ["down_proj"]}}
PEFT_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "lora": {"use_dora": True}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "lora": {"use_dora": True}, **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "qlora", "lora": {"use_dora": True}, **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "lora": {"modules_to_save": ["embed_tokens", "lm_head"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "lora": {"targets": ["q_proj", "v_proj", "embed_tokens", "lm_head"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "adapter": IA3_QWEN2, **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "adapter": {"peft_type": "PROMPT_TUNING",
                                                                 "options": {"num_virtual_tokens": 20}}}),
    Case("llama", "llama-3.2-1b", {"method": "lora", "lora": {"use_dora": True, "targets": ["all-linear"]}, **NO_CKPT}),
)

# Precision recipes no --precision preset names (planner/specs/recipe.py, docs/readme/precision.md):
# bf16-loaded weights under bf16 autocast (transformers 5's from_pretrained default + Trainer bf16=True;
# axolotl's bf16: true), QLoRA without prepare_model_for_kbit_training (LLaMA-Factory), LLaMA-Factory's
# pure_bf16 + bf16 LoRA. RMSNorm families only: the simulator runs CPU autocast, whose op lists match
# CUDA's for them (HF's RMSNorm casts to fp32 itself) but not for layer_norm/pow (fp32 on CUDA only)
BF16_LOAD = {"weights": "bf16"}
NO_KBIT = {"method": "qlora", "kbit_upcast": False}
PRECISION_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", BF16_LOAD),
    Case("llama", "llama-3.2-1b", {**BF16_LOAD, "optimizer": "adamw-8bit", **NO_CKPT}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {**BF16_LOAD, **NO_CKPT}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-3-0.6b", {**BF16_LOAD, "loss": "chunked"}, batch_size=4, seq_len=512),
    Case("gemma", "gemma-3-1b", {**BF16_LOAD, **NO_CKPT}),
    Case("llama", "llama-3.2-1b", NO_KBIT),
    Case("llama", "llama-3.2-1b", {**NO_KBIT, **NO_CKPT}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**NO_KBIT, "lora": {"adapter_dtype": "fp32", "targets": ["all-linear"]}}),
    Case("qwen", "qwen-2.5-0.5b", {**NO_KBIT, "lora": {"targets": ["all-linear"], "dropout": 0.05}, **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"method": "lora", **BF16_LOAD, "lora": {"adapter_dtype": "bf16"}, **NO_CKPT},
         batch_size=4, seq_len=1024),
)

# torchtune 0.6.1's recipes (planner/specs/stack.py "torchtune-0.6.1"): the model in bf16 without autocast,
# adapters in bf16, CEWithChunkedOutputLoss (--loss chunked-output, profiler/torchtune_loss.py)
TT = {"precision": "bf16-true", "loss": "chunked-output"}
TT_LORA = {**TT, "method": "lora", "lora": {"adapter_dtype": "bf16"}}
TORCHTUNE_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {**TT_LORA, **NO_CKPT}, batch_size=2, seq_len=1024),
    Case("llama", "llama-3.2-1b", TT_LORA, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**TT_LORA, "method": "qlora"}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", TT, batch_size=4, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**TT, **NO_CKPT}, batch_size=2, seq_len=512),
)

# selective checkpointing by layer (planner/techniques/checkpointing.py): transformers' every_n_layers
# (from layer 0) and torchtune's ac_mode selective (from layer k - 1), full fine-tuning and LoRA
CKPT_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {"ckpt_every": 2}),
    Case("llama", "llama-3.2-1b", {"ckpt_every": 2}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"ckpt_every": 3, "ckpt_first": 2}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", "ckpt_every": 2}),
    Case("llama", "llama-3.2-1b", {"method": "lora", "ckpt_every": 4, "ckpt_first": 3}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"ckpt_every": 2, "ckpt_first": 1}),
    Case("qwen", "qwen-2.5-0.5b", {"ckpt_every": 5}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "ckpt_every": 3}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "qlora", "ckpt_every": 2, "ckpt_first": 1}),
    # per-op: axolotl's selective_checkpointing policy (the attention kernel's outputs saved)
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "checkpointing": "save-attention"}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"checkpointing": "save-attention"}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "checkpointing": "save-attention"}),
    # FSDP2 (2 simulated ranks): the sharded layout composes the same selective pieces
    Case("qwen", "qwen-2.5-0.5b", {"ckpt_every": 2, "parallel": {"gpus": 2, "fsdp": "full"}}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "ckpt_every": 3, "ckpt_first": 2,
                                   "parallel": {"gpus": 2, "fsdp": "full"}}, batch_size=4, seq_len=1024),
)

# Attention masks (planner/techniques/masks.py, docs/readme/masks.md): a padded batch, packed samples, a
# padding-free row, under SDPA (its memory-efficient kernel), flash-attention 2 and eager. Sequences of
# 1024 so that the (b, 1, s, s) bias is a visible part of the peak; 1000 for the 8-aligned bias copy.
PADDED = {"padding": "longest"}
MASKS_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", PADDED, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**PADDED, **NO_CKPT}, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", **PADDED}, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", **PADDED, **NO_CKPT}, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", "padding": "max-length", **NO_CKPT}, seq_len=1000),
    Case("qwen", "qwen-2.5-0.5b", {**PADDED, **NO_CKPT}, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", **PADDED}, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", **PADDED, **NO_CKPT}, seq_len=1000),
    Case("llama", "llama-3.2-1b", {"method": "lora", "packing": "rows", **NO_CKPT}, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"packing": "rows"}, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", "packing": "flattened", **NO_CKPT}, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", "packing": "flattened", "attention": "flash", **NO_CKPT},
         seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", **PADDED, "attention": "eager", **NO_CKPT}, seq_len=512),
    # sliding windows: Gemma-3-1B's 22 of 26 layers attend within 512 tokens, so at 1024 they get a mask
    Case("gemma", "gemma-3-1b", {"method": "lora", **NO_CKPT}, seq_len=1024),
    Case("gemma", "gemma-3-1b", {"method": "lora"}, seq_len=1024),
    Case("gemma", "gemma-3-1b", {"method": "lora", **PADDED, **NO_CKPT}, seq_len=1024),
)

# The optimizers beyond HF's AdamW family and the optimizer step inside backward
# (docs/readme/optimizers.md). torchao's low-bit AdamW is left out: its step runs under torch.compile,
# which FakeTensorMode cannot trace (modelled from source, its state checked on a real CPU step).
# update_proj_gap 1: every step updates GaLore's projectors, so the simulated last step has the SVD.
GALORE_EVERY_STEP = {"optimizer": "galore-adamw", "optim": {"update_proj_gap": 1}}
OPTIM_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {"optimizer_in_backward": True}),
    Case("llama", "llama-3.2-1b", {"optimizer_in_backward": True, **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"optimizer_in_backward": True, "optimizer": "adamw", "precision": "bf16-true", **NO_CKPT}),
    Case("llama", "tinyllama-1.1b", {"optimizer_in_backward": True, "optimizer": "adamw", **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {"optimizer_in_backward": True, "optimizer": "adamw-8bit", "precision": "bf16-true", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"optimizer": "galore-adamw"}),
    Case("llama", "llama-3.2-1b", GALORE_EVERY_STEP),
    Case("llama", "llama-3.2-1b", {**GALORE_EVERY_STEP, "precision": "bf16-true", "optim": {"update_proj_gap": 1, "rank": 64}}),
    Case("llama", "llama-3.2-1b", {"optimizer": "galore-adamw", "optimizer_in_backward": True, **NO_CKPT}),
    Case("qwen", "qwen-2.5-0.5b", {**GALORE_EVERY_STEP, "optim": {"update_proj_gap": 1, "targets": ["q_proj", "v_proj"]}}),
    Case("llama", "tinyllama-1.1b", {"optimizer": "galore-adamw", "optim": {"targets": ["all-linear"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"optimizer": "schedule-free-adamw"}),
    Case("llama", "llama-3.2-1b", {"optimizer": "schedule-free-adamw", "precision": "bf16-true", **NO_CKPT}),
    Case("llama", "llama-3.2-1b", {"optimizer": "muon"}),
    Case("qwen", "qwen-2.5-0.5b", {"optimizer": "muon", "precision": "bf16-true", **NO_CKPT}),
    Case("llama", "tinyllama-1.1b", {"optimizer": "muon", "optimizer_in_backward": True, **NO_CKPT}),
)

# Every matrix by name: `benchmarks/accuracy.py --matrix NAME` runs one and `--record` writes it to
# data/measurements/accuracy_simulate.json ("core") or accuracy_simulate_NAME.json (the others), each
# checked against the estimate by tests/planner/memory/test_recorded_accuracy.py. A technique's rows
# go in its own tuple, registered here.
# Architecture families added after the core matrix (issue 11): Phi-1.5/2 (parallel attention and
# MLP on one LayerNorm, partial rotary, lm_head bias), full and LoRA, with and without checkpointing.
ARCH_MATRIX: tuple[Case, ...] = (
    Case("phi", "phi-1.5", {}, batch_size=1, seq_len=256),
    Case("phi", "phi-1.5", NO_CKPT, batch_size=1, seq_len=256),
    Case("phi", "phi-1.5", {"method": "lora"}, batch_size=2, seq_len=256),
    Case("phi", "phi-1.5", {"method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("phi", "phi-1.5", {"method": "lora", **NO_CKPT, "lora": {"targets": ["all-linear"], "dropout": 0.05}},
         batch_size=1, seq_len=256),
    Case("phi", "phi-1.5", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("phi", "phi-2", {"method": "qlora", **NO_CKPT}, batch_size=1, seq_len=256),
    # gpt_bigcode (SantaCoder): GPT-2's block with multi-query attention, dropouts 0.1
    Case("bigcode", "santacoder", {}, batch_size=1, seq_len=256),
    Case("bigcode", "santacoder", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("bigcode", "santacoder", {"method": "lora"}, batch_size=2, seq_len=256),
    Case("bigcode", "santacoder", {"method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("bigcode", "santacoder", {"method": "qlora", "lora": {"targets": ["all-linear"]}}, batch_size=2, seq_len=256),
    # Falcon-40B (new_decoder_architecture): k/v copied to every head, two LayerNorms in parallel.
    # Eager only: Falcon calls torch's SDPA itself (no attention interface), so the simulator's CUDA
    # kernel stand-ins cannot take its place; the SDPA estimate (memory-efficient kernel, Falcon
    # always passes a mask) is modelled from source, not simulated
    Case("falcon", "falcon-40b", {"method": "lora", "base_dtype": "bf16", "attention": "eager", **NO_CKPT},
         batch_size=1, seq_len=128),
    Case("falcon", "falcon-40b", {"method": "lora", "base_dtype": "bf16", "attention": "eager", **NO_CKPT},
         batch_size=1, seq_len=512),
    Case("falcon", "falcon-40b", {"method": "lora", "base_dtype": "bf16", "attention": "eager"}, batch_size=2, seq_len=512),
    Case("falcon", "falcon-40b", {"method": "lora", "base_dtype": "bf16", "precision": "bf16-true", "attention": "eager",
                                  "lora": {"targets": ["all-linear"]}, **NO_CKPT}, batch_size=1, seq_len=512),
    # DeepSeek-V2-Lite: multi-head latent attention, 64 routed experts (top-6) plus 2 shared, first layer dense
    Case("deepseek", "deepseek-v2-lite", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                          "lora": {"targets": ["q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]}},
         batch_size=1, seq_len=256),
    Case("deepseek", "deepseek-v2-lite", {"method": "lora", "base_dtype": "bf16", "attention": "eager",
                                          "lora": {"targets": ["q_proj", "kv_b_proj", "o_proj"]}}, batch_size=2, seq_len=256),
    # StarCoder2-7B: LayerNorm blocks with biases, GQA with rope, GELU MLP, dropouts 0.1
    Case("starcoder2", "starcoder2-7b", {"method": "lora", "base_dtype": "bf16", "lora": {"targets": ["q_proj", "v_proj"]},
                                         **NO_CKPT}, batch_size=1, seq_len=256),
    Case("starcoder2", "starcoder2-7b", {"method": "lora", "base_dtype": "bf16", "lora": {"targets": ["all-linear"]}},
         batch_size=2, seq_len=256),
    Case("starcoder2", "starcoder2-7b", {"method": "lora", "base_dtype": "bf16", "attention": "eager",
                                         "lora": {"targets": ["q_proj", "v_proj"]}, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("starcoder2", "starcoder2-7b", {"method": "qlora", "lora": {"targets": ["all-linear"]}, **NO_CKPT},
         batch_size=1, seq_len=256),
    # StableLM-2 1.6B: LayerNorms, q/k/v biases, partial rotary 0.25, gated MLP
    Case("stablelm", "stablelm-2-zephyr-1.6b", {}, batch_size=1, seq_len=256),
    Case("stablelm", "stablelm-2-zephyr-1.6b", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT},
         batch_size=2, seq_len=256),
    Case("stablelm", "stablelm-2-zephyr-1.6b", {"method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("stablelm", "stablelm-2-zephyr-1.6b", {"method": "qlora", "lora": {"targets": ["all-linear"]}},
         batch_size=2, seq_len=256),
)

# TRL's preference / RL trainers whose loss the simulator runs with TRL's own code (profiler/trl_steps.py):
# ORPO (trl.experimental, full logits, no reference model)
ORPO = {"objective": "orpo"}
RL_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {**ORPO, "method": "lora"}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**ORPO, "method": "lora", "precision": "bf16-true"}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**ORPO, "precision": "bf16-true"}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**ORPO, "method": "lora"}, batch_size=1, seq_len=512),
    Case("llama", "llama-3.2-1b", {**ORPO, "method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**ORPO, "method": "qlora"}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", ORPO, batch_size=1, seq_len=256),                 # fp32 weights under autocast
    Case("llama", "llama-3.2-1b", {**ORPO, "method": "lora"}, batch_size=4, seq_len=256),
)

# TRL's RewardTrainer (planner/techniques/reward.py): AutoModelForSequenceClassification(num_labels=1), its own
# compute_loss on chosen + rejected in one batch (profiler/trl_steps.py reward_loss); tied (Qwen, Llama-3.2) and
# untied (TinyLlama) embeddings, full fine-tuning and LoRA/QLoRA (the score head a modules_to_save copy)
RM = {"objective": "rm"}
RMPPO_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {**RM, "method": "lora"}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**RM, "method": "lora", "precision": "bf16-true"}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**RM, "precision": "bf16-true"}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", RM, batch_size=1, seq_len=256),                 # fp32 weights under autocast
    Case("llama", "llama-3.2-1b", {**RM, "method": "qlora"}, batch_size=2, seq_len=512),
    Case("llama", "llama-3.2-1b", {**RM, "method": "lora"}, batch_size=4, seq_len=256),
    Case("llama", "tinyllama-1.1b", {**RM, "method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("llama", "tinyllama-1.1b", {**RM, "precision": "bf16-true"}, batch_size=1, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**RM, "method": "lora", "padding": "max-length"}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**RM, "method": "qlora", "padding": "max-length"}, batch_size=1, seq_len=512),
)

# TRL 1.12.0's PPOTrainer (planner/techniques/ppo.py; trl.experimental.ppo, removed in 1.13): its training phase
# simulated by profiler/ppo_step.py with TRL 1.12's own functions (needs trl==1.12.0): policy, value and reward
# models, the reference (full) or adapters disabled (LoRA), the rollout's kept scores; no autocast (PPOTrainer's
# Accelerator has no mixed_precision)
PPO = {"objective": "ppo", "precision": "bf16-true", "response_len": 32}
PPO_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "method": "lora", **NO_CKPT}, batch_size=2, seq_len=128),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "method": "lora"}, batch_size=2, seq_len=128),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, **NO_CKPT}, batch_size=2, seq_len=128),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "method": "lora", "response_len": 128}, batch_size=4, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "response_len": 128}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "method": "lora", "grad_accum": 2, "rollout_batch": 3}, batch_size=2,
         seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "method": "lora", "grad_accum": 2, "mini_batches": 2, **NO_CKPT},
         batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**PPO, "precision": "fp32", "method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**PPO, "method": "lora", "value_model": "qwen-2.5-0.5b",
                                   "reward_model": "qwen-2.5-0.5b"}, batch_size=2, seq_len=256),
    Case("llama", "smollm-2-360m", {**PPO, "response_len": 64}, batch_size=4, seq_len=256),
    Case("llama", "smollm-2-360m", {**PPO, "method": "lora", "reward_model": "smollm-2-135m", **NO_CKPT},
         batch_size=4, seq_len=256),
    Case("llama", "smollm-2-135m", {**PPO, "response_len": 64, "grad_accum": 4, "rollout_batch": 4}, batch_size=2,
         seq_len=128),
)

# axolotl's tiled MLP (planner/techniques/tiled_mlp.py): its own TiledMLP autograd Function in the simulated
# step (profiler/tiled_mlp.py; needs `pip install axolotl --no-deps`), tiles set so that several run
TILED = {"tiled_mlp": True, "tiled_mlp_shards": 4}
TILED_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {"method": "lora", **TILED, **NO_CKPT}, batch_size=1, seq_len=2048),
    Case("llama", "llama-3.2-1b", {**TILED, **NO_CKPT}, batch_size=1, seq_len=2048),
    Case("llama", "llama-3.2-1b", {"method": "lora", "precision": "bf16-true", "loss": "chunked", **TILED, **NO_CKPT},
         batch_size=1, seq_len=2048),
    Case("llama", "llama-3.2-1b", {"method": "lora", **TILED}, batch_size=1, seq_len=2048),
    # checkpointing and a chunked loss: the tiled backward of the recomputed layer is the peak
    Case("llama", "llama-3.2-1b", {"method": "lora", "loss": "chunked", "tiled_mlp": True, "tiled_mlp_shards": 2},
         batch_size=1, seq_len=4096),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", **TILED, **NO_CKPT}, batch_size=2, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {"precision": "bf16-true", **TILED, **NO_CKPT}, batch_size=2, seq_len=1024),
)

# LoRA on MoE experts and routers as peft 0.21 converts targets for transformers 5 (planner/techniques/
# moe_lora.py): "all-linear" adapts the router and the fused experts through lora.ParamWrapper, whose
# merged expert weights each layer saves; v4 expert names (gate_proj/up_proj/down_proj) the experts alone
MOE_ALL = {"targets": ["all-linear"]}
MOE_LORA_MATRIX: tuple[Case, ...] = (
    Case("moe", "qwen-3-30b-a3b", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("moe", "qwen-3-30b-a3b", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL}, batch_size=1, seq_len=512),
    Case("moe", "qwen-3-30b-a3b", {"method": "lora", "base_dtype": "bf16", "lora": {**MOE_ALL, "adapter_dtype": "bf16"}},
         batch_size=2, seq_len=512),
    Case("moe", "qwen-3-30b-a3b", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                   "lora": {"targets": ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]}},
         batch_size=1, seq_len=256),
    Case("moe", "mixtral-8x7b", {"method": "lora", "base_dtype": "bf16", "precision": "bf16-true", "lora": MOE_ALL},
         batch_size=1, seq_len=512),
    Case("moe", "mixtral-8x7b", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("deepseek", "deepseek-v2-lite", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL}, batch_size=1, seq_len=256),
    Case("deepseek", "deepseek-v2-lite", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL, **NO_CKPT},
         batch_size=1, seq_len=256),
    # OLMoE-1B-7B (reader added with these rows): full q/k norms, 64 experts top-8, no renormalized top-k
    Case("olmoe", "olmoe-1b-7b", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                  "lora": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}}, batch_size=2, seq_len=256),
    Case("olmoe", "olmoe-1b-7b", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL}, batch_size=1, seq_len=512),
    Case("olmoe", "olmoe-1b-7b", {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("olmoe", "olmoe-1b-7b", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}, batch_size=1, seq_len=256),
)

# Cohere / Command-R (Aya-23-8B): one weight-only LayerNorm in python ops feeding attention and the gated
# MLP in parallel, tied 256k vocabulary, logit_scale; layer 0's norm and MLP unrecorded without checkpointing
COHERE_MATRIX: tuple[Case, ...] = (
    Case("cohere", "aya-23-8b", {"method": "lora", "base_dtype": "bf16", **NO_CKPT, "lora": {"targets": ["q_proj", "v_proj"]}},
         batch_size=1, seq_len=256),
    Case("cohere", "aya-23-8b", {"method": "lora", "base_dtype": "bf16", **NO_CKPT, "lora": MOE_ALL}, batch_size=1, seq_len=256),
    Case("cohere", "aya-23-8b", {"method": "lora", "lora": MOE_ALL}, batch_size=2, seq_len=256),
    Case("cohere", "aya-23-8b", {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}, batch_size=1, seq_len=256),
)

MATRICES: dict[str, tuple[Case, ...]] = {"core": MATRIX, "peft": PEFT_MATRIX, "archs": ARCH_MATRIX}
MATRICES["cohere"] = COHERE_MATRIX

# IBM Granite 3.x (no preset yet: a 2-layer copy of granite-3.3-8b-instruct's config, tests/fixtures/models/):
# Llama's layer with embedding, residual, attention and logits multipliers that save nothing for backward
GRANITE_2L = "tests/fixtures/models/granite-3.3-8b-instruct-2-layers.config.json"
GRANITE_MATRIX: tuple[Case, ...] = (
    Case("granite", GRANITE_2L, {"method": "lora", "base_dtype": "bf16", **NO_CKPT, "lora": {"targets": ["q_proj", "v_proj"]}},
         batch_size=1, seq_len=256),
    Case("granite", GRANITE_2L, {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL}, batch_size=2, seq_len=256),
    Case("granite", GRANITE_2L, {"method": "qlora", "lora": MOE_ALL}, batch_size=1, seq_len=512),
    Case("granite", GRANITE_2L, {"precision": "bf16-true", "optimizer": "sgd", **NO_CKPT}, batch_size=1, seq_len=256),
)
MATRICES["granite"] = GRANITE_MATRIX

# LLaVA-NeXT (llava_next) on text-only batches (no preset yet: a constructed 2-layer Mistral-tower config,
# tests/fixtures/models/): LLaVA's CLIP tower and projector plus image_newline resident, never run
LLAVA_NEXT_2L = "tests/fixtures/models/llava-next-mistral-2-layers.config.json"
LLAVA_NEXT_MATRIX: tuple[Case, ...] = (
    Case("llava_next", LLAVA_NEXT_2L, {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                       "lora": {"targets": ["q_proj", "v_proj"]}}, batch_size=1, seq_len=256),
    Case("llava_next", LLAVA_NEXT_2L, {"method": "lora", "base_dtype": "bf16", "lora": MOE_ALL}, batch_size=2, seq_len=256),
    Case("llava_next", LLAVA_NEXT_2L, {"method": "qlora", "lora": MOE_ALL}, batch_size=1, seq_len=256),
    Case("llava_next", LLAVA_NEXT_2L, {"precision": "bf16-true", **NO_CKPT}, batch_size=1, seq_len=256),
)
MATRICES["llava_next"] = LLAVA_NEXT_MATRIX

# multimodal wrappers on text-only batches, built whole (ForConditionalGeneration): the vision tower's
# weights resident, peft's adapters in it (q_proj/v_proj in SigLIP and CLIP, all-linear everywhere,
# Qwen2.5-VL's gate/up/down_proj) and every vision parameter under full fine-tuning idle: no gradient,
# no optimizer state (planner/techniques/multimodal.py)
MULTIMODAL_MATRIX: tuple[Case, ...] = (
    Case("qwen2_vl", "qwen2-vl-2b-instruct", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                              "lora": {"targets": ["q_proj", "v_proj"]}}, batch_size=1),
    Case("qwen2_vl", "qwen2-vl-2b-instruct", {"method": "lora", "lora": {"targets": ["all-linear"]}}, batch_size=1),
    Case("qwen2_vl", "qwen2-vl-2b-instruct", {"method": "qlora", "lora": {"targets": ["all-linear"]}}, batch_size=1),
    Case("qwen2_vl", "qwen2-vl-2b-instruct", {"precision": "bf16-true", **NO_CKPT}, batch_size=1),
    Case("qwen2_5_vl", "qwen2.5-vl-3b-instruct", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                                  "lora": {"targets": ["gate_proj", "up_proj", "down_proj"]}}, batch_size=1),
    Case("gemma3", "gemma-3-4b-it-multimodal", {"method": "lora", "base_dtype": "bf16", **NO_CKPT,
                                                "lora": {"targets": ["q_proj", "v_proj"]}}, batch_size=1),
    Case("gemma3", "gemma-3-4b-it-multimodal", {"method": "qlora", "lora": {"targets": ["all-linear"]}}, batch_size=1),
    Case("llava", "llava-1.5-7b", {"method": "qlora", "lora": {"targets": ["all-linear"]}}, batch_size=1),
    # unsloth's finetune_vision_layers=False: the seven projections in the language model only (a regex)
    Case("gemma3", "gemma-3-4b-it-multimodal", {"method": "qlora", "lora": {
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "language_only": True}}, batch_size=1),
)
MATRICES["multimodal"] = MULTIMODAL_MATRIX
MATRICES["moe_lora"] = MOE_LORA_MATRIX
MATRICES["precision"] = PRECISION_MATRIX
MATRICES["torchtune"] = TORCHTUNE_MATRIX
MATRICES["ckpt"] = CKPT_MATRIX
MATRICES["masks"] = MASKS_MATRIX
MATRICES["optim"] = OPTIM_MATRIX
MATRICES["rl"] = RL_MATRIX
MATRICES["rmppo"] = RMPPO_MATRIX
MATRICES["ppo"] = PPO_MATRIX

# peft's LoRA-FA optimizer (--optimizer lorafa, planner/techniques/lora_fa.py): lora_A frozen, run with
# create_lorafa_optimizer itself; peft MetaMathQA's pairing (q,v: one shared saved input) and all-linear
LORAFA_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "optimizer": "lorafa", **NO_CKPT,
                                   "lora": {"r": 32, "alpha": 64, "targets": ["q_proj", "v_proj"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "optimizer": "lorafa",
                                   "lora": {"r": 32, "alpha": 64, "targets": ["q_proj", "v_proj"]}}),
    Case("qwen", "qwen-2.5-0.5b", {"method": "lora", "optimizer": "lorafa", **NO_CKPT,
                                   "lora": {"r": 16, "dropout": 0.05, "targets": ["all-linear"]}}),
    Case("llama", "llama-3.2-1b", {"method": "lora", "optimizer": "lorafa", "base_dtype": "bf16", **NO_CKPT,
                                   "lora": {"r": 16, "targets": ["all-linear"]}}),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "optimizer": "lorafa",
                                   "lora": {"r": 16, "targets": ["all-linear"]}}),
)
MATRICES["lorafa"] = LORAFA_MATRIX

# TRL 1.13-1.14 SFTTrainer's default loss, loss_type="chunked_nll" (--loss chunked-nll), run with TRL's own
# _patch_chunked_ce_lm_head (profiler/trl_chunked_nll.py): the TRL stack's recipe (fp32 load, bf16
# autocast), bf16 loads, QLoRA, full fine-tuning, a completion-only fraction, one row and several
CNLL = {"loss": "chunked-nll"}
TRL_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora"}, batch_size=2, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora", **BF16_LOAD, **NO_CKPT}, batch_size=1, seq_len=2048),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "qlora"}, batch_size=4, seq_len=512),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora", "loss_token_fraction": 0.1}, batch_size=2, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {**CNLL, "method": "lora", "precision": "bf16-true"}, batch_size=1, seq_len=700),
    Case("qwen", "qwen-2.5-0.5b", CNLL, batch_size=1, seq_len=512),
    Case("qwen", "qwen-3-0.6b", {**CNLL, "method": "lora", "lora": {"targets": ["all-linear"]}}, batch_size=4,
         seq_len=512),
    Case("neox", "pythia-160m", {**CNLL, "method": "lora"}, batch_size=2, seq_len=512),
)
MATRICES["trl"] = TRL_MATRIX

# TRL 1.8-1.12's form (--loss chunked-nll-fp32: `h.float() @ w.float().t()`), simulated with TRL 1.12.0
# installed (`pip install trl==1.12.0`, then --matrix trl-fp32 --record). Without autocast only: under CUDA
# autocast log_softmax is on the fp32 set-opt-dtype list (ATen/autocast_mode.h), which the simulator's CPU
# autocast lacks, so the autocast rows of this form are modelled from that source, not simulated.
CNLL32 = {"loss": "chunked-nll-fp32", "precision": "bf16-true"}
TRL_FP32_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", {**CNLL32, "method": "lora"}, batch_size=1, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL32, "method": "lora", **NO_CKPT}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**CNLL32, "method": "lora"}, batch_size=1, seq_len=700),
    Case("qwen", "qwen-3-0.6b", {**CNLL32, "method": "lora", "lora": {"targets": ["all-linear"]}}, batch_size=2,
         seq_len=512),
    Case("neox", "pythia-160m", {**CNLL32, "method": "lora"}, batch_size=2, seq_len=512),
)
MATRICES["trl-fp32"] = TRL_FP32_MATRIX
MATRICES["tiled"] = TILED_MATRIX


# The last checkpointed layer's recompute as the step's peak (planner/memory/layers.py mlp_backward_bytes):
# chunked losses leave no logits to dominate; QLoRA's fp32 base-linear outputs (bitsandbytes' `.to(inp_dtype)`)
# and kbit_upcast=False's bf16 ones, fp32-base LoRA's autocast copies, all-linear adapters on down_proj, Qwen 3's
# q/k norms, Gemma 3's four norms, bf16-true, selective checkpointing, RewardTrainer's score head, full fine-tuning
QC = {"method": "qlora", "loss": "chunked"}
RECOMPUTE_MATRIX: tuple[Case, ...] = (
    Case("llama", "llama-3.2-1b", QC, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**QC, "kbit_upcast": False}, batch_size=4, seq_len=512),
    Case("qwen", "qwen-2.5-0.5b", {**QC, "lora": {"targets": ["all-linear"]}}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "qlora", "kbit_upcast": False, "lora": {"targets": ["all-linear"]}, **CNLL},
         batch_size=4, seq_len=1024),
    Case("qwen", "qwen-3-0.6b", QC, batch_size=4, seq_len=1024),
    Case("gemma", "gemma-3-1b", QC, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {"method": "lora", "loss": "chunked"}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**QC, "precision": "bf16-true"}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {**QC, "ckpt_every": 2, "ckpt_first": 1}, batch_size=4, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {**RM, "method": "qlora", "kbit_upcast": False}, batch_size=2, seq_len=512),
    # full fine-tuning, the gradients accumulated: a trained down_proj's dW input released before MulBackward
    Case("qwen", "qwen-2.5-0.5b", {**RM, "precision": "bf16-true", "grad_accum": 2}, batch_size=4, seq_len=512),
    # the README's headline setup (TRL 1.14's chunked_nll on QLoRA Llama-3.1-8B, 16384 tokens)
    Case("llama", "llama-3.1-8b", {"method": "qlora", **CNLL}, batch_size=4, seq_len=4096),
)
MATRICES["recompute"] = RECOMPUTE_MATRIX


@dataclass
class Result:
    case: Case
    estimate_bytes: int
    measured_bytes: int | None
    components: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # name -> (est, measured)
    seconds: float = 0.0
    error: str | None = None            # the profiler could not run this case (and why)

    @property
    def error_pct(self) -> float | None:
        if not self.measured_bytes:
            return None
        return 100.0 * (self.estimate_bytes - self.measured_bytes) / self.measured_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.case.family, "model": self.case.model, "setup": self.case.setup,
                "batch_size": self.case.batch_size, "seq_len": self.case.seq_len,
                "estimate_bytes": self.estimate_bytes, "measured_bytes": self.measured_bytes,
                "error_pct": None if self.error_pct is None else round(self.error_pct, 3),
                "components": {k: {"estimate_bytes": e, "measured_bytes": m} for k, (e, m) in self.components.items()},
                "seconds": round(self.seconds, 1), "error": self.error}


def run_case(case: Case, device: Device = Device.SIMULATE) -> Result:
    """Estimate and profile one case; a profiler failure is recorded in `error`, never raised."""
    model, setup = resolve_model(case.model), case.training_setup()
    est = estimate(model, setup)
    start = time.perf_counter()
    try:
        measured = measure(model, setup, device)
    except Exception as exc:  # noqa: BLE001  (the matrix reports what failed and goes on)
        return Result(case, est.peak_allocated_bytes, None, seconds=time.perf_counter() - start,
                      error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    comparison = compare(est, measured)
    components = {row.name: (row.estimate, row.measured) for row in comparison.components
                  if row.name in {c.value for c in Component.tensor_components()}}
    components.update(_rollout_row(model, setup, measured.notes))
    return Result(case, est.peak_allocated_bytes, measured.peak_allocated_bytes, components,
                  time.perf_counter() - start)


def _rollout_row(model, setup: TrainingSetup, notes: list[str]) -> dict[str, tuple[int, int]]:
    """PPO's rollout phase, estimated and simulated (profiler/ppo_step.py notes its peak): {"rollout": (est, sim)}."""
    from gpuplan.planner.techniques.ppo import ROLLOUT_NOTE   # lazy: only PPO rows read the rollout

    note = next((n for n in notes if n.startswith(ROLLOUT_NOTE)), None)
    if note is None:
        return {}
    from gpuplan.planner.memory.ppo_step import rollout_phase   # lazy: only PPO rows read the rollout

    return {"rollout": (rollout_phase(model, setup).peak_allocated_bytes, int(note[len(ROLLOUT_NOTE):]))}


def select(cases: Iterable[Case], families: set[str] | None = None, max_params: float | None = None,
           match: str | None = None) -> list[Case]:
    """Cases of the given families, models up to `max_params` parameters, names containing `match`."""
    out = []
    for case in cases:
        if families and case.family not in families:
            continue
        if match and match not in case.name:
            continue
        if max_params is not None and param_counts(resolve_model(case.model)).total > max_params:
            continue
        out.append(case)
    return out


def run(cases: list[Case], device: Device = Device.SIMULATE,
        progress: Callable[[int, int, Result], None] | None = None) -> Iterator[Result]:
    for i, case in enumerate(cases, 1):
        result = run_case(case, device)
        if progress:
            progress(i, len(cases), result)
        yield result


@dataclass(frozen=True)
class Summary:
    n: int
    failed: int
    median_abs_pct: float
    worst_abs_pct: float
    worst_under_pct: float

    @property
    def meets_targets(self) -> bool:
        return (self.median_abs_pct <= TARGET_MEDIAN_PCT and self.worst_abs_pct <= TARGET_WORST_PCT
                and self.worst_under_pct >= TARGET_UNDER_PCT)


def summarize(errors_pct: list[float], failed: int = 0) -> Summary:
    """Median and worst absolute error, and the worst under-estimate (most negative error, or 0)."""
    if not errors_pct:
        return Summary(0, failed, 0.0, 0.0, 0.0)
    absolute = [abs(e) for e in errors_pct]
    return Summary(len(errors_pct), failed, statistics.median(absolute), max(absolute), min(0.0, min(errors_pct)))

# torchao float8 training (planner/techniques/fp8.py), the real torchao 0.18 conversion under FakeTensorMode
# (profiler/build.py). bf16-true only: Float8Linear tests CUDA's autocast flag, which the simulator's CPU
# autocast never sets, so the bf16-mixed rows (accelerate's fp8) are modelled from source, not simulated.
FP8_T = {"precision": "bf16-true", "fp8": "tensorwise"}
FP8_R = {"precision": "bf16-true", "fp8": "rowwise"}
ALL_LINEARS = {"fp8_linears": "all"}
FP8_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen2.5-0.5b", FP8_T, batch_size=1, seq_len=256),
    Case("qwen", "qwen2.5-0.5b", {**FP8_T, **ALL_LINEARS, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("qwen", "qwen2.5-0.5b", {**FP8_R, **ALL_LINEARS, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("qwen", "qwen2.5-0.5b", {**FP8_T, **ALL_LINEARS}, batch_size=2, seq_len=1024),
    Case("qwen", "qwen2.5-0.5b", {**FP8_R, **NO_CKPT}, batch_size=2, seq_len=512),
    Case("qwen", "qwen-3-0.6b", {**FP8_T, **ALL_LINEARS, **NO_CKPT}, batch_size=1, seq_len=512),
    Case("llama", "llama-3.2-1b", {**FP8_R, **ALL_LINEARS, **NO_CKPT}, batch_size=1, seq_len=256),
    Case("llama", "llama-3.2-1b", FP8_T, batch_size=2, seq_len=512),
)
MATRICES["fp8"] = FP8_MATRIX

# LLaVA-1.5 on batches with images (planner/techniques/images.py): 576 image tokens per image inside
# seq_len, the frozen CLIP tower and projector run on fake pixel_values; under checkpointing with an
# adapter enable_input_require_grads hooks the patch embedding, so the checkpointed CLIP layers keep
# their inputs; without it nothing on the vision side is kept
_LANG_QV = {"targets": ["q_proj", "v_proj"], "language_only": True}
VISION2_MATRIX: tuple[Case, ...] = (
    Case("llava", "llava-1.5-7b", {"method": "qlora", "lora": _LANG_QV, "images_per_example": 1}, batch_size=1, seq_len=1024),
    Case("llava", "llava-1.5-7b", {"method": "lora", "base_dtype": "bf16", "images_per_example": 1, "lora": {
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "language_only": True}},
         batch_size=2, seq_len=768),
    Case("llava", "llava-1.5-7b", {"method": "lora", "base_dtype": "bf16", **NO_CKPT, "lora": _LANG_QV,
                                   "images_per_example": 2}, batch_size=1, seq_len=1536),
    Case("llava", "llava-1.5-7b", {"method": "lora", "lora": _LANG_QV, "images_per_example": 1}, batch_size=1, seq_len=1024),
)
MATRICES["vision2"] = VISION2_MATRIX

# The sharded layouts' recompute point (planner/memory/sharded.py fsdp_phases, pieces.py mlp_backward): FSDP2 ranks
# (simulated, profiler/distributed.py) under checkpointing with TRL's chunked_nll, which keeps no full logits nor
# their gradient, so that a layer's backward is the peak: full fine-tuning (the second layer's MulBackward, most
# gradient shards reduced; untied TinyLlama's small vocabulary), SHARD_GRAD_OP, HSDP, 8 ranks, bf16-true, accumulated
# gradients, LoRA and QLoRA (the last layer's, every layer gathered and prefetched), all-linear adapters on down_proj,
# fp32 (the recomputed norm's input kept as the checkpoint itself); Qwen's tied embedding ends at its backward
FSDP2 = {"gpus": 2, "fsdp": "full"}
SHARDRECOMP_MATRIX: tuple[Case, ...] = (
    Case("llama", "tinyllama-1.1b", {**CNLL, "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("llama", "tinyllama-1.1b", {**CNLL, "parallel": {"gpus": 2, "fsdp": "grad-op"}}, batch_size=4, seq_len=1024),
    Case("llama", "tinyllama-1.1b", {**CNLL, "parallel": {"gpus": 2, "nodes": 2, "fsdp": "hybrid"}}, batch_size=4, seq_len=1024),
    Case("llama", "tinyllama-1.1b", {**CNLL, "parallel": {"gpus": 8, "fsdp": "full"}}, batch_size=4, seq_len=1024),
    Case("llama", "tinyllama-1.1b", {**CNLL, "precision": "bf16-true", "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("llama", "tinyllama-1.1b", {**CNLL, "grad_accum": 2, "parallel": FSDP2}, batch_size=2, seq_len=1024),
    Case("qwen", "qwen-2.5-0.5b", {**CNLL, "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora", "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora", "lora": {"targets": ["all-linear"]}, "parallel": FSDP2},
         batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "lora", "precision": "fp32", "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("llama", "llama-3.2-1b", {**CNLL, "method": "qlora", "parallel": FSDP2}, batch_size=4, seq_len=2048),
    Case("llama", "tinyllama-1.1b", {**CNLL, "method": "lora", "parallel": {"gpus": 4, "fsdp": "full"}}, batch_size=4, seq_len=2048),
    # short sequences (benchmarks/accuracy_multi_gpu.py's rows): a layer's backward peaks at its end, in its first
    # RMSNorm's PowBackward, all the layer's unsharded gradients made (pieces.py norm_backward)
    Case("llama", "tinyllama-1.1b", {"parallel": {"gpus": 16, "fsdp": "full"}}, batch_size=1, seq_len=256),
    Case("llama", "tinyllama-1.1b", {"parallel": {"gpus": 16, "fsdp": "grad-op"}}, batch_size=1, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {"parallel": FSDP2}, batch_size=1, seq_len=256),
    Case("gpt2", "gpt-2-large", {"parallel": {"gpus": 4, "fsdp": "full"}}, batch_size=2, seq_len=512),
    # the forward's chunked loss is their peak; the lm_head's backward had counted a (T, V) gradient chunked_nll never builds
    Case("qwen", "qwen-3-0.6b", {**CNLL, "method": "lora", "parallel": FSDP2}, batch_size=4, seq_len=1024),
    Case("gemma", "gemma-3-1b", {**CNLL, "method": "lora", "parallel": FSDP2}, batch_size=4, seq_len=1024),
)
MATRICES["shardrecomp"] = SHARDRECOMP_MATRIX

# TRL 1.9's DPOTrainer (--objective dpo --stack-versions trl-1.12; planner/techniques/dpo19.py), simulated with TRL
# 1.9.0's own `_compute_loss` (profiler/trl19_dpo.py; needs `pip install trl==1.9.0`, then --matrix trl19 --record):
# full logits of the policy and the reference, a saved log-softmax per row; 16-bit weights without autocast, and
# under autocast with CUDA's fp32 log_softmax applied to TRL's calls (the CPU autocast lacks it: profiler/trl19_dpo.py)
DPO19 = {"objective": "dpo", "trl_version": "1.9", "loss": "hf", "precision": "bf16-true"}
DPO19_AUTOCAST = {**DPO19, "precision": "bf16-mixed"}
TRL19_MATRIX: tuple[Case, ...] = (
    Case("qwen", "qwen-2.5-0.5b", {**DPO19, "method": "lora"}, batch_size=1, seq_len=128),
    Case("qwen", "qwen-2.5-0.5b", DPO19, batch_size=1, seq_len=128),
    Case("qwen", "qwen-2.5-0.5b", {**DPO19, "method": "lora", "loss_token_fraction": 0.5}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**DPO19, "method": "lora", **NO_CKPT}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**DPO19, "method": "lora", "precompute_ref_log_probs": True}, batch_size=2,
         seq_len=256),
    Case("llama", "llama-3.2-1b", {**DPO19, "method": "lora"}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**DPO19, "method": "qlora"}, batch_size=2, seq_len=256),
    Case("llama", "llama-3.2-1b", {**DPO19, "loss_token_fraction": 0.5}, batch_size=1, seq_len=256),
    Case("llama", "smollm-2-360m", {**DPO19, "precompute_ref_log_probs": True, **NO_CKPT}, batch_size=2, seq_len=256),
    # axolotl's bf16: auto (bf16 weights under bf16 autocast), and TRL's own fp32 load under autocast
    Case("qwen", "qwen-2.5-0.5b", {**DPO19_AUTOCAST, "method": "lora", "base_dtype": "bf16"}, batch_size=2, seq_len=256),
    Case("qwen", "qwen-2.5-0.5b", {**DPO19_AUTOCAST, "weights": "bf16"}, batch_size=1, seq_len=256),
    Case("llama", "llama-3.2-1b", {**DPO19_AUTOCAST, "method": "lora"}, batch_size=2, seq_len=256),
    Case("llama", "smollm-2-135m", DPO19_AUTOCAST, batch_size=2, seq_len=256),
)
MATRICES["trl19"] = TRL19_MATRIX
