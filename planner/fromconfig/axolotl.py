"""axolotl YAML [axolotl docs/config-reference.qmd] -> setup options."""
from __future__ import annotations

from typing import Any

from ..specs.errors import PlannerError
from . import ConfigSetup
from .common import collector, optimizer, precision, refuse_sharding, targets

# keys that do not change per-GPU memory or step time (data, logging, schedule, saving)
IGNORED_OK = {"datasets", "dataset_prepared_path", "val_set_size", "output_dir", "learning_rate", "lr_scheduler",
              "warmup_steps", "warmup_ratio", "weight_decay", "logging_steps", "save_steps", "eval_steps", "evals_per_epoch",
              "saves_per_epoch", "wandb_project", "wandb_entity", "wandb_name", "wandb_log_model", "wandb_watch",
              "hub_model_id", "special_tokens", "tokenizer_type", "model_type", "seed", "train_on_inputs",
              "group_by_length", "chat_template", "strict", "resume_from_checkpoint", "local_rank", "debug",
              "early_stopping_patience", "max_grad_norm", "lora_model_dir", "lora_fan_in_fan_out", "pad_to_sequence_len",
              "sample_packing", "eval_sample_packing", "tokenizer_config", "trust_remote_code", "is_llama_derived_model",
              "xformers_attention", "gradient_checkpointing_kwargs", "shuffle_merged_datasets", "tf32"}


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    o, used, use = collector()

    adapter = d.get("adapter")
    if adapter not in (None, "lora", "qlora"):
        raise PlannerError(f"{path}: adapter: {adapter!r} is not modelled (lora and qlora are)")
    if d.get("load_in_8bit") and adapter:
        use("load_in_8bit", "method", "qlora")
        o["quant_type"] = "int8"
        used["load_in_8bit"] += " --quant-type int8"
    elif adapter == "qlora" or (adapter == "lora" and d.get("load_in_4bit")):
        use("adapter", "method", "qlora")
    elif adapter == "lora":
        use("adapter", "method", "lora")
    elif "adapter" in d:
        use("adapter", "method", "full")
    # axolotl loads the model in bf16/fp16 when `bf16`/`fp16` is set (torch_dtype) and lets the Trainer
    # autocast [axolotl loaders/model.py]: full fine-tuning then trains 16-bit weights and states
    # (gpuplan's *-true); LoRA keeps a 16-bit frozen base with fp32 adapters under autocast.
    method = o.get("method", "full")
    half = d.get("bf16") in (True, "auto", "true") or bool(d.get("fp16"))
    prec = precision(d.get("bf16") in (True, "auto", "true"), d.get("fp16"), mixed=method != "full")
    if prec:
        use("bf16" if d.get("bf16") else "fp16", "precision", prec)
        if method == "lora" and half:
            o["base_dtype"] = prec.split("-")[0]
            used["bf16" if d.get("bf16") else "fp16"] += f" --base-dtype {o['base_dtype']}"
    for key, opt, conv in (("micro_batch_size", "batch_size", int), ("sequence_len", "seq_len", int),
                           ("gradient_accumulation_steps", "grad_accum", int), ("lora_r", "lora_r", int),
                           ("lora_alpha", "lora_alpha", float), ("lora_dropout", "lora_dropout", float)):
        if d.get(key) is not None:
            if opt.startswith("lora") and not adapter:
                continue
            use(key, opt, conv(d[key]))
    if "gradient_checkpointing" in d:
        use("gradient_checkpointing", "grad_ckpt", bool(d["gradient_checkpointing"]))
    if d.get("optimizer"):
        use("optimizer", "optimizer", optimizer(d["optimizer"], "optimizer", path))
    if adapter:
        if d.get("lora_target_linear"):
            use("lora_target_linear", "lora_targets", "all-linear")
        elif targets(d.get("lora_target_modules")):
            use("lora_target_modules", "lora_targets", targets(d["lora_target_modules"]))
        if d.get("peft_use_dora"):     # axolotl passes it to LoraConfig(use_dora=...)
            use("peft_use_dora", "use_dora", True)
        if targets(d.get("lora_modules_to_save")):
            use("lora_modules_to_save", "modules_to_save", targets(d["lora_modules_to_save"]))
    if d.get("flash_attention"):
        use("flash_attention", "attn", "flash")
    elif d.get("sdp_attention"):
        use("sdp_attention", "attn", "sdpa")
    elif d.get("eager_attention"):
        use("eager_attention", "attn", "eager")
    if d.get("liger_fused_linear_cross_entropy") or d.get("cut_cross_entropy"):
        key = "liger_fused_linear_cross_entropy" if d.get("liger_fused_linear_cross_entropy") else "cut_cross_entropy"
        use(key, "loss", "chunked")
    refuse_sharding(d, ("deepspeed", "fsdp", "fsdp_config"), path)
    model = d.get("base_model")
    if model:
        used["base_model"] = f"--model {model}"
    consumed = set(used) | {"adapter", "load_in_4bit", "load_in_8bit", "bf16", "fp16", "lora_r", "lora_alpha",
                            "lora_dropout", "lora_target_modules", "lora_target_linear", "flash_attention",
                            "sdp_attention", "eager_attention"}
    ignored = tuple(sorted(k for k in d if k not in consumed))
    return ConfigSetup("axolotl", model, o, used, ignored)
