"""Prompt tuning [Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"]
as peft runs it (PromptTuningConfig): `num_virtual_tokens` trainable embeddings prepended to every
sequence [peft/peft_model.py PeftModelForCausalLM.forward: inputs_embeds = cat(prompts,
inputs_embeds), labels prefixed with -100; peft/tuners/prompt_tuning/model.py PromptEmbedding].

The frozen model then runs on s + n positions: memory/estimate.py lengthens the sequence by
`virtual_tokens` (specs/resolved.py) before the step is built, so every activation, the attention
and the logits are those of s + n. This module owns what the prompt itself adds: n x H trainable
parameters (an nn.Embedding), nothing saved per token inside the layers, no matmul.
"""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved


def trainable_params(model: ModelSpec, rs: Resolved) -> int:
    return rs.adapters.virtual_tokens * model.hidden


def saved_bytes_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> float:
    return 0.0


def autocast_copies(m: ModelSpec, rs: Resolved) -> int:
    return 0    # an embedding lookup: autocast casts nothing


def flop_weights(model: ModelSpec, rs: Resolved) -> int:
    return 0


def extra_weight_grad_weights(model: ModelSpec, rs: Resolved) -> int:
    return 0


def outside_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    return 0.0


def embedding_params(model: ModelSpec, rs: Resolved) -> int:
    """The prompt is an nn.Embedding: HF Trainer keeps 32-bit 8-bit-optimizer states for it."""
    return trainable_params(model, rs)


def optimizer_shapes(model: ModelSpec, rs: Resolved) -> tuple[int, tuple[int, int]]:
    return trainable_params(model, rs), (rs.adapters.virtual_tokens, model.hidden)
