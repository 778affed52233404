"""GRPO as TRL 1.16.0's GRPOTrainer runs it with HF generate: a generation phase of its own (the KV cache of
b x steps_per_generation sampled completions, the no-grad log-prob passes), and a training step with TRL's
fused LM head on the completion tokens; a reference model only when beta > 0."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Component, Loss, Method, Objective, Phase, PlannerError, Precision, TrainingSetup,
                             estimate, param_counts, resolve_model)
from gpuplan.planner.specs.parallel import ParallelSpec
from gpuplan.planner.memory.rollouts import generation_phase
from gpuplan.planner.techniques import grpo

M = resolve_model("qwen-2.5-0.5b")
BASE = TrainingSetup(objective=Objective.GRPO, loss=Loss.TRL, batch_size=4, seq_len=1024, completion_len=512,
                     num_generations=4, method=Method.LORA)


def test_the_step_is_the_fused_head_step_on_the_completions():
    """b sequences of prompt + completion, the fused head on b x completion_len positions: the SFT step
    with TRL's head whose labelled share is completion_len / (s - 1)."""
    sft = TrainingSetup(loss=Loss.TRL, batch_size=4, seq_len=1024, method=Method.LORA,
                        loss_token_fraction=512 / 1023)
    assert estimate(M, BASE).phase_components == estimate(M, sft).phase_components
    assert any(n.startswith("GRPO training step modelled from TRL 1.16.0") for n in estimate(M, BASE).notes)


def test_beta_keeps_a_reference_copy_for_full_fine_tuning_only():
    full = BASE.with_(method=Method.FULL, precision=Precision.BF16_TRUE)
    kept, none = estimate(M, full.with_(kl_beta=0.04)), estimate(M, full)
    for phase in Phase:
        assert kept.phase_components[phase][Component.WEIGHTS] - none.phase_components[phase][Component.WEIGHTS] \
            == 2 * param_counts(M).total                                   # the policy's dtype: bf16
    lora = estimate(M, BASE.with_(kl_beta=0.04)), estimate(M, BASE)
    assert lora[0].phase_components == lora[1].phase_components            # peft: the adapters disabled


def test_the_generation_batch_is_batch_times_steps_per_generation():
    one, four = generation_phase(M, BASE), generation_phase(M, BASE.with_(steps_per_generation=4))
    assert (one.completions, four.completions) == (4, 16)
    assert four.kv_cache_bytes == pytest.approx(4 * one.kv_cache_bytes, rel=1e-9)
    assert generation_phase(M, BASE.with_(grad_accum=2)).completions == 8   # default: gradient_accumulation_steps


def test_generation_holds_the_optimizer_state_but_no_gradients():
    g = generation_phase(M, BASE.with_(method=Method.FULL))
    step = estimate(M, BASE.with_(method=Method.FULL))
    assert g.components[Component.GRADIENTS] == 0
    assert g.components[Component.OPTIMIZER_STATE] == step.phase_components[Phase.OPTIMIZER][Component.OPTIMIZER_STATE]


def test_log_prob_passes_run_only_when_trl_runs_them():
    assert not grpo.old_policy_pass(BASE) and not grpo.keeps_reference(BASE)
    assert grpo.old_policy_pass(BASE.with_(steps_per_generation=4))        # 1 % 4 != 0
    assert not grpo.old_policy_pass(BASE.with_(steps_per_generation=4, grad_accum=4))
    notes = generation_phase(M, BASE.with_(kl_beta=0.1)).notes
    assert any("reference" in n for n in notes)


def test_grpo_refuses_what_trl_refuses_or_the_plan_does_not_model():
    cases = [(dict(loss=Loss.HF), "--loss trl"), (dict(num_generations=1), "at least 2"),
             (dict(num_generations=3), "multiple of --num-generations"), (dict(completion_len=1024), "below --seq-len"),
             (dict(loss_token_fraction=0.5), "drop --loss-tokens"), (dict(parallel=ParallelSpec(gpus=2)), "one GPU only")]
    for change, message in cases:
        with pytest.raises(PlannerError, match=message):
            BASE.with_(**change).validate()
    with pytest.raises(PlannerError, match="ppo"):
        TrainingSetup(objective=Objective.PPO).validate()


def test_to_dict_shows_grpo_knobs_only_when_set():
    d = BASE.to_dict()
    assert d["objective"] == "grpo" and d["num_generations"] == 4 and "kl_beta" not in d
    assert TrainingSetup.from_dict(d).to_dict() == d
    assert "num_generations" not in TrainingSetup().to_dict()
