"""Model states in bytes: weights, gradients, optimizer state and optimizer-step temporaries."""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import Resolved
from ..techniques import ADAPTERS, lora_fa, lora_variants, multimodal, optimizers, quantization


@dataclass(frozen=True)
class States:
    weights: int
    gradients: int
    optimizer_state: int          # on the GPU, counted by the CUDA allocator
    optimizer_paged: int          # bitsandbytes paged states: unified memory, not in the allocator
    optimizer_step_temporaries: int
    trainable_params: int
    largest_trainable: int        # elements of the largest trainable tensor
    layer_weight_bytes: int       # weights of one decoder layer (what a backward step touches)


def states(model: ModelSpec, rs: Resolved) -> States:
    pc = param_counts(model)
    total = pc.total
    layer_weights = (pc.attention + pc.mlp) // model.n_layers
    if rs.full:
        dtype = rs.trainable
        trainable = total
        weights = total * dtype.bytes
        largest = model.vocab * model.hidden
        shapes = (model.n_layers * sum(l.out_features * l.experts for l in model.dense_linears) + model.vocab,
                  model.n_layers * sum(l.in_features for l in model.dense_linears) + model.hidden)
        layer_bytes = layer_weights * dtype.bytes
    else:
        dtype = rs.adapters.dtype
        adapter = ADAPTERS[rs.adapters.kind]
        trainable = adapter.trainable_params(model, rs)
        largest, shapes = adapter.optimizer_shapes(model, rs)
        frozen = rs.frozen.bytes
        if rs.quantized is not None:
            linear_weights, rows = quantization.linear_inventory(model)
            biases_norms = total - linear_weights
            weights = quantization.quantized_bytes(linear_weights, rows, rs.quantized) + biases_norms * frozen
            layer_bytes = quantization.quantized_bytes(layer_weights, 0, rs.quantized)
        else:
            weights = total * frozen
            layer_bytes = layer_weights * frozen
        weights += trainable * dtype.bytes
        vision_adapters = multimodal.adapter_params(model, rs)   # LoRA that peft put in the vision tower
        weights += vision_adapters * dtype.bytes
        trainable += vision_adapters
    # trainable but idle on text-only batches: no gradient, no optimizer state [techniques/multimodal.py]
    stepped = trainable - multimodal.idle_params(model, rs)
    frozen_a = lora_fa.frozen_a_params(model, rs)   # LoRA-FA freezes every lora_A [techniques/lora_fa.py]
    stepped -= frozen_a
    trainable -= frozen_a
    embedding = pc.embedding if rs.full else ADAPTERS[rs.adapters.kind].embedding_params(model, rs)
    opt = rs.setup.optimizer
    if opt in optimizers.EXTRA and rs.full:   # per-tensor rules (GaLore, torchao, schedule-free)
        o = rs.setup.optim
        state, paged, temp = optimizers.extra_state_bytes(opt, model, optimizers.tensor_inventory(model), dtype,
                                                          o.rank, o.update_proj_gap, o.targets, o.block_size)
    elif opt in optimizers.EXTRA:             # schedule-free AdamW over adapters: no per-tensor rule
        state, paged, temp = optimizers.extra_state_bytes(opt, model, [(stepped, 1)], dtype, 0, 1, (), 256)
    elif lora_fa.active(rs.setup):   # AdamW-hf's two moments for B and the other trainables; B's projected gradient
        state, paged, temp = 2 * stepped * dtype.bytes, 0, lora_fa.step_temporaries(model, rs)
    else:
        state, paged, temp = optimizers.state_bytes(opt, stepped, dtype, largest, shapes, embedding)
    temp += lora_variants.step_temporaries(model, rs)   # Delta-LoRA's in-place update of W
    return States(
        weights=int(weights), gradients=int(stepped * dtype.bytes), optimizer_state=state,
        optimizer_paged=paged, optimizer_step_temporaries=temp, trainable_params=trainable,
        largest_trainable=largest, layer_weight_bytes=int(layer_bytes),
    )
