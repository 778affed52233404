"""Quantized frozen base weights (bitsandbytes 4-bit NF4/FP4 and LLM.int8(), as QLoRA runs them):
the bytes bitsandbytes stores, the dtype its layers return, and the inputs 8-bit layers keep."""
from __future__ import annotations

from ..specs.enums import QuantType
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import QuantSpec

# bitsandbytes: 4-bit weights are quantized in blocks of 64; with double quantization the fp32
# absmax of each block becomes uint8, itself quantized in blocks of 256 with an fp32 absmax
# [bitsandbytes/functional.py: quantize_4bit (blocksize=64), QuantState nested (blocksize=256)].
QUANT_BLOCK = 64
NESTED_BLOCK = 256


def quantized_bytes(weight_count: int, out_rows: int, q: QuantSpec) -> float:
    """Bytes bitsandbytes holds for quantized linear weights with `weight_count` elements."""
    if q.quant_type is QuantType.INT8:  # int8 weights + fp32 per-row scale (SCB)
        return weight_count + 4 * out_rows
    blocks = weight_count / QUANT_BLOCK
    absmax = blocks * (1 + 4 / NESTED_BLOCK) if q.double_quant else blocks * 4
    return weight_count / 2 + absmax


def linear_inventory(model: ModelSpec) -> tuple[int, int]:
    """(weights, output rows) of all decoder-layer linears, biases excluded: what is quantized."""
    weights = rows = 0
    for count, linears in ((model.dense_layers, model.dense_linears), (model.moe_layers, model.moe_linears)):
        weights += count * sum(lin.weight_count for lin in linears)
        rows += count * sum(lin.experts * lin.out_features for lin in linears)
    if model.vision is not None:   # bitsandbytes replaces the vision tower's and projector's nn.Linear too
        weights += sum(lin.weight_count for lin in model.vision.linears)   # [techniques/multimodal.py]
        rows += sum(lin.count * lin.out_features for lin in model.vision.linears)
    return weights, rows


def base_linear_out_bytes(rs: Resolved) -> float:
    """Bytes per element of a base linear's output: compute dtype, except bitsandbytes layers,
    which cast back to their input's dtype [bitsandbytes/nn/modules.py Linear4bit.forward]."""
    return rs.residual.bytes if rs.quantized is not None else rs.compute.bytes


def int8_inputs_per_layer(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token and layer that 8-bit LoRA keeps beyond the activation ledger: bitsandbytes'
    MatMul8bitLt keeps each int8 linear's input on `ctx.tensors`, not through save_for_backward,
    so checkpointing does not drop it [bitsandbytes/autograd/_functions.py MatMul8bitLt.forward].

    The distinct inputs of a layer: the two norm outputs (q/k/v and gate/up share theirs), the
    attention output (o_proj) and the MLP product (down_proj); in the linears' input dtype.
    """
    if rs.quantized is None or rs.quantized.quant_type is not QuantType.INT8:
        return 0.0
    e, r = rs.compute.bytes, rs.residual.bytes
    return 2 * r * m.hidden + e * m.n_heads * m.head_dim + base_linear_out_bytes(rs) * m.intermediate


def moe_fused_experts_note(model: ModelSpec, rs: Resolved) -> str | None:
    """transformers 5 stores each MoE layer's experts as fused 3-D parameters, which
    replace_with_bnb_linear (nn.Linear only) leaves unquantized [transformers/integrations/
    bitsandbytes.py]; prepare_model_for_kbit_training then upcasts them with the rest."""
    if not model.moe_layers or rs.quantized is None:
        return None
    experts = model.moe_layers * sum(lin.weight_count for lin in model.moe_linears if lin.experts > 1)
    extra = experts * (rs.frozen.bytes - (1 if rs.quantized.quant_type is QuantType.INT8 else 0.5))
    return (f"QLoRA of an MoE model: this assumes quantized experts (transformers 4.x layout); "
            f"transformers 5 keeps its fused experts unquantized in {rs.frozen.value}, "
            f"{extra / 2**30:,.1f} GiB more weights")
