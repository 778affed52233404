"""GRPO's generation phase (planner/techniques/grpo.py) against transformers' own sampling `generate`
run under FakeTensorMode (profiler/generation.py, do_sample=True as GRPOTrainer calls it)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.planner import Component, Loss, Method, Objective, Precision, TrainingSetup, resolve_model  # noqa: E402
from gpuplan.planner.memory.rollouts import generation_phase
from gpuplan.planner.techniques import grpo  # noqa: E402
from gpuplan.profiler.generation import simulate_generation  # noqa: E402

G = TrainingSetup(objective=Objective.GRPO, loss=Loss.TRL, num_generations=2)
CASES = [G.with_(method=Method.LORA, batch_size=2, seq_len=48, completion_len=16),                 # autocast, frozen fp32
         G.with_(precision=Precision.BF16_TRUE, batch_size=2, seq_len=40, completion_len=8, grad_accum=2)]  # 4 completions


@pytest.mark.slow
@pytest.mark.parametrize("setup", CASES, ids=["lora-bf16-mixed", "full-bf16-true"])
def test_generation_phase_matches_the_simulated_sampling_generate(setup):
    m = resolve_model("qwen-2.5-0.5b")
    g = generation_phase(m, setup)
    _, simulated = simulate_generation(m, setup, grpo.generation_batch(setup), setup.seq_len - setup.completion_len,
                                       setup.completion_len, do_sample=True)
    estimated = g.peak_allocated_bytes - g.components[Component.OPTIMIZER_STATE]   # the simulation builds none
    assert estimated == pytest.approx(simulated, rel=0.005)
