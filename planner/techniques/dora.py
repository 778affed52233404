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

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from .quantization import base_linear_out_bytes

# Per token and adapted linear, DoRA's forward saves for backward the inputs of its two muls by the
# magnitude scale: the base output (`(mag_norm_scale - 1) * base_result`: the compute dtype, or the
# residual's for bitsandbytes layers) and lora_B's output (`mag_norm_scale * lora_result`: the compute
# dtype under autocast, else the adapters') [peft/tuners/lora/dora.py DoraLinearLayer.forward]. With
# fp32 adapters under autocast one more out-sized compute-dtype tensor is kept: measured in the
# simulated step, not traced to its op. Bytes per output element and token measured (slope over
# three (b, s) points against plain LoRA, no checkpointing): bf16-mixed 6, bf16-true 6, fp32 8,
# QDoRA (nf4, bf16 adapters, bf16-mixed) 6; each is what the terms below give.


def _adapted(m: ModelSpec, rs: Resolved, moe: bool = False):
    targets = set(rs.adapters.targets)
    return [lin for lin in (m.moe_linears if moe else m.dense_linears) if lin.name in targets and lin.experts == 1]


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
    autocast_extra = e if rs.autocast and rs.adapters.dtype.bytes > e else 0     # fp32 magnitudes under autocast
    return (base + lora_out + autocast_extra) * sum(lin.out_features for lin in _adapted(m, rs, moe))
