"""DPO as TRL's DPOTrainer runs it: twice the sequences, and a reference model where one is kept."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Component, Loss, Method, Objective, Phase, PlannerError, TrainingSetup, estimate,
                             param_counts, resolve_model)

M = resolve_model("qwen-2.5-0.5b")
BASE = TrainingSetup(batch_size=2, seq_len=512, loss=Loss.TRL, loss_token_fraction=0.5)


def test_precomputed_reference_is_sft_on_chosen_and_rejected():
    dpo = estimate(M, BASE.with_(objective=Objective.DPO, precompute_ref_log_probs=True))
    sft = estimate(M, BASE.with_(batch_size=4))
    assert dpo.phase_components == sft.phase_components


def test_a_full_fine_tuning_reference_is_a_frozen_copy_in_the_policys_dtype():
    kept = estimate(M, BASE.with_(objective=Objective.DPO))
    pre = estimate(M, BASE.with_(objective=Objective.DPO, precompute_ref_log_probs=True))
    for phase in Phase:
        assert kept.phase_components[phase][Component.WEIGHTS] - pre.phase_components[phase][Component.WEIGHTS] \
            == 4 * param_counts(M).total                                  # fp32 under bf16-mixed


def test_peft_reference_is_the_base_with_adapters_disabled():
    lora = BASE.with_(method=Method.LORA, objective=Objective.DPO)
    kept, pre = estimate(M, lora), estimate(M, lora.with_(precompute_ref_log_probs=True))
    assert kept.phase_components[Phase.OPTIMIZER] == pre.phase_components[Phase.OPTIMIZER]
    fwd = kept.phase_components[Phase.FORWARD][Component.TEMPORARIES]
    assert fwd > 0 and kept.phases[Phase.FORWARD] >= pre.phases[Phase.FORWARD]   # the no-grad reference forward


def test_dpo_needs_trls_fused_head():
    with pytest.raises(PlannerError, match="--loss trl"):
        estimate(M, TrainingSetup(objective=Objective.DPO))


def test_kto_of_b_completions_costs_what_dpo_of_b_over_2_pairs_costs():
    """KTO's policy batch is b completions; DPO's is b/2 chosen + b/2 rejected: the same 2x(b/2) sequences
    through the policy, the same no-grad reference forward on them, the same reference model rules."""
    for method in (Method.FULL, Method.LORA):
        kto = estimate(M, BASE.with_(method=method, objective=Objective.KTO, batch_size=4))
        dpo = estimate(M, BASE.with_(method=method, objective=Objective.DPO, batch_size=2))
        assert kto.phase_components == dpo.phase_components
        assert any(n.startswith("KTO modelled from TRL 1.16.0") for n in kto.notes)


def test_kto_keeps_a_reference_forward_above_sft_even_with_peft():
    lora = BASE.with_(method=Method.LORA, batch_size=4)
    forward = lambda s: sum(estimate(M, s).phase_components[Phase.FORWARD].values())   # noqa: E731
    assert forward(lora.with_(objective=Objective.KTO)) > forward(lora)   # the adapter-disabled base's forward


def test_kto_refuses_what_trl_refuses():
    with pytest.raises(PlannerError, match="micro-batch of at least 2"):
        estimate(M, BASE.with_(objective=Objective.KTO, batch_size=1))
    with pytest.raises(PlannerError, match="--loss trl with --objective kto"):
        estimate(M, TrainingSetup(objective=Objective.KTO))
