"""torchtune recipe YAML [torchtune recipes/configs/*.yaml; torchtune/models/*/_model_builders.py] -> setup options."""
from __future__ import annotations

import re
from typing import Any

from ..specs.errors import PlannerError
from . import ConfigSetup
from .common import collector, mapped

# torchtune.models builders -> gpuplan preset names ("llama3_1" -> "llama-3.1")
_FAMILY = {"llama3_1": "llama-3.1", "llama3_2": "llama-3.2", "llama3_3": "llama-3.3", "llama3": "llama-3",
           "llama2": "llama-2", "qwen2_5": "qwen-2.5", "qwen3": "qwen-3", "gemma2": "gemma-2", "gemma": "gemma",
           "mistral": "mistral", "phi3": "phi-3", "phi4": "phi-4"}
_OPTIM = {"torch.optim.AdamW": "adamw", "torch.optim.SGD": "sgd",
          "bitsandbytes.optim.PagedAdamW8bit": "paged-adamw-8bit", "bitsandbytes.optim.AdamW8bit": "adamw-8bit",
          "bitsandbytes.optim.PagedAdamW": "paged-adamw", "bitsandbytes.optim.Lion": "lion",
          "torchao.optim.AdamW8bit": "adamw-8bit"}
_LORA_LINEARS = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj"}


def _model_name(component: str, path: str) -> tuple[str, str]:
    """(preset name, method) from e.g. torchtune.models.llama3_1.qlora_llama3_1_8b."""
    m = re.fullmatch(r"torchtune\.models\.(\w+?)\.(lora_|qlora_)?(\w+)", component)
    if not m or m.group(1) not in _FAMILY:
        raise PlannerError(f"{path}: model._component_ {component!r} is not a torchtune builder gpuplan maps; "
                           f"families: {', '.join(_FAMILY)}")
    family, kind, rest = m.group(1), m.group(2), m.group(3)
    size = rest[len(family) + 1:] if rest.startswith(family + "_") else rest
    method = {"lora_": "lora", "qlora_": "qlora"}.get(kind or "", "full")
    return f"{_FAMILY[family]}-{size.replace('_', '.')}", method


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    o, used, use = collector()

    mcfg = d["model"]
    model, method = _model_name(str(mcfg["_component_"]), path)
    used["model._component_"] = f"--model {model} --method {method}"
    o["method"] = method
    if method != "full":
        if mcfg.get("lora_rank") is not None:
            use("model.lora_rank", "lora_r", int(mcfg["lora_rank"]))
        if mcfg.get("lora_alpha") is not None:
            use("model.lora_alpha", "lora_alpha", float(mcfg["lora_alpha"]))
        if mcfg.get("lora_dropout") is not None:
            use("model.lora_dropout", "lora_dropout", float(mcfg["lora_dropout"]))
        mods = [_LORA_LINEARS.get(m, m) for m in mcfg.get("lora_attn_modules") or []]
        if mcfg.get("apply_lora_to_mlp"):
            mods += ["gate_proj", "up_proj", "down_proj"]
        if mods:
            use("model.lora_attn_modules", "lora_targets", ",".join(mods))
    dtype = d.get("dtype")
    if dtype:
        # torchtune trains in the given dtype without autocast: weights, grads and states alike
        dmap = {"bf16": "bf16-true", "fp16": "fp16-true", "fp32": "fp32"}
        use("dtype", "precision", mapped(dmap, dtype, "dtype", path))
        if method != "full" and dtype != "fp32":
            o["adapter_dtype"] = dtype   # torchtune builds the adapters in the model's dtype too
            used["dtype"] += f" --adapter-dtype {dtype}"
    if d.get("batch_size") is not None:
        use("batch_size", "batch_size", int(d["batch_size"]))
    if d.get("gradient_accumulation_steps") is not None:
        use("gradient_accumulation_steps", "grad_accum", int(d["gradient_accumulation_steps"]))
    if "enable_activation_checkpointing" in d:
        use("enable_activation_checkpointing", "grad_ckpt", bool(d["enable_activation_checkpointing"]))
    seq = (d.get("tokenizer") or {}).get("max_seq_len")
    if seq is not None:
        use("tokenizer.max_seq_len", "seq_len", int(seq))
    opt = (d.get("optimizer") or {}).get("_component_")
    if opt:
        value = mapped(_OPTIM, opt, "optimizer._component_", path)
        if value == "adamw" and (d.get("optimizer") or {}).get("fused"):
            value = "adamw-fused"
        use("optimizer._component_", "optimizer", value)
    loss = (d.get("loss") or {}).get("_component_", "")
    if "Chunked" in loss:
        use("loss._component_", "loss", "chunked")
    if d.get("optimizer_in_bwd") or d.get("enable_activation_offloading"):
        key = "optimizer_in_bwd" if d.get("optimizer_in_bwd") else "enable_activation_offloading"
        raise PlannerError(f"{path}: {key}: true is not modelled by gpuplan; set it false to plan the rest")
    consumed = {"model", "dtype", "batch_size", "gradient_accumulation_steps", "enable_activation_checkpointing",
                "optimizer", "loss", "tokenizer"}
    return ConfigSetup("torchtune", model, o, used, tuple(sorted(k for k in d if k not in consumed)))
