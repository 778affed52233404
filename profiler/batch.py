"""The micro-batch a training step feeds the model, as the collators users run build it: plain rows,
a padded batch with its attention_mask, or packed samples with restarting position_ids
(planner/techniques/masks.py says what each costs)."""
from __future__ import annotations

import torch

from gpuplan.planner import TrainingSetup
from gpuplan.planner.specs.enums import Packing, Padding
from gpuplan.planner.techniques.masks import run_setup


def _restarting_positions(rows: int, samples: int, length: int, device: torch.device) -> torch.Tensor:
    """(rows, samples x length) position_ids: each row holds `samples` samples, positions restarting at 0."""
    return torch.arange(length, device=device).repeat(rows, samples)


def micro_batch(setup: TrainingSetup, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """input_ids and labels, plus the attention_mask (padding) or position_ids (packing) the setup implies.

    - padding: HF's DataCollatorWithPadding / TRL's collator give an int64 attention_mask, 0 at the
      pads; the last token of the first row is padding (a real tensor then holds a 0, so transformers
      builds the mask it builds for any padded batch).
    - packing into rows: each row two samples, position_ids restarting (axolotl's multipack, torchtune).
    - flattened (padding-free): one row of the b samples, position_ids restarting per sample
      [trl/trainer/sft_trainer.py DataCollatorForLanguageModeling, padding_free=True].
    """
    shaped = run_setup(setup)
    b, s = shaped.batch_size, shaped.seq_len
    ids = torch.randint(0, vocab, (b, s), device=device)
    batch = {"input_ids": ids, "labels": ids}
    if setup.padding is not Padding.NONE:
        mask = torch.ones((b, s), dtype=torch.int64, device=device)
        mask[0, -1] = 0
        batch["attention_mask"] = mask
    elif setup.packing is Packing.ROWS:
        half = max(s // 2, 1)
        batch["position_ids"] = torch.cat([_restarting_positions(b, 1, half, device),
                                           _restarting_positions(b, 1, s - half, device)], dim=1)
    elif setup.packing is Packing.FLATTENED:
        batch["position_ids"] = _restarting_positions(1, setup.batch_size, setup.seq_len, device)
    return batch
