"""Precision recipes as users set them: the weights' load dtype, autocast on or off, and QLoRA's fp32
upcast of the non-quantized weights, as three separate choices. `--precision`'s words are presets
of them (the compute dtype and the preset's weights and autocast).

What each choice is in the libraries (transformers 5.24, peft 0.21.2, torch 2.13):
- weights: `from_pretrained(dtype=...)`. transformers 5 defaults to the config's dtype (usually bf16);
  TRL's SFTTrainer given a model id loads fp32 [README "Defaults"]. For full fine-tuning every weight
  trains in it (AdamW's states are `zeros_like(p)`: the same dtype [torch/optim/adamw.py _init_group]);
  for LoRA it is the frozen base's dtype; for QLoRA the dtype of the weights bitsandbytes leaves
  unquantized (embeddings, norms, lm_head), before any upcast.
- autocast: HF Trainer's `bf16=True` / `fp16=True` runs the forward under `torch.autocast`
  [transformers/trainer.py autocast_smart_context_manager]. autocast casts an fp32 weight to 16 bit for
  each matmul (caching the copies of trainable leaves) and leaves a weight already in the autocast
  dtype as it is [aten/src/ATen/autocast_mode.h cached_cast: `arg.scalar_type() != to_type`]: with
  bf16 weights it changes no saved tensor of a Llama-style layer (checked against the simulator:
  docs/readme/precision.md).
- kbit_upcast: `peft.prepare_model_for_kbit_training` casts every fp16/bf16 parameter that is not a
  bitsandbytes Params4bit to fp32 [peft/utils/other.py, peft 0.21.2]; without the call they keep the
  load dtype. With `use_reentrant=False` it adds no input-grad hook of its own; the Trainer's gradient
  checkpointing of a peft model does (`enable_input_require_grads`), with or without it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .enums import DType, Method, Precision


@dataclass(frozen=True)
class Recipe:
    """A setup's precision, every choice resolved."""

    compute: DType        # matmul dtype: autocast's, or the 16-bit weights' themselves
    weights: DType        # load dtype: full: every weight; LoRA: the frozen base; QLoRA: the non-quantized ones
    autocast: bool        # torch.autocast(dtype=compute) around the forward
    kbit_upcast: bool     # QLoRA: prepare_model_for_kbit_training's fp32 upcast (False for LoRA and full)

    @property
    def frozen(self) -> DType:
        """Stored dtype of weights neither quantized nor trained (LoRA's base, QLoRA's norms ...)."""
        return DType.FP32 if self.kbit_upcast else self.weights


def preset_recipe(precision: Precision, method: Method) -> Recipe:
    """The recipe a `--precision` word stands for, for `method` (QLoRA loads its non-quantized weights
    in the compute dtype, bnb_4bit_compute_dtype, and prepares for k-bit training under autocast)."""
    qlora = method is Method.QLORA
    weights = precision.compute_dtype if qlora else precision.weight_dtype
    return Recipe(precision.compute_dtype, weights, precision.autocast, qlora and precision.autocast)


def preset_of(recipe: Recipe, method: Method) -> Precision | None:
    """The `--precision` word whose recipe `recipe` is, or None for a combination no preset names."""
    for p in Precision:
        if preset_recipe(p, method) == recipe:
            return p
    return None


def describe(recipe: Recipe, method: Method) -> str:
    """One line naming the recipe, for the estimate's notes."""
    trained = " (and their gradients and optimizer states)" if method is Method.FULL else ""
    parts = [f"{recipe.weights.value} weights{trained}",
             f"{recipe.compute.value} autocast" if recipe.autocast else "no autocast"]
    if method is Method.QLORA:
        parts.append("non-quantized weights upcast to fp32 (prepare_model_for_kbit_training)" if recipe.kbit_upcast
                     else f"no prepare_model_for_kbit_training: non-quantized weights stay {recipe.weights.value}")
    return "precision recipe: " + ", ".join(parts)
