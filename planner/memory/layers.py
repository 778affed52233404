"""Bytes autograd saves for backward, derived op by op from the transformers code that runs.

Each term names the op that saves it. "dW-only" terms exist only to compute a weight gradient:
they vanish when the weight is frozen (LoRA/QLoRA base layers). The structure follows
[Korthikanti22 Sec. 4.1] (per layer, per token), the terms follow transformers 5.x
modeling_llama.py / modeling_gpt2.py / modeling_gpt_neox.py and what autograd saves for each op
(checked op by op against the simulated step, see profiler/tracker.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..specs.enums import Attention, MlpKind, NormKind
from ..specs.model import LinearRole, ModelSpec, RopeKind
from ..specs.resolved import AdapterKind, Resolved
from ..techniques import ADAPTERS, attention, checkpointing, liger, masks, moe_lora, precision, quantization, tiled_mlp
from ..techniques import compile as compiled   # torch.compile's saved set
from ..techniques import lora, outer   # the head's saved inputs (head_side)
from ..techniques import fp8   # torchao float8: no autocast copies of converted linears


@dataclass(frozen=True)
class LayerBytes:
    """Saved bytes per token of one decoder layer."""

    kept: float       # needed whatever is trained
    dw_only: float    # needed only for weight gradients of the layer's linears

    def total(self, frozen_base: bool) -> float:
        return self.kept + (0 if frozen_base else self.dw_only)


def _norm(h: int, consumers: int, r: float, e: float, autocast: bool, fp32_scale: bool,
          liger_kernel: bool = False) -> LayerBytes:
    """RMSNorm followed by `consumers` linears [LlamaRMSNorm.forward; GemmaRMSNorm.forward].

    `x * rsqrt(var)` saves x for the input gradient. The normalized tensor is saved by the
    weight-mul only for the norm weight's gradient, and the output by the linears only for theirs:
    both are dW-only (LoRA and QLoRA freeze norms and base linears alike).
    """
    if liger_kernel:          # LigerRMSNorm: its input and output only (techniques/liger.py)
        return LayerBytes(*liger.norm_bytes(h, consumers, r, e, autocast))
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
        lk = liger.patched(rs, "rms_norm")
        n1 = _norm(h, attn_in, r, e, autocast, fp32_scale, lk)
        n2 = _norm(h, mlp_in, r, e, autocast, fp32_scale, lk)
        norms = LayerBytes(n1.kept + n2.kept, n1.dw_only + n2.dw_only)
        if m.norms_per_layer == 4 and lk:   # Liger on the sublayer outputs: o_proj's and down_proj's
            post = [liger.sublayer_norm_bytes(h, x) for x in (e, quantization.base_linear_out_bytes(rs))]
            norms = LayerBytes(norms.kept + sum(p[0] for p in post), norms.dw_only + sum(p[1] for p in post))
        elif m.norms_per_layer == 4:  # Gemma-2/3 post-attention and post-feedforward norms on the
            # sublayer outputs: their fp32 copy is kept, the normalized fp32 tensor only for dW
            norms = LayerBytes(norms.kept + 2 * 4 * h, norms.dw_only + 2 * 4 * h)
    qk_kept = qk_dw = 0.0
    if liger.patches_qk_norm(m, rs):
        qk_kept, qk_dw = liger.qk_norm_bytes(A + K, quantization.base_linear_out_bytes(rs))
    elif m.qk_norm_size:          # q_norm / k_norm on 16-bit projections: the fp32 copy is kept,
        qk_kept = 4 * (A + K)     # the normalized tensor is saved only for the norm weights' dW
        qk_dw = (4 if fp32_scale else e) * (A + K)
    # layers given a mask (padding, packing, a sliding window past it) run SDPA's memory-efficient kernel
    attn = masks.layer_mix(m, rs, s, attention.core_bytes(m, rs, s), masks.efficient_core_bytes(m, rs, s)) + qk_kept
    o_in = attention.output_copy_bytes(m, rs) + masks.flash_padded_output_bytes(m, rs)
    # gate (saved by the activation), its output and up (saved by the product). bitsandbytes'
    # Linear4bit/8bitLt return `.to(inp_dtype)`: fp32 outputs on QLoRA's fp32 residual stream
    o = quantization.base_linear_out_bytes(rs)
    mlp_kept = liger.glu_saved_tensors(rs) * o * I   # 3; Liger's SiLUMul/GELUMul: gate and up only
    mlp_dw = o * I                # the product, saved only by down_proj for its weight gradient
    return LayerBytes(norms.kept + attn + mlp_kept, norms.dw_only + qk_dw + mlp_dw + o_in)


def mlp_backward_bytes(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token live at the peak of a recomputed layer's MLP backward beyond the saved tensors the
    layer's ledger counts (the last layer's, under checkpointing).

    Llama's eager gated MLP, `down_proj(act_fn(gate_proj(x)) * up_proj(x))` [transformers 5.24
    modeling_llama.py LlamaMLP.forward l.164], peaks in MulBackward: the product's gradient (down_proj's input
    gradient) and the gradients of act_fn(gate) and up, beside the layer output's gradient (the residual
    dtype). The three are in the base linears' output dtype [techniques/quantization.py base_linear_out_bytes]:
    fp32 for bitsandbytes' Linear4bit on QLoRA's fp32 residual, which returns `matmul_4bit(x.to(compute_dtype),
    ...).to(inp_dtype)` [bitsandbytes 0.50.2 nn/modules.py Linear4bit.forward l.626-637], so the backward of
    that cast hands fp32 gradients on (MatMul4Bit.backward's own grad_A is in the 16-bit grad_output's dtype,
    autograd/_functions.py l.384). Released by then, and so taken off: what down_proj saved (its adapter's
    inputs, its dW-only input), its backward having run (MatMul4Bit keeps only the packed weight, on
    `ctx.tensors`, l.358); and the layer input, where the recomputed first norm saves it as itself
    (`hidden_states.to(torch.float32)` of an fp32 residual is a no-op, LlamaRMSNorm.forward l.64), it being
    the checkpoint's saved input, already counted. Checked tensor by tensor against the simulated step's live
    set at that point (profiler/tracker.py). Other MLPs (plain, fused gate_up, Liger's SiLUMul, MoE experts,
    compiled): two intermediate-sized gradients and two residual-sized ones, in the same output dtype."""
    r, h, I = rs.residual.bytes, m.hidden, m.intermediate
    o = quantization.base_linear_out_bytes(rs)
    if not _eager_gated_mlp(m, rs):
        return 2 * r * h + 2 * o * I
    outs = tuple(lin.name for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.OUTPUT)
    out_saved = o * I if rs.full else 0.0       # a trained down_proj's dW-only input (llama_layer's mlp_dw)
    adapter = ADAPTERS[rs.adapters.kind] if rs.adapters else None
    if adapter and set(outs) & set(rs.adapters.targets):   # its adapter's saved inputs, alone
        only = replace(rs, adapters=replace(rs.adapters, targets=outs))
        out_saved += adapter.saved_bytes_per_layer(m, only)
    reused = r * h if (r == 4 and not m.post_norm and not liger.patched(rs, "rms_norm")) else 0
    return r * h + 3 * o * I - out_saved - reused


