"""Optimizers as HF Trainer builds them for `optim=...`: the state they keep, the temporaries of
their step and the bytes the step streams through memory."""
from __future__ import annotations

from ..specs.enums import DType, Optimizer

# 8-bit optimizers keep blockwise-quantized states (blocks of 256, fp32 absmax) for tensors with
# at least 4096 elements; smaller tensors keep 32-bit states
# [bitsandbytes/optim/optimizer.py: Optimizer8bit.init_state, min_8bit_size=4096].
OPT8_BLOCK = 256
OPT8_MIN_SIZE = 4096


def state_bytes(opt: Optimizer, trainable: int, dtype: DType, largest: int,
                param_shapes_2d: tuple[int, int], embedding: int = 0) -> tuple[int, int, int]:
    """(allocated state, paged state, step temporaries) for `trainable` parameters of `dtype`."""
    p = dtype.bytes
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


def streamed_bytes_per_param(opt: Optimizer, w: float) -> float:
    """Bytes the optimizer step streams per trainable parameter of `w` bytes (reads and writes).

    AdamW: read param, grad, m, v; write param, m, v [torch/optim/adamw.py _fused_adamw]; 8-bit
    states are 1 byte each [bitsandbytes optim/optimizer.py]; SGD with momentum: p, g, buf read,
    p, buf written; Adafactor keeps factored second moments (no full-size state) plus p and g.
    """
    state = 1 if opt.eight_bit else 4
    if opt is Optimizer.SGD:
        return 3 * w + 2 * state
    if opt is Optimizer.ADAFACTOR:
        return 3 * w
    if opt is Optimizer.LION:
        return 3 * w + 2 * state
    return 3 * w + 4 * state
