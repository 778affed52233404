"""HF `TrainingArguments` / TRL `SFTConfig` (+ TRL `ModelConfig` keys of `trl sft --config`), JSON or YAML
[transformers/training_args.py; trl/trainer/sft_config.py; trl/trainer/model_config.py] -> setup options."""
from __future__ import annotations

from typing import Any

from ..specs.errors import PlannerError
from . import ConfigSetup
from .common import collector, mapped, optimizer, precision, refuse_sharding, targets


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    o, used, use = collector()

    peft = bool(d.get("use_peft"))
    if d.get("load_in_4bit") or d.get("load_in_8bit"):
        if not peft:
            raise PlannerError(f"{path}: load_in_4bit/load_in_8bit without use_peft: true trains quantized "
                               "weights, which gpuplan does not model; set use_peft: true (QLoRA)")
        use("load_in_4bit" if d.get("load_in_4bit") else "load_in_8bit", "method", "qlora")
        if d.get("load_in_8bit"):
            o["quant_type"] = "int8"
        if d.get("bnb_4bit_quant_type"):
            use("bnb_4bit_quant_type", "quant_type", str(d["bnb_4bit_quant_type"]))
        if "use_bnb_nested_quant" in d:
            use("use_bnb_nested_quant", "double_quant", bool(d["use_bnb_nested_quant"]))
    elif peft:
        use("use_peft", "method", "lora")
    prec = precision(d.get("bf16"), d.get("fp16"))
    if prec:
        use("bf16" if d.get("bf16") else "fp16", "precision", prec)
    seq_key = next((k for k in ("max_length", "max_seq_length") if d.get(k) is not None), None)
    if seq_key:
        use(seq_key, "seq_len", int(d[seq_key]))
    for key, opt, conv in (("per_device_train_batch_size", "batch_size", int),
                           ("gradient_accumulation_steps", "grad_accum", int)):
        if d.get(key) is not None:
            use(key, opt, conv(d[key]))
    if "gradient_checkpointing" in d:
        use("gradient_checkpointing", "grad_ckpt", bool(d["gradient_checkpointing"]))
    if d.get("optim"):
        use("optim", "optimizer", optimizer(d["optim"], "optim", path))
    if peft:
        for key, opt, conv in (("lora_r", "lora_r", int), ("lora_alpha", "lora_alpha", float),
                               ("lora_dropout", "lora_dropout", float)):
            if d.get(key) is not None:
                use(key, opt, conv(d[key]))
        if targets(d.get("lora_target_modules")):
            use("lora_target_modules", "lora_targets", targets(d["lora_target_modules"]))
    attn = d.get("attn_implementation")
    if attn:
        amap = {"flash_attention_2": "flash", "sdpa": "sdpa", "eager": "eager"}
        use("attn_implementation", "attn", mapped(amap, attn, "attn_implementation", path))
    if d.get("use_liger_kernel"):
        use("use_liger_kernel", "loss", "chunked")
    refuse_sharding(d, ("deepspeed", "fsdp"), path)
    model = d.get("model_name_or_path")
    if model:
        used["model_name_or_path"] = f"--model {model}"
    consumed = set(used) | {"load_in_4bit", "load_in_8bit", "bf16", "fp16", "use_peft", "lora_r", "lora_alpha",
                            "lora_dropout", "lora_target_modules", "max_length", "max_seq_length"}
    return ConfigSetup("hf", model, o, used, tuple(sorted(k for k in d if k not in consumed)))
