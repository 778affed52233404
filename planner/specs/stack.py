"""Library-version stacks: the defaults a user of given library versions gets when they leave a knob
alone (`--stack-versions`). Each row cites the version read and the source line the default comes from.

gpuplan's own defaults (TrainingSetup()) are the `trl-1.6` row and stay so whatever is installed: a
stack changes an estimate only when it is asked for (`--stack-versions NAME`, or `installed` to pick
the row of the versions installed here), so that an estimate is reproducible. The libraries every row
shares are the ones gpuplan's formulas and simulator were checked against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .enums import Choice, DType, Loss, Precision
from .errors import PlannerError
from .model import ModelSpec

# checked against by the planner's formulas and the simulator [README "Defaults"]
COMMON = (("transformers", "5.24"), ("peft", "0.21.2"), ("bitsandbytes", "0.50.2"), ("torch", "2.13"))


class Stack(Choice):
    TRL_1_6 = "trl-1.6"                   # TRL <= 1.6 SFTTrainer (gpuplan's defaults)
    TRL_1_12 = "trl-1.12"                 # TRL 1.8-1.12 SFTTrainer (chunked_nll projected from fp32 copies)
    TRL_1_14 = "trl-1.14"                 # TRL 1.13-1.14 SFTTrainer
    TRL_1_16 = "trl-1.16"                 # TRL 1.15-1.16 SFTTrainer
    TRANSFORMERS = "transformers-5.24"    # the plain transformers Trainer loop, no TRL
    TORCHTUNE = "torchtune-0.6.1"         # torchtune's recipes, its last release (no longer maintained)
    INSTALLED = "installed"               # the row of the versions installed here (read by the app)


@dataclass(frozen=True)
class StackDefaults:
    """What one stack gives a knob left alone."""

    libraries: tuple[tuple[str, str], ...]   # (distribution, versions the row describes)
    loss: Loss
    precision: Precision
    weights: str          # "fp32" | "bf16" | "config": the model config's own dtype (from_pretrained "auto")
    grad_ckpt: bool
    sources: tuple[str, ...]


_TRL_LOAD = "SFTTrainer given a model id loads float32: create_model_from_path `dtype = kwargs.get(\"dtype\", \"float32\")`"
_TRL_ARGS = ("SFTConfig: gradient_checkpointing defaults to True, bf16 to True if fp16 is not set "
             "(trl/trainer/sft_config.py class docstring, TRL 1.6.0 l.135-136, 1.16.0 l.132-133)")

STACKS: dict[Stack, StackDefaults] = {
    Stack.TRL_1_6: StackDefaults(
        COMMON + (("trl", "<=1.6 (read: 1.6.0)"),), Loss.HF, Precision.BF16_MIXED, "fp32", True,
        (f"{_TRL_LOAD} (trl/trainer/utils.py l.1003, TRL 1.6.0)", _TRL_ARGS,
         "loss_type None -> 'nll' in SFTConfig.__post_init__ (sft_config.py l.297-308, TRL 1.6.0): the logits "
         "through transformers' ForCausalLMLoss, upcast to fp32")),
    Stack.TRL_1_12: StackDefaults(
        COMMON + (("trl", "1.8-1.12 (read: 1.8.0-1.12.0)"),), Loss.CHUNKED_NLL_FP32, Precision.BF16_MIXED, "fp32", True,
        (f"{_TRL_LOAD} (trl/trainer/utils.py l.1146, TRL 1.10.0)", _TRL_ARGS,
         "loss_type None -> 'nll' if use_liger_kernel else 'chunked_nll' (sft_config.py l.336 in 1.8.0, l.332 in 1.12.0), "
         "each chunk `h.float() @ w.float().t()` (sft_trainer.py _chunk): gpuplan's --loss chunked-nll-fp32, simulated "
         "with TRL 1.12.0's own function")),
    Stack.TRL_1_14: StackDefaults(
        COMMON + (("trl", "1.13-1.14 (read: 1.14.0)"),), Loss.CHUNKED_NLL, Precision.BF16_MIXED, "fp32", True,
        (f"{_TRL_LOAD} (trl/trainer/utils.py l.1146, TRL 1.10.0)", _TRL_ARGS,
         "loss_type None -> 'nll' if use_liger_kernel else 'chunked_nll' (sft_config.py l.332-334, TRL 1.14.0): "
         "gpuplan's --loss chunked-nll (sft_trainer.py _chunked_cross_entropy_loss, simulated with TRL 1.14.0's own)")),
    Stack.TRL_1_16: StackDefaults(
        COMMON + (("trl", "1.15-1.16 (read: 1.16.0)"),), Loss.TRL, Precision.BF16_MIXED, "fp32", True,
        (f"{_TRL_LOAD} (trl/trainer/utils.py l.1332, TRL 1.16.0)", _TRL_ARGS,
         "loss_type='nll' (sft_config.py l.283) runs the fused LM head on labelled positions "
         "(sft_trainer.py l.1144 add_fused_lm_head, TRL 1.16.0): gpuplan's --loss trl")),
    Stack.TRANSFORMERS: StackDefaults(
        COMMON, Loss.HF, Precision.BF16_TRUE, "config", False,
        ("from_pretrained: dtype None -> \"auto\", the config's dtype (transformers/modeling_utils.py l.4186-4187, "
         "5.24.0)", "TrainingArguments.bf16 defaults to False (training_args.py l.874-875): no autocast",
         "TrainingArguments.activation_checkpointing (gradient_checkpointing) defaults off (training_args.py l.1545)",
         "the model's own loss: transformers' ForCausalLMLoss on the full logits, upcast to fp32")),
    # torchtune 0.6.1 (tag commit a6290a5b; development wound down in 2025, pytorch/torchtune#2883): its
    # recipes build the model in `dtype` and run it without autocast; what they read is not HF's
    Stack.TORCHTUNE: StackDefaults(
        (("torchtune", "0.6.1"), ("torch", "2.13")), Loss.HF, Precision.BF16_TRUE, "bf16", False,
        ("recipes/lora_finetune_single_device.py l.127 (full_finetune_single_device.py alike): "
         "`training.get_dtype(cfg.dtype)`, the model built under `training.set_default_dtype` (l.431): weights, "
         "adapters, gradients and optimizer states in it; `self._model(**batch)` with no autocast (l.644)",
         "enable_activation_checkpointing defaults to False (l.161-162); when on, "
         "training.set_activation_checkpointing wraps each TransformerSelfAttentionLayer (l.446-448) with "
         "torch's checkpoint_wrapper, CheckpointImpl.NO_REENTRANT by default (torch/distributed/algorithms/"
         "_checkpoint/checkpoint_wrapper.py l.198): each layer's input saved, as HF's non-reentrant checkpointing",
         "without output chunks the decoder returns `self.output(h).float()` (torchtune/modules/transformer.py "
         "l.659): fp32 logits, as transformers' loss; CEWithChunkedOutputLoss keeps per-chunk 16-bit logits "
         "(l.500) and upcasts one chunk at a time (modules/loss/ce_chunked_output_loss.py l.42)")),
}
DEFAULT_STACK = Stack.TRL_1_6

# TRL 1.7.0's chunked_nll gathered the labelled rows with a boolean mask (`hidden[valid]`, a data-dependent
# shape) where 1.8 sorts them to the front: neither form's numbers are its (trl/trainer/sft_trainer.py, 1.7.0)
_TRL_1_7 = ("installed trl {v}: TRL 1.7's chunked_nll gathers only the labelled rows (a boolean mask), which "
            "gpuplan does not model; plan with loss_type='nll' (--stack-versions trl-1.6 or --loss hf), or upgrade "
            "to TRL 1.8+ (--stack-versions trl-1.12 describes 1.8-1.12)")


def stack_for_versions(versions: Mapping[str, str]) -> Stack:
    """The row describing installed `versions` ({distribution: version}): TRL's when TRL is installed."""
    trl = versions.get("trl")
    if trl is None:
        return Stack.TRANSFORMERS
    try:
        major, minor = (int(p) for p in trl.split(".")[:2])
    except ValueError:
        raise PlannerError(f"installed trl {trl!r}: not a version gpuplan can read; choose --stack-versions "
                           f"{', '.join(s.value for s in STACKS)}") from None
    if (major, minor) <= (1, 6):
        return Stack.TRL_1_6
    if (major, minor) == (1, 7):
        raise PlannerError(_TRL_1_7.format(v=trl))
    if (major, minor) <= (1, 12):
        return Stack.TRL_1_12
    return Stack.TRL_1_14 if (major, minor) <= (1, 14) else Stack.TRL_1_16


