"""profiler/kernels/dropout.py: F.dropout takes the fused kernel's path, as on CUDA.

On CUDA `F.dropout` runs `aten.native_dropout` (is_fused_kernel_acceptable), whose backward keeps a
bool mask; on a CPU tensor it runs `_dropout_impl`, which keeps the mask in the input's dtype. Both
are checked here on the autograd node that the forward leaves behind.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gpuplan.profiler.kernels.dropout import cuda_dropout


def _saved_masks(y: torch.Tensor) -> list[torch.dtype]:
    node = y.grad_fn
    return [getattr(node, n).dtype for n in dir(node)
            if n.startswith("_saved") and isinstance(getattr(node, n), torch.Tensor)]


def test_inside_the_stand_in_dropout_keeps_a_bool_mask():
    x = torch.randn(64, 32, dtype=torch.bfloat16, requires_grad=True)
    with cuda_dropout():
        y = F.dropout(x, 0.1, training=True)
    assert type(y.grad_fn).__name__ == "NativeDropoutBackward0"
    assert _saved_masks(y) == [torch.bool]
    kept = y != 0   # kept values are scaled by 1 / (1 - p)
    assert torch.allclose(y[kept].float(), (x[kept] / 0.9).float(), rtol=1e-2)


def test_outside_the_stand_in_cpu_dropout_keeps_an_input_dtype_mask():
    x = torch.randn(64, 32, dtype=torch.bfloat16, requires_grad=True)
    y = F.dropout(x, 0.1, training=True)
    assert torch.bfloat16 in _saved_masks(y) and torch.bool not in _saved_masks(y)


def test_eval_and_p0_are_untouched_and_the_swap_is_undone():
    original = F.dropout
    x = torch.randn(8, 8)
    with cuda_dropout():
        assert torch.equal(F.dropout(x, 0.1, training=False), x)
        assert torch.equal(F.dropout(x, 0.0, training=True), x)
    assert torch.nn.functional.dropout is original
