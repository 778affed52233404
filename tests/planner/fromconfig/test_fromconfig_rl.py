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
