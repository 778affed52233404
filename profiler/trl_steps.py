"""The loss computations of TRL's preference trainers, run on the simulator's model by TRL's own code.

Reward modelling (TRL 1.14 trl/trainer/reward_trainer.py): `RewardTrainer.compute_loss` unbound, see reward_loss.

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

from collections import defaultdict
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


class _HostMetric:
    """What `accelerator.gather` / `gather_for_metrics` hand RewardTrainer's metrics: reduced and read on the
    host with `.item()`, which fake tensors cannot answer (a scalar each: no device memory the plan counts)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: 0.0 if name == "item" else self


def reward_loss(lm: torch.nn.Module, b: int, s: int, vocab: int, device: torch.device, padded: bool = False,
                center_rewards_coefficient: float | None = None, ids: torch.Tensor | None = None) -> torch.Tensor:
    """RewardTrainer's training loss on b (chosen, rejected) pairs, computed by TRL's own `compute_loss`
    [trl/trainer/reward_trainer.py, TRL 1.14] called unbound on a stand-in for the trainer holding what it
    reads (`model.training`, `args.center_rewards_coefficient`, `accelerator`, `_metrics`, the token count),
    on the batch `DataCollatorForPreference` builds: chosen then rejected ids, 2b rows, an all-ones mask
    (fixed length: dropped before the model as a GPU run drops it); `padded`: the first row's last token is
    padding, so the mask reaches the model as a padded batch's does (profiler/batch.py)."""
    from trl import RewardTrainer  # lazy: TRL loads only when reward modelling is simulated

    host = _HostMetric()
    trainer = SimpleNamespace(model=lm, args=SimpleNamespace(center_rewards_coefficient=center_rewards_coefficient),
                              accelerator=SimpleNamespace(gather=lambda t: host, gather_for_metrics=lambda t: host),
                              _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    ids = torch.randint(0, vocab, (2 * b, s), device=device) if ids is None else ids
    mask = torch.ones((2 * b, s), dtype=torch.int64, device=device)
    if padded:
        mask[0, -1] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    loss = RewardTrainer.compute_loss(trainer, lm if padded else _Unpadded(lm), inputs)
    del inputs, ids
    return loss
