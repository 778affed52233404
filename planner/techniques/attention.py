"""Attention implementations (SDPA's flash/memory-efficient kernels, flash-attn 2, HF eager):
what each saves for backward, its score FLOPs, and transformers' fallbacks."""
from __future__ import annotations

from ..specs.enums import Attention
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved


def eager_score_bytes(m: ModelSpec, e: float) -> float:
    """Bytes saved per attention score by eager attention: softmax's fp32 output, the 16-bit
    probabilities matmul(attn, v) saves and, with attention dropout, its bool mask."""
    return 4 + e + (1 if m.attention_dropout > 0 else 0)


def core_bytes(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Bytes per token saved by the attention kernel of a Llama-style layer."""
    e = rs.compute.bytes
    A, K, a = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim, m.n_heads
    if rs.setup.attention is Attention.EAGER:
        # eager_attention_forward: repeat_kv, softmax(dtype=float32) saved, its cast saved by
        # matmul(attn, v), q / k / v (k and v repeated to every head) saved.
        return a * s * eager_score_bytes(m, e) + e * (A + 2 * A)
    # flash kernels (SDPA's flash backend, flash-attn 2): q, k, v, output, fp32 logsumexp
    return e * (2 * A + 2 * K) + 4 * a


def kernel_saves(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Bytes per token the kernel saves beyond q, k, v and its output (GPT-2/NeoX layers):
    flash's logsumexp, or eager's scores."""
    a = m.n_heads
    return a * s * eager_score_bytes(m, rs.compute.bytes) if rs.setup.attention is Attention.EAGER else 4 * a


def output_copy_bytes(m: ModelSpec, rs: Resolved) -> float:
    """Eager's output, transposed and copied, is saved only by o_proj for its weight gradient
    (the flash kernels save their output themselves: counted in the core)."""
    return rs.compute.bytes * m.n_heads * m.head_dim if rs.setup.attention is Attention.EAGER else 0


def score_flops_per_token(m: ModelSpec, s: int) -> float:
    """QK^T and AV forward FLOPs per token over all layers, without the causal saving
    [PaLM, Chowdhery22 App. B: 12 L H Q T = 3 x this (forward + 2x backward)]."""
    return 4 * m.n_layers * s * m.n_heads * m.head_dim


def notes(m: ModelSpec, requested: Attention, rs: Resolved) -> list[str]:
    if rs.setup.attention is not requested:
        return [f"{m.name}: transformers has no SDPA attention for {m.model_type}; "
                f"the estimate uses the eager attention it runs instead"]
    if m.causal_mask_always and rs.setup.attention is not Attention.EAGER:
        return [f"{m.name}: the model always passes a 4-D causal mask, so CUDA's SDPA runs the memory-efficient "
                "kernel (its converted mask saved per layer); modelled from source, not simulated (the "
                "simulator runs this family's eager attention only)"]
    return []
