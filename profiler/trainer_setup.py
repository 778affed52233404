"""setup_from_trainer(): the gpuplan (ModelSpec, TrainingSetup) of a live HF Trainer run, read from
its model and TrainingArguments, so that the planner can estimate the run the user really makes."""
from __future__ import annotations

from typing import Any

import torch

from gpuplan.planner import (ALL_LINEAR, Attention, Checkpointing, Loss, LoraSpec, Method, ModelSpec, PlannerError,
                             Precision, QuantSpec, QuantType, TrainingSetup, model_from_config)
from gpuplan.planner.io.hf_vocabulary import HF_ATTENTION, HF_OPTIM

from .dtypes import DTYPE_OF


def _precision(trainable_dtype: torch.dtype, args: Any) -> Precision:
    """fp32 trainable weights with bf16/fp16=True is autocast (mixed); 16-bit weights are `-true`."""
    if trainable_dtype == torch.bfloat16:
        return Precision.BF16_TRUE
    if trainable_dtype == torch.float16:
        return Precision.FP16_TRUE
    if getattr(args, "bf16", False):
        return Precision.BF16_MIXED
    if getattr(args, "fp16", False):
        return Precision.FP16_MIXED
    return Precision.FP32


def _lora(model: torch.nn.Module, adapter_dtype: torch.dtype) -> LoraSpec:
    cfg = model.peft_config.get("default") or next(iter(model.peft_config.values()))
    targets = cfg.target_modules
    if isinstance(targets, str):
        targets = (ALL_LINEAR,) if targets == ALL_LINEAR else (targets,)
    return LoraSpec(r=int(cfg.r), alpha=float(cfg.lora_alpha), dropout=float(cfg.lora_dropout),
                    targets=tuple(sorted(targets or ())), adapter_dtype=DTYPE_OF.get(adapter_dtype))


def _quant(base: torch.nn.Module) -> QuantSpec | None:
    """The bitsandbytes config of a k-bit loaded model, None for a 16/32-bit one."""
    q = getattr(base.config, "quantization_config", None)
    if q is None:
        return None
    q = q if isinstance(q, dict) else q.to_dict()
    if q.get("load_in_8bit"):
        return QuantSpec(quant_type=QuantType.INT8, double_quant=False)
    if q.get("load_in_4bit"):
        kind = QuantType(q.get("bnb_4bit_quant_type", "nf4"))
        return QuantSpec(quant_type=kind, double_quant=bool(q.get("bnb_4bit_use_double_quant", False)))
    raise PlannerError(f"quantization {q.get('quant_method', '?')!r} is not bitsandbytes; gpuplan cannot model it")


def model_spec_of(model: torch.nn.Module) -> ModelSpec:
    """The ModelSpec of a (possibly peft-wrapped) transformers model, from its config."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config.to_dict()
    return model_from_config(cfg, name=str(cfg.get("_name_or_path") or cfg.get("model_type")))


def setup_from_trainer(model: torch.nn.Module, args: Any, seq_len: int | None) -> tuple[ModelSpec, TrainingSetup]:
    """(ModelSpec, TrainingSetup) of a Trainer run; raises PlannerError saying what cannot be mapped."""
    spec = model_spec_of(model)
    optim = str(getattr(args.optim, "value", args.optim))
    if optim not in HF_OPTIM:
        raise PlannerError(f"optim={optim!r} has no gpuplan model; supported: {', '.join(HF_OPTIM)}")
    seq_len = seq_len or getattr(args, "max_length", None) or getattr(args, "max_seq_length", None)
    if not seq_len:
        raise PlannerError("sequence length unknown: no batch seen and no max_length in the arguments")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise PlannerError("the model has no trainable parameters")
    frozen = [p for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    precision = _precision(trainable[0].dtype, args)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quant = _quant(base)
    peft = hasattr(model, "peft_config")
    method = Method.QLORA if quant and peft else Method.LORA if peft else Method.FULL
    if quant and not peft:
        raise PlannerError("a k-bit quantized model can only be trained with adapters (QLoRA)")
    attn = getattr(base.config, "_attn_implementation", "sdpa")
    setup = TrainingSetup(
        method=method,
        precision=precision,
        optimizer=HF_OPTIM[optim],
        batch_size=int(args.per_device_train_batch_size),
        seq_len=int(seq_len),
        grad_accum=int(args.gradient_accumulation_steps),
        checkpointing=Checkpointing.FULL if args.gradient_checkpointing else Checkpointing.NONE,
        attention=HF_ATTENTION.get(attn, Attention.SDPA),
        loss=Loss.CHUNKED if getattr(args, "use_liger_kernel", False) else Loss.HF,
        lora=_lora(model, trainable[0].dtype) if peft else LoraSpec(),
        quant=quant or QuantSpec(),
        base_dtype=DTYPE_OF.get(frozen[0].dtype) if peft and frozen and not quant else None,
    )
    return spec, setup.validate()
