"""The bitsandbytes optimizers HF Trainer builds, able to step under FakeTensorMode on CPU.

HF Trainer (transformers/trainer_optimizer.py _get_bitsandbytes_optimizer) maps
    optim="adamw_bnb_8bit"    -> bnb.optim.AdamW(optim_bits=8,  is_paged=False)
    optim="paged_adamw_8bit"  -> bnb.optim.AdamW(optim_bits=8,  is_paged=True)
    optim="paged_adamw_32bit" -> bnb.optim.AdamW(optim_bits=32, is_paged=True)
    optim="lion_32bit"        -> bnb.optim.Lion(optim_bits=32, is_paged=False, betas=(beta1, beta2))
and, for 8-bit ones, registers every nn.Embedding weight for 32-bit state
(transformers/trainer.py create_optimizer: GlobalOptimManager.register_module_override).

The classes below *are* those bitsandbytes optimizers (subclasses): init_state, get_config,
step and the update ops are bitsandbytes' own code. What is overridden, and only where the
parameters are not on a CUDA device (on CUDA every override defers to bitsandbytes):

- get_state_buffer follows the CUDA rule, not the CPU one. bitsandbytes
  (optim/optimizer.py Optimizer8bit.get_state_buffer) pages a state (F.get_paged:
  cudaMallocManaged) when the optimizer is paged and the parameter has >= 1e5 elements; on CPU
  it falls back to torch.zeros_like. Unified memory is not allocated by torch's caching allocator
  (torch.cuda.memory_allocated never sees it), so a paged state here is a `meta` tensor (no
  storage, invisible to the tracker's dispatch) flagged `is_paged=True` (bnb's own flag, which
  F.is_on_gpu and prefetch_state read) and `paged=True`. Its bytes are `paged_state_bytes(opt)`.
  The step driver must leave these out of the optimizer state it tracks (step.py
  _optimizer_state: skip tensors with `getattr(t, "is_paged", False)`).
  Everything else is allocated with torch as on CUDA: 8-bit state1/state2 uint8 like the param,
  absmax1/absmax2 fp32 per 256-element block (torch.zeros, never paged), 32-bit states fp32 for
  params with fewer than min_8bit_size=4096 elements, and the two 256-entry fp32 quantization
  maps (`dynamic`, `udynamic`) shared by all parameters (Optimizer8bit.name2qmap).
- prefetch_state (cudaMemPrefetchAsync of paged states) is skipped for the placeholders.
- update_step skips the kernel call for a paged (placeholder) state; the CUDA kernels
  (backends/cuda/ops.py _optimizer_update_32bit_impl / _optimizer_update_8bit_blockwise_impl)
  update in place and allocate nothing through torch, so nothing is lost. Non-paged states go
  through bitsandbytes' update_step, whose ops have fake kernels (bitsandbytes/_ops.py).
- fill_qmap builds the quantization maps with FakeTensorMode paused (F.create_dynamic_map reads
  tensor values); they are 2 x 1 KiB real tensors.
- GlobalOptimManager: each optimizer gets a private one, so overrides (the embeddings' 32-bit
  state) from one build do not leak into the next through the process-wide singleton.
"""
from __future__ import annotations

from typing import Iterable

import bitsandbytes as bnb
import torch
from bitsandbytes.optim.optimizer import GlobalOptimManager
from torch import nn
from torch._subclasses.fake_tensor import unset_fake_temporarily

from gpuplan.planner import Optimizer

PAGED_MIN_NUMEL = 1e5     # Optimizer8bit.get_state_buffer: `p.numel() < 1e5` stays in device memory

# TrainingArguments defaults: adam_beta1/2, adam_epsilon; learning rate as build_optimizer uses
_ADAM = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def _private_manager() -> GlobalOptimManager:
    mng = GlobalOptimManager.__new__(GlobalOptimManager)
    mng.initialize()
    return mng


def _on_cuda(p: torch.Tensor) -> bool:
    return p.device.type == "cuda"


