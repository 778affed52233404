"""recommend --objective: the candidates are planned for the TRL trainer asked for (its loss, its step and run
phases in the fit), the combinations it refuses are skipped and said in one line; SFT's search is untouched
(tests/golden holds its answers)."""
from __future__ import annotations

import pytest

from gpuplan.planner import Method, Objective, PlannerError, resolve_model
from gpuplan.planner.memory.load import run_device_total, run_phase_totals
from gpuplan.planner.plans.recommend import recommend, search_from_inputs

M = resolve_model("qwen-2.5-0.5b")


def _rec(objective: str, max_gpus: int = 2, methods: str = "lora"):
    c, space = search_from_inputs(methods, max_gpus, gpus="rtx-4090,a100-80gb", seq_len=1024, objective=objective)
    return recommend(M, 20_000_000, 1.0, c, space)


def test_sft_is_the_search_as_it_was():
    c, space = search_from_inputs("lora", 2, gpus="rtx-4090", objective="sft")
    assert space == search_from_inputs("lora", 2, gpus="rtx-4090")[1]


@pytest.mark.parametrize("objective", ["dpo", "kto", "orpo", "grpo", "rm"])
def test_every_plan_is_the_objectives_own_and_fits_its_run_phases(objective):
    rec = _rec(objective)
    assert rec.plans, rec.closest
    one_gpu = objective == "rm"   # reward modelling is planned on one GPU; the others on several too
    for p in rec.plans:
        assert p.setup.objective is Objective(objective) and (p.gpus == 1 or not one_gpu)
        assert p.device_total_bytes == run_device_total(M, p.setup) <= p.gpu.memory_bytes
    skipped = any(f"--objective {objective}" in n and "multi-GPU" in n and "skipped" in n for n in rec.notes)
    assert skipped == one_gpu
    if not one_gpu:
        assert any(p.gpus > 1 for p in rec.plans)
    if objective == "kto":   # KTOTrainer's KL pairs need a micro-batch of 2 or more
        assert min(p.setup.batch_size for p in rec.plans) >= 2


def test_grpo_fits_its_generation_phase():
    rec = _rec("grpo", max_gpus=1)
    p = rec.cheapest
    phases = run_phase_totals(M, p.setup)
    assert "generate" in phases and p.device_total_bytes == max(phases.values())


def test_ppo_and_unknown_objectives_are_refused():
    with pytest.raises(PlannerError, match="PPOTrainer"):
        search_from_inputs("lora", objective="ppo")
    with pytest.raises(PlannerError, match="choose from"):
        search_from_inputs("lora", objective="simpo")
