"""profiler/kernels/attention.py against torch's own flash-attention kernel (its CPU build).

The stand-in stands for the CUDA flash kernel; the CPU build of the same algorithm
(`aten._scaled_dot_product_flash_attention_for_cpu`) saves the same tensors for backward: q, k, v,
the output and the fp32 logsumexp. Their layouts differ (CUDA's output is a (b, s, a, d) buffer),
their bytes do not. What only CUDA does (GQA without expanding K/V, the backward's fp32 dq
accumulator and softmax_d) has no CPU counterpart and rests on the kernel source cited there.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gpuplan.profiler.kernels.attention import _FlashAttention, sdpa_standin


def _saved(t: torch.Tensor) -> list[tuple[int, torch.dtype]]:
    """(bytes, dtype) of every tensor the autograd node of `t` saved for backward, sorted."""
    node = t.grad_fn
    if hasattr(node, "saved_tensors"):   # a custom autograd.Function
        tensors = node.saved_tensors
    else:
        tensors = [getattr(node, n) for n in dir(node) if n.startswith("_saved")]
    return sorted((x.numel() * x.element_size(), x.dtype) for x in tensors if isinstance(x, torch.Tensor))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stand_in_saves_what_the_flash_kernel_saves(dtype):
    b, a, s, d = 2, 4, 32, 16
    q, k, v = (torch.randn(b, a, s, d, dtype=dtype, requires_grad=True) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        real = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert type(real.grad_fn).__name__ == "ScaledDotProductFlashAttentionForCpuBackward0"
    stand = _FlashAttention.apply(q, k, v)
    assert _saved(stand) == _saved(real)
    assert (b * a * s * 4, torch.float32) in _saved(stand)   # the logsumexp is fp32 at any input dtype
    assert stand.shape == real.shape and stand.dtype == real.dtype


def test_sdpa_stand_in_returns_transformers_layout():
    """transformers' sdpa_attention_forward returns (b, s, a, d), contiguous (a copy)."""
    b, a, s, d = 1, 4, 8, 16
    q, k, v = (torch.randn(b, a, s, d, requires_grad=True) for _ in range(3))
    out, weights = sdpa_standin(None, q, k, v, attention_mask=None)
    assert out.shape == (b, s, a, d) and out.is_contiguous() and weights is None
