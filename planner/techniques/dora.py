"""DoRA [Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation"] as peft runs it
(LoraConfig(use_dora=True)): LoRA plus a trainable magnitude vector per adapted linear; every
forward rescales the base output by magnitude / ||W + s B A||, the norm of the (dequantized) merged
weight, detached from the graph [Liu et al. 2024, Sec. 4.3; peft/tuners/lora/dora.py
DoraLinearLayer.forward, peft/tuners/lora/variants.py DoraLinearVariant.forward]. QDoRA is the
same on a 4-bit base: `dequantize_module_weight` dequantizes the base weight for the norm.

Owns what DoRA adds to the LoRA terms of techniques/lora.py: the magnitude parameters and the
bytes DoRA's forward saves for backward.
"""
from __future__ import annotations

from ..specs.model import LinearRole, LinearSpec, ModelSpec
from ..specs.resolved import Resolved
from .quantization import base_linear_out_bytes

# Per token and adapted linear, DoRA's forward saves for backward the inputs of its two muls by the
# magnitude scale: the base output (`(mag_norm_scale - 1) * base_result`: the compute dtype, or the
# residual's for bitsandbytes layers) and lora_B's output (`mag_norm_scale * lora_result`: the compute
# dtype under autocast, else the adapters') [peft/tuners/lora/dora.py DoraLinearLayer.forward]. With
# fp32 adapters under autocast the attention's input projections (q, k, v) keep one more out-sized
# compute-dtype tensor: measured in the simulated step, not traced to its op. Bytes per output
# element and token measured (slope over batch sizes 2 and 4 against plain LoRA, no checkpointing,
# small qwen2 config): bf16-mixed q/k/v 6, o/gate/up/down 4; bf16-true (q, v) 6; fp32 (q, v) 8;
# QDoRA (nf4, bf16 adapters, bf16-mixed; q, v) 6; each is what the terms below give.


def _adapted(m: ModelSpec, rs: Resolved, moe: bool = False):
    return m.adapted_linears(rs.adapters.targets, moe)


def params_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> int:
    """Magnitude vectors of one layer: one element per output feature of each adapted linear
    [peft/tuners/lora/dora.py DoraLinearLayer.update_layer: weight_norm of shape (out,)]."""
    if not rs.adapters.use_dora:
        return 0
    return sum(lin.out_features for lin in _adapted(m, rs, moe))


def saved_bytes_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> float:
    """Bytes per token DoRA's forward saves beyond LoRA's, for one layer."""
    if not rs.adapters.use_dora:
        return 0.0
    e = rs.compute.bytes
    base = base_linear_out_bytes(rs)
    lora_out = e if rs.autocast else rs.adapters.dtype.bytes
    extra = e if rs.autocast and rs.adapters.dtype.bytes > e else 0     # fp32 magnitudes under autocast
    return sum((base + lora_out + (extra if _attention_input(lin) else 0)) * lin.out_features
               for lin in _adapted(m, rs, moe))


def _attention_input(lin: LinearSpec) -> bool:
    return lin.block == "attn" and lin.role is LinearRole.INPUT
