"""Cut Cross-Entropy (`--loss cce`): apple/ml-cross-entropy's `linear_cross_entropy(impl="cce")`, as its
transformers patch (`cce_patch`, axolotl's CutCrossEntropyPlugin) calls it. Triton kernels: modelled
from source, not simulated.

Source: apple/ml-cross-entropy 25.6.4 (commit d42911f9b1a1f98289bb601c35c8151562603d74)
[Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary Language Models", arXiv:2411.09009].

- The patched forward passes the hidden states and `lm_head.weight` to `apply_lce` with `shift=True`
  [transformers/llama.py L105, transformers/utils.py apply_lce L51-71]: no logits tensor, no lm_head call
  (so autocast caches no copy of the lm_head).
- `cce_linear_cross_entropy` [cce.py L261-319]: `valids` = the int32 indices of the positions whose
  shifted label is not ignore_index (`_build_flat_valids`, utils.py L28-49; N of them).
- `LinearCrossEntropyFunction.forward` [cce.py L48-162], `@custom_fwd`: under autocast it casts both
  the hidden states `e` and the classifier `c` to the autocast dtype (L71-73), a (T, h) and a (V, h)
  copy where they are stored wider; `cce_lse_forward_kernel` [cce_lse_forward.py L170-215] computes the
  log-sum-exp blockwise in SRAM into an fp32 `lse` of N and, for the gradient filter (filter_eps
  "auto", the default), an fp32 `logit_avg` of V. `ctx.save_for_backward(e, c, bias, lse, targets,
  valids, logit_avg)` (L141): the cast copies, not the originals, are what backward keeps.
- backward [cce.py L164-235; cce_backward.py cce_backward_kernel L346-520]: `argsort(logit_avg)`
  (int64 V, then int32), `de = zeros_like(e)` and, when the lm_head trains, `dc = zeros_like(c)`, in
  the cast dtype (accum_e_fp32/accum_c_fp32 are False for impl "cce"), then cast back to the original
  dtypes (`.to(e_info.dtype)`, `.to(c_info.dtype)`). The logits are recomputed blockwise; blocks whose
  softmax gradient is below filter_eps are skipped (time only, no memory).
"""
from __future__ import annotations


from ..specs.model import ModelSpec
from ..specs.resolved import Resolved

SOURCE = "apple/ml-cross-entropy 25.6.4 (d42911f)"
TAG = "modelled from source, not simulated"




def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of CCE over T tokens in `sequences`
    sequences. The hidden states are counted here because CCE keeps them (or their cast) for backward,
    where transformers' loss keeps the logits instead."""
    h, V = m.hidden, m.vocab
    x = rs.residual.bytes                        # the hidden states' and the lm_head's stored dtype
    c = rs.compute.bytes if rs.autocast else x   # torch.get_autocast_gpu_dtype() under autocast
    N = rs.setup.labelled_positions(T - sequences, sequences)   # `shift=True`: the last of each sequence has none
    e_saved = T * h * c                          # e itself (no cast) or its cast copy
    c_copy = V * h * c if c != x else 0          # the classifier cast; otherwise the parameter itself
    vectors = 4 * N + 4 * N + 4 * V              # lse (fp32), valids (int32), logit_avg (fp32)
    saved = e_saved + c_copy + vectors
    fwd = saved + 4 * N                          # neg_dot / nll (fp32 N) at the loss
    ordering = 8 * V + 4 * V                     # argsort's int64, then int32
    de = T * h * c + (T * h * x if c != x else 0)
    dc = (V * h * c + (V * h * x if c != x else 0)) if rs.full else 0
    return int(fwd), int(saved), int(ordering + de + dc)


def recompute_flops_per_token(m: ModelSpec, rs: Resolved) -> float:
    """Extra FLOPs per token: backward recomputes the (token, vocabulary) products blockwise
    (cce_backward.py `accum = tl.dot(e, c, accum)`), 2 h V, besides its de and dc products."""
    return 2.0 * m.hidden * m.vocab


def notes(rs: Resolved) -> list[str]:
    return [f"Cut Cross-Entropy (impl cce, filter_eps auto) {TAG} ({SOURCE}); "
            f"{rs.setup.loss_token_fraction:.0%} of positions carry a label"]
