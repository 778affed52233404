"""The loss: transformers' ForCausalLMLoss over full fp32 logits, a chunked fused linear
cross-entropy (Liger, Unsloth, torchtune), or TRL's fused LM head: the last two never build them."""
from __future__ import annotations


from ..specs.enums import Loss, Objective
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from . import chunked_nll, chunked_output, cut_ce, dpo19, liger, orpo
from . import reward   # RewardTrainer's score head


# TRL's fused LM head tiles [trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE; trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE, TRL 1.16.0]: 4096 tokens x 32768 vocabulary columns per projection tile
TRL_TOKEN_TILE = 4096
TRL_VOCAB_TILE = 32768


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int = 1) -> tuple[int, int, int]:
    """Bytes of the loss for T tokens in `sequences` sequences: (forward peak, saved at forward end,
    backward temporaries).

    transformers ForCausalLMLoss: the 16-bit logits, `logits.float()` (a copy unless already fp32),
    log_softmax's fp32 output (saved); backward: the fp32 gradient of log_softmax's output and of
    its input [transformers/loss/loss_utils.py; aten log_softmax_backward_data].
    """
    V, e = m.vocab, rs.compute.bytes
    if rs.setup.objective is Objective.ORPO:   # ORPOTrainer's own loss on the full logits
        return orpo.loss_bytes(m, rs, T, sequences)
    if dpo19.applies(rs):                      # TRL 1.9's DPOTrainer on the full logits
        return dpo19.loss_bytes(m, rs, T, sequences)
    if rs.setup.objective is Objective.RM:     # a score head, no vocabulary logits
        return reward.loss_bytes(m, rs, T, sequences)
    if rs.setup.loss is Loss.CHUNKED:
        return fused_linear_cross_entropy(m, rs, T)
    if rs.setup.loss is Loss.TRL:
        return trl_fused_lm_head(m, rs, T, sequences)
    if rs.setup.loss is Loss.CHUNKED_OUTPUT:   # torchtune's CEWithChunkedOutputLoss
        return chunked_output.loss_bytes(m, rs, T, sequences)
    if rs.setup.loss is Loss.CCE:
        return cut_ce.loss_bytes(m, rs, T, sequences)
    if rs.setup.loss.trl_chunked:   # TRL 1.8-1.14's default
        return chunked_nll.loss_bytes(m, rs, T, sequences)
    if rs.setup.liger.cross_entropy:
        return liger.cross_entropy_bytes(m, rs, T)
    upcast = 4 * V if e < 4 else 0
    softcap = 2 * e * V if m.final_logit_softcap else 0   # Gemma-2: tanh saved, div/mul transients
    fwd = e * V + upcast + 4 * V + softcap
    saved = 4 * V + (e * V if m.final_logit_softcap else 0)
    return int(T * fwd), int(T * saved), int(T * 8 * V)


def fused_linear_cross_entropy(m: ModelSpec, rs: Resolved, T: int) -> tuple[int, int, int]:
    """Liger's fused linear cross-entropy [liger_kernel/ops/fused_linear_cross_entropy.py, Liger-Kernel
    v0.8.2 (ead96b6): chunk_size L68-70, grad_input / grad_weight / loss_1d L72-86, logits_chunk L114,
    ctx.save_for_backward(grad_input, grad_weight) L431-435; simulated by
    profiler/kernels/chunked_loss.py]: gradients computed in the forward, chunk by chunk of
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


def trl_fused_lm_head(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """TRL >= 1.15 SFTTrainer (`add_fused_lm_head`, `ChunkedLogProbFunction`) on CUDA with Triton,
    modelled from TRL 1.16.0's source [trl/trainer/utils.py _fused_forward; trl/kernels/
    chunked_logprob.py]: the backbone's last hidden state is shifted, only the N positions whose
    label is not -100 are gathered (`hidden_states[mask]`, a copy) and projected through the lm_head
    in (4096 x 32768) tiles of one reused buffer, folded in place by a Triton kernel; the (T, V)
    logits never exist. N = loss_token_fraction x (T - sequences).

    Forward, inside the function at a tile: the gathered hidden states and int64 targets (saved),
    seven fp32 online-logsumexp vectors of N, the tile buffer in the compute dtype and, where the
    dtypes differ, the tile's casts of the hidden chunk and of the lm_head slice (`.to(compute_dtype)`
    per tile, never cached by autocast). Saved for backward: the gathered hidden states, targets,
    log_z, entropy and the bool mask. Backward: fp32 accumulators of the hidden states' gradient
    and, when the lm_head trains, its weight's (V, h), the tile buffer and casts again, then both
    cast back to their parameter's dtype while the fp32 ones are alive.
    """
    h, V = m.hidden, m.vocab
    x = rs.residual.bytes                        # the final norm's output, and the lm_head's dtype
    c = rs.compute.bytes if rs.autocast else x   # torch.get_autocast_dtype under autocast, else hidden.dtype
    positions = T - sequences
    N = rs.setup.labelled_positions(positions, sequences)   # GRPO: its completions
    rows = min(N, TRL_TOKEN_TILE)
    tile = rows * TRL_VOCAB_TILE * c             # allocated at full width, whatever the vocabulary
    casts = (rows * h * c + min(V, TRL_VOCAB_TILE) * h * c) if x != c else 0
    gathered, targets, mask = N * h * x, 8 * N, positions
    fwd = mask + gathered + targets + 7 * 4 * N + tile + casts
    saved = mask + gathered + targets + 2 * 4 * N
    grad_hidden = 4 * N * h + (N * h * x if x != 4 else 0)
    grad_weight = (4 * V * h + (V * h * x if x != 4 else 0)) if rs.full else 0
    bwd = 4 * N + grad_hidden + grad_weight + tile + casts
    return int(fwd), int(saved), int(bwd)


def notes(rs: Resolved) -> list[str]:
    if rs.setup.loss is Loss.CHUNKED:
        return ["chunked loss modelled after Liger's fused linear cross-entropy (not simulated)"]
    if rs.setup.loss is Loss.TRL:
        return [f"TRL >= 1.15 fused LM head modelled from TRL 1.16.0's source (not simulated); "
                f"{rs.setup.loss_token_fraction:.0%} of positions carry a label"]
    if rs.setup.loss is Loss.CCE:
        return cut_ce.notes(rs)
    if rs.setup.loss.trl_chunked:
        return [chunked_nll.note(rs)]
    return []
