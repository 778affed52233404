"""Which vision-tower and projector linears peft adapts, and their LoRA parameters: shared by
techniques/multimodal.py (text-only batches) and techniques/images.py (batches with images).
[peft/tuners/tuners_utils.py check_target_module_exists, _maybe_include_all_linear_layers, peft 0.21]"""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import AdapterKind, Resolved
from ..specs.setup import ALL_LINEAR
from ..specs.vision import VisionLinear


def _matches(lin: VisionLinear, target: str) -> bool:
    return lin.name == target or lin.name.endswith("." + target)


def targeted(model: ModelSpec, targets: tuple[str, ...], language_only: bool = False) -> tuple[VisionLinear, ...]:
    """The vision tower's and projector's linears peft adapts for LoRA `targets` (as the setup names
    them: () is peft's default, which the wrappers do not have); none with `language_only` (the
    targets as a regex inside the language model)."""
    if model.vision is None or not targets or language_only:
        return ()
    if targets == (ALL_LINEAR,):
        return model.vision.linears
    return tuple(lin for lin in model.vision.linears if any(_matches(lin, t) for t in targets))


def adapter_params(model: ModelSpec, rs: Resolved) -> int:
    """LoRA's A and B (r x (in + out) each) on the targeted vision linears, and DoRA's magnitude
    vector (out) where use_dora [peft/tuners/lora/layer.py update_layer, dora.py]."""
    if model.vision is None or rs.adapters is None or rs.adapters.kind is not AdapterKind.LORA:
        return 0
    a = rs.adapters
    per = (lambda lin: a.r * (lin.in_features + lin.out_features) + (lin.out_features if a.use_dora else 0))
    return sum(lin.count * per(lin) for lin in targeted(model, rs.setup.lora.targets, rs.setup.lora.language_only))


def idle_params(model: ModelSpec, rs: Resolved) -> int:
    """Trainable parameters that get no gradient on text-only batches (the vision side's): counted
    as trainable, as peft and the Trainer report them, but without gradients or optimizer state."""
    if model.vision is None:
        return 0
    return model.vision.params if rs.full else adapter_params(model, rs)
