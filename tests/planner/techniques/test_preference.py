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
