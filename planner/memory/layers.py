"""Bytes autograd saves for backward, derived op by op from the transformers code that runs.

Each term names the op that saves it. "dW-only" terms exist only to compute a weight gradient:
they vanish when the weight is frozen (LoRA/QLoRA base layers). The structure follows
[Korthikanti22 Sec. 4.1] (per layer, per token), the terms follow transformers 5.x
modeling_llama.py / modeling_gpt2.py / modeling_gpt_neox.py and what autograd saves for each op
(checked op by op against the simulated step, see profiler/tracker.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import MlpKind
from ..specs.model import LinearRole, ModelSpec, RopeKind
from ..specs.resolved import Resolved
from ..techniques import ADAPTERS, attention, checkpointing, masks, precision, quantization


@dataclass(frozen=True)
class LayerBytes:
    """Saved bytes per token of one decoder layer."""

    kept: float       # needed whatever is trained
    dw_only: float    # needed only for weight gradients of the layer's linears

    def total(self, frozen_base: bool) -> float:
        return self.kept + (0 if frozen_base else self.dw_only)


def _norm(h: int, consumers: int, r: float, e: float, autocast: bool, fp32_scale: bool) -> LayerBytes:
    """RMSNorm followed by `consumers` linears [LlamaRMSNorm.forward; GemmaRMSNorm.forward].

    `x * rsqrt(var)` saves x for the input gradient. The normalized tensor is saved by the
    weight-mul only for the norm weight's gradient, and the output by the linears only for theirs:
    both are dW-only (LoRA and QLoRA freeze norms and base linears alike).
    """
    if r == 4 and autocast:   # fp32 residual; each linear casts the fp32 output to 16 bit itself
        return LayerBytes(4 * h, 4 * h + consumers * e * h)
    if r == 4:                # fp32 throughout: x, x*rsqrt, and the output the linears save
        return LayerBytes(4 * h, 8 * h)
    # 16-bit residual: x.float() copy (saved by pow and the mul); normalized (fp32 for Gemma, whose
    # `output * (1 + weight.float())` runs in fp32; 16 bit for Llama) and the output
    return LayerBytes(4 * h, (4 if fp32_scale else r) * h + r * h)


def llama_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """Llama-style decoder layer: pre-norm, gated MLP (Llama, Mistral, Qwen, Gemma, Phi-3, OLMo-2)."""
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    A, K = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    fp32_scale = m.norm_fp32_scale
    # linears reading each norm's output: q/k/v and gate/up, or Phi-3's fused qkv_proj and gate_up_proj
    attn_in = sum(1 for lin in m.dense_linears if lin.block == "attn" and lin.role is LinearRole.INPUT)
    mlp_in = sum(1 for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.INPUT)
    if m.post_norm:   # OLMo-2: projections read the residual; norms on sublayer outputs
        casts = (attn_in + mlp_in) * e * h if (autocast and r == 4) else 2 * r * h
        post = 2 * (4 * h + e * h)
        kept = post + (2 * r * h if r == 4 and autocast else 0)
        norms = LayerBytes(kept, casts)
    else:
        n1 = _norm(h, attn_in, r, e, autocast, fp32_scale)
        n2 = _norm(h, mlp_in, r, e, autocast, fp32_scale)
        norms = LayerBytes(n1.kept + n2.kept, n1.dw_only + n2.dw_only)
        if m.norms_per_layer == 4:  # Gemma-2/3 post-attention and post-feedforward norms on the
            # sublayer outputs: their fp32 copy is kept, the normalized fp32 tensor only for dW
            norms = LayerBytes(norms.kept + 2 * 4 * h, norms.dw_only + 2 * 4 * h)
    qk_kept = qk_dw = 0.0
    if m.qk_norm_size:            # q_norm / k_norm on 16-bit projections: the fp32 copy is kept,
        qk_kept = 4 * (A + K)     # the normalized tensor is saved only for the norm weights' dW
        qk_dw = (4 if fp32_scale else e) * (A + K)
    # layers given a mask (padding, packing, a sliding window past it) run SDPA's memory-efficient kernel
    attn = masks.layer_mix(m, rs, s, attention.core_bytes(m, rs, s), masks.efficient_core_bytes(m, rs, s)) + qk_kept
    o_in = attention.output_copy_bytes(m, rs) + masks.flash_padded_output_bytes(m, rs)
    # gate (saved by the activation), its output and up (saved by the product). bitsandbytes'
    # Linear4bit/8bitLt return `.to(inp_dtype)`: fp32 outputs on QLoRA's fp32 residual stream
    o = quantization.base_linear_out_bytes(rs)
    mlp_kept = 3 * o * I
    mlp_dw = o * I                # the product, saved only by down_proj for its weight gradient
    return LayerBytes(norms.kept + attn + mlp_kept, norms.dw_only + qk_dw + mlp_dw + o_in)


def plain_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """GPT-2 / GPT-NeoX layer: LayerNorm, plain MLP with GELU, biases, dropout."""
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    ln_kept = r * h + 8                            # layer_norm saves its input, mean and rstd
    ln_dw = e * h if autocast and r == 4 else r * h
    # GPT-NeoX's parallel residual feeds one input to both LayerNorms: saved once (8: mean, rstd)
    lns_kept = ln_kept + 8 if m.parallel_residual else 2 * ln_kept
    scores = masks.layer_mix(m, rs, s, attention.kernel_saves(m, rs, s), masks.efficient_kernel_saves(m, rs, s))
    if m.rope is RopeKind.IN_ATTENTION:
        attn = 3 * e * h + 2 * e * h + e * h + scores  # qkv kept alive by v, roped q and k, output
    else:
        attn = 3 * e * h + e * h + scores          # c_attn output (q, k, v views), output
    gelu = m.act_saved_tensors * e * I             # gelu_new in python ops saves four tensors
    dropout = 2 * h if m.dropout > 0 else 0        # residual dropouts save a bool mask
    return LayerBytes(lns_kept + attn + gelu + dropout, 2 * ln_dw + e * I)


def moe_layer_extra(m: ModelSpec, rs: Resolved) -> float:
    """Routed experts of one MoE layer, per token: top-k expert MLPs plus router (approximate)."""
    e = rs.compute.bytes
    return m.top_k * (4 * e * m.moe_intermediate + 2 * e * m.hidden) + 8 * m.n_experts


@dataclass(frozen=True)
class ActivationBytes:
    per_layer: float          # bytes per token saved by one (average) layer, no checkpointing
    ckpt_per_layer: float     # with checkpointing: the layer's saved input
    outside: float            # per token: input ids, RoPE tables, final norm
    layer_copies: int         # autocast's 16-bit copies of the decoder layers' fp32 weights (all layers)
    head_copy: int            # autocast's 16-bit copy of an fp32 lm_head, alive to the forward's end
    head_copy_saved: int      # the part of it kept for backward (saved by the lm_head's matmul)
    adapter_copies: int = 0   # autocast's cached 16-bit copies of fp32 LoRA adapters (all layers)


def activation_bytes(m: ModelSpec, rs: Resolved) -> ActivationBytes:
    """Saved bytes per token, and autocast's weight copies, of the model under `rs`."""
    s = rs.setup.seq_len
    frozen = not rs.full
    layer = (plain_layer if m.mlp_kind is MlpKind.PLAIN else llama_layer)(m, rs, s)
    per_layer = layer.total(frozen)
    if m.moe_layers:   # MoE layers replace the dense MLP by routed experts
        dense_mlp = 4 * rs.compute.bytes * m.intermediate
        moe = per_layer - dense_mlp + moe_layer_extra(m, rs)
        per_layer = (m.dense_layers * per_layer + m.moe_layers * moe) / m.n_layers
    adapter = ADAPTERS[rs.adapters.kind] if rs.adapters else None
    if adapter:
        per_layer += (m.dense_layers * adapter.saved_bytes_per_layer(m, rs)
                      + m.moe_layers * adapter.saved_bytes_per_layer(m, rs, moe=True)) / m.n_layers
    r, e = rs.residual.bytes, rs.compute.bytes
    rope = 2 * m.head_dim * (4 if rs.autocast else e) if m.rope is RopeKind.SHARED else 0
    final_norm = _norm(m.hidden, 1, r, e, rs.autocast, m.norm_fp32_scale).kept
    outside = 8 + rope + final_norm + (m.hidden if m.dropout > 0 else 0) + masks.outside_bytes_per_token(m, rs, s)
    if adapter:
        outside += adapter.outside_bytes_per_token(m, rs)
    per_layer += quantization.int8_inputs_per_layer(m, rs)
    layer_copies, head_copy, head_copy_saved = precision.weight_copies(m, rs)
    adapter_copies = adapter.autocast_copies(m, rs) if adapter else 0
    return ActivationBytes(per_layer, checkpointing.saved_per_layer(m, rs), outside, layer_copies, head_copy,
                           head_copy_saved, adapter_copies)
