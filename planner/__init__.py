"""gpuplan.planner: closed-form memory, time and cost estimates. Imports no torch, pandas or streamlit.

The names below are the planner's public API; everything else is reached through its subpackages.
"""
from .enums import (Attention, Choice, Component, DType, Loss, Method, MlpKind, NormKind, Optimizer, Phase,
                    Precision, QuantType, RunPhase)
from .errors import PlannerError
from .model import LinearSpec, ModelSpec, model_from_config
from .params import ParamCounts, param_counts
from .parallel import Fsdp, Offload, OffloadDevice, ParallelSpec
from .result import MemoryEstimate, figures_dict
from .setup import ALL_LINEAR, Checkpointing, LoraSpec, QuantSpec, TrainingSetup
from .engines import Engine, computes_without_autocast, engine_of
from .catalog import GpuSpec, all_gpus, resolve_gpu, resolve_model
from .estimate import estimate, fits
from .throughput import StepTime, step_time

__all__ = [
    "Attention", "Component", "DType", "Loss", "Method", "MlpKind", "NormKind", "Optimizer", "Phase",
    "Precision", "QuantType", "RunPhase", "PlannerError", "LinearSpec", "ModelSpec", "model_from_config",
    "ParamCounts", "param_counts", "Fsdp", "Offload", "OffloadDevice", "ParallelSpec", "MemoryEstimate",
    "Checkpointing", "LoraSpec", "QuantSpec", "TrainingSetup", "GpuSpec", "all_gpus", "resolve_gpu",
    "resolve_model", "estimate", "fits", "StepTime", "step_time",
    # used by the profiler (profiler/measurement.py, trainer_setup.py, distributed.py, device.py)
    "Choice", "figures_dict", "ALL_LINEAR", "Engine", "computes_without_autocast", "engine_of",
]
