"""The peft config a setup stands for, built with the installed peft: LoraSpec's knobs as a
LoraConfig, or any other method from its adapter_config.json fields (gpuplan.planner PeftSpec).

peft's own checks run (its config classes' __post_init__), and their errors become one line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.model import ModelSpec
from gpuplan.planner.specs.setup import ALL_LINEAR, PeftSpec, TrainingSetup

# adapter_config.json fields that say where the adapter came from or how peft loads it, not what
# it trains [peft/config.py PeftConfigMixin: base_model_name_or_path, revision, peft_type, task_type,
# inference_mode, auto_mapping, peft_version]
PROVENANCE = ("base_model_name_or_path", "revision", "peft_type", "task_type", "inference_mode", "auto_mapping",
              "peft_version")


def installed_peft_types() -> list[str]:
    """The PeftType values the installed peft supports."""
    from peft.utils.peft_types import PeftType  # lazy: torch, transformers and peft load only when a setup is simulated

    return [t.value for t in PeftType]


def config_class(peft_type: str) -> type:
    """peft's config class for `peft_type`; PlannerError naming the installed version if it lacks it."""
    import peft  # lazy: torch, transformers and peft load only when a setup is simulated
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING  # lazy: torch, transformers and peft load only when a setup is simulated

    cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type.upper())
    if cls is None:
        raise PlannerError(f"peft_type {peft_type!r} is not supported by the installed peft {peft.__version__}; "
                           f"it supports {', '.join(sorted(PEFT_TYPE_TO_CONFIG_MAPPING))}")
    return cls


def peft_spec_from_dict(d: dict[str, Any], source: str = "adapter config") -> PeftSpec:
    """PeftSpec of an adapter_config.json dict: provenance fields dropped, every other field checked
    against peft's config class (unknown fields: PlannerError)."""
    if not isinstance(d, dict) or not isinstance(d.get("peft_type"), str):
        raise PlannerError(f"{source}: no peft_type (expected the adapter_config.json that "
                           "PeftConfig.save_pretrained writes)")
    try:
        cls = config_class(d["peft_type"])
    except ImportError:     # no peft here: LoRA still maps to the closed form; others need the simulator
        cls = None
    known = {f.name for f in dataclasses.fields(cls)} if cls else set(d)
    unknown = sorted(k for k in d if k not in known and k not in PROVENANCE)
    if unknown:
        raise PlannerError(f"{source}: field(s) {', '.join(unknown)} are not {cls.__name__} fields in the "
                           f"installed peft; remove them or upgrade peft")
    if d.get("task_type") not in (None, "CAUSAL_LM"):
        raise PlannerError(f"{source}: task_type {d['task_type']!r}: gpuplan plans causal-LM fine-tuning (CAUSAL_LM)")
    options = {k: v for k, v in d.items() if k not in PROVENANCE}
    return PeftSpec.of(d["peft_type"], options)


def read_adapter_config(path: str | Path) -> PeftSpec:
    """PeftSpec of an adapter_config.json file."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlannerError(f"{path}: cannot read an adapter_config.json ({exc})") from None
    return peft_spec_from_dict(d, str(path))


def peft_config(model: ModelSpec, setup: TrainingSetup):
    """The peft.PeftConfig for `setup` (task CAUSAL_LM)."""
    import peft  # lazy: torch, transformers and peft load only when a setup is simulated

    if setup.adapter is not None:
        cls = config_class(setup.adapter.peft_type)
        options = setup.adapter.options_dict()
        try:
            return cls(**options, task_type="CAUSAL_LM")
        except (TypeError, ValueError) as exc:
            raise PlannerError(f"{setup.adapter.peft_type} config: {str(exc).splitlines()[0]}") from None
    lora = setup.lora
    # "all-linear" goes to peft as the string it is: on transformers-5 MoE families peft resolves it
    # to the router and the fused experts besides the nn.Linear modules [peft/utils/
    # transformers_weight_conversion.py _resolve_string_target_modules], which a list of names does not
    targets = ALL_LINEAR if lora.targets == (ALL_LINEAR,) else list(setup.lora_targets(model))
    return peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        use_dora=lora.use_dora, modules_to_save=list(lora.modules_to_save) or None,
        ensure_weight_tying=lora.ensure_weight_tying, task_type="CAUSAL_LM",
    )


def dequantize_standins() -> None:
    """Lets peft's DoRA dequantize the bitsandbytes stand-ins (profiler/kernels/bnb_linear.py) as it
    dequantizes real 4-bit layers: peft reads Params4bit by class name, which the stand-ins' weights
    are not [peft/utils/integrations.py dequantize_module_weight]. Other modules go to peft's own
    function. Idempotent; affects stand-in modules only."""
    import peft.tuners.lora.dora as dora  # lazy: torch, transformers and peft load only when a setup is simulated

    from .kernels.bnb_linear import Linear4bit  # lazy: torch, transformers and peft load only when a setup is simulated

    original = dora.dequantize_module_weight
    if getattr(original, "gpuplan_standins", False):
        return

    def dequantize_module_weight(module):
        if isinstance(module, Linear4bit):
            return module.dequantized()
        return original(module)

    dequantize_module_weight.gpuplan_standins = True
    dora.dequantize_module_weight = dequantize_module_weight
