"""The loss computations of TRL's preference trainers, run on the simulator's model by TRL's own code.

ORPO (TRL 1.16.0 trl/experimental/orpo/orpo_trainer.py): `ORPOTrainer.concatenated_forward` and
`odds_ratio_loss` called unbound on a stand-in for the trainer holding the attributes they read
(`is_encoder_decoder`, `padding_value`, `aux_loss_enabled`, `beta`, `accelerator.device`, and its
static methods `concatenated_inputs` and `get_batch_logps`), on the batch
its collator builds (`chosen_*` / `rejected_*` input_ids, attention_mask, labels; fixed length, so
no padding); then `loss = policy_nll_loss - losses.mean()` as `get_batch_loss_metrics` does (its
metrics, read on the host with `.item()`, are left out: scalars). Its `selective_log_softmax` takes
TRL's Triton path on CUDA, so the simulator runs it through the stand-in of profiler/kernels/trl_logprob.py.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

ORPO_BETA = 0.1   # ORPOConfig.beta default [trl/experimental/orpo/orpo_config.py, TRL 1.16.0]


def preference_batch(b: int, s: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """What DPODataCollatorWithPadding hands ORPOTrainer for b pairs of s-token sequences (no padding)."""
    batch = {}
    for side in ("chosen", "rejected"):
        ids = torch.randint(0, vocab, (b, s), device=device)
        batch[f"{side}_input_ids"] = ids
        batch[f"{side}_attention_mask"] = torch.ones((b, s), dtype=torch.int64, device=device)
        batch[f"{side}_labels"] = ids.clone()
    return batch


class _Unpadded:
    """The model as TRL calls it, its all-ones attention_mask dropped as transformers drops it on a GPU:
    `_ignore_causal_mask_sdpa` returns True for an unpadded batch (`fast_all(padding_mask)`), so SDPA runs
    causal with no mask [transformers 5.24 masking_utils.py]; under fake tensors `is_tracing` keeps the
    mask instead (a different attention kernel), so the stand-in drops it before the model sees it."""

    def __init__(self, lm: torch.nn.Module) -> None:
        self.lm = lm

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        return self.lm(input_ids, **kwargs)


def orpo_loss(lm: torch.nn.Module, b: int, s: int, vocab: int, device: torch.device,
              batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """ORPO's training loss on b (chosen, rejected) pairs, computed by TRL's ORPOTrainer methods. Its
    log-probs take TRL's own path for the device (the Triton kernel on CUDA, the CPU fallback on a CPU);
    the simulator swaps in the Triton kernel's stand-in around the whole step (profiler/simulate.py)."""
    from trl.experimental.orpo import ORPOTrainer  # lazy: TRL loads only when ORPO is simulated


    trainer = SimpleNamespace(is_encoder_decoder=False, padding_value=0, aux_loss_enabled=False, beta=ORPO_BETA,
                              accelerator=SimpleNamespace(device=device),
                              concatenated_inputs=ORPOTrainer.concatenated_inputs, get_batch_logps=ORPOTrainer.get_batch_logps)
    batch = preference_batch(b, s, vocab, device) if batch is None else batch
    chosen_logps, rejected_logps, chosen_logits, rejected_logits, nll = ORPOTrainer.concatenated_forward(
        trainer, _Unpadded(lm), batch)
    losses = ORPOTrainer.odds_ratio_loss(trainer, chosen_logps, rejected_logps)[0]
    del batch, chosen_logits, rejected_logits
    return nll - losses.mean()
