"""Byte-exact stand-ins for the CUDA attention kernels (SDPA's flash and memory-efficient backends,
flash-attn 2), used only under FakeTensorMode.

On a CPU, torch's SDPA with grouped-query attention takes a different kernel from CUDA's
(it expands K/V to every head and builds a causal mask), so simulating the CPU kernel would
count bytes a GPU never allocates. These autograd functions allocate and save what the CUDA
flash kernels do; under fake tensors no arithmetic happens, so only shapes and dtypes matter.
"""
from __future__ import annotations

import contextlib
import math
import threading

import torch
from transformers import AttentionInterface, masking_utils
from transformers.integrations.sdpa_attention import repeat_kv, use_gqa_in_sdpa
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask, sdpa_mask

from gpuplan.planner import Attention


_KERNEL = threading.local()


def in_kernel() -> bool:
    """Whether the op being dispatched makes the flash kernel's outputs: what a selective-checkpointing
    policy matching `aten._scaled_dot_product_flash_attention` / flash-attn's forward sees on CUDA."""
    return getattr(_KERNEL, "active", False)


class _FlashAttention(torch.autograd.Function):
    """What `aten._scaled_dot_product_flash_attention` (CUDA) and flash-attn 2 save and allocate.

    Forward saves q, k, v, the output and the fp32 logsumexp (b, heads, s)
    [aten/src/ATen/native/transformers/cuda/attention.cu: _scaled_dot_product_flash_attention_cuda].
    Backward allocates dq, dk, dv, an fp32 dq accumulator (b, s, heads, d) and the fp32 softmax_d
    (b, heads, s); with grouped-query attention dk/dv are first computed per query head and summed
    [aten/src/ATen/native/transformers/cuda/flash_attn/flash_api.cpp: mha_bwd].
    """

    @staticmethod
    def forward(ctx, q, k, v):  # (b, heads, s, d), k/v (b, kv_heads, s, d)
        b, a, s, d = q.shape
        _KERNEL.active = True   # the ops below are the one aten flash op of a CUDA run (see in_kernel)
        try:
            # the output has v's head dim (DeepSeek's MLA: q/k 192, v 128)
            out = torch.empty((b, s, a, v.shape[-1]), dtype=q.dtype, device=q.device).transpose(1, 2)
            lse = torch.empty((b, a, s), dtype=torch.float32, device=q.device)
        finally:
            _KERNEL.active = False
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        b, a, s, d = q.shape
        dq_accum = torch.empty((b, s, a, d), dtype=torch.float32, device=q.device)
        softmax_d = torch.empty((b, a, s), dtype=torch.float32, device=q.device)
        dq = torch.empty_like(q)
        if k.shape[1] != a:  # GQA: per-query-head dk/dv, then summed over the group
            dk_exp = torch.empty((b, a, s, d), dtype=k.dtype, device=k.device)
            dv_exp = torch.empty((b, a, s, d), dtype=v.dtype, device=v.device)
            del dk_exp, dv_exp
        del dq_accum, softmax_d
        return dq, torch.empty_like(k), torch.empty_like(v)


class _EfficientAttention(torch.autograd.Function):
    """What `aten._scaled_dot_product_efficient_attention` (CUDA) saves and allocates, given an additive bias.

    Forward: the output in (b, s, heads, d) layout and an fp32 logsumexp (b, heads, ceil32(s))
    [cuda/attention.cu `_efficient_attention_forward`: kAlignLSE = 32]; q, k, v, the bias, the output
    and the logsumexp are saved [tools/autograd/derivatives.yaml]. Backward
    [cuda/attention_backward.cu `_efficient_attention_backward`]: dq, dk, dv, an fp32 delta
    (b, heads, s) (kKernelComputesDelta for 16-bit inputs) and the fp32 workspace that accumulates dq
    (kNeedsAccumGradQ: output_t is not float), b x heads x s x d.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias):  # (b, heads, s, d), k/v expanded to every head, bias (b, heads, s, s) view
        b, a, s, d = q.shape
        out = torch.empty((b, s, a, d), dtype=q.dtype, device=q.device).transpose(1, 2)
        lse = torch.empty((b, a, 32 * math.ceil(s / 32)), dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out, lse = ctx.saved_tensors
        b, a, s, d = q.shape
        delta = torch.empty((b, a, s), dtype=torch.float32, device=q.device)
        workspace = torch.empty((b, a, s, d), dtype=torch.float32, device=q.device) \
            if q.dtype != torch.float32 else None
        sk = k.shape[2]   # keys may outnumber queries (peft's prefix tuning prepends virtual keys)
        dq = torch.empty((b, s, a, d), dtype=q.dtype, device=q.device).transpose(1, 2)
        dk = torch.empty((b, sk, a, k.shape[3]), dtype=k.dtype, device=k.device).transpose(1, 2)
        dv = torch.empty((b, sk, a, v.shape[3]), dtype=v.dtype, device=v.device).transpose(1, 2)
        del delta, workspace
        return dq, dk, dv, None


def _additive_bias(mask: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The bias SDPA's composite makes of a bool mask before the efficient kernel: at::where(mask, 0, -inf)
    in the query dtype (`convert_boolean_attn_mask`), copied into an 8-aligned buffer when its strides
    are not (`preprocess_mask` / `pad_bias`), expanded to (b, heads, s_q, s_k) (a view)
    [aten/src/ATen/native/transformers/attention.cpp]."""
    bias = mask
    if mask.dtype == torch.bool:
        bias = torch.where(mask, torch.zeros((), dtype=query.dtype, device=query.device),
                           torch.full((), float("-inf"), dtype=query.dtype, device=query.device))
    aligned = bias.stride(-1) == 1 and all(st % 8 == 0 for st in bias.stride()[:-1])
    if not aligned:
        last = bias.shape[-1]
        bias = torch.nn.functional.pad(bias, (0, 8 - last % 8))[..., :last]
    return bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])


