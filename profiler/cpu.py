"""measure_cpu(): the training step with real tensors on the CPU, for models small enough to run.

The CPU has no allocator statistics, so the StorageTracker counts the bytes, as under simulate().
What it adds over simulate() is proof that the step really runs and that fake and real tensors
take the same bytes. Two differences are expected, both by design: simulate() stands in for the
CUDA attention kernels (profiler/kernels/attention.py) while this runs the CPU's, and a kernel's internal
workspace (at::empty inside the C++ kernel) is invisible to a dispatch mode on a real device.
With eager attention the two agree to the byte (tests/profiler/test_cpu.py).
"""
from __future__ import annotations

import torch

from gpuplan.planner import ModelSpec, TrainingSetup

from .build import build
from .measurement import Measurement
from .step import tracked_run


def measure_cpu(model: ModelSpec, setup: TrainingSetup, steps: int = 2,
                per_module: bool = False) -> Measurement:
    """Peak tensor bytes of a steady-state step run with real CPU tensors, counted by the tracker."""
    setup.validate()
    built = build(model, setup, torch.device("cpu"))   # QLoRA: real bitsandbytes (its CPU backend)
    return tracked_run(built, model, setup, "cpu", steps, per_module)