def stack_options(stack: Stack, model: ModelSpec) -> dict[str, object]:
    """The setup options (app/options.py names) the stack gives the knobs left alone."""
    row = STACKS[stack]
    weights = config_dtype(model) if row.weights == "config" else DType(row.weights)
    precision = row.precision         # the TRL rows: fp32 weights under bf16 autocast, bf16-mixed itself
    if row.precision is Precision.BF16_TRUE and weights is DType.FP32:
        precision = Precision.FP32          # an fp32 config without autocast trains in fp32
    elif row.precision is Precision.BF16_TRUE and weights is DType.FP16:
        precision = Precision.FP16_TRUE
    return {"loss": row.loss.value, "precision": precision.value, "grad_ckpt": row.grad_ckpt}


def config_dtype(model: ModelSpec) -> DType:
    """The dtype from_pretrained(dtype="auto") loads `model` in: its config's `dtype`/`torch_dtype`
    [transformers/modeling_utils.py _get_dtype, 5.24]. Where the config names none transformers reads the
    checkpoint's first floating tensor, which gpuplan does not have: fp32 is assumed (GPT-2's checkpoint)."""
    name = str(model.hf_config.get("dtype") or model.hf_config.get("torch_dtype") or "float32").replace("torch.", "")
    return {"bfloat16": DType.BF16, "float16": DType.FP16}.get(name, DType.FP32)


def describe(stack: Stack, versions: Mapping[str, str] | None = None) -> dict[str, object]:
    """The `stack` block of `estimate --json`: the row's name, its libraries, its sources, and the
    installed versions it was picked from (for `installed`)."""
    row = STACKS[stack]
    out: dict[str, object] = {"name": stack.value, "libraries": dict(row.libraries), "sources": list(row.sources)}
    if versions is not None:
        out["installed"] = dict(versions)
    return out