def _eager_gated_mlp(m: ModelSpec, rs: Resolved) -> bool:
    """The MLP is llama_layer's eager `act_fn(gate) * up` on separate gate and up projections."""
    mlp_in = sum(1 for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.INPUT)
    return (_layer_kind(m) is llama_layer and mlp_in == 2 and not m.moe_layers and liger.glu_saved_tensors(rs) == 3
            and not compiled.active(rs) and not tiled_mlp.enabled(rs))


def mlp_output_copy(m: ModelSpec, rs: Resolved, layer_copies: int) -> int:
    """Bytes of autocast's copy of one layer's MLP output projection (down_proj), among `layer_copies`
    (all layers'): saved by its matmul for the input gradient, released once its backward has run, before
    the MLP backward's peak [mlp_backward_bytes]."""
    if not layer_copies or not _eager_gated_mlp(m, rs) or fp8.active(rs.setup):
        return 0
    return int(rs.compute.bytes * sum(lin.weight_count for lin in m.dense_linears
                                      if lin.block == "mlp" and lin.role is LinearRole.OUTPUT))


def plain_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """GPT-2 / GPT-NeoX layer: LayerNorm, plain MLP with GELU, biases, dropout."""
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    ln_kept = r * h + 8                            # layer_norm saves its input, mean and rstd
    ln_dw = e * h if autocast and r == 4 else r * h
    # GPT-NeoX's parallel residual feeds one input to both LayerNorms: saved once (8: mean, rstd)
    lns_kept = ln_kept + 8 if m.parallel_residual else 2 * ln_kept
    scores = masks.layer_mix(m, rs, s, attention.kernel_saves(m, rs, s), masks.efficient_kernel_saves(m, rs, s))
    # the fused q/k/v projection's width: 3 h, or h + 2 head_dim for StarCoder's multi-query c_attn
    qkv = sum(lin.out_features for lin in m.dense_linears if lin.block == "attn" and lin.role is LinearRole.INPUT)
    if m.rope is RopeKind.IN_ATTENTION:
        attn = e * qkv + 2 * e * h + e * h + scores  # qkv kept alive by v, roped q and k, output
    else:
        attn = e * qkv + e * h + scores            # c_attn output (q, k, v views), output
    gelu = m.act_saved_tensors * e * I             # gelu_new in python ops saves four tensors
    dropout = 2 * h if m.dropout > 0 else 0        # residual dropouts save a bool mask
    return LayerBytes(lns_kept + attn + gelu + dropout, 2 * ln_dw + e * I)


