"""--from-config: axolotl, HF/TRL and torchtune files into setup options; clear errors."""
from pathlib import Path

import pytest

from gpuplan.planner.errors import PlannerError
from gpuplan.planner.fromconfig import read_config

FX = Path(__file__).parent / "fixtures"


def test_axolotl_qlora():
    c = read_config(str(FX / "axolotl_qlora.yaml"))
    assert c.format == "axolotl" and c.model == "meta-llama/Meta-Llama-3-8B"
    assert c.options == {"method": "qlora", "precision": "bf16-mixed", "batch_size": 2, "seq_len": 4096, "grad_accum": 4,
                         "lora_r": 32, "lora_alpha": 16.0, "lora_dropout": 0.05, "grad_ckpt": True,
                         "optimizer": "paged-adamw", "lora_targets": "all-linear", "attn": "flash"}
    assert "datasets" in c.no_effect and "learning_rate" in c.no_effect and "micro_batch_size" in c.used
    assert not c.refused and not c.unknown


def test_trl_sft_json():
    c = read_config(str(FX / "trl_sft.json"))
    assert c.format == "hf" and c.model == "Qwen/Qwen2.5-0.5B"
    assert c.options["method"] == "lora" and c.options["batch_size"] == 4 and c.options["seq_len"] == 2048
    assert c.options["lora_targets"] == "q_proj,k_proj,v_proj,o_proj"
    assert set(c.no_effect) == {"learning_rate", "logging_steps", "num_train_epochs", "output_dir", "report_to"}


def test_torchtune_lora():
    c = read_config(str(FX / "torchtune_lora.yaml"))
    assert c.format == "torchtune" and c.model == "llama-3.1-8b"
    assert c.options["method"] == "lora" and c.options["precision"] == "bf16-true"
    assert c.options["lora_targets"] == "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    assert c.options["loss"] == "chunked" and c.options["optimizer"] == "adamw-fused"


def test_malformed_file_says_where():
    with pytest.raises(PlannerError, match=r"could not be parsed: .* at line 3"):
        read_config(str(FX / "malformed.yaml"))


def test_unmappable_value_names_the_key():
    with pytest.raises(PlannerError, match="optimizer: 'adamw_weird'"):
        read_config(str(FX / "axolotl_bad_optim.yaml"))


def test_unknown_format_and_missing_file(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("foo: 1\n")
    with pytest.raises(PlannerError, match="cannot tell the config's format"):
        read_config(str(f))
    with pytest.raises(PlannerError, match="does not exist"):
        read_config(str(tmp_path / "nope.yaml"))


def test_missing_deepspeed_file_says_where_it_looked(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("base_model: x\nmicro_batch_size: 1\ndeepspeed: zero3.json\n")
    with pytest.raises(PlannerError, match="DeepSpeed config zero3.json not found"):
        read_config(str(f))
