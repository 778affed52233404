"""Hugging Face's names for gpuplan's choices: `TrainingArguments.optim`, `attn_implementation` and
torch dtype names, each table written once (HF name -> gpuplan value), the reverse derived from it.

Pure Python (no torch, no transformers): the planner's `--from-config` readers and the profiler's
Trainer callback and model builder share these tables. Where several HF names mean one gpuplan
value, the first one listed is the one gpuplan writes (`hf_optim_name`, `hf_attention_name`).
"""
from __future__ import annotations

from typing import Mapping, TypeVar

from ..specs.enums import Attention, DType, Optimizer

V = TypeVar("V")

# TrainingArguments.optim [transformers/training_args.py OptimizerNames (5.24); what each builds:
# transformers/trainer_optimizer.py _OPTIMIZER_HANDLERS, _get_adamw_torch, _get_bitsandbytes_optimizer,
# _get_adafactor, _get_sgd].
HF_OPTIM: Mapping[str, Optimizer] = {
    "adamw_torch_fused": Optimizer.ADAMW_FUSED,    # torch.optim.AdamW(fused=True)
    "adamw_torch": Optimizer.ADAMW,                # torch.optim.AdamW (foreach)
    "adamw_bnb_8bit": Optimizer.ADAMW_8BIT,        # bnb.optim.AdamW(optim_bits=8)
    "adamw_8bit": Optimizer.ADAMW_8BIT,            # OptimizerNames: "just an alias for adamw_bnb_8bit"
    "paged_adamw_8bit": Optimizer.PAGED_ADAMW_8BIT,
    "paged_adamw_32bit": Optimizer.PAGED_ADAMW,
    "adafactor": Optimizer.ADAFACTOR,
    # torch.optim.SGD with TrainingArguments' kwargs only: momentum 0 unless `optim_args` sets it, so
    # no momentum buffer; gpuplan's SGD keeps one (momentum 0.9), one fp32 state per trainable
    # parameter above HF's default (on the safe side).
    "sgd": Optimizer.SGD,
    "lion_32bit": Optimizer.LION,                  # bnb.optim.Lion(optim_bits=32)
    # gpuplan has no paged Lion: counted as Lion, its state as device memory, where the paged
    # state lives in unified memory outside the allocator (an over-estimate of the allocator's figures).
    "paged_lion_32bit": Optimizer.LION,
    # trainer_optimizer.py _get_galore_optimizer / _get_torchao_optimizer / _get_schedule_free_optimizer
    "galore_adamw": Optimizer.GALORE_ADAMW,        # galore_torch.GaLoreAdamW on optim_target_modules
    "apollo_adamw": Optimizer.APOLLO_ADAMW,        # apollo_torch.APOLLOAdamW (_get_apollo_optimizer)
    "adamw_torch_8bit": Optimizer.TORCHAO_ADAMW_8BIT,   # torchao.optim.AdamW8bit
    "adamw_torch_4bit": Optimizer.TORCHAO_ADAMW_4BIT,   # torchao.optim.AdamW4bit
    "schedule_free_adamw": Optimizer.SCHEDULE_FREE_ADAMW,   # schedulefree.AdamWScheduleFree
    # Not in transformers 5.24's OptimizerNames; read by `--from-config` since it was written:
    "adamw_hf": Optimizer.ADAMW,                   # transformers' own AdamW, OptimizerNames.ADAMW_HF in 4.x
    "bnb_8bit": Optimizer.ADAMW_8BIT,
    "paged_adamw": Optimizer.PAGED_ADAMW,
}

# The `*_layerwise` names: the same optimizer, one per parameter, stepped in a post-accumulate-grad
# hook (_setup_low_rank_optimizer `is_layerwise`): --optimizer NAME --optimizer-in-backward
HF_LAYERWISE: Mapping[str, str] = {"galore_adamw_layerwise": "galore_adamw", "apollo_adamw_layerwise": "apollo_adamw"}

# attn_implementation [transformers/modeling_utils.py AttentionInterface._global_mapping, plus
# "eager", the modeling files' own eager_attention_forward]
HF_ATTENTION: Mapping[str, Attention] = {
    "sdpa": Attention.SDPA,
    "eager": Attention.EAGER,
    "flash_attention_2": Attention.FLASH,
}

# torch dtype names: `str(torch.bfloat16)` without "torch.", `config.json`'s "torch_dtype"/"dtype".
# nf4 and fp4 have none: bitsandbytes packs them into uint8 storage.
TORCH_DTYPE_NAMES: Mapping[str, DType] = {
    "float32": DType.FP32,
    "bfloat16": DType.BF16,
    "float16": DType.FP16,
    "int8": DType.INT8,
    "uint8": DType.UINT8,
}


def _reverse(table: Mapping[str, V]) -> dict[V, str]:
    """value -> the first HF name listed for it."""
    out: dict[V, str] = {}
    for name, value in table.items():
        out.setdefault(value, name)
    return out


OPTIM_NAMES: Mapping[Optimizer, str] = _reverse(HF_OPTIM)
ATTENTION_NAMES: Mapping[Attention, str] = _reverse(HF_ATTENTION)
DTYPE_TORCH_NAMES: Mapping[DType, str] = _reverse(TORCH_DTYPE_NAMES)


def hf_optim_name(optimizer: Optimizer) -> str:
    """The `TrainingArguments.optim` value that builds `optimizer`."""
    return OPTIM_NAMES[optimizer]


def hf_attention_name(attention: Attention) -> str:
    """The `attn_implementation` value of `attention`."""
    return ATTENTION_NAMES[attention]


def torch_dtype_name(dtype: DType) -> str:
    """The torch dtype name of `dtype` (`getattr(torch, name)` is the dtype); KeyError for nf4/fp4."""
    return DTYPE_TORCH_NAMES[dtype]
