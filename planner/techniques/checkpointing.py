"""Activation checkpointing (HF `gradient_checkpointing_enable`, non-reentrant): each checkpointed
decoder layer keeps only its input and recomputes its forward inside backward [Chen et al. 2016;
Korthikanti22 Sec. 5].

Selective by layer (`TrainingSetup.ckpt_every = k`, `ckpt_first = f`): only layers f, f + k, ...
are checkpointed, the others keep every tensor they save. transformers' `every_n_layers`
(TrainingArguments.activation_checkpointing_kwargs / gradient_checkpointing_kwargs) starts at
layer 0 [transformers 5.24 modeling_utils.py PreTrainedModel._set_gradient_checkpointing:
`layer_index % every_n_layers == 0`]; torchtune counts the layers it wraps from 1 and wraps
those whose count is a multiple of k, i.e. f = k - 1 [torchtune/training/activations.py
checkpoint_wrapper, ac_mode "selective": `checkpoint_wrapper._count % every_x_layer == 0`].
"""
from __future__ import annotations

from ..specs.enums import Attention
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import Checkpointing
from .quantization import int8_inputs_per_layer


def enabled(rs: Resolved) -> bool:
    return rs.setup.checkpointing is not Checkpointing.NONE


def every(rs: Resolved) -> int:
    """k of "every k-th layer" (1: all layers, or checkpointing off)."""
    return rs.setup.ckpt_every if enabled(rs) else 1


def selective(rs: Resolved) -> bool:
    """Only some decoder layers are checkpointed."""
    return enabled(rs) and rs.setup.ckpt_every > 1


def checkpointed_layers(m: ModelSpec, k: int, first: int = 0) -> tuple[int, ...]:
    """Indices of the layers checkpointed for "every k-th layer from `first`"; raises PlannerError
    when that leaves none."""
    if first >= m.n_layers:
        raise PlannerError(f"--ckpt-every {k} --ckpt-first {first} checkpoints no layer of {m.name} "
                           f"({m.n_layers} layers); use --no-grad-ckpt, or a smaller --ckpt-first")
    return tuple(range(first, m.n_layers, k))


def layer_split(m: ModelSpec, rs: Resolved) -> tuple[int, int, int]:
    """(checkpointed layers, layers that keep everything, layers above the highest checkpointed one)."""
    L = m.n_layers
    if not enabled(rs):
        return 0, L, 0
    if not selective(rs):
        return L, 0, 0
    ckpt = checkpointed_layers(m, rs.setup.ckpt_every, rs.setup.ckpt_first)
    return len(ckpt), L - len(ckpt), L - 1 - ckpt[-1]


def saved_per_layer(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token a checkpointed layer keeps: its input, plus what bitsandbytes' 8-bit layers
    keep outside save_for_backward (checkpointing cannot drop it), plus the attention kernel's
    outputs under save-attention."""
    return rs.residual.bytes * m.hidden + int8_inputs_per_layer(m, rs) + attention_outputs(m, rs)


def attention_outputs(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token save-attention keeps of each checkpointed layer: the outputs of the flash op
    the policy marks MUST_SAVE (create_selective_checkpoint_contexts caches an op's outputs), the
    output (b, s, heads, d) in the compute dtype and the fp32 logsumexp (b, heads, s)
    [aten _scaled_dot_product_flash_attention; axolotl monkeypatch/selective_checkpointing.py
    _ATEN_ATTENTION_PACKETS, _is_flash_attention_forward]. Eager attention runs no such op: the
    policy saves nothing and the layer is recomputed whole."""
    if rs.setup.checkpointing is not Checkpointing.SAVE_ATTENTION or rs.setup.attention is Attention.EAGER:
        return 0.0
    if m.sliding_window:
        raise PlannerError(f"--ckpt-policy save-attention on {m.name}: its sliding-window layers' attention "
                           "is recomputed (axolotl's recompute_layer_types) and that split is not modelled; "
                           "use full checkpointing")
    return rs.compute.bytes * m.n_heads * m.head_dim + 4 * m.n_heads


def recompute_flop_share(rs: Resolved) -> float:
    """Extra forwards of the decoder layers per step: one under full checkpointing
    [Narayanan21 Sec. 3.5, eq. 3: four forward passes instead of three]; the checkpointed share of
    the layers under selective checkpointing."""
    if not selective(rs):
        return 1 if enabled(rs) else 0
    n_ckpt, _, _ = layer_split(rs.model, rs)
    return n_ckpt / rs.model.n_layers
