"""Weights, gradients, optimizer state and optimizer-step temporaries, in bytes."""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import DType, Method, Optimizer, QuantType
from ..specs.model import ModelSpec
from ..specs.params import lora_params, param_counts
from ..specs.setup import TrainingSetup

# bitsandbytes: 4-bit weights are quantized in blocks of 64; with double quantization the fp32
# absmax of each block becomes uint8, itself quantized in blocks of 256 with an fp32 absmax
# [bitsandbytes/functional.py: quantize_4bit (blocksize=64), QuantState nested (blocksize=256)].
QUANT_BLOCK = 64
NESTED_BLOCK = 256
# 8-bit optimizers keep blockwise-quantized states (blocks of 256, fp32 absmax) for tensors with
# at least 4096 elements; smaller tensors keep 32-bit states
# [bitsandbytes/optim/optimizer.py: Optimizer8bit.init_state, min_8bit_size=4096].
OPT8_BLOCK = 256
OPT8_MIN_SIZE = 4096


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


def quantized_bytes(weight_count: int, out_rows: int, setup: TrainingSetup) -> float:
    """Bytes bitsandbytes holds for quantized linear weights with `weight_count` elements."""
    q = setup.quant
    if q.quant_type is QuantType.INT8:  # int8 weights + fp32 per-row scale (SCB)
        return weight_count + 4 * out_rows
    blocks = weight_count / QUANT_BLOCK
    absmax = blocks * (1 + 4 / NESTED_BLOCK) if q.double_quant else blocks * 4
    return weight_count / 2 + absmax


def _linear_inventory(model: ModelSpec) -> tuple[int, int]:
    """(weights, output rows) of all decoder-layer linears, biases excluded."""
    weights = rows = 0
    for count, linears in ((model.dense_layers, model.dense_linears), (model.moe_layers, model.moe_linears)):
        weights += count * sum(lin.weight_count for lin in linears)
        rows += count * sum(lin.experts * lin.out_features for lin in linears)
    return weights, rows


def optimizer_bytes(trainable: int, dtype: DType, setup: TrainingSetup, largest: int,
                    param_shapes_2d: tuple[int, int], embedding: int = 0) -> tuple[int, int, int]:
    """(allocated state, paged state, step temporaries) for `trainable` parameters of `dtype`."""
    opt, p = setup.optimizer, dtype.bytes
    if opt in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
        # torch AdamW: exp_avg and exp_avg_sq in the parameter's dtype [torch/optim/adamw.py]
        state = 2 * trainable * p
        # foreach: torch._foreach_sqrt(exp_avg_sqs) makes one state-sized temporary list
        # [torch/optim/adam.py: _multi_tensor_adam]; fused kernels update in place.
        temp = trainable * p if opt is Optimizer.ADAMW else 0
        return int(state), 0, int(temp)
    if opt is Optimizer.SGD:  # momentum_buffer; foreach updates in place
        return int(trainable * p), 0, 0
    if opt is Optimizer.LION:  # bitsandbytes 32-bit states are fp32 whatever the parameter dtype
        return int(4 * trainable), 0, 0
    if opt is Optimizer.PAGED_ADAMW:
        return 0, int(8 * trainable), 0
    if opt in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT):
        per = 2 + 2 * 4 / OPT8_BLOCK   # state1 + state2 uint8, one fp32 absmax per block each
        # HF Trainer keeps 32-bit (fp32) states for nn.Embedding weights: it registers them with
        # bnb's GlobalOptimManager (override optim_bits=32) [transformers/trainer.py: create_optimizer]
        state = int((trainable - embedding) * per + 8 * embedding)
        return (0, state, 0) if opt.paged else (state, 0, 0)
    if opt is Optimizer.ADAFACTOR:
        # transformers Adafactor: factored second moment (row + col vectors, fp32) for 2-D
        # tensors, no first moment (beta1=None); per tensor it builds grad**2 + eps and the
        # full-size approximated update in fp32 [transformers/optimization.py: Adafactor.step].
        # For 16-bit weights it also upcasts the gradient and the weight (`.float()` copies), and
        # `update = _approx_sq_grad(...)` is built while `grad**2 + eps` is still referenced.
        rows, cols = param_shapes_2d
        state = 4 * (rows + cols)
        temp = 2 * 4 * largest + (2 * 4 * largest if p < 4 else 0)
        return int(state), 0, int(temp)
    raise AssertionError(opt)


def states(model: ModelSpec, setup: TrainingSetup) -> States:
    pc = param_counts(model)
    total = pc.total
    layer_weights = (pc.attention + pc.mlp) // model.n_layers
    if setup.method is Method.FULL:
        dtype = setup.precision.weight_dtype
        trainable = total
        weights = total * dtype.bytes
        largest = model.vocab * model.hidden
        shapes = (model.n_layers * sum(l.out_features * l.experts for l in model.dense_linears) + model.vocab,
                  model.n_layers * sum(l.in_features for l in model.dense_linears) + model.hidden)
        layer_bytes = layer_weights * dtype.bytes
    else:
        dtype = setup.adapter_dtype
        trainable = lora_params(model, setup)
        largest = max((lin.in_features for lin in model.dense_linears), default=0) * setup.lora.r
        shapes = (trainable // (2 * setup.lora.r), 2 * setup.lora.r)
        frozen = setup.frozen_dtype.bytes
        if setup.method is Method.QLORA:
            linear_weights, rows = _linear_inventory(model)
            biases_norms = total - linear_weights
            weights = quantized_bytes(linear_weights, rows, setup) + biases_norms * frozen
            layer_bytes = quantized_bytes(layer_weights, 0, setup)
        else:
            weights = total * frozen
            layer_bytes = layer_weights * frozen
        weights += trainable * dtype.bytes
    embedding = pc.embedding if setup.method is Method.FULL else 0
    state, paged, temp = optimizer_bytes(trainable, dtype, setup, largest, shapes, embedding)
    return States(
        weights=int(weights), gradients=int(trainable * dtype.bytes), optimizer_state=state,
        optimizer_paged=paged, optimizer_step_temporaries=temp, trainable_params=trainable,
        largest_trainable=largest, layer_weight_bytes=int(layer_bytes),
    )
