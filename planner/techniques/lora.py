"""LoRA [Hu et al. 2021] as peft builds it: trainable low-rank A (in x r) and B (r x out) beside
frozen linears. Owns the adapters' parameter counts, the bytes peft's forward saves, autocast's
copies of fp32 adapters and the adapters' FLOPs [peft/tuners/lora/layer.py: Linear.forward]."""
from __future__ import annotations

from ..specs.enums import Attention, DType
from ..specs.model import LinearRole, LinearSpec, ModelSpec
from ..specs.resolved import Resolved
from . import dora, lora_fa, moe_lora, outer
from .quantization import base_linear_out_bytes


def params_per_layer(model: ModelSpec, rs: Resolved, moe: bool = False) -> int:
    """r * (in + out) for every adapted linear of one (dense or MoE) layer [Hu et al. 2021, Sec. 4.1]."""
    a = rs.adapters
    return sum(a.r * (lin.in_features + lin.out_features)
               for lin in model.adapted_linears(a.targets, moe)) + (moe_lora.params_per_layer(model, rs) if moe else 0)


def layer_params(model: ModelSpec, rs: Resolved) -> int:
    """LoRA's A and B matrices in all decoder layers."""
    return (model.dense_layers * params_per_layer(model, rs)
            + model.moe_layers * params_per_layer(model, rs, moe=True))


def trainable_params(model: ModelSpec, rs: Resolved) -> int:
    """Trainable parameters of the whole model: the layers' A and B, DoRA's magnitude vectors, and
    the LoRA adapters and trained copies outside the layers (techniques/outer.py)."""
    magnitudes = (model.dense_layers * dora.params_per_layer(model, rs)
                  + model.moe_layers * dora.params_per_layer(model, rs, moe=True))
    return layer_params(model, rs) + magnitudes + outer.params(model, rs)


def embedding_params(model: ModelSpec, rs: Resolved) -> int:
    """Trainable nn.Embedding weights (HF Trainer keeps 32-bit 8-bit-optimizer states for them):
    a trained copy of the embedding."""
    return model.vocab * model.hidden if "embedding" in rs.adapters.saved_copies and not rs.adapters.tied_copies else 0


def optimizer_shapes(model: ModelSpec, rs: Resolved) -> tuple[int, tuple[int, int]]:
    """(elements of the largest trainable tensor, summed (rows, cols) of the trainable tensors as
    2-D matrices), what factored optimizers (Adafactor) size their state by. LoRA's A and B as
    (trainable / 2r) x 2r; a 1-D magnitude vector is its own row; each V x H copy adds V rows, H cols."""
    r = rs.adapters.r
    largest = max((lin.in_features for lin in model.dense_linears), default=0) * r
    rows, cols = layer_params(model, rs) // (2 * r), 2 * r
    rows += trainable_params(model, rs) - layer_params(model, rs) - outer.params(model, rs)   # magnitudes
    n_copies = 1 if rs.adapters.tied_copies else len(rs.adapters.saved_copies)
    copies = outer.copy_sizes(model, rs)   # V x H each (a score head: its labels x H)
    rows += sum(copies) // model.hidden + len(rs.adapters.embedding_lora) * (model.vocab + model.hidden)
    cols += n_copies * model.hidden + len(rs.adapters.embedding_lora) * r
    largest = max([largest, *copies])
    return largest, (rows, cols)


def linear_input(rs: Resolved, lin: LinearSpec) -> tuple[DType, float]:
    """(dtype of an adapted linear's input, bytes per token of that input not saved otherwise
    when the base is frozen). Inputs: a norm's output (the residual's dtype), the attention
    output (compute dtype; flash kernels save it themselves, eager's copy is o_proj's alone),
    the MLP product (the base linears' output dtype)."""
    e_dtype, r_dtype = rs.compute, rs.residual
    if lin.role is LinearRole.INPUT:
        return r_dtype, r_dtype.bytes * lin.in_features
    if lin.block == "attn":
        return e_dtype, (e_dtype.bytes * lin.in_features if rs.setup.attention is Attention.EAGER else 0)
    o = base_linear_out_bytes(rs)
    return (r_dtype if o == r_dtype.bytes else e_dtype), o * lin.in_features


