"""Attention masks: a padded batch, packed samples and sliding windows. What transformers 5.24
builds, and what SDPA's CUDA kernels allocate, once a micro-batch carries a mask.

When transformers builds a 4-D mask [transformers/masking_utils.py, create_causal_mask]:
- padding: a 2-D attention_mask with a 0 in it. `sdpa_mask` cannot skip (`_ignore_causal_mask_sdpa`
  needs an all-ones padding mask) and builds a bool (b, 1, s, s) = causal & padding, once per
  forward, passed to every layer.
- packing: position_ids that restart at 0 and no attention_mask: `find_packed_sequence_indices`
  finds the samples and `sdpa_mask` builds a block-diagonal bool (b, 1, s, s), once per forward.
  With flash-attention 2 the same position_ids select the varlen kernel and no mask exists
  (`flash_attention_mask` returns the 2-D mask or None; modeling_flash_attention_utils.py).
- sliding windows (`create_sliding_window_causal_mask`): `local_size=sliding_window` forbids the skip
  once kv_length >= sliding_window; its mask function has no batch index, so an unpadded batch gets a
  (1, 1, s, s) bool expanded to b (a view), a padded or packed one a (b, 1, s, s).
- eager attention builds its additive mask on every batch (allow_is_causal_skip=False), padded or
  not: a mask costs eager nothing more; packing into one row makes its scores that row's length.

SDPA given a mask on CUDA [aten/src/ATen/native/transformers/attention.cpp: scaled_dot_product_attention;
sdp_utils.cpp: flash's constraints include check_for_attn_mask] runs the memory-efficient kernel:
- transformers copies K/V to every head first: `use_gqa_in_sdpa` is False whenever a mask is passed
  [transformers/integrations/sdpa_attention.py: repeat_kv];
- `convert_boolean_attn_mask`: at::where(mask, 0, -inf) in the query dtype, a new (b, 1, s, s) in each
  layer's call; `preprocess_mask`: when its strides are not 8-aligned (s % 8 != 0) `pad_bias` copies it
  into (b, 1, s, ceil8(s)) and slices it back, the copy being what the kernel reads;
- `_scaled_dot_product_efficient_attention` saves q, k, v, that bias, the output and an fp32 logsumexp
  (b, heads, ceil32(s)) [derivatives.yaml; cuda/attention.cu `_efficient_attention_forward`,
  kAlignLSE = 32]: the bias is saved per layer, in the compute dtype, s x s per sequence.
- its backward [cuda/attention_backward.cu `_efficient_attention_backward`] allocates dq, dk, dv, an fp32
  delta (b, heads, s) and the kernel's fp32 workspace (a grad-q accumulator for 16-bit inputs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..specs.enums import Attention, Packing, Padding
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup
from .checkpointing import enabled as checkpointed

LSE_ALIGN = 32    # kAlignLSE [aten/src/ATen/native/transformers/cuda/mem_eff_attention/kernel_forward.h]
BIAS_ALIGN = 8    # mem_eff_alignment [aten/src/ATen/native/transformers/attention.cpp: preprocess_mask]


def masked(setup: TrainingSetup) -> bool:
    """Whether the batch itself carries a mask (padding) or packed samples (position_ids)."""
    return setup.padding is not Padding.NONE or setup.packing is not Packing.NONE


def run_setup(setup: TrainingSetup) -> TrainingSetup:
    """The micro-batch as the model sees it: a flattened (padding-free) batch is one row of b x s
    tokens [trl/trainer/sft_trainer.py DataCollatorForLanguageModeling: torch.cat of the samples]."""
    if setup.packing is Packing.FLATTENED and setup.batch_size > 1:
        return setup.with_(batch_size=1, seq_len=setup.batch_size * setup.seq_len)
    return setup


def sliding_masked(m: ModelSpec, s: int) -> bool:
    """A sliding-window layer gets a mask once the keys reach the window (kv_length >= sliding_window:
    `_ignore_causal_mask_sdpa`'s local_attention_size test)."""
    return bool(m.sliding_window) and m.sliding_layers > 0 and s >= m.sliding_window


def masked_layers(m: ModelSpec, rs: Resolved, s: int) -> int:
    """How many decoder layers call SDPA with a 4-D mask (and so run the memory-efficient kernel)."""
    if rs.setup.attention is not Attention.SDPA:
        return 0
    if masked(rs.setup):
        return m.n_layers
    return m.sliding_layers if sliding_masked(m, s) else 0


def _pad8(s: int) -> int:
    return s if s % BIAS_ALIGN == 0 else BIAS_ALIGN * math.ceil(s / BIAS_ALIGN)


def efficient_kernel_saves(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Bytes per token the memory-efficient kernel saves beyond q, k, v and its output: the fp32
    logsumexp padded to 32 queries and the additive bias row (8-aligned), in the compute dtype."""
    e, a = rs.compute.bytes, m.n_heads
    lse = 4 * a * LSE_ALIGN * math.ceil(s / LSE_ALIGN) / s
    return lse + e * _pad8(s)


def efficient_core_bytes(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Bytes per token saved by a Llama-style attention under a mask: q, K/V expanded to every head
    (repeat_kv), the output, and the kernel's logsumexp and bias."""
    e, A = rs.compute.bytes, m.n_heads * m.head_dim
    return e * 4 * A + efficient_kernel_saves(m, rs, s)


def flash_padded_output_bytes(m: ModelSpec, rs: Resolved) -> float:
    """flash-attention 2 on a padded batch: transformers gathers the real tokens' q, k, v (`_upad_input`,
    index_first_axis: the copies replace the padded ones in what the varlen kernel saves) and scatters
    the output back into a new padded tensor (`pad_input`) [modeling_flash_attention_utils.py]. That
    tensor, not the kernel's output, is o_proj's input: saved apart for o_proj's weight gradient
    (dW-only). Per token of the worst micro-batch (every token real); modelled from source, not
    simulated (the flash stand-in has no unpad path)."""
    if rs.setup.attention is not Attention.FLASH or rs.setup.padding is Padding.NONE:
        return 0
    return rs.compute.bytes * m.n_heads * m.head_dim


def layer_mix(m: ModelSpec, rs: Resolved, s: int, plain: float, with_mask: float) -> float:
    """The average layer's bytes per token when `masked_layers` of the layers save `with_mask`."""
    k = masked_layers(m, rs, s)
    return plain if k == 0 else (k * with_mask + (m.n_layers - k) * plain) / m.n_layers


def outside_bytes_per_token(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Per token, outside the layers: under checkpointing, the bool mask(s) every checkpointed layer
    keeps as its input until its backward (torch/utils/checkpoint.py keeps the layer's arguments for
    the recompute). The collator's (b, s) int64 attention_mask / position_ids are freed with the
    input_ids' reference before backward in the plain loop (profiler/step.py): not counted."""
    setup = rs.setup
    out = 0
    if rs.setup.attention is not Attention.SDPA or not checkpointed(rs):
        return out
    if masked(setup):
        # a full-attention (b, 1, s, s) bool, and a sliding one where some layers slide past the window
        out += s * (2 if sliding_masked(m, s) and m.sliding_layers < m.n_layers else 1)
    return out


def notes(m: ModelSpec, rs: Resolved, s: int) -> list[str]:
    setup = rs.setup
    out = []
    k = masked_layers(m, rs, s)
    why = ("a padded batch" if setup.padding is not Padding.NONE else
           "packed samples (block-diagonal mask from position_ids)" if setup.packing is not Packing.NONE else
           f"the sliding window ({m.sliding_window}) at {s} tokens")
    if k:
        out.append(f"attention mask: {why}; SDPA runs the memory-efficient kernel in {k} of {m.n_layers} layers, "
                   "each saving a (b, 1, s, s) additive mask and K/V expanded to every head")
    elif setup.padding is not Padding.NONE and setup.attention is Attention.FLASH:
        out.append("padded batch under flash-attention 2: unpadded into the varlen kernel, the output padded back "
                   "(o_proj's input copy) - modelled from transformers' source, not simulated")
    elif setup.packing is not Packing.NONE and setup.attention is Attention.FLASH:
        out.append("packed samples: flash-attention 2's varlen kernel, no mask (position_ids)")
    return out


@dataclass(frozen=True)
class WorstBatch:
    seq_len: int    # the --seq-len to plan: the worst micro-batch's row length (per sample when flattened)
    note: str       # which micro-batch that is


def worst_micro_batch(lengths: dict[int, int], setup: TrainingSetup) -> WorstBatch:
    """The micro-batch of a length distribution that peaks the memory (users report runs that go out
    of memory at step 120, on the longest sample). --seq-len is max_length: longer samples are
    truncated to it.

    - padding to the longest (or no padding): a micro-batch is as long as its longest sample; the
      worst holds the longest one (the b rows padded to it);
    - padding to max length, packed rows: every row is --seq-len;
    - flattened (padding-free): one row of the micro-batch's samples; the worst holds the b longest.
    """
    cap, b = setup.seq_len, setup.batch_size
    capped: dict[int, int] = {}
    for n, c in lengths.items():
        capped[min(n, cap)] = capped.get(min(n, cap), 0) + c
    total = sum(capped.values())
    longest = max(capped)
    head = f"length histogram ({total:,} samples, longest {max(lengths):,} tokens"
    head += f", truncated to --seq-len {cap:,})" if max(lengths) > cap else ")"
    if setup.padding is Padding.MAX_LENGTH or setup.packing is Packing.ROWS:
        return WorstBatch(cap, f"{head}: every micro-batch is {b} rows of {cap:,} tokens "
                               f"({'padded to max length' if setup.padding is Padding.MAX_LENGTH else 'packed rows'})")
    if setup.packing is Packing.FLATTENED:
        picked, need = 0, b
        for n in sorted(capped, reverse=True):
            k = min(need, capped[n])
            picked, need = picked + k * n, need - k
            if need == 0:
                break
        row = math.ceil(picked / b)
        return WorstBatch(row, f"{head}: the worst micro-batch holds the {b} longest samples, one row of "
                               f"{picked:,} tokens (planned as {b} x {row:,})")
    return WorstBatch(longest, f"{head}: the worst micro-batch holds the longest sample: {b} rows of "
                               f"{longest:,} tokens ({capped[longest]:,} samples that long)")
