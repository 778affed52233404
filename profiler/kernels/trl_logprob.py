"""trl_logprob_kernel(): TRL's Triton log-prob kernel as it allocates, for the simulator.

TRL 1.16.0's `selective_log_softmax` [trl/trainer/utils.py] takes the Triton kernel
`selective_log_softmax_and_entropy` [trl/kernels/logprob_entropy.py `_LogProbEntropyFunction`] when
Triton is available and `_supports_trl_loss_kernel` accepts the logits (a CUDA/XPU tensor in
fp16/bf16/fp32, 1 to 3 dims, last stride 1, an int32/int64 index of the logits' leading shape).
On the CPU it falls back to a loop of per-row `log_softmax` calls whose saved outputs a GPU run never
holds, so the simulator swaps in this stand-in, which allocates what the Triton function does:

- forward: four fp32 vectors of the index's shape (`logprobs`, `entropy`, `log_z`, `expected_logit`,
  each `torch.empty`); `ctx.save_for_backward(logits, index, log_z, expected_logit, row_mask)`: the
  logits and index are the caller's (no copy);
- backward: `grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)`.

The values are not TRL's (the simulator reads only sizes); the shapes, dtypes and lifetimes are.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class _LogProbEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, index, temperature, row_mask):   # noqa: ARG004  (Triton's signature)
        shape = logits.shape[:-1]
        logprobs = torch.empty(shape, device=logits.device, dtype=torch.float32)
        entropy = torch.empty_like(logprobs)
        log_z = torch.empty_like(logprobs)
        expected_logit = torch.empty_like(logprobs)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(logits, index, log_z, expected_logit, row_mask)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):   # noqa: ARG004
        logits = ctx.saved_tensors[0]
        return torch.empty_like(logits, memory_format=torch.contiguous_format), None, None, None


def selective_log_softmax_and_entropy(logits, index, temperature=1.0, row_mask=None):
    return _LogProbEntropy.apply(logits, index, temperature, row_mask)


def _supports_kernel(logits, index=None, row_mask=None) -> bool:
    """TRL 1.16.0 `_supports_trl_loss_kernel` [trl/trainer/utils.py], the device test left out (the
    simulator's fake tensors are CPU tensors standing for CUDA ones)."""
    ok = (logits.dtype in (torch.float16, torch.bfloat16, torch.float32) and 1 <= logits.ndim <= 3
          and logits.stride(-1) == 1 and logits.shape[-1] > 0)
    if index is not None:
        ok = ok and index.shape == logits.shape[:-1] and index.dtype in (torch.int32, torch.int64)
    if row_mask is not None:
        ok = ok and index is not None and row_mask.shape == index.shape
    return ok


@contextlib.contextmanager
def trl_logprob_kernel() -> Iterator[None]:
    """Inside the block, TRL's `selective_log_softmax` takes its Triton path, run by the stand-in."""
    from trl.trainer import utils  # lazy: TRL loads only when a TRL trainer's step is simulated

    absent = object()   # a name TRL's module does not define (None is a value: no Triton, no kernel)
    saved = {k: getattr(utils, k, absent) for k in ("is_triton_available", "_supports_trl_loss_kernel",
                                                    "_fused_logprob_entropy")}
    utils.is_triton_available = lambda: True
    utils._supports_trl_loss_kernel = _supports_kernel
    utils._fused_logprob_entropy = selective_log_softmax_and_entropy
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is absent:
                delattr(utils, k)
            else:
                setattr(utils, k, v)
