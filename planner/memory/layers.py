"""Bytes autograd saves for backward, derived op by op from the transformers code that runs.

Each term names the op that saves it. "dW-only" terms exist only to compute a weight gradient:
they vanish when the weight is frozen (LoRA/QLoRA base layers). The structure follows
[Korthikanti22 Sec. 4.1] (per layer, per token), the terms follow transformers 5.x
modeling_llama.py / modeling_gpt2.py / modeling_gpt_neox.py and what autograd saves for each op
(checked op by op against the simulated step, see profiler/tracker.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Attention, DType, Loss, Method, MlpKind, QuantType
from ..specs.model import LinearRole, LinearSpec, ModelSpec, RopeKind
from ..specs.params import lora_params, param_counts
from ..specs.setup import TrainingSetup


@dataclass(frozen=True)
class LayerBytes:
    """Saved bytes per token of one decoder layer."""

    kept: float       # needed whatever is trained
    dw_only: float    # needed only for weight gradients of the layer's linears

    def total(self, frozen_base: bool) -> float:
        return self.kept + (0 if frozen_base else self.dw_only)


def residual_dtype(setup: TrainingSetup) -> DType:
    """dtype of the residual stream: the embedding weights' dtype (autocast leaves embeddings alone)."""
    return setup.base_weight_dtype


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


def _base_linear_out_bytes(setup: TrainingSetup, r: float, e: float) -> float:
    """Bytes per element of a base linear's output: compute dtype, except bitsandbytes layers,
    which cast back to their input's dtype [bitsandbytes/nn/modules.py Linear4bit.forward]."""
    return r if setup.method is Method.QLORA else e


def _eager_score_bytes(m: ModelSpec, e: float) -> float:
    """Bytes saved per attention score by eager attention: softmax's fp32 output, the 16-bit
    probabilities matmul(attn, v) saves and, with attention dropout, its bool mask."""
    return 4 + e + (1 if m.attention_dropout > 0 else 0)


def _attention_core(m: ModelSpec, setup: TrainingSetup, e: float, s: int) -> float:
    """Bytes per token saved by the attention kernel."""
    A, K, a = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim, m.n_heads
    if setup.attention is Attention.EAGER:
        # eager_attention_forward: repeat_kv, softmax(dtype=float32) saved, its cast saved by
        # matmul(attn, v), q / k / v (k and v repeated to every head) saved.
        return a * s * _eager_score_bytes(m, e) + e * (A + 2 * A)
    # flash kernels (SDPA's flash backend, flash-attn 2): q, k, v, output, fp32 logsumexp
    return e * (2 * A + 2 * K) + 4 * a


def llama_layer(m: ModelSpec, setup: TrainingSetup, s: int) -> LayerBytes:
    """Llama-style decoder layer: pre-norm, gated MLP (Llama, Mistral, Qwen, Gemma, Phi-3, OLMo-2)."""
    e = setup.precision.compute_dtype.bytes
    r = residual_dtype(setup).bytes
    autocast = setup.precision.autocast
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
    attn = _attention_core(m, setup, e, s) + qk_kept
    # eager's output, transposed and copied, is saved only by o_proj for its weight gradient
    # (the flash kernels save their output themselves: counted in the core)
    o_in = e * A if setup.attention is Attention.EAGER else 0
    # gate (saved by the activation), its output and up (saved by the product). bitsandbytes'
    # Linear4bit/8bitLt return `.to(inp_dtype)`: fp32 outputs on QLoRA's fp32 residual stream
    o = _base_linear_out_bytes(setup, r, e)
    mlp_kept = 3 * o * I
    mlp_dw = o * I                # the product, saved only by down_proj for its weight gradient
    return LayerBytes(norms.kept + attn + mlp_kept, norms.dw_only + qk_dw + mlp_dw + o_in)


