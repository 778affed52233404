"""Byte-exact stand-ins for the CUDA attention kernels (SDPA's flash backend, flash-attn 2), used only
under FakeTensorMode.

On a CPU, torch's SDPA with grouped-query attention takes a different kernel from CUDA's
(it expands K/V to every head and builds a causal mask), so simulating the CPU kernel would
count bytes a GPU never allocates. These autograd functions allocate and save what the CUDA
flash kernels do; under fake tensors no arithmetic happens, so only shapes and dtypes matter.
"""
from __future__ import annotations

import threading

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

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
    if attention_mask is not None:  # a real mask (sliding window, padding): CUDA runs the efficient kernel
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    out = _FlashAttention.apply(*_autocast(query, key, value))
    return out.transpose(1, 2).contiguous(), None


def register() -> dict[Attention, str]:
    """Registers the stand-ins with transformers; returns gpuplan attention -> HF implementation name."""
    AttentionInterface.register("gpuplan_sdpa", sdpa_standin)
    AttentionInterface.register("gpuplan_flash", flash_attention_standin)
    return {Attention.SDPA: "gpuplan_sdpa", Attention.FLASH: "gpuplan_flash", Attention.EAGER: "eager"}
