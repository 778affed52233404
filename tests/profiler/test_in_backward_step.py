"""profiler/in_backward.py: the per-parameter optimizers and their post-accumulate-grad hooks run the
step inside backward, on real CPU tensors and under fake ones; the estimate agrees with the simulation."""
from __future__ import annotations

import pytest
import torch

from gpuplan.planner import Attention, Component, Checkpointing, Optimizer, Phase, TrainingSetup, estimate, resolve_model
from gpuplan.profiler.build import build
from gpuplan.profiler.cpu import measure_cpu
from gpuplan.profiler.in_backward import InBackward
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.step import run_steps
from gpuplan.profiler.tracker import StorageTracker

TINY = TrainingSetup(batch_size=2, seq_len=16, attention=Attention.EAGER, optimizer_in_backward=True)


def test_each_parameter_steps_in_backward_and_its_gradient_is_freed(tiny):
    built = build(tiny, TINY, torch.device("cpu"))
    assert isinstance(built.optimizer, InBackward)
    before = {n: p.detach().clone() for n, p in built.model.named_parameters()}
    run_steps(built, TINY, StorageTracker(), steps=1)
    for name, p in built.model.named_parameters():
        assert p.grad is None, name                        # zero_grad(set_to_none=True) in the hook
        assert not torch.equal(before[name], p.detach()), name   # stepped
    assert len(built.optimizer.state) == len(before)      # one AdamW state per parameter


def test_simulate_equals_cpu_to_the_byte(tiny):
    fake, real = simulate(tiny, TINY), measure_cpu(tiny, TINY)
    assert real.phase_components == fake.phase_components


@pytest.mark.parametrize("name, kw", [   # untied: the head steps at once, its foreach temporaries on top
    ("pythia-160m", dict(checkpointing=Checkpointing.NONE, optimizer=Optimizer.ADAMW)),
])
def test_estimate_within_one_percent_of_the_simulated_step(name, kw):
    model, setup = resolve_model(name), TrainingSetup(batch_size=2, seq_len=256, optimizer_in_backward=True, **kw)
    sim = simulate(model, setup)
    est = estimate(model, setup)
    assert abs(est.peak_allocated_bytes - sim.peak_allocated_bytes) / sim.peak_allocated_bytes < 0.01
    assert sim.phase_components[Phase.OPTIMIZER][Component.GRADIENTS] == 0   # the loop's step() does nothing
