"""TRL 1.8-1.14 SFTTrainer's default loss, `loss_type="chunked_nll"` (`--loss chunked-nll` for 1.13-1.14,
`--loss chunked-nll-fp32` for 1.8-1.12, whose chunks are projected from fp32 copies).

[trl/trainer/sft_trainer.py, TRL 1.14.0: _CHUNKED_LM_HEAD_CHUNK_SIZE l.87, _chunk l.100-118,
_chunked_cross_entropy_loss l.121-232, _patch_chunked_ce_lm_head l.235-387; the default in
trl/trainer/sft_config.py l.332-334: `"nll" if self.use_liger_kernel else "chunked_nll"`, since 1.7.0]
"""
from __future__ import annotations

from ..specs.enums import Loss
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved

CHUNK_POSITIONS = 256   # _CHUNKED_LM_HEAD_CHUNK_SIZE


def chunks(n: int) -> int:
    """Chunks the loop runs for n labelled positions: `ceil(n / 256)`, at least one (`.clamp(min=1)` since
    TRL 1.11; 1.8-1.10 returned early for an all-masked batch, which n >= 1 never is)."""
    return max(1, -(-n // CHUNK_POSITIONS))


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """Bytes of the loss for T tokens in `sequences` rows: (forward peak, saved at forward end,
    backward temporaries), as TRL runs it and the simulator counts it (profiler/trl_chunked_nll.py
    runs TRL's own function).

    `_chunked_cross_entropy_loss`: the last hidden state, shifted, is flattened (a copy when there
    is more than one row) and gathered in label order, `hidden[order]`: all P = T - sequences
    positions, labelled ones first, whatever the fraction labelled; the gathered rows, the int64
    order (kept by the gather's backward) and the gathered labels live until backward. Each chunk of
    256 rows runs under `torch.utils.checkpoint` (non-reentrant), so its forward saves nothing. TRL
    1.13-1.14 project `(h @ w.to(h.dtype).t()).float()`; TRL 1.8-1.12 `h.float() @ w.float().t()`
    (fp32 copies of the chunk and of a 16-bit lm_head, which autocast casts back to 16 bit) and
    upcast only inside `log_softmax` (autocast's fp32 list). The transposed view is no leaf, so
    autocast casts the lm_head per chunk and never caches it. Then `log_softmax` and the entropy
    `-(log_p.exp() * log_p)`. In backward each chunk is recomputed whole (the saved-tensor holders of
    the entropy branch are dead, so only the matmul's operands and log_p are kept), with the gradient
    of the gathered rows accumulating from the second chunk on; then the gather's and the shift's
    backward scatter it back to (T, h).
    """
    h, V = m.hidden, m.vocab
    x = rs.residual.bytes                        # the final norm's output, and the lm_head's dtype
    fp32_projection = rs.setup.loss is Loss.CHUNKED_NLL_FP32
    P = T - sequences
    R = min(CHUNK_POSITIONS, P)
    n_chunks = chunks(rs.setup.labelled_positions(P, sequences))
    operand = 4 if fp32_projection else x        # the matmul's operands before autocast
    up_h = R * h * 4 if fp32_projection and x != 4 else 0
    up_w = V * h * 4 if fp32_projection and x != 4 else 0
    mm = rs.compute.bytes if rs.autocast else operand    # what the matmul computes in, and returns
    cast = rs.autocast and mm != operand
    cast_h, cast_w = (R * h * mm, V * h * mm) if cast else (0, 0)
    out = R * V * mm
    mm_moment = up_h + up_w + cast_h + cast_w + out
    if fp32_projection:   # the product stays in its dtype; log_softmax's autocast copy is fp32
        upcast = 4 * R * V if mm != 4 else 0
        transient = max(out + upcast + 4 * R * V, out + 12 * R * V)
    else:                 # `.float()` of the product (itself when fp32), then log_p, exp, product
        transient = max(out + 4 * R * V if mm != 4 else 0, 16 * R * V)
    hidden = P * h * x
    saved = hidden + 2 * 8 * P
    flatten = (hidden + 8 * P) if sequences > 1 else 0   # reshape copies of the shifted rows and labels
    last_hidden = T * h * x                      # the decoder's output, held by the patched forward's `outputs`
    fwd = last_hidden + saved + max(mm_moment, transient, flatten)
    # backward: the matmul's saved operands (the weight's, and the chunk's when the head trains)
    w_saved = cast_w or up_w
    h_saved = (cast_h or up_h) if rs.full else 0
    grad_buf = hidden if n_chunks > 1 else 0
    head_grad = V * h * rs.trainable.bytes if rs.full and n_chunks > 1 else 0
    kept = grad_buf + head_grad + w_saved + h_saved
    recompute = grad_buf + head_grad + max(mm_moment, w_saved + h_saved + transient)
    backward_chunk = kept + 12 * R * V           # log_p, its gradient, log_softmax's input gradient (fp32)
    if rs.full:   # the matmul's weight gradient in its dtype, cast back to the parameter's, then accumulated
        tb = rs.trainable.bytes
        backward_chunk = max(backward_chunk, kept + out + V * h * mm + (V * h * tb if mm != tb else 0))
    scatter = 2 * hidden + (hidden if n_chunks > 1 else 0)   # the accumulated gradient, a new slice's, the gather's
    bwd = max(recompute, backward_chunk, scatter)
    return int(fwd), int(saved), int(bwd)


def note(rs: Resolved) -> str:
    versions = "1.8-1.12's (each chunk projected from fp32 copies)" if rs.setup.loss is Loss.CHUNKED_NLL_FP32 else "1.13-1.14's"
    checked = "1.12.0" if rs.setup.loss is Loss.CHUNKED_NLL_FP32 else "1.14.0"
    text = (f"TRL {versions} default loss (chunked_nll): the lm_head in checkpointed chunks of 256 positions, "
            f"checked against TRL {checked}'s own function under the simulator; memory does not depend on the "
            f"labelled fraction beyond the chunk count ({rs.setup.loss_token_fraction:.0%} of positions carry a label)")
    if rs.setup.loss is Loss.CHUNKED_NLL_FP32 and rs.autocast:
        text += ("; under autocast its log_softmax runs in fp32 (CUDA autocast's fp32 set-opt-dtype list, "
                 "ATen/autocast_mode.h), modelled from that source: the simulator's CPU autocast keeps it in 16 bit")
    return text
