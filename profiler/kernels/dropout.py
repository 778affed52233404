"""cuda_dropout(): dropout as the CUDA kernel allocates it (a bool mask), used only under FakeTensorMode."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def cuda_dropout() -> Iterator[None]:
    """Dropout as CUDA runs it: the fused kernel keeps a bool mask (`aten.native_dropout`).

    On a CPU tensor `F.dropout` takes `_dropout_impl`, which keeps the mask in the input's dtype
    (2-4x the bytes) [aten/src/ATen/native/Dropout.cpp: is_fused_kernel_acceptable is CUDA-only].
    `torch.nn.functional.dropout` is swapped (not intercepted by a mode) so that checkpointing's
    recompute inside backward takes the same path as the forward.
    """
    original = torch.nn.functional.dropout

    def dropout(input, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1 and not inplace and input.numel() > 0:
            return torch.native_dropout(input, p, True)[0]
        return original(input, p, training, inplace)

    torch.nn.functional.dropout = dropout
    try:
        yield
    finally:
        torch.nn.functional.dropout = original
