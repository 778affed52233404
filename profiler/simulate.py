"""simulate(): the real training step under FakeTensorMode: any model size, no memory, no GPU."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import Component, ModelSpec, Objective, TrainingSetup
from gpuplan.planner.specs.enums import Method, TrlVersion
from gpuplan.planner.specs.setup import Checkpointing

from .build import build, build_model, materialize
from .kernels.dropout import cuda_dropout
from .measurement import Measurement
from .module_dropout import module_dropout_draws
from .step import tracked_run
from .tracker import StorageTracker


def simulate(model: ModelSpec, setup: TrainingSetup, steps: int = 2, per_module: bool = False) -> Measurement:
    """Peak tensor bytes of a steady-state training step, as the CUDA allocator would count them.

    With `per_module`, the result also holds the per-module table and timeline (profiler/hooks.py).
    """
    setup.validate()
    if setup.objective is Objective.PPO:   # four models and TRL 1.12's loop [profiler/ppo_step.py]
        from .ppo_step import simulate_ppo   # lazy: TRL 1.12 loads only when PPO is simulated

        return simulate_ppo(model, setup)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    if setup.trl_version is TrlVersion.TRL_1_9 and setup.method is Method.FULL and not setup.precompute_ref_log_probs:
        built.reference = _frozen_copy(model, setup, fake)   # TRL 1.9 DPO's reference [profiler/trl19_dpo.py]
    with cuda_dropout(), _trl_kernels(setup), module_dropout_draws():
        return tracked_run(built, model, setup, "simulate", steps, per_module, fake)


def _frozen_copy(model: ModelSpec, setup: TrainingSetup, fake: FakeTensorMode) -> torch.nn.Module:
    """DPOTrainer's reference for full fine-tuning: the model loaded again in the policy's dtype, no checkpointing,
    frozen, in eval mode (accelerator.prepare_model(evaluation_mode=True)) [trl/trainer/dpo_trainer.py l.893-936,
    TRL 1.9.0]."""
    ref, _ = build_model(model, setup.with_(checkpointing=Checkpointing.NONE), torch.device("meta"), simulated=True)
    with fake:
        materialize(ref, torch.device("cpu"))
    ref.requires_grad_(False)
    ref.eval()
    return ref


def _trl_kernels(setup: TrainingSetup) -> contextlib.AbstractContextManager:
    """TRL's Triton log-prob kernel as CUDA runs it (a stand-in), for the TRL trainers simulated by TRL's code."""
    if setup.objective is not Objective.ORPO:
        return contextlib.nullcontext()
    from .kernels.trl_logprob import trl_logprob_kernel  # lazy: TRL loads only when its trainer is simulated

    return trl_logprob_kernel()


@contextlib.contextmanager
def fake_eval_model(model: ModelSpec, setup: TrainingSetup) -> Iterator[tuple[torch.nn.Module, StorageTracker, object]]:
    """(model in eval mode, tracker, built) under FakeTensorMode, its weights and buffers tracked: the
    start of every simulated phase without gradients (eval steps, generate)."""
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    with fake:
        tracker = StorageTracker()
        with tracker:
            lm = built.model
            lm.eval()
            tracker.track(list(lm.parameters()) + list(lm.buffers()), Component.WEIGHTS)
            yield lm, tracker, built