def shared_norm_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """Attention and MLP in parallel on one LayerNorm's output (Phi: PhiDecoderLayer.forward,
    `attn_outputs + resid_dropout(mlp(hidden_states)) + residual`).

    layer_norm saves its input, mean and rstd; its output is saved by every INPUT linear for its
    weight gradient (once, or one 16-bit cast per linear under autocast on an fp32 residual). The
    attention is Llama's (rope on views, the roped q/k copies and v saved by the kernel); the MLP
    is GPT-2's (fc1, gelu_new's python ops, fc2's input); each residual dropout keeps a bool mask.
    """
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    consumers = sum(1 for lin in m.dense_linears if lin.role is LinearRole.INPUT)
    ln_kept = r * h + 8
    ln_dw = consumers * e * h if autocast and r == 4 else r * h
    attn = attention.core_bytes(m, rs, s)
    o_in = attention.output_copy_bytes(m, rs)
    o = quantization.base_linear_out_bytes(rs)      # fc1's output dtype (fp32 from bnb on QLoRA)
    gelu = m.act_saved_tensors * o * I
    dropout = 2 * h if m.dropout > 0 else 0
    return LayerBytes(ln_kept + attn + gelu + dropout, ln_dw + o * I + o_in)


def expanded_kv_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """Falcon-40B/180B (new_decoder_architecture) [modeling_falcon.py FalconDecoderLayer, FalconAttention].

    ln_attn and ln_mlp read the same input (saved once, each with its mean and rstd; one shared
    LayerNorm when num_ln_in_parallel_attn is 1). `_split_heads` copies q, and k and v broadcast to
    every query head (`broadcast_to` + `flatten`); rope makes new q and k; the copied v is saved.
    SDPA is called directly with the 4-D causal mask Falcon always builds, so CUDA takes the
    memory-efficient kernel: it saves q, k, v, its output, the fp32 logsumexp padded to 32
    queries, and the additive mask it converts from the bool mask in the query dtype
    [aten/src/ATen/native/transformers/attention.cpp: convert_boolean_attn_mask, preprocess_mask].
    Eager saves q and k (scores matmul), softmax's output in the norm output's dtype
    (`dtype=hidden_states.dtype`), its 16-bit cast under autocast, and v. The MLP is dense_h_to_4h,
    GELU (its input saved), dense_4h_to_h (its input saved for dW).
    """
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I, a = m.hidden, m.intermediate, m.n_heads
    A = a * m.head_dim
    n_ln = m.norms_per_layer
    ln_kept = r * h + 8 * n_ln
    ln_out = 4 if (autocast and r == 4) else r          # layer_norm runs in fp32 under autocast
    ln_dw = n_ln * (e * h if autocast and r == 4 else r * h)
    if rs.setup.attention is Attention.EAGER:
        probs = a * s * (ln_out + (e if autocast and ln_out != e else 0))
        attn = 3 * e * A + probs
        o_in = e * A                                  # permute + reshape of probs @ v: a copy, dW only
    elif rs.setup.attention is Attention.FLASH:      # FalconFlashAttention2: flash-attn 2, no mask
        attn, o_in = 4 * e * A + 4 * a, 0
    else:
        lse = 4 * a * (-(-s // 32) * 32) / s
        attn = 4 * e * A + lse + e * s                # q, k, v, output, logsumexp, converted mask
        o_in = 0                                      # the kernel's (b, s, a, d) output, reshaped as is
    o = quantization.base_linear_out_bytes(rs)
    gelu = m.act_saved_tensors * o * I
    dropout = h if m.dropout > 0 else 0               # dropout_add on the summed branches
    return LayerBytes(ln_kept + attn + gelu + dropout, ln_dw + o * I + o_in)


def mla_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """DeepSeek-V2/V3 decoder layer with multi-head latent attention [modeling_deepseek_v2.py
    DeepseekV2Attention.forward, expand_kv; modeling_deepseek_v3.py likewise].

    The input RMSNorm feeds q_proj (or q_a_proj) and kv_a_proj_with_mqa. q_a_layernorm and
    kv_a_layernorm normalize 16-bit latents (their fp32 copy kept; normalized tensor and output
    saved only for dW). rope works on views and copies (only the shared tables are saved); the
    query is a `cat`, the key a new tensor filled by `copy_`, the value a view of kv_b_proj's output
    (which it keeps alive). With q/k head dim (nope + rope) unlike v_head_dim, CUDA's SDPA cannot
    use flash and runs the memory-efficient kernel: q, k, v, output (v_head_dim), fp32 logsumexp
    padded to 32 queries. Eager saves q, k, v, softmax's fp32 output and its 16-bit copy, and its
    transposed output copy for o_proj's dW. The MLP is Llama's gated one.
    """
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I, a = m.hidden, m.intermediate, m.n_heads
    qk, vd, nope, kvr, qr = m.head_dim, m.v_head_dim, m.qk_nope_head_dim, m.kv_lora_rank, m.q_lora_rank
    reads_h = sum(1 for lin in m.dense_linears if lin.block == "attn" and lin.in_features == h)
    mlp_in = sum(1 for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.INPUT)
    n1, n2 = _norm(h, reads_h, r, e, autocast, False), _norm(h, mlp_in, r, e, autocast, False)
    latents = [_norm(kvr, 1, e, e, autocast, False)] + ([_norm(qr, 1, e, e, autocast, False)] if qr else [])
    kept = n1.kept + n2.kept + sum(n.kept for n in latents)
    dw = n1.dw_only + n2.dw_only + sum(n.dw_only for n in latents)
    kv_b_out = e * a * (nope + vd)                    # kept alive by the value view
    if rs.setup.attention is Attention.EAGER:
        attn = e * a * 2 * qk + kv_b_out + a * s * attention.eager_score_bytes(m, e)
        o_in = e * a * vd
    else:
        lse = 4 * a * (-(-s // 32) * 32) / s
        attn = e * a * (2 * qk + vd) + kv_b_out + lse
        o_in = 0
    o = quantization.base_linear_out_bytes(rs)
    return LayerBytes(kept + attn + 3 * o * I, dw + o * I + o_in)


def layernorm_rope_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """StarCoder2 [modeling_starcoder2.py Starcoder2DecoderLayer], StableLM [modeling_stablelm.py
    StableLmDecoderLayer, sequential residual]: LayerNorm, separate q/k/v with the shared rope
    tables (Llama's attention; StableLM ropes a slice and concatenates), o_proj, LayerNorm, the MLP
    (GELU c_fc/c_proj, or StableLM's gated gate/up/down), in sequence.

    Each layer_norm saves its input, mean and rstd; its output is saved by the linears reading it
    for their weight gradients (one 16-bit cast each under autocast on an fp32 residual). The GELU
    saves its input, c_proj its output; each residual dropout keeps a bool mask.
    """
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    attn_in = sum(1 for lin in m.dense_linears if lin.block == "attn" and lin.role is LinearRole.INPUT)
    mlp_in = sum(1 for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.INPUT)
    cast = autocast and r == 4
    lns_kept = 2 * (r * h + 8)
    lns_dw = (attn_in + mlp_in) * e * h if cast else 2 * r * h
    attn = attention.core_bytes(m, rs, s)
    o_in = attention.output_copy_bytes(m, rs)
    o = quantization.base_linear_out_bytes(rs)
    # GELU (StarCoder2): its saved input; gated (StableLM): gate saved by the activation, its
    # output and up by the product, as in Llama
    mlp = (3 if m.mlp_kind is MlpKind.GATED else m.act_saved_tensors) * o * I
    dropout = m.dropouts_per_layer * h if m.dropout > 0 else 0
    return LayerBytes(lns_kept + attn + mlp + dropout, lns_dw + o * I + o_in)


def parallel_gated_layer(m: ModelSpec, rs: Resolved, s: int) -> LayerBytes:
    """Cohere / Command-R [modeling_cohere.py CohereDecoderLayer]: one CohereLayerNorm whose output
    feeds attention and Llama's gated MLP in parallel (`residual + attn + mlp`), no biases.

    CohereLayerNorm is written in python ops in fp32: `x.float()` (a copy of a 16-bit input, saved
    by nothing), the centred `x - mean` (fp32, saved by pow and the rsqrt product) and the fp32 rsqrt
    are kept; the normalized tensor is saved by the weight product only for the weight's gradient.
    Its output (back in the input dtype) is saved once by the five INPUT linears for their weight
    gradients (one 16-bit cast each under autocast on an fp32 residual). Rope runs on fp32 copies
    of q and k (`apply_rotary_pos_emb`: q.float(), k.float()) multiplied by the shared cos/sin, which
    is all those products save; the kernel saves the roped 16-bit copies as in Llama."""
    e, r, autocast = rs.compute.bytes, rs.residual.bytes, rs.autocast
    h, I = m.hidden, m.intermediate
    consumers = sum(1 for lin in m.dense_linears if lin.role is LinearRole.INPUT)
    ln_kept = 8 * h + 4                        # `x - mean` twice (pow and the rsqrt product), rsqrt; fp32
    ln_dw = 4 * h + (consumers * e * h if autocast and r == 4 else r * h)
    attn = masks.layer_mix(m, rs, s, attention.core_bytes(m, rs, s), masks.efficient_core_bytes(m, rs, s))
    o_in = attention.output_copy_bytes(m, rs)
    o = quantization.base_linear_out_bytes(rs)
    mlp_kept = 3 * o * I                       # gate (the activation's input), its output and up (the product)
    return LayerBytes(ln_kept + attn + mlp_kept, ln_dw + o * I + o_in)


def _untracked_first_layer(m: ModelSpec, rs: Resolved) -> float:
    """Per token, what the first parallel (Cohere) layer does not save when nothing before it needs
    a gradient: with LoRA on a frozen base, no checkpointing (which makes peft call
    enable_input_require_grads) and nothing trained in the embedding, layer 0's input requires no
    grad, so autograd records neither its LayerNorm nor, when no MLP linear carries an adapter,
    its MLP (it reads the norm output directly, not the adapted attention as a sequential layer's
    MLP does). Measured in the simulated step's per-module table."""
    ad = rs.adapters
    if not (m.shared_norm and m.mlp_kind is MlpKind.GATED) or ad is None or ad.kind is not AdapterKind.LORA \
            or checkpointing.enabled(rs) or "embedding" in ad.embedding_lora + ad.saved_copies:
        return 0.0
    mlp_adapted = any(lin.block == "mlp" and lin.name in ad.targets for lin in m.dense_linears)
    o = quantization.base_linear_out_bytes(rs)
    return 8 * m.hidden + 4 + (0 if mlp_adapted else 3 * o * m.intermediate)


def moe_layer_extra_4x(m: ModelSpec, rs: Resolved) -> float:
    """QLoRA's MoE layers, estimated in the transformers-4 layout (quantized per-expert linears,
    techniques/quantization.py moe_fused_experts_note): top-k expert MLPs plus router, approximate."""
    e = rs.compute.bytes
    return m.top_k * (4 * e * m.moe_intermediate + 2 * e * m.hidden) + 8 * m.n_experts


def moe_layer_extra(m: ModelSpec, rs: Resolved) -> float:
    """Router and routed experts of one MoE layer, per token [transformers 5.24 integrations/moe.py
    grouped_mm_experts_forward; models/qwen3_moe/modeling_qwen3_moe.py Qwen3MoeTopKRouter.forward].

    Router: softmax's fp32 output (E), topk's int64 indices (k), and with norm_topk_prob the
    division's fp32 sum and quotient (1 + k). Per routed token (k per token), in the experts'
    16-bit weight dtype (`_grouped_mm` casts its input to it; torch._grouped_mm takes bf16 only, so
    fp32 experts, as QLoRA's upcast leaves them, fail in transformers 5; QLoRA is estimated in the
    transformers-4 layout, quantized experts computing in the compute dtype): the
    gate_up output (2I, kept by the activation through its gate view), the activation's output
    (I), the down output (H, saved by the routing-weight product) and that weight, and three int64
    index tensors (`perm // top_k`, `perm`, `inv_perm`). Trained experts (full fine-tuning) also
    save their grouped matmuls' inputs for the weight gradient: the gathered hidden states (H) and
    the gated product (I); LoRA on the experts adds those in techniques/moe_lora.py."""
    w = rs.compute.bytes
    k, I, h = m.top_k, m.moe_intermediate, m.hidden
    router = 4 * m.n_experts + 8 * k + (4 + 4 * k if m.moe_norm_topk else 0)
    routed = 3 * w * I + w * h + w + 3 * 8 + (w * (h + I) if rs.full else 0)
    return router + k * routed


@dataclass(frozen=True)
class ActivationBytes:
    per_layer: float          # bytes per token saved by one (average) layer, no checkpointing
    ckpt_per_layer: float     # with checkpointing: the layer's saved input
    outside: float            # per token: input ids, RoPE tables, final norm
    layer_copies: int         # autocast's 16-bit copies of the decoder layers' fp32 weights (all layers)
    head_copy: int            # autocast's 16-bit copy of an fp32 lm_head, alive to the forward's end
    head_copy_saved: int      # the part of it kept for backward (saved by the lm_head's matmul)
    adapter_copies: int = 0   # autocast's cached 16-bit copies of fp32 LoRA adapters (all layers)
    expert_backward: int = 0  # one MoE layer's backward beyond its merged expert weights (techniques/moe_lora.py)
    moe_per_layer: float = 0.0   # bytes per token saved by one MoE layer (0: no MoE layers)
    mlp_backward: float = 0.0    # per token, the recomputed layer's MLP backward beyond its saved set (mlp_backward_bytes)
    mlp_out_copy: int = 0        # autocast's copy of one layer's down_proj, released before that peak
    head_side: float = 0.0       # per token, the part of `outside` the head's and final norm's backward release


def _layer_kind(m: ModelSpec):
    """The layer formula of `m`'s family."""
    return (mla_layer if m.kv_lora_rank else expanded_kv_layer if m.expand_kv else
            parallel_gated_layer if m.shared_norm and m.mlp_kind is MlpKind.GATED else shared_norm_layer if m.shared_norm else
            layernorm_rope_layer if m.norm_kind is NormKind.LAYER and m.rope is RopeKind.SHARED else
            plain_layer if m.mlp_kind is MlpKind.PLAIN else llama_layer)


def activation_bytes(m: ModelSpec, rs: Resolved) -> ActivationBytes:
    """Saved bytes per token, and autocast's weight copies, of the model under `rs`."""
    s = rs.setup.seq_len
    frozen = not rs.full
    liger.check(m, rs.setup.liger)
    layer = _layer_kind(m)(m, rs, s)
    per_layer = layer.total(frozen)
    per_layer -= _untracked_first_layer(m, rs) / m.n_layers
    moe = 0.0
    if m.moe_layers:   # MoE layers replace the dense MLP by routed experts
        # the dense gated MLP the layer formula charged: gate, its activation and up (kept), down's input (dW)
        o = quantization.base_linear_out_bytes(rs)
        dense_mlp = (liger.glu_saved_tensors(rs) * o + (0 if frozen else o)) * m.intermediate
        moe = per_layer - dense_mlp + moe_layer_extra(m, rs)
        if rs.quantized is not None:   # transformers 5 cannot run it (fp32 experts); the 4.x estimate
            moe = per_layer - 4 * rs.compute.bytes * m.intermediate + moe_layer_extra_4x(m, rs)
        if m.shared_expert_intermediate:   # DeepSeek's shared experts: Llama's gated MLP on every token
            o = quantization.base_linear_out_bytes(rs)
            moe += (3 * o + (0 if frozen else o)) * m.shared_expert_intermediate
        per_layer = (m.dense_layers * per_layer + m.moe_layers * moe) / m.n_layers
    adapter = ADAPTERS[rs.adapters.kind] if rs.adapters else None
    if adapter:
        per_layer += (m.dense_layers * adapter.saved_bytes_per_layer(m, rs)
                      + m.moe_layers * adapter.saved_bytes_per_layer(m, rs, moe=True)) / m.n_layers
        moe += adapter.saved_bytes_per_layer(m, rs, moe=True) if m.moe_layers else 0
    r, e = rs.residual.bytes, rs.compute.bytes
    rope = 2 * (m.rope_dim or m.head_dim) * (4 if rs.autocast else e) if m.rope is RopeKind.SHARED else 0
    final_norm = _norm(m.hidden, 1, r, e, rs.autocast, m.norm_fp32_scale, liger.patched(rs, "rms_norm")).kept
    if m.norm_kind is NormKind.LAYER_NO_BIAS:   # CohereLayerNorm: `x - mean` twice and rsqrt (parallel_gated_layer)
        final_norm = 8 * m.hidden + 4
    embed_dropout = m.dropout if m.embed_dropout is None else m.embed_dropout
    outside = 8 + rope + final_norm + (m.hidden if embed_dropout > 0 else 0) + masks.outside_bytes_per_token(m, rs, s)
    if m.causal_mask_always:   # Falcon's (b, 1, s, s) mask: bool for SDPA, additive in the embeddings' dtype for eager
        outside += s * (r if rs.setup.attention is Attention.EAGER else 1)
    if adapter:
        outside += adapter.outside_bytes_per_token(m, rs)
    # released by the backward of the head and the final norm, before any layer's: their saved inputs
    head_side = final_norm + (outer.head_saved_bytes_per_token(m, rs) if adapter is lora else 0.0)
    per_layer += quantization.int8_inputs_per_layer(m, rs)
    if compiled.active(rs):   # the min-cut partitioner's cut replaces eager's saved tensors
        compiled.check(m, rs.setup, rs)
        per_layer, outside = compiled.layer_bytes(m, rs, s), compiled.outside_bytes(m, rs)
        head_side = 0.0
    if tiled_mlp.enabled(rs):   # the MLP saves only its input [techniques/tiled_mlp.py]
        tiled_mlp.check(m, rs)
        per_layer += tiled_mlp.saved_delta(m, rs)
    layer_copies, head_copy, head_copy_saved = precision.weight_copies(m, rs)
    layer_copies += moe_lora.merged_bytes(m, rs)   # peft's merged expert / router weights, saved per MoE layer
    if fp8.active(rs.setup):
        fp8.check(m, rs)
        layer_copies, head_copy, head_copy_saved = fp8.weight_copies(m, rs, layer_copies, head_copy, head_copy_saved)
    adapter_copies = adapter.autocast_copies(m, rs) if adapter else 0
    return ActivationBytes(per_layer, checkpointing.saved_per_layer(m, rs), outside, layer_copies, head_copy,
                           head_copy_saved, adapter_copies, moe_lora.backward_extra_bytes(m, rs), moe,
                           mlp_backward_bytes(m, rs), mlp_output_copy(m, rs, layer_copies), head_side)
