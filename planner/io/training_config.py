"""Validation of a --from-config file's values (axolotl, HF/TRL, torchtune) before planner/fromconfig's
readers convert them: a wrong type stops with one line naming the file, the key and what is valid,
instead of `int("big")` or `.get` on a string deep in a reader. Pure Python."""
from __future__ import annotations

import math
from typing import Any, Mapping

from ..specs.errors import PlannerError
from .validate import MAX_COUNT, show, type_name

_TRAIN_INTS = ("micro_batch_size", "sequence_len", "gradient_accumulation_steps", "lora_r",
               "per_device_train_batch_size", "max_length", "max_seq_length", "batch_size", "model.lora_rank",
               "tokenizer.max_seq_len")
_TRAIN_POSITIVE = ("lora_alpha", "model.lora_alpha")
_TRAIN_PROBS = ("lora_dropout", "model.lora_dropout")
_TRAIN_STRINGS = ("base_model", "model_name_or_path", "optim", "adapter", "attn_implementation",
                  "bnb_4bit_quant_type", "model._component_", "optimizer._component_", "loss._component_", "dtype")
# keys whose type depends on the format: axolotl's optimizer is a name, torchtune's a component mapping
_FORMAT_STRINGS = {"axolotl": ("optimizer",), "hf": (), "torchtune": ()}
_FORMAT_MAPPINGS = {"axolotl": (), "hf": (), "torchtune": ("model", "tokenizer", "optimizer", "loss")}
_TRAIN_FLAGS = ("gradient_checkpointing", "load_in_4bit", "load_in_8bit", "use_peft", "use_bnb_nested_quant",
                "flash_attention", "sdp_attention", "eager_attention", "use_liger_kernel", "enable_activation_checkpointing")


def _lookup(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate_training_config(data: Any, path: str, fmt: str) -> None:
    """Raise PlannerError (file, key, value, what is valid) for a --from-config value of the wrong type,
    before the format readers (fmt: axolotl, hf, torchtune) convert it (`int("big")`, `.get` on a string)."""
    if not isinstance(data, Mapping):
        return                                     # the reader says what the file must hold
    where = f"--from-config file {path}"
    for key in _FORMAT_MAPPINGS.get(fmt, ()):
        v = data.get(key)
        if v is not None and not isinstance(v, Mapping):
            raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); in a torchtune recipe it must be a "
                               "mapping (with _component_)")
    for key in _FORMAT_STRINGS.get(fmt, ()):
        v = data.get(key)
        if v is not None and not isinstance(v, str):
            raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be text")
    mods = data.get("model", {}).get("lora_attn_modules") if isinstance(data.get("model"), Mapping) else None
    if mods is not None and not (isinstance(mods, list) and all(isinstance(m, str) for m in mods)):
        raise PlannerError(f"{where}: model.lora_attn_modules is {show(mods)}; it must be a list of module names")
    for key in _TRAIN_INTS:
        found, v = _lookup(data, key)
        if found and v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not float(v).is_integer():
                raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be a whole number >= 1")
            if not 1 <= v <= MAX_COUNT:
                raise PlannerError(f"{where}: {key} is {int(v)}; it must be at least 1")
    for key in _TRAIN_POSITIVE:
        found, v = _lookup(data, key)
        if found and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                        or not math.isfinite(v) or v <= 0):
            raise PlannerError(f"{where}: {key} is {show(v)}; it must be a positive number")
    for key in _TRAIN_PROBS:
        found, v = _lookup(data, key)
        if found and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1):
            raise PlannerError(f"{where}: {key} is {show(v)}; a dropout probability must be a number in [0, 1)")
    for key in _TRAIN_STRINGS:
        found, v = _lookup(data, key)
        if found and v is not None and not isinstance(v, str):
            raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be text")
    for key in _TRAIN_FLAGS:
        found, v = _lookup(data, key)
        if found and v is not None and not isinstance(v, bool):
            raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be true or false")
    for key in ("bf16", "fp16"):
        v = data.get(key)
        if v is not None and not isinstance(v, bool) and v not in ("auto", "true", "false"):
            raise PlannerError(f"{where}: {key} is {show(v)}; it must be true, false or auto")
    targets = data.get("lora_target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise PlannerError(f"{where}: lora_target_modules is {show(targets)}; it must be a module name or a list of "
                           "names")
