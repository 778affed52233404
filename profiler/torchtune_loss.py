"""`--loss chunked-output`: torchtune 0.6.1's CEWithChunkedOutputLoss on an HF causal LM, as its recipes
run it. Plain torch ops (no kernel stand-in): what the simulator counts is what torchtune allocates.

torchtune's decoder, told `set_num_output_chunks(n)` by the recipe, projects the final hidden states
chunk by chunk along the sequence, `[self.output(chunk) for chunk in h.chunk(n, dim=1)]`, in the
model's dtype (torchtune/modules/transformer.py TransformerDecoder.chunked_output, l.482-502); the loss
upcasts one chunk at a time and sums the chunks' cross-entropies, divided by the labelled tokens
(torchtune/modules/loss/ce_chunked_output_loss.py l.35-63, num_output_chunks=8 by default); the recipe
shifts the labels with an ignore-index column, not by slicing (recipes/lora_finetune_single_device.py
l.646-649) and drops the chunk list before backward (l.659).
"""
from __future__ import annotations

from typing import Callable

import torch

from gpuplan.planner.techniques.chunked_output import NUM_OUTPUT_CHUNKS

IGNORE_INDEX = -100   # CEWithChunkedOutputLoss(ignore_index=-100)


def chunked_output_loss(lm: torch.nn.Module, input_ids: torch.Tensor,
                        before_loss: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Mean next-token cross-entropy of a (peft-wrapped) HF causal LM, the output projected and the loss
    computed in NUM_OUTPUT_CHUNKS sequence chunks as torchtune does."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    backbone = getattr(base, base.base_model_prefix)                 # LlamaModel, Qwen2Model, ...
    hidden = backbone(input_ids=input_ids).last_hidden_state         # (b, s, h), after the final norm
    head = base.get_output_embeddings()
    logits = [head(chunk) for chunk in hidden.chunk(NUM_OUTPUT_CHUNKS, dim=1)]   # n x (b, s/n, V)
    del hidden
    labels = torch.nn.functional.pad(input_ids, (0, 1), value=IGNORE_INDEX)[..., 1:]
    before_loss()
    total = 0.0
    for chunk, target in zip(logits, labels.chunk(NUM_OUTPUT_CHUNKS, dim=1)):
        total = total + torch.nn.functional.cross_entropy(
            chunk.reshape(-1, chunk.size(-1)).float(), target.reshape(-1), ignore_index=IGNORE_INDEX,
            reduction="sum")
    del logits
    return total / (input_ids.shape[0] * (input_ids.shape[1] - 1))
