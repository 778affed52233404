"""TRL's GRPOConfig keys in the hf reader: num_generations marks a GRPO config (GRPOTrainer, TRL 1.16.0)."""
from __future__ import annotations

import pytest

from gpuplan.planner import PlannerError
from gpuplan.planner.fromconfig import read_config

GRPO = """model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
num_generations: 4
max_completion_length: 256
beta: 0.04
use_peft: true
bf16: true
"""


def test_a_grpo_config_maps_to_objective_grpo(tmp_path):
    p = tmp_path / "grpo.yaml"
    p.write_text(GRPO + "max_length: 512\n")
    c = read_config(str(p))
    assert {k: c.options[k] for k in ("objective", "loss", "num_generations", "completion_len", "kl_beta")} == \
        {"objective": "grpo", "loss": "trl", "num_generations": 4, "completion_len": 256, "kl_beta": 0.04}
    assert not c.refused and not c.unknown


def test_the_prompt_length_must_be_given(tmp_path):
    p = tmp_path / "grpo.yaml"
    p.write_text(GRPO)
    c = read_config(str(p))
    assert len(c.refused) == 1 and "give --seq-len" in c.refused[0]
    with pytest.raises(PlannerError, match="prompts are as long as the data"):
        c.check()


def test_vllm_colocate_maps_and_server_mode_is_refused(tmp_path):
    p = tmp_path / "grpo.yaml"
    p.write_text(GRPO + "max_length: 512\nuse_vllm: true\nvllm_gpu_memory_utilization: 0.4\n")
    assert read_config(str(p)).options["vllm_colocate"] == 0.4
    p.write_text(GRPO + "max_length: 512\nuse_vllm: true\nvllm_mode: server\n")
    assert any(r.startswith("vllm_mode: server") for r in read_config(str(p)).refused)


REWARD = """model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
per_device_train_batch_size: 8
max_length: 1024
gradient_checkpointing: true
bf16: true
"""


@pytest.mark.parametrize("marker", ["center_rewards_coefficient: 0.01\n", "center_rewards_coefficient: null\n",
                                    "use_peft: true\nlora_task_type: SEQ_CLS\n"])
def test_a_reward_config_maps_to_objective_rm(tmp_path, marker):
    """RewardConfig's own key, or TRL ModelConfig's lora_task_type SEQ_CLS ("use 'SEQ_CLS' for reward modeling")."""
    p = tmp_path / "reward.yaml"
    p.write_text(REWARD + marker + "disable_dropout: true\n")
    c = read_config(str(p))
    assert c.options["objective"] == "rm" and c.options["seq_len"] == 1024
    assert not c.refused and not c.unknown


def test_an_sft_config_stays_sft(tmp_path):
    p = tmp_path / "sft.yaml"
    p.write_text(REWARD)
    assert "objective" not in read_config(str(p)).options


def test_axolotl_reward_model_needs_one_label(tmp_path):
    """axolotl's reward_model: true trains TRL's RewardTrainer, which raises for num_labels != 1."""
    base = "base_model: Qwen/Qwen2.5-0.5B\nmicro_batch_size: 2\nsequence_len: 512\nreward_model: true\n"
    p = tmp_path / "rm.yml"
    p.write_text(base + "model_type: AutoModelForSequenceClassification\nnum_labels: 1\n")
    c = read_config(str(p))
    assert c.options["objective"] == "rm" and not c.refused
    p.write_text(base + "num_labels: 2\n")
    c = read_config(str(p))
    assert "objective" not in c.options and any(r.startswith("num_labels: 2") for r in c.refused)
    p.write_text("base_model: Qwen/Qwen2.5-0.5B\nmicro_batch_size: 2\nsequence_len: 512\n"
                 "model_type: AutoModelForSequenceClassification\n")
    assert any(r.startswith("model_type:") for r in read_config(str(p)).refused)   # without reward_model


# axolotl rl: dpo / ipo -> TRL 1.9's DPOTrainer (axolotl 0.19.0 pins trl==1.9.0; planner/techniques/dpo19.py)
AXOLOTL_DPO = """base_model: Qwen/Qwen2.5-0.5B
rl: dpo
adapter: lora
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_linear: true
sequence_len: 1024
micro_batch_size: 2
bf16: auto
gradient_checkpointing: true
"""


def _axolotl(tmp_path, extra: str = ""):
    p = tmp_path / "dpo.yaml"
    p.write_text(AXOLOTL_DPO + extra)
    return read_config(str(p))


def test_axolotl_dpo_maps_to_trl_1_9s_trainer(tmp_path):
    c = _axolotl(tmp_path, "dpo_beta: 0.2\nrl_beta: 0.2\ndpo_loss_type: [sigmoid, bco_pair]\n"
                           "precompute_ref_log_probs: true\ntrl:\n  beta: 0.2\n  num_generations: 4\n")
    assert {k: c.options[k] for k in ("objective", "stack_versions", "loss", "lora_dropout",
                                      "precompute_ref_log_probs")} == \
        {"objective": "dpo", "stack_versions": "trl-1.12", "loss": "hf", "lora_dropout": 0.0,
         "precompute_ref_log_probs": True}
    assert not c.refused and not c.unknown
    assert "GRPOStrategy only" in c.used["trl"] and "per-sequence scalars" in c.used["dpo_loss_type"]
    assert _axolotl(tmp_path, "").options["objective"] == "dpo"
    ipo = tmp_path / "ipo.yaml"
    ipo.write_text(AXOLOTL_DPO.replace("rl: dpo", "rl: ipo"))
    assert read_config(str(ipo)).options["stack_versions"] == "trl-1.12"


def test_axolotl_dpo_options_gpuplan_does_not_model_are_refused(tmp_path):
    for extra, word in (("dpo_loss_type: [sigmoid, sft]\n", "cross-entropy"),
                        ("dpo_use_weighting: true\n", "logsumexp"),
                        ("dpo_padding_free: true\n", "padding-free"),
                        ("dpo_use_liger_kernel: true\n", "Liger"),
                        ("rl_adapter_ref_model: true\n", "second reference model")):
        c = _axolotl(tmp_path, extra)
        assert len(c.refused) == 1 and word in c.refused[0], c.refused
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(AXOLOTL_DPO.replace("rl: dpo", "rl: grpo") + "trl:\n  num_generations: 4\n")
    c = read_config(str(grpo))
    assert any(r.startswith("rl: grpo") and "trl==1.9.0" in r for r in c.refused)
    assert any(r.startswith("trl:") for r in c.refused)
