"""profiler/optimizers.py: the real GaLore and schedule-free optimizers, one real CPU step on the tiny
model; their state storages (views counted once) equal the planner's state bytes exactly."""
from __future__ import annotations

import pytest
import torch

from gpuplan.planner import Attention, Optimizer, Precision, TrainingSetup
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.optim import OptimSpec
from gpuplan.profiler.build import build
from gpuplan.profiler.step import _optimizer_state, run_steps
from gpuplan.profiler.tracker import StorageTracker


def _real_state_bytes(built) -> int:
    storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in _optimizer_state(built.optimizer)}
    return sum(storages.values())


@pytest.mark.parametrize("kw", [
    dict(optimizer=Optimizer.GALORE_ADAMW, optim=OptimSpec(rank=8)),                 # fp32: views of the SVD factors
    dict(optimizer=Optimizer.GALORE_ADAMW, optim=OptimSpec(rank=8), precision=Precision.BF16_TRUE),
    dict(optimizer=Optimizer.GALORE_ADAMW, optim=OptimSpec(rank=8, targets=("q_proj", "down_proj"))),
    dict(optimizer=Optimizer.SCHEDULE_FREE_ADAMW),
    dict(optimizer=Optimizer.ADAM_MINI),
    dict(optimizer=Optimizer.ADAM_MINI, precision=Precision.BF16_TRUE),
    dict(optimizer=Optimizer.MUON),
    dict(optimizer=Optimizer.APOLLO_ADAMW, optim=OptimSpec(rank=8)),
    dict(optimizer=Optimizer.APOLLO_ADAMW, optim=OptimSpec(rank=8), precision=Precision.BF16_TRUE),
], ids=["galore-fp32", "galore-bf16", "galore-targets", "schedule-free", "adam-mini", "adam-mini-bf16", "muon", "apollo-fp32",
                            "apollo-bf16"])
def test_state_bytes_equal_the_real_optimizer_after_one_step(tiny, kw):
    pytest.importorskip({Optimizer.GALORE_ADAMW: "galore_torch", Optimizer.ADAM_MINI: "adam_mini",
                         Optimizer.MUON: "torch", Optimizer.APOLLO_ADAMW: "apollo_torch"}.get(kw["optimizer"], "schedulefree"))
    setup = TrainingSetup(batch_size=1, seq_len=16, attention=Attention.EAGER, **kw)
    built = build(tiny, setup, torch.device("cpu"))
    run_steps(built, setup, StorageTracker(), steps=1)
    assert _real_state_bytes(built) == terms(tiny, setup)[1].optimizer_state