def plain_layer(m: ModelSpec, setup: TrainingSetup, s: int) -> LayerBytes:
    """GPT-2 / GPT-NeoX layer: LayerNorm, plain MLP with GELU, biases, dropout."""
    e = setup.precision.compute_dtype.bytes
    r = residual_dtype(setup).bytes
    autocast = setup.precision.autocast
    h, I, a = m.hidden, m.intermediate, m.n_heads
    ln_kept = r * h + 8                            # layer_norm saves its input, mean and rstd
    ln_dw = e * h if autocast and r == 4 else r * h
    # GPT-NeoX's parallel residual feeds one input to both LayerNorms: saved once (8: mean, rstd)
    lns_kept = ln_kept + 8 if m.parallel_residual else 2 * ln_kept
    # the kernel's own saves beyond q, k, v and output: flash's logsumexp, or eager's scores
    scores = a * s * _eager_score_bytes(m, e) if setup.attention is Attention.EAGER else 4 * a
    if m.rope is RopeKind.IN_ATTENTION:
        attn = 3 * e * h + 2 * e * h + e * h + scores  # qkv kept alive by v, roped q and k, output
    else:
        attn = 3 * e * h + e * h + scores          # c_attn output (q, k, v views), output
    gelu = m.act_saved_tensors * e * I             # gelu_new in python ops saves four tensors
    dropout = 2 * h if m.dropout > 0 else 0        # residual dropouts save a bool mask
    return LayerBytes(lns_kept + attn + gelu + dropout, 2 * ln_dw + e * I)


def _lora_input(setup: TrainingSetup, lin: LinearSpec) -> tuple[DType, float]:
    """(dtype of an adapted linear's input, bytes per token of that input not saved otherwise
    when the base is frozen). Inputs: a norm's output (the residual's dtype), the attention
    output (compute dtype; flash kernels save it themselves, eager's copy is o_proj's alone),
    the MLP product (the base linears' output dtype)."""
    e_dtype = setup.precision.compute_dtype
    r_dtype = residual_dtype(setup)
    if lin.role is LinearRole.INPUT:
        return r_dtype, r_dtype.bytes * lin.in_features
    if lin.block == "attn":
        return e_dtype, (e_dtype.bytes * lin.in_features if setup.attention is Attention.EAGER else 0)
    o = _base_linear_out_bytes(setup, r_dtype.bytes, e_dtype.bytes)
    return (r_dtype if o == r_dtype.bytes else e_dtype), o * lin.in_features


def lora_layer_extra(m: ModelSpec, setup: TrainingSetup, moe: bool = False) -> float:
    """Bytes per token peft's LoRA forward saves for the adapted linears of one layer.

    peft casts the input to the adapter dtype (`_cast_input_dtype`, a no-op when it already has
    it) and applies dropout (nn.Identity at 0); lora_A saves what it receives, cast again to 16
    bit under autocast (again a no-op for 16-bit inputs); lora_B saves lora_A's output; dropout
    keeps CUDA's bool mask [peft/tuners/lora/layer.py: Linear.forward]. Where no cast or dropout
    makes a new tensor, lora_A saves the input itself: adapters sharing an input (q/k/v,
    gate/up) save it once, and an input the step saves anyway costs nothing more.
    """
    targets = set(setup.lora_targets(m))
    e = setup.precision.compute_dtype
    autocast = setup.precision.autocast
    a = setup.adapter_dtype
    x = e.bytes if autocast else a.bytes      # what lora_A saves when it is a new tensor
    seen: set[object] = set()
    total = 0.0
    for lin in (m.moe_linears if moe else m.dense_linears):
        if lin.name not in targets or lin.experts > 1:
            continue
        total += x * setup.lora.r                               # lora_B's input
        in_dtype, uncounted = _lora_input(setup, lin)
        if setup.lora.dropout > 0:
            total += (x + 1) * lin.in_features                  # its own dropout output (or cast), mask
        elif in_dtype is not a or (autocast and a is not e):
            total += x * lin.in_features                        # its own cast copy
        else:
            key = lin.block if lin.role is LinearRole.INPUT else lin.name   # a block's INPUT linears share one
            if key not in seen:
                seen.add(key)
                total += uncounted
    return total


def moe_layer_extra(m: ModelSpec, setup: TrainingSetup) -> float:
    """Routed experts of one MoE layer, per token: top-k expert MLPs plus router (approximate)."""
    e = setup.precision.compute_dtype.bytes
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


