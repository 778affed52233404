"""The loss: transformers' ForCausalLMLoss over full fp32 logits, or a chunked fused linear
cross-entropy (Liger, Unsloth, torchtune) that never builds them."""
from __future__ import annotations

from ..specs.enums import Loss
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved


def loss_bytes(m: ModelSpec, rs: Resolved, T: int) -> tuple[int, int, int]:
    """Bytes of the loss for T tokens: (forward peak, saved at forward end, backward temporaries).

    transformers ForCausalLMLoss: the 16-bit logits, `logits.float()` (a copy unless already fp32),
    log_softmax's fp32 output (saved); backward: the fp32 gradient of log_softmax's output and of
    its input [transformers/loss/loss_utils.py; aten log_softmax_backward_data].
    """
    V, e = m.vocab, rs.compute.bytes
    if rs.setup.loss is Loss.CHUNKED:
        return fused_linear_cross_entropy(m, rs, T)
    upcast = 4 * V if e < 4 else 0
    softcap = 2 * e * V if m.final_logit_softcap else 0   # Gemma-2: tanh saved, div/mul transients
    fwd = e * V + upcast + 4 * V + softcap
    saved = 4 * V + (e * V if m.final_logit_softcap else 0)
    return int(T * fwd), int(T * saved), int(T * 8 * V)


def fused_linear_cross_entropy(m: ModelSpec, rs: Resolved, T: int) -> tuple[int, int, int]:
    """Liger's fused linear cross-entropy [liger_kernel/ops/fused_linear_cross_entropy.py; simulated
    by profiler/chunked_loss.py]: gradients computed in the forward, chunk by chunk of
    `rows` ~ T*h/V tokens (a power of two), so the (T, V) logits never exist.

    Forward: the input gradient (T, h) and, when the lm_head trains, its weight gradient (V, h),
    both kept for backward; per chunk the 16-bit logits (rows, V) and, where `@` casts (autocast,
    mixed dtypes), two (rows, h) temporaries and a transient 16-bit copy of a frozen fp32 lm_head.
    """
    h, V, e = m.hidden, m.vocab, rs.compute.bytes
    x = rs.residual.bytes           # the final norm's output: the residual stream's dtype
    w = rs.residual.bytes           # the lm_head's: the embedding-side weights' dtype
    inc = -(-V // h)
    rows = min(1 << (max(-(-T // inc), 1) - 1).bit_length(), T)
    autocast = rs.autocast
    mm_out = x == w and (not autocast or x == e)
    grad_x, loss_1d = T * h * x, 4 * T
    grad_w = V * h * w if rs.full else 0
    chunk = rows * V * (x if mm_out else e)
    temps = 0 if mm_out else 2 * rows * h * e
    cast = V * h * e if (autocast and w > e and not rs.full) else 0   # not cached: frozen
    return grad_x + loss_1d + grad_w + chunk + temps + cast, grad_x + grad_w, 0


def notes(rs: Resolved) -> list[str]:
    if rs.setup.loss is Loss.CHUNKED:
        return ["chunked loss modelled after Liger's fused linear cross-entropy (not simulated)"]
    return []
