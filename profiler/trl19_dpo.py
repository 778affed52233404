"""TRL 1.9's DPOTrainer step run on the simulator's model by TRL's own code (needs `trl==1.9.0`, e.g. the
/work/venvs/trl19 venv; planner/techniques/dpo19.py is the closed form it checks).

`DPOTrainer._compute_loss` [trl/trainer/dpo_trainer.py l.1329-1655, TRL 1.9.0] is called unbound on a stand-in
for the trainer holding the attributes it reads (`__init__` l.760-770: beta, loss_types, loss_weights, ld_alpha,
f_divergence_type, label_smoothing, use_weighting, precompute_ref_logps; `ref_model`, `model`, `accelerator`,
`args.gradient_checkpointing_kwargs`, `_metrics`, `_total_train_tokens`, `aux_loss_enabled`), on the batch
`DataCollatorForPreference` builds (l.152-200): chosen then rejected rows (2b, s), an all-ones attention mask
(fixed length: no padding), a completion mask that is 0 on the prompt. Its metrics are reduced and read on the
host (`gather_for_metrics(...).sum().item()`): the stand-in's accelerator hands back a host scalar.

Under autocast, CUDA runs `log_softmax` by ATen's fp32 set-opt-dtype policy (aten/src/ATen/autocast_mode.h, torch
2.13: `log_softmax` in the CUDA list; the CPU list, which the simulator's autocast runs, lacks it): a 16-bit input
is called with `dtype=torch.float32`, an fp32 copy then an fp32 output. `_cuda_log_softmax` applies that rule to
the `F.log_softmax` calls of TRL's code (its rows loop and entropy chunks), so the autocast rows are simulated too.

Two answers the simulator gives for what a GPU run reads from data, both documented:
- the attention mask is dropped before the model (a forward pre-hook), as transformers drops an all-ones
  mask on a GPU (profiler/trl_steps.py `_Unpadded`);
- `chosen_logits[chosen_mask.bool()]` (l.1607, l.1609) has a data-dependent row count that fake tensors cannot
  know: `_CompletionRows` answers a boolean index of one half's shape (b, s - 1) with the completion rows the
  stand-in's mask holds (a fresh (rows, V) tensor, as the gather is); any other boolean index raises.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

DPO_BETA = 0.1   # DPOConfig.beta [trl/trainer/dpo_config.py l.283-284, TRL 1.9.0]; only scales the loss


class _Host:
    """What `accelerator.gather` / `gather_for_metrics` hand DPOTrainer's metrics: reduced and read on the host
    with `.item()` (a scalar each: no device memory the plan counts)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: 0.0 if name == "item" else self

    def _same(self, *args):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same

    def __gt__(self, other) -> bool:
        return True

    def __float__(self) -> float:
        return 0.0


class _CompletionRows(TorchDispatchMode):
    """Answers `x[mask]` for a boolean mask of shape `half` (one side's shifted completion mask) with `rows`
    rows: a new tensor of (rows, *x.shape[2:]) in x's dtype, which is what the gather allocates."""

    def __init__(self, half: tuple[int, int], rows: int) -> None:
        super().__init__()
        self.half, self.rows = half, rows

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.index.Tensor:
            x, indices = args[0], args[1]
            bools = [i for i in indices if i is not None and i.dtype is torch.bool]
            if bools:
                if len(indices) != 1 or tuple(bools[0].shape) != self.half:
                    raise NotImplementedError(f"a boolean index of shape {tuple(bools[0].shape)}: the simulator "
                                              f"answers only one side's completion mask {self.half}")
                return x.new_empty((self.rows, *x.shape[len(self.half):]))
        return func(*args, **kwargs)


class _CudaLogSoftmax(TorchFunctionMode):
    """CUDA autocast's fp32 set-opt-dtype rule for `F.log_softmax` on a 16-bit input (no dtype given)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.log_softmax and kwargs.get("dtype") is None and args \
                and args[0].dtype in (torch.bfloat16, torch.float16) and torch.is_autocast_enabled(args[0].device.type):
            kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


def _drop_mask(module, args, kwargs):
    kwargs = dict(kwargs)
    kwargs.pop("attention_mask", None)
    return args, kwargs


def completion_tokens(s: int, fraction: float) -> int:
    """Completion tokens per s-token sequence for the setup's loss-token fraction (at least one, not all s: the
    prompt keeps one token)."""
    return max(1, min(s - 1, round(fraction * (s - 1))))


@contextlib.contextmanager
def unmasked(*models: torch.nn.Module):
    handles = [m.register_forward_pre_hook(_drop_mask, with_kwargs=True) for m in models if m is not None]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def dpo19_loss(lm: torch.nn.Module, ref: torch.nn.Module | None, b: int, s: int, vocab: int, device: torch.device,
               fraction: float = 1.0, precompute: bool = False) -> torch.Tensor:
    """DPO's training loss on b (chosen, rejected) pairs of s tokens, computed by TRL 1.9's `_compute_loss`.
    `ref`: the frozen reference copy (full fine-tuning), None for peft (its adapters disabled) or with
    `precompute` (the reference log-probs come with the batch)."""
    from trl import DPOTrainer  # lazy: TRL loads only when its DPO is simulated

    host = _Host()
    accelerator = SimpleNamespace(device=device, gather=lambda t: host, gather_for_metrics=lambda t: host,
                                  unwrap_model=lambda m: m)
    trainer = SimpleNamespace(
        model=lm, ref_model=ref, accelerator=accelerator, aux_loss_enabled=False, beta=DPO_BETA,
        precompute_ref_logps=precompute, loss_types=["sigmoid"], loss_weights=[1.0], ld_alpha=None,
        f_divergence_type="reverse_kl", f_alpha_divergence_coef=0.5, label_smoothing=0.0, use_weighting=False,
        args=SimpleNamespace(gradient_checkpointing_kwargs={"use_reentrant": False}),   # as the simulator built it
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0)
    c = completion_tokens(s, fraction)
    ids = torch.randint(0, vocab, (2 * b, s), device=device)
    completion = torch.zeros((2 * b, s), dtype=torch.int64, device=device)
    completion[:, s - c:] = 1
    inputs = {"input_ids": ids, "attention_mask": torch.ones((2 * b, s), dtype=torch.int64, device=device),
              "completion_mask": completion}
    if precompute:
        inputs["ref_chosen_logps"] = torch.zeros(b, device=device)
        inputs["ref_rejected_logps"] = torch.zeros(b, device=device)
    with unmasked(lm, ref), _CudaLogSoftmax(), _CompletionRows((b, s - 1), b * c):
        loss = DPOTrainer._compute_loss(trainer, lm, inputs, return_outputs=False)
    del inputs, ids, completion
    return loss