def _autocast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """SDPA is on autocast's lower-precision list: inputs are cast to the autocast dtype."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in tensors)


def flash_attention_standin(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                            is_causal=None, **kwargs):
    """HF attention-interface function: the CUDA flash kernel's memory behaviour, output (b, s, a, d).

    The output layout follows transformers' sdpa_attention_forward, which returns
    `attn_output.transpose(1, 2).contiguous()` (a copy), while flash-attn 2 returns (b, s, a, d)
    directly; the caller of this function chooses via `contiguous_copy`.
    """
    out = _FlashAttention.apply(*_autocast(query, key, value))   # (b, a, s, d) view of a (b, s, a, d) buffer
    return out.transpose(1, 2), None                  # (b, s, a, d), no copy: flash-attn 2 layout


def sdpa_standin(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                 is_causal=None, **kwargs):
    """transformers' sdpa_attention_forward on CUDA (flash backend, native GQA): it copies the
    output with `.transpose(1, 2).contiguous()` [transformers/integrations/sdpa_attention.py]."""
    if attention_mask is not None:  # a mask (padding, packing, sliding window): CUDA runs the efficient kernel
        groups = getattr(module, "num_key_value_groups", 1)
        if groups > 1 and not use_gqa_in_sdpa(attention_mask, key, value):   # False whenever a mask is given
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        query, key, value = _autocast(query, key, value)
        out = _EfficientAttention.apply(query, key, value, _additive_bias(attention_mask, query, key))
        return out.transpose(1, 2).contiguous(), None
    out = _FlashAttention.apply(*_autocast(query, key, value))
    return out.transpose(1, 2).contiguous(), None


def register() -> dict[Attention, str]:
    """Registers the stand-ins with transformers, in its attention and its mask registries (without the
    latter `_preprocess_mask_arguments` exits early and no mask ever reaches them); returns gpuplan
    attention -> HF implementation name."""
    AttentionInterface.register("gpuplan_sdpa", sdpa_standin)
    # no "flash" in the name: transformers 5.24 then tries to import a flash kernel for it
    # (`is_flash_attention_requested` tests `"flash" in name`, modeling_utils.py _check_and_adjust_attn_implementation)
    AttentionInterface.register("gpuplan_fa2", flash_attention_standin)
    AttentionMaskInterface.register("gpuplan_sdpa", sdpa_mask)
    AttentionMaskInterface.register("gpuplan_fa2", flash_attention_mask)
    return {Attention.SDPA: "gpuplan_sdpa", Attention.FLASH: "gpuplan_fa2", Attention.EAGER: "eager"}


@contextlib.contextmanager
def packed_sequences(packed: bool):
    """transformers' packed-sequence detection, answered as a real run answers it.

    `find_packed_sequence_indices` returns None when no row's position_ids restart
    (`(mask[:, -1] == 0).all()`), which a fake tensor cannot evaluate (`is_tracing` is True for it): it
    would return the indices and build a block-diagonal (b, 1, s, s) mask that an unpadded real run
    never builds. Within this context the same ops run and the answer is `packed`, what the simulated
    batch holds (profiler/batch.py).
    """
    original = masking_utils.find_packed_sequence_indices

    def find(position_ids: torch.Tensor) -> torch.Tensor | None:
        first = position_ids[:, :1] - 1
        indices = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
        return indices if packed else None

    masking_utils.find_packed_sequence_indices = find
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = original