def saved_bytes_per_layer(m: ModelSpec, rs: Resolved, moe: bool = False) -> float:
    """Bytes per token peft's LoRA forward saves for the adapted linears of one layer.

    peft casts the input to the adapter dtype (`_cast_input_dtype`, a no-op when it already has
    it) and applies dropout (nn.Identity at 0); lora_A saves what it receives, cast again to 16
    bit under autocast (again a no-op for 16-bit inputs); lora_B saves lora_A's output; dropout
    keeps CUDA's bool mask [peft/tuners/lora/layer.py: Linear.forward]. Where no cast or dropout
    makes a new tensor, lora_A saves the input itself: adapters sharing an input (a block's
    INPUT linears: q/k/v, gate/up) save it once, and an input the step saves anyway costs nothing more.
    """
    ad = rs.adapters
    e, autocast, a = rs.compute, rs.autocast, ad.dtype
    x = e.bytes if autocast else a.bytes      # what lora_A saves when it is a new tensor
    seen: set[object] = set()
    total = 0.0
    frozen_a = lora_fa.active(rs.setup)   # LoRA-FA: a frozen lora_A saves no input [techniques/lora_fa.py]
    for lin in m.adapted_linears(ad.targets, moe):
        total += x * ad.r                                       # lora_B's input
        if frozen_a:
            total += lin.in_features if ad.dropout > 0 else 0   # dropout's bool mask only
            continue
        in_dtype, uncounted = linear_input(rs, lin)
        if ad.dropout > 0:
            total += (x + 1) * lin.in_features                  # its own dropout output (or cast), mask
        elif in_dtype is not a or (autocast and a is not e):
            total += x * lin.in_features                        # its own cast copy
        else:
            key = lin.block if lin.role is LinearRole.INPUT else lin.name   # a block's INPUT linears share one
            if m.shared_norm and lin.role is LinearRole.INPUT:
                key = "norm"                # Phi: attention's and the MLP's INPUT linears read one norm output
            if key not in seen:
                seen.add(key)
                total += uncounted
    return total + dora.saved_bytes_per_layer(m, rs, moe) + (moe_lora.saved_bytes_per_token(m, rs) if moe else 0)


def outside_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token saved outside the decoder layers (techniques/outer.py)."""
    return outer.saved_bytes_per_token(m, rs)


def autocast_copies(m: ModelSpec, rs: Resolved) -> int:
    """Bytes of autocast's cached 16-bit copies of fp32 adapters: trainable leaves, cached until
    autocast exits [aten/src/ATen/autocast_mode.cpp cached_cast]."""
    if rs.autocast and rs.adapters.dtype.bytes > rs.compute.bytes:
        # DoRA's magnitudes meet only element-wise ops, which autocast does not cast; the fused
        # experts' factors are cast by peft's own `.to` (techniques/moe_lora.py), not by autocast
        cast = layer_params(m, rs) - m.moe_layers * moe_lora.expert_params_per_layer(m, rs)
        return int(rs.compute.bytes * cast) + outer.autocast_copies(m, rs)
    return 0


def flop_weights(model: ModelSpec, rs: Resolved) -> int:
    """Adapter weights multiplied per token over all layers: A and B of every adapted linear
    (6 r (in + out) FLOPs per token for forward and backward) [Hu et al. 2021]."""
    a = rs.adapters
    head = a.r * (model.hidden + model.vocab) if "head" in a.embedding_lora else 0
    embed = a.r * model.hidden if "embedding" in a.embedding_lora else 0    # after_A @ B; the lookup is free
    # the fused experts' factors are folded into the weights once per forward, not per token
    experts = model.moe_layers * moe_lora.expert_params_per_layer(model, rs)
    return layer_params(model, rs) - experts + head + embed


def extra_weight_grad_weights(model: ModelSpec, rs: Resolved) -> int:
    """Frozen-base weights whose weight gradient is computed nonetheless (2 FLOPs per token each)."""
    return outer.extra_weight_grad_flop_weights(model, rs)


def resident_adapter_bytes(m: ModelSpec, rs: Resolved) -> int:
    """Weights of one more adapter loaded beside the trained one: peft keeps every added adapter's
    A and B on the model (`add_adapter`), trainable or not; only the active adapter has gradients
    and optimizer state while it trains (`set_adapter`) [peft/tuners/tuners_utils.py]."""
    return trainable_params(m, rs) * rs.adapters.dtype.bytes


def adapters_that_fit(step_device_total: int, capacity: int, per_adapter: int) -> int:
    """How many adapters of one rank fit on a GPU trained one after another in one process: the
    step with one adapter, plus the others' weights resident (0: not even one). Batches mixing
    adapters are inference only in peft (`adapter_names` raises in training mode), so adapters
    trained together in one batch are not modelled."""
    if step_device_total > capacity:
        return 0
    return 1 + (capacity - step_device_total) // per_adapter if per_adapter else 1
