"""gpuplan.planner: closed-form memory, time and cost estimates. Imports no torch, pandas or streamlit.

The names below are the planner's public API; everything else is reached through its subpackages.
"""
from .specs.enums import (Attention, Choice, Component, DType, Loss, Method, MlpKind, NormKind, Objective,
                          Optimizer, Phase, Precision, QuantType, RunPhase, Source)
from .specs.errors import NoClosedForm, PlannerError
from .specs.model import LinearSpec, ModelSpec
from .io.architectures import model_from_config
from .specs.params import ParamCounts, param_counts
from .specs.parallel import Fsdp, Offload, OffloadDevice, ParallelSpec
from .specs.engines import Engine, computes_without_autocast, engine_of
from .memory.result import MemoryEstimate, figures_dict
from .memory.figures import peak_figures
from .specs.setup import ALL_LINEAR, ActivationOffload, Checkpointing, LoraSpec, PeftSpec, QuantSpec, TrainingSetup
from .specs.gpu import GpuSpec
from .io.catalog import all_gpus, resolve_gpu, resolve_model
from .memory.estimate import estimate, fits
from .speed.throughput import StepTime, step_time

__all__ = [
    "Attention", "Choice", "Component", "DType", "Loss", "Method", "MlpKind", "NormKind", "Objective", "Optimizer",
    "Phase", "Precision", "QuantType", "RunPhase", "Source", "NoClosedForm", "PeftSpec", "peak_figures", "PlannerError", "LinearSpec", "ModelSpec", "model_from_config",
    "ParamCounts", "param_counts", "Fsdp", "Offload", "OffloadDevice", "ParallelSpec", "Engine",
    "computes_without_autocast", "engine_of", "MemoryEstimate", "figures_dict", "ALL_LINEAR", "ActivationOffload", "Checkpointing",
    "LoraSpec", "QuantSpec", "TrainingSetup", "GpuSpec", "all_gpus", "resolve_gpu", "resolve_model", "estimate",
    "fits", "StepTime", "step_time",
]
