"""(IA)^3 [Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning", Sec. 3.3] as peft runs it (IA3Config): a learned vector per adapted linear
that scales its output, or, for the `feedforward_modules`, its input [peft/tuners/ia3/layer.py
Linear.update_layer: (out, 1) or (1, in); Linear.forward].

Owns the vectors' parameter counts and the bytes their element-wise products save. The vectors
meet no matmul: no autocast copies, no FLOPs beyond element-wise work.
"""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from .lora import linear_input
from .quantization import base_linear_out_bytes


def _adapted(m: ModelSpec, rs: Resolved, moe: bool = False):
    return m.adapted_linears(rs.adapters.targets, moe)


def params_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> int:
    ff = set(rs.adapters.feedforward)
    return sum(lin.in_features if lin.name in ff else lin.out_features for lin in _adapted(m, rs, moe))


def trainable_params(model: ModelSpec, rs: Resolved) -> int:
    return (model.dense_layers * params_per_layer(model, rs)
            + model.moe_layers * params_per_layer(model, rs, moe=True))


def saved_bytes_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> float:
    """Bytes per token saved for the vectors' gradients.

    Feed-forward: `x.to(dtype)` (the vector's dtype; a new tensor when x has another) times the
    vector saves that x; output scaling: `result * ia3_scaling` saves the base output (the compute
    dtype, or the residual's for bitsandbytes layers). The products are cast back (`.to(...)`) into
    new tensors that the frozen base layers do not save."""
    a = rs.adapters.dtype
    ff = set(rs.adapters.feedforward)
    total = 0.0
    for lin in _adapted(m, rs, moe):
        if lin.name in ff:
            in_dtype, uncounted = linear_input(rs, lin)
            total += a.bytes * lin.in_features if in_dtype is not a else uncounted
        else:
            total += base_linear_out_bytes(rs) * lin.out_features
    return total


def autocast_copies(m: ModelSpec, rs: Resolved) -> int:
    return 0


def flop_weights(model: ModelSpec, rs: Resolved) -> int:
    return 0


def extra_weight_grad_weights(model: ModelSpec, rs: Resolved) -> int:
    return 0


def outside_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    return 0.0


def embedding_params(model: ModelSpec, rs: Resolved) -> int:
    return 0


def optimizer_shapes(model: ModelSpec, rs: Resolved) -> tuple[int, tuple[int, int]]:
    """(largest vector, (rows, cols)): each vector is 1-D, its own row for a factored optimizer."""
    largest = max((lin.in_features if lin.name in rs.adapters.feedforward else lin.out_features
                   for lin in _adapted(model, rs)), default=0)
    return largest, (trainable_params(model, rs), 0)
