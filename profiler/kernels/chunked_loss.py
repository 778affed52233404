"""`--loss chunked`: the fused linear + cross-entropy of Liger Kernel, as its CUDA path allocates.

Liger's LigerFusedLinearCrossEntropyFunction (liger_kernel/ops/fused_linear_cross_entropy.py),
which Unsloth and torchtune's chunked losses resemble, never builds the (tokens, vocab) logits:
in the forward it walks the tokens in chunks of about tokens*hidden/vocab rows (a power of two),
projects each chunk, turns the chunk's logits into their gradient in place (a Triton kernel
working in registers), and accumulates the input gradient (tokens, hidden) and the lm_head's
weight gradient (vocab, hidden, when it is trained). Backward only hands them on. This is a
re-implementation of that memory behaviour, not Liger's code: the allocations, dtypes and
lifetimes are the same; under fake tensors nothing is computed, on real tensors the loss and
gradients are (row block by row block, so that no chunk-sized temporary appears).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch._subclasses.fake_tensor import FakeTensor

IGNORE_INDEX = -100
_ROWS = 16   # rows per block when computing the real softmax gradient on a CPU


def _next_power_of_2(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def chunk_rows(tokens: int, hidden: int, vocab: int) -> int:
    """Rows per chunk: transient logits bounded by about tokens x hidden [Liger: inc_factor]."""
    inc_factor = -(-vocab // hidden)
    return min(_next_power_of_2(-(-tokens // inc_factor)), tokens)


def _ce_grad_in_place(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, n: int) -> None:
    """logits <- d(mean CE)/d(logits); loss <- per-row CE. What Liger's kernel does in registers."""
    if isinstance(logits, FakeTensor):
        return
    for start in range(0, logits.shape[0], _ROWS):
        rows = logits[start:start + _ROWS]
        t = target[start:start + _ROWS]
        x = rows.float()
        lse = torch.logsumexp(x, dim=-1)
        valid = t != IGNORE_INDEX
        picked = x.gather(1, t.clamp(min=0).unsqueeze(1)).squeeze(1)
        loss[start:start + _ROWS] = torch.where(valid, (lse - picked) / n, 0.0)
        grad = torch.softmax(x, dim=-1)
        grad.scatter_add_(1, t.clamp(min=0).unsqueeze(1), -torch.ones_like(picked).unsqueeze(1))
        rows.copy_(torch.where(valid.unsqueeze(1), grad / n, 0.0))


class FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, target, n_valid: int):   # x (tokens, hidden), weight (vocab, hidden)
        tokens, hidden = x.shape
        vocab = weight.shape[0]
        rows = chunk_rows(tokens, hidden, vocab)
        device = x.device.type
        autocast = torch.is_autocast_enabled(device)
        # torch.mm(out=...) into one reused buffer only where `@` would not cast [_can_use_mm_out]
        mm_out = x.dtype == weight.dtype and (not autocast or x.dtype == torch.get_autocast_dtype(device))
        grad_x = torch.zeros_like(x)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        loss = torch.zeros(tokens, dtype=torch.float32, device=x.device)
        storage = torch.empty((rows, vocab), dtype=x.dtype, device=x.device) if mm_out else None
        for start in range(0, tokens, rows):
            end = min(start + rows, tokens)
            xc = x[start:end]
            if storage is not None:
                logits = storage[: end - start]
                torch.mm(xc, weight.t(), out=logits)
            else:
                logits = xc @ weight.t()                     # autocast: the compute dtype
            _ce_grad_in_place(logits, target[start:end], loss[start:end], n_valid)
            if mm_out and logits.dtype == grad_x.dtype:
                torch.mm(logits, weight, out=grad_x[start:end])
            else:
                grad_x[start:end] = logits @ weight
            if grad_w is not None:
                # fp32 accumulator of 16-bit chunk gradients: addmm with out_dtype=float32, the
                # chunk's input cast to the gradient's dtype first
                xg = xc.to(logits.dtype) if xc.dtype != logits.dtype else xc
                if grad_w.dtype == logits.dtype:
                    torch.addmm(grad_w, logits.t(), xg, out=grad_w)
                elif isinstance(grad_w, FakeTensor):
                    pass   # addmm(out_dtype=float32) accumulates in place: no new memory
                else:
                    grad_w.add_(torch.mm(logits.t(), xg).float())
                del xg
            del logits, xc
        del storage
        ctx.save_for_backward(grad_x, grad_w)
        return loss.sum()

    @staticmethod
    def backward(ctx, grad_output):
        grad_x, grad_w = ctx.saved_tensors
        if not isinstance(grad_output, FakeTensor) and float(grad_output) != 1.0:
            grad_x.mul_(grad_output)                         # Liger's element_mul_kernel, in place
            if grad_w is not None:
                grad_w.mul_(grad_output)
        return grad_x, grad_w, None, None


def chunked_loss(lm: torch.nn.Module, input_ids: torch.Tensor,
                 before_loss: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Mean next-token cross-entropy of a (peft-wrapped) HF causal LM through the fused loss;
    `before_loss` is called between the decoder and the loss (the profiler marks the phase)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    backbone = getattr(base, base.base_model_prefix)                   # LlamaModel, GPT2Model, ...
    hidden = backbone(input_ids=input_ids).last_hidden_state           # (b, s, h)
    weight = base.get_output_embeddings().weight
    # labels shifted by padding, not by slicing the hidden states (no (b, s, h) copy)
    target = torch.nn.functional.pad(input_ids, (0, 1), value=IGNORE_INDEX)[..., 1:]
    n_valid = input_ids.shape[0] * (input_ids.shape[1] - 1)
    before_loss()
    return FusedLinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, target.reshape(-1), n_valid)
