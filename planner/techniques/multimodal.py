"""Fine-tuning a multimodal wrapper (Gemma-3, LLaVA, Qwen2-VL, Qwen2.5-VL: specs/vision.py) on
text-only batches: the language model trains, the vision tower and projector sit on the GPU.

What the real stack does with the vision side when no image is in the batch:
- its weights are loaded with the rest (from_pretrained builds the whole ForConditionalGeneration
  class) in the frozen dtype; QLoRA's bitsandbytes quantizes its nn.Linear modules too
  (replace_with_bnb_linear skips only the output embedding, tied keys and the last parameter's
  module [transformers/quantizers/base.py get_keys_to_not_convert]);
- peft adapts every module whose name matches a target by suffix (`key == t or
  key.endswith("." + t)` [peft/tuners/tuners_utils.py check_target_module_exists]), in either
  tower, and "all-linear" takes every nn.Linear but the output embedding, the vision tower's and
  projector's included [peft/tuners/tuners_utils.py _maybe_include_all_linear_layers, peft 0.21];
- the vision tower never runs, so its trainable parameters (every one under full fine-tuning,
  the adapters peft put there under LoRA) get no gradient, and torch's optimizers create no state
  for a parameter whose grad is None [torch/optim/adamw.py _init_group: `if p.grad is None: continue`].
Batches with images (the vision tower's activations, image tokens, Gemma-3's bidirectional image
mask) are techniques/images.py's.
"""
from __future__ import annotations

from ..specs.enums import Objective
from ..specs.errors import NoClosedForm, PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import AdapterKind, Resolved
from ..specs.setup import TrainingSetup
from . import images
from .vision_adapters import adapter_params, idle_params, targeted   # noqa: F401  (re-exported: states.py, speed, tests)


def _what(model: ModelSpec) -> str:
    return f"{model.name} ({model.vision.wrapper}, a multimodal wrapper)"


def check_setup(model: ModelSpec, setup: TrainingSetup) -> None:
    """Refuses, in one line, what is not modelled for a multimodal wrapper: a multi-GPU or offloaded plan,
    and reward modelling (the score head is planned on causal LMs only: techniques/reward.py)."""
    images.check_setup(model, setup)   # batches with images [techniques/images.py]
    if model.vision is not None and setup.objective is Objective.RM:
        raise PlannerError(f"--objective rm on {_what(model)} is not modelled (the score head is planned on "
                           "text-only models); plan the text-only preset of its language model")
    if model.vision is not None and not setup.parallel.single_gpu:
        raise PlannerError(f"multi-GPU and offloaded plans of {_what(model)} are not modelled yet (DDP buckets, FSDP "
                           "units and ZeRO partitions of the vision tower); plan one GPU")


def check(model: ModelSpec, rs: Resolved) -> None:
    """NoClosedForm for an adapter method other than LoRA on a multimodal wrapper (the simulator, which
    builds the whole wrapper and applies the method with peft, answers it)."""
    if model.vision is None:
        return
    images.check(model, rs)
    what = _what(model)
    if rs.adapters is not None and rs.adapters.kind is not AdapterKind.LORA:   # the simulator answers it
        raise NoClosedForm(f"{rs.adapters.kind.value} on {what} has no closed form (full fine-tuning, LoRA, QLoRA "
                           "and DoRA have)")


def notes(model: ModelSpec, rs: Resolved) -> list[str]:
    """What the estimate assumes about the vision side."""
    if model.vision is None:
        return []
    v = model.vision
    if rs.setup.images_per_example:
        return images.notes(model, rs)
    idle = idle_params(model, rs)
    out = [f"{model.name}: text-only batches; the {v.tower.value} vision tower and projector ({v.params / 1e6:,.1f} M "
           "parameters) are on the GPU as weights and never run; batches with images are not modelled"]
    if idle:
        out.append(f"{idle / 1e6:,.2f} M trainable vision-side parameters get no gradient and no optimizer state "
                   "on text-only batches")
    return out
