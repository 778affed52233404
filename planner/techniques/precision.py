"""Mixed precision: torch.autocast's 16-bit copies of fp32 weights (the `*-mixed` precisions), and the
note naming a precision recipe no preset names (planner/specs/recipe.py)."""
from __future__ import annotations

from ..specs.enums import DType, Loss
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.recipe import describe
from ..specs.resolved import Resolved


def notes(rs: Resolved) -> list[str]:
    """One line naming the recipe when it is none of the --precision presets (else nothing; `rs.setup` is
    canonical: a choice is left set only where it differs from its preset, LoRA's weights as base_dtype)."""
    s = rs.setup
    if s.weights is None and s.autocast is None and s.kbit_upcast is None:
        return []
    return [describe(rs.setup.recipe, rs.setup.method)]


def weight_copies(m: ModelSpec, rs: Resolved) -> tuple[int, int, int]:
    """(all decoder layers, lm_head through the forward, lm_head kept for backward): bytes of the
    16-bit copies autocast makes of fp32 weights.

    Trainable weights are cached by autocast until it exits [aten/src/ATen/autocast_mode.cpp:
    cached_cast caches leaves that require grad]; frozen fp32 weights are cast per use and saved by
    the matmul for the input gradient. Quantized linears are not cast by autocast, but the
    lm_head is: prepare_model_for_kbit_training upcast it to fp32 [peft/utils/other.py].
    The chunked loss's matmuls run inside its autograd Function's forward, which saves no copy:
    only a trainable lm_head's cached copy remains, until autocast exits.
    """
    if not rs.autocast or rs.residual is not DType.FP32:
        return 0, 0, 0
    e = rs.compute.bytes
    head = int(e * m.vocab * m.hidden)
    head_live, head_saved = head, head
    if rs.setup.loss is Loss.CHUNKED:
        head_live, head_saved = (head if rs.full else 0), 0
    elif rs.setup.loss in (Loss.TRL, Loss.CCE) or rs.setup.loss.trl_chunked:   # they cast the lm_head themselves (`.to`, a view), autocast caches nothing
        head_live, head_saved = 0, 0
    if rs.quantized is not None:
        return 0, head_live, head_saved
    pc = param_counts(m)
    linear = pc.attention + pc.mlp - m.n_layers * m.qk_norm_size
    return int(e * linear), head_live, head_saved
