"""TRL 1.13-1.14 SFTTrainer's default loss, `loss_type="chunked_nll"` (`--loss chunked-nll`).

[trl/trainer/sft_trainer.py, TRL 1.14.0: _CHUNKED_LM_HEAD_CHUNK_SIZE l.87, _chunk l.100-118,
_chunked_cross_entropy_loss l.121-232, _patch_chunked_ce_lm_head l.235-387; the default in
trl/trainer/sft_config.py l.332-334: `"nll" if self.use_liger_kernel else "chunked_nll"`, since 1.7.0]
"""
from __future__ import annotations

import math

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved

CHUNK_POSITIONS = 256   # _CHUNKED_LM_HEAD_CHUNK_SIZE


def labelled_positions(T: int, sequences: int, fraction: float) -> int:
    """Positions whose shifted label is not -100: `fraction` of the T - sequences shifted positions."""
    return max(1, math.ceil(fraction * (T - sequences)))


def chunks(n: int) -> int:
    """Chunks the loop runs: `ceil(n / 256)`, at least one (`.clamp(min=1)`, TRL >= 1.12)."""
    return max(1, -(-n // CHUNK_POSITIONS))


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """Bytes of the loss for T tokens in `sequences` rows: (forward peak, saved at forward end,
    backward temporaries), as TRL 1.13-1.14 runs it and the simulator counts it
    (profiler/trl_chunked_nll.py runs TRL's own function).

    `_chunked_cross_entropy_loss`: the last hidden state, shifted, is flattened (a copy when there
    is more than one row) and gathered in label order, `hidden[order]`: all P = T - sequences
    positions, labelled ones first, whatever the fraction labelled; the gathered rows, the int64
    order (kept by the gather's backward) and the gathered labels live until backward. Each chunk of
    256 rows runs under `torch.utils.checkpoint` (non-reentrant), so its forward saves nothing:
    `(h @ w.to(h.dtype).t()).float()` (the transposed view is no leaf, so autocast casts the lm_head
    per chunk and never caches it), `log_softmax`, then the entropy `-(log_p.exp() * log_p)`: four
    fp32 (rows, V) tensors at once. In backward each chunk is recomputed whole (the saved-tensor
    holders of the entropy branch are dead, so only the matmul's inputs and log_p are kept), with
    the gradient of the gathered rows accumulating from the second chunk on; then the gather's and
    the shift's backward scatter it back to (T, h).
    """
    h, V = m.hidden, m.vocab
    x = rs.residual.bytes                        # the final norm's output, and the lm_head's dtype
    c = rs.compute.bytes if rs.autocast else x   # the matmul's output dtype
    P = T - sequences
    rows = min(CHUNK_POSITIONS, P)
    n_chunks = chunks(labelled_positions(T, sequences, rs.setup.loss_token_fraction))
    fp32 = rows * V * 4
    casts = rs.autocast and x != c
    w_cast, h_cast = (V * h * c, rows * h * c) if casts else (0, 0)
    out = rows * V * c if c != 4 else 0          # `.float()` of an fp32 product is the product itself
    hidden = P * h * x
    saved = hidden + 2 * 8 * P
    flatten = (hidden + 8 * P) if sequences > 1 else 0   # reshape copies of the shifted rows and labels
    chunk_fwd = max(w_cast + h_cast + rows * V * c, out + fp32, 4 * fp32)
    last_hidden = T * h * x                      # the decoder's output, held by the patched forward's `outputs`
    fwd = last_hidden + saved + max(chunk_fwd, flatten)
    grad_buf = hidden if n_chunks > 1 else 0
    head_grad = V * h * rs.trainable.bytes if rs.full and n_chunks > 1 else 0
    saved_mm = w_cast + (h_cast if rs.full else 0)
    kept = grad_buf + head_grad + saved_mm
    recompute = kept + max(4 * fp32, (0 if rs.full else h_cast) + rows * V * c, out + fp32)
    backward_chunk = kept + 3 * fp32           # log_p, its gradient, log_softmax's input gradient
    if rs.full:   # the mm's weight gradient in its dtype, cast to the parameter's, then accumulated
        tb = rs.trainable.bytes
        backward_chunk = max(backward_chunk, kept + rows * V * c + V * h * c + (V * h * tb if c != tb else 0))
    scatter = 2 * hidden + (hidden if n_chunks > 1 else 0)   # the accumulated gradient, a new slice's, the gather's
    bwd = max(recompute, backward_chunk, scatter)
    return int(fwd), int(saved), int(bwd)


def note(rs: Resolved) -> str:
    return ("TRL 1.13-1.14's default loss (chunked_nll): the lm_head in checkpointed chunks of 256 positions, "
            "checked against TRL 1.14.0's own function under the simulator; memory does not depend on the "
            f"labelled fraction beyond the chunk count ({rs.setup.loss_token_fraction:.0%} of positions carry a label)")
