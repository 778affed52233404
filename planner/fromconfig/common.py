"""Shared value maps: optimizer names of HF `optim` (also axolotl's `optimizer`) and torchtune components."""
from __future__ import annotations

from typing import Any, Callable

from ..specs.errors import PlannerError

# transformers.training_args.OptimizerNames -> gpuplan --optimizer
HF_OPTIM = {
    "adamw_torch_fused": "adamw-fused", "adamw_torch": "adamw", "adamw_hf": "adamw",
    "adamw_bnb_8bit": "adamw-8bit", "adamw_8bit": "adamw-8bit", "bnb_8bit": "adamw-8bit",
    "paged_adamw_8bit": "paged-adamw-8bit", "paged_adamw_32bit": "paged-adamw", "paged_adamw": "paged-adamw",
    "adafactor": "adafactor", "sgd": "sgd", "lion_32bit": "lion", "paged_lion_32bit": "lion",
}


def mapped(table: dict[str, str], value: Any, key: str, path: str) -> str:
    """table[value], or a PlannerError naming the file, the key and what can be mapped."""
    if value not in table:
        raise PlannerError(f"{path}: {key}: {value!r} is not mappable; mappable: {', '.join(sorted(table))}")
    return table[value]


def optimizer(value: Any, key: str, path: str) -> str:
    return mapped(HF_OPTIM, str(value).lower(), key, path)


def refuse_sharding(d: dict[str, Any], keys: tuple[str, ...], path: str) -> None:
    """--from-config maps single-GPU settings only: a DeepSpeed/FSDP block is an error, not ignored."""
    for key in keys:
        if d.get(key):
            raise PlannerError(f"{path}: {key} is set; --from-config maps single-GPU settings only for now: "
                               "remove it, or give the sharding with the multi-GPU flags")


def precision(bf16: Any, fp16: Any, mixed: bool = True) -> str | None:
    if bf16:
        return "bf16-mixed" if mixed else "bf16-true"
    if fp16:
        return "fp16-mixed" if mixed else "fp16-true"
    return None


def targets(value: Any) -> str | None:
    if value in (None, [], ""):
        return None
    if isinstance(value, str):
        return "all-linear" if value == "all-linear" else value
    return ",".join(str(v) for v in value)


def collector() -> tuple[dict[str, Any], dict[str, str], Callable[[str, str, Any], None]]:
    """(options, used, use): `use(key, opt, value)` records that config key `key` set the CLI
    option `opt` to `value`, for the setup and for the "fields used" report."""
    options: dict[str, Any] = {}
    used: dict[str, str] = {}

    def use(key: str, opt: str, value: Any) -> None:
        options[opt] = value
        used[key] = f"--{opt.replace('_', '-')} {value}"

    return options, used, use
