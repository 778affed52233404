"""Trainable pieces outside the decoder layers, beside LoRA: LoRA on the embedding and the lm_head
(peft's lora.Embedding and lora.Linear), and `modules_to_save`'s full trainable copies of them
(peft/utils/other.py ModulesToSaveWrapper: the original stays frozen, a deep copy trains).

On a tied model listing embed_tokens and lm_head in modules_to_save makes two separate trainable
copies (V x H each) while the tied original stays frozen, unless `ensure_weight_tying=True`, where
one copy serves both [peft/tuners/tuners_utils.py _check_tied_modules; counted against peft's
get_nb_trainable_parameters in tests/profiler/test_peft_methods.py]. peft adapts a tied lm_head
with its own LoRA, apart from the embedding's.
"""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved


def params(m: ModelSpec, rs: Resolved) -> int:
    """Trainable parameters outside the layers: r (V + H) for each of the embedding's and the
    lm_head's LoRA (lora_embedding_A r x V, lora_embedding_B H x r; lora_A r x H, lora_B V x r
    [peft/tuners/lora/layer.py Embedding.update_layer, Linear]), V x H for each trained copy."""
    a = rs.adapters
    lora = len(a.embedding_lora) * a.r * (m.vocab + m.hidden)
    return lora + sum(copy_sizes(m, rs))


def copy_sizes(m: ModelSpec, rs: Resolved) -> list[int]:
    """Elements of each trained copy: V x H for the embedding's and the lm_head's (one when tied), the
    score head's labels x H for a sequence-classification model (ModelSpec.score_labels)."""
    a = rs.adapters
    if a.tied_copies:
        return [m.vocab * m.hidden]
    return [(m.vocab if part == "embedding" else m.head_rows) * m.hidden for part in a.saved_copies]


def head_trains(rs: Resolved) -> bool:
    """The lm_head's own weight is trained (a modules_to_save copy): its weight gradient is computed."""
    return "head" in rs.adapters.saved_copies


def saved_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token saved outside the layers.

    lm_head LoRA: lora_A saves its input (the final norm's output cast to the compute dtype under
    autocast, else in the adapter dtype) and lora_B lora_A's output (r). Embedding LoRA:
    `after_A @ lora_embedding_B` saves after_A (r) [peft/tuners/lora/layer.py Embedding.forward].
    A trained lm_head copy saves its input for the weight gradient, which a frozen lm_head does not.
    """
    a = rs.adapters
    x = rs.compute.bytes if rs.autocast else a.dtype.bytes
    return head_saved_bytes_per_token(m, rs) + (x * a.r if "embedding" in a.embedding_lora else 0.0)


def head_saved_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    """The head's part of saved_bytes_per_token: released by the head's backward, before the layers'."""
    a = rs.adapters
    x = rs.compute.bytes if rs.autocast else a.dtype.bytes
    out = 0.0
    if "head" in a.embedding_lora:
        out += x * (m.hidden + a.r)
    if head_trains(rs):
        out += rs.compute.bytes * m.hidden
    return out


def autocast_copies(m: ModelSpec, rs: Resolved) -> int:
    """autocast's cached 16-bit copies of fp32 adapters outside the layers: both lm_head LoRA
    matrices, the embedding LoRA's B (F.embedding is not cast) [aten/src/ATen/autocast_mode.cpp].
    A trained lm_head copy's cast takes the place of the frozen lm_head's (techniques/precision.py)."""
    a = rs.adapters
    if not (rs.autocast and a.dtype.bytes > rs.compute.bytes):
        return 0
    e = rs.compute.bytes
    head = a.r * (m.hidden + m.vocab) if "head" in a.embedding_lora else 0
    embed = a.r * m.hidden if "embedding" in a.embedding_lora else 0
    return int(e * (head + embed))


def extra_weight_grad_flop_weights(m: ModelSpec, rs: Resolved) -> int:
    """Weights whose weight-gradient GEMM runs per token besides the adapters': a trained lm_head."""
    return m.head_rows * m.hidden if head_trains(rs) else 0