def paged_placeholder(shape: torch.Size, dtype: torch.dtype, device_index: int | None = 0) -> torch.Tensor:
    """A paged bnb state as torch's allocator sees it: no storage. Flagged like F.get_paged's tensors."""
    t = torch.empty(shape, dtype=dtype, device="meta")
    t.is_paged = True
    t.paged = True
    t.page_deviceid = device_index
    return t


class _CudaLike:
    """Mixin over a bitsandbytes Optimizer8bit subclass; see the module docstring."""

    def _finish_init(self, embeddings: Iterable[nn.Module] = ()) -> None:
        self.mng = _private_manager()
        for module in embeddings:
            # transformers/trainer.py create_optimizer, for optim_bits == 8
            self.mng.register_module_override(module, "weight", {"optim_bits": 32})

    def fill_qmap(self) -> None:
        with unset_fake_temporarily():
            super().fill_qmap()

    def get_state_buffer(self, p, dtype=torch.float32):
        if _on_cuda(p):
            return super().get_state_buffer(p, dtype=dtype)
        if not self.is_paged or p.numel() < PAGED_MIN_NUMEL:
            return torch.zeros_like(p, dtype=dtype, device=p.device)
        return paged_placeholder(p.shape, dtype)

    def prefetch_state(self, p) -> None:
        if _on_cuda(p):
            super().prefetch_state(p)

    @torch.no_grad()
    def update_step(self, group, p, gindex, pindex) -> None:
        state = self.state[p]
        if _on_cuda(p) or not getattr(state["state1"], "is_paged", False):
            return super().update_step(group, p, gindex, pindex)
        # bitsandbytes' update_step without its in-place kernel (which allocates nothing)
        p.data = p.data.contiguous()
        p.grad = p.grad.contiguous()
        state["step"] += 1


class AdamW(_CudaLike, bnb.optim.AdamW):
    def __init__(self, params, *, embeddings: Iterable[nn.Module] = (), **kwargs):
        super().__init__(params, **kwargs)
        self._finish_init(embeddings)


class Lion(_CudaLike, bnb.optim.Lion):
    def __init__(self, params, *, embeddings: Iterable[nn.Module] = (), **kwargs):
        super().__init__(params, **kwargs)
        self._finish_init(embeddings)


def hf_trainer_kwargs(kind: Optimizer) -> tuple[type, dict]:
    """(class, kwargs) as transformers' _get_bitsandbytes_optimizer builds them."""
    if kind is Optimizer.ADAMW_8BIT:
        return AdamW, dict(_ADAM, optim_bits=8, is_paged=False)
    if kind is Optimizer.PAGED_ADAMW_8BIT:
        return AdamW, dict(_ADAM, optim_bits=8, is_paged=True)
    if kind is Optimizer.PAGED_ADAMW:
        return AdamW, dict(_ADAM, optim_bits=32, is_paged=True)
    if kind is Optimizer.LION:
        return Lion, dict(lr=_ADAM["lr"], betas=_ADAM["betas"], weight_decay=0.0, optim_bits=32, is_paged=False)
    raise ValueError(f"{kind.value} is not a bitsandbytes optimizer")


def bnb_optimizer(params, kind: Optimizer, model: nn.Module | None = None) -> torch.optim.Optimizer:
    """The bitsandbytes optimizer HF Trainer builds for `kind`, over `params`.

    Pass `model` to reproduce HF Trainer's 32-bit state for nn.Embedding weights under 8-bit
    optimizers (it matters for full fine-tuning, where the embeddings train).
    """
    cls, kwargs = hf_trainer_kwargs(kind)
    embeddings = []
    if model is not None and kwargs["optim_bits"] == 8:
        embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    return cls(list(params), embeddings=embeddings, **kwargs)


def state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every distinct tensor in the optimizer state (the shared quantization maps once)."""
    seen, out = set(), []
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor) and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def paged_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the states bitsandbytes keeps in CUDA unified memory (not torch-allocated)."""
    return sum(t.numel() * t.element_size() for t in state_tensors(opt) if getattr(t, "is_paged", False))