def activation_bytes(m: ModelSpec, setup: TrainingSetup) -> ActivationBytes:
    s = setup.seq_len
    frozen = setup.peft
    layer = (plain_layer if m.mlp_kind is MlpKind.PLAIN else llama_layer)(m, setup, s)
    per_layer = layer.total(frozen)
    if m.moe_layers:   # MoE layers replace the dense MLP by routed experts
        dense_mlp = 4 * setup.precision.compute_dtype.bytes * m.intermediate
        moe = per_layer - dense_mlp + moe_layer_extra(m, setup)
        per_layer = (m.dense_layers * per_layer + m.moe_layers * moe) / m.n_layers
    if frozen:
        per_layer += (m.dense_layers * lora_layer_extra(m, setup)
                      + m.moe_layers * lora_layer_extra(m, setup, moe=True)) / m.n_layers
    r = residual_dtype(setup).bytes
    e = setup.precision.compute_dtype.bytes
    rope = 2 * m.head_dim * (4 if setup.precision.autocast else e) if m.rope is RopeKind.SHARED else 0
    final_norm = _norm(m.hidden, 1, r, e, setup.precision.autocast, m.norm_fp32_scale).kept
    outside = 8 + rope + final_norm + (m.hidden if m.dropout > 0 else 0)
    int8 = _int8_inputs(m, setup)
    per_layer += int8
    layer_copies, head_copy, head_copy_saved = _weight_copies(m, setup)
    adapter_copies = 0
    if setup.peft and setup.precision.autocast and setup.adapter_dtype.bytes > e:
        # trainable leaves: autocast caches their casts until it exits [autocast_mode.cpp cached_cast]
        adapter_copies = int(e * lora_params(m, setup))
    return ActivationBytes(per_layer, r * m.hidden + int8, outside, layer_copies, head_copy, head_copy_saved,
                           adapter_copies)


def _int8_inputs(m: ModelSpec, setup: TrainingSetup) -> float:
    """Bytes per token and layer that 8-bit LoRA keeps beyond the ledger above: bitsandbytes'
    MatMul8bitLt keeps each int8 linear's input on `ctx.tensors`, not through save_for_backward,
    so checkpointing does not drop it [bitsandbytes/autograd/_functions.py MatMul8bitLt.forward].

    The distinct inputs of a layer: the two norm outputs (q/k/v and gate/up share theirs), the
    attention output (o_proj) and the MLP product (down_proj); in the linears' input dtype.
    """
    if setup.method is not Method.QLORA or setup.quant.quant_type is not QuantType.INT8:
        return 0.0
    e = setup.precision.compute_dtype.bytes
    r = residual_dtype(setup).bytes
    o = _base_linear_out_bytes(setup, r, e)
    return 2 * r * m.hidden + e * m.n_heads * m.head_dim + o * m.intermediate


def _weight_copies(m: ModelSpec, setup: TrainingSetup) -> tuple[int, int, int]:
    """(all decoder layers, lm_head through the forward, lm_head kept for backward): bytes of the
    16-bit copies autocast makes of fp32 weights.

    Trainable weights are cached by autocast until it exits [aten/src/ATen/autocast_mode.cpp:
    cached_cast caches leaves that require grad]; frozen fp32 weights are cast per use and saved by
    the matmul for the input gradient. QLoRA's quantized linears are not cast by autocast, but
    its lm_head is: prepare_model_for_kbit_training upcast it to fp32 [peft/utils/other.py].
    The chunked loss's matmuls run inside its autograd Function's forward, which saves no copy:
    only a trainable lm_head's cached copy remains, until autocast exits.
    """
    if not setup.precision.autocast or setup.base_weight_dtype is not DType.FP32:
        return 0, 0, 0
    e = setup.precision.compute_dtype.bytes
    head = int(e * m.vocab * m.hidden)
    head_live, head_saved = head, head
    if setup.loss is Loss.CHUNKED:
        head_live, head_saved = (head if setup.method is Method.FULL else 0), 0
    if setup.method is Method.QLORA:
        return 0, head_live, head_saved
    pc = param_counts(m)
    linear = pc.attention + pc.mlp - m.n_layers * m.qk_norm_size
    return int(e * linear), head_live, head_saved
