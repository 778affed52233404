"""gpuplan DType <-> torch.dtype, from the one table of torch dtype names (planner/io/hf_vocabulary.py)."""
from __future__ import annotations

import torch

from gpuplan.planner import DType
from gpuplan.planner.io.hf_vocabulary import TORCH_DTYPE_NAMES

DTYPE_OF: dict[torch.dtype, DType] = {getattr(torch, name): dtype for name, dtype in TORCH_DTYPE_NAMES.items()}
TORCH_DTYPES: dict[DType, torch.dtype] = {dtype: t for t, dtype in DTYPE_OF.items()}
