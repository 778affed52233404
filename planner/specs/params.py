"""Exact parameter counts of a ModelSpec, by component (checked against transformers on `meta`)."""
from __future__ import annotations

from dataclasses import dataclass
from .memo import per_model
from .model import ModelSpec


@dataclass(frozen=True)
class ParamCounts:
    embedding: int          # token (and learned position) embeddings
    attention: int          # all layers' attention projections (+ biases, q/k norms)
    mlp: int                # all layers' MLP or expert weights (+ router)
    norms: int              # per-layer and final norms
    lm_head: int            # 0 when tied to the embedding; a score head's weight (ModelSpec.score_labels)
    vision: int = 0         # a multimodal wrapper's vision tower and projector (specs/vision.py)

    @property
    def total(self) -> int:
        return self.embedding + self.attention + self.mlp + self.norms + self.lm_head + self.vision

    @property
    def linear(self) -> int:
        """Weights inside decoder-layer linears: what LoRA targets and QLoRA quantizes."""
        return self.attention + self.mlp


_COUNTS: dict[int, tuple] = {}


def param_counts(m: ModelSpec) -> ParamCounts:
    """Parameter counts; sums what transformers builds for each architecture (memoized per model
    object: estimate() asks several times per call, recommend() thousands of times)."""
    return per_model(_COUNTS, id(m), m, lambda: _param_counts(m))


def _param_counts(m: ModelSpec) -> ParamCounts:
    def block_sum(linears, block: str) -> int:
        return sum(lin.param_count for lin in linears if lin.block == block)

    attention = (m.dense_layers * block_sum(m.dense_linears, "attn")
                 + m.moe_layers * block_sum(m.moe_linears, "attn")
                 + m.n_layers * m.qk_norm_size)
    router = m.n_experts * m.hidden  # MixtralTopKRouter / Qwen3MoeTopKRouter weight (experts, hidden)
    mlp = (m.dense_layers * block_sum(m.dense_linears, "mlp")
           + m.moe_layers * (block_sum(m.moe_linears, "mlp") + router))
    norms = (m.n_layers * m.norms_per_layer + 1) * m.norm_params
    embedding = (m.vocab + m.learned_positions) * m.hidden
    lm_head = (0 if m.tied_embeddings else m.vocab * m.hidden) + (m.vocab if m.lm_head_bias else 0)
    if m.score_labels:   # a sequence-classification model: the score head, no lm_head
        lm_head = m.score_labels * m.hidden
    return ParamCounts(embedding, attention, mlp, norms, lm_head, m.vision.params if m.vision else 0)
