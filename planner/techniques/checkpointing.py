"""Activation checkpointing (HF `gradient_checkpointing_enable`, non-reentrant): each decoder
layer keeps only its input and recomputes its forward inside backward [Chen et al. 2016;
Korthikanti22 Sec. 5]."""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import Checkpointing
from .quantization import int8_inputs_per_layer


def enabled(rs: Resolved) -> bool:
    return rs.setup.checkpointing is Checkpointing.FULL


def saved_per_layer(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token a checkpointed layer keeps: its input, plus what bitsandbytes' 8-bit layers
    keep outside save_for_backward (checkpointing cannot drop it)."""
    return rs.residual.bytes * m.hidden + int8_inputs_per_layer(m, rs)


def recompute_flop_share(rs: Resolved) -> int:
    """Extra forwards of the decoder layers per step: one under full checkpointing
    [Narayanan21 Sec. 3.5, eq. 3: four forward passes instead of three]."""
    return 1 if enabled(rs) else 0
