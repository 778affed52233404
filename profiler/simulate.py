"""simulate(): the real training step under FakeTensorMode: any model size, no memory, no GPU."""
from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import ModelSpec, TrainingSetup

from .build import build
from .kernels.dropout import cuda_dropout
from .measurement import Measurement
from .step import tracked_run


def simulate(model: ModelSpec, setup: TrainingSetup, steps: int = 2, per_module: bool = False) -> Measurement:
    """Peak tensor bytes of a steady-state training step, as the CUDA allocator would count them.

    With `per_module`, the result also holds the per-module table and timeline (profiler/hooks.py).
    """
    setup.validate()
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    with cuda_dropout():
        return tracked_run(built, model, setup, "simulate", steps, per_module, fake)
