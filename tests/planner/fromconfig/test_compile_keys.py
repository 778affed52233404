"""--from-config: torch.compile keys of HF/TRL, axolotl and torchtune."""
from __future__ import annotations


import pytest

from gpuplan.planner.fromconfig import read_config
from config_files import write as _yaml   # the folder's one config-file helper

TRL = "model_name_or_path: Qwen/Qwen2.5-0.5B\ngradient_checkpointing: false\n"
AXOLOTL = "base_model: Qwen/Qwen2.5-0.5B\nmicro_batch_size: 2\nsequence_len: 1024\n"
TORCHTUNE = "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n"


@pytest.mark.parametrize("keys", ["torch_compile: true\n", "torch_compile_backend: inductor\n",
                                  "torch_compile_mode: max-autotune-no-cudagraphs\n",
                                  "torch_compile: true\ntorch_compile_mode: default\n"])
def test_hf_torch_compile(tmp_path, keys):
    c = read_config(_yaml(tmp_path, TRL + keys))
    assert not c.refused, c.refused
    assert c.options["compile"] == "inductor"


@pytest.mark.parametrize("keys, words", [("torch_compile: true\ntorch_compile_backend: aot_eager\n", "backend other"),
                                         ("torch_compile: true\ntorch_compile_mode: reduce-overhead\n", "CUDA graphs")])
def test_hf_refused_backends_and_modes(tmp_path, keys, words):
    c = read_config(_yaml(tmp_path, TRL + keys))
    assert c.refused and words in c.refused[0] and "compile" not in c.options


def test_hf_torch_compile_off(tmp_path):
    c = read_config(_yaml(tmp_path, TRL + "torch_compile: false\n"))
    assert "compile" not in c.options and c.used["torch_compile"] == "false: as gpuplan plans"


def test_axolotl_torch_compile(tmp_path):
    c = read_config(_yaml(tmp_path, AXOLOTL + "torch_compile: true\ntorch_compile_backend: inductor\n"))
    assert not c.refused, c.refused
    assert c.options["compile"] == "inductor"
    # axolotl hands backend and mode to TrainingArguments only with torch_compile on
    off = read_config(_yaml(tmp_path, AXOLOTL + "torch_compile: false\ntorch_compile_mode: reduce-overhead\n"))
    assert not off.refused and "compile" not in off.options
    bad = read_config(_yaml(tmp_path, AXOLOTL + "torch_compile: true\ntorch_compile_mode: max-autotune\n"))
    assert bad.refused and "CUDA graphs" in bad.refused[0]


def test_torchtune_compile_still_refused_with_its_reason(tmp_path):
    c = read_config(_yaml(tmp_path, TORCHTUNE + "compile: true\n"))
    assert c.refused and "compiled chunked loss" in c.refused[0]
    assert not read_config(_yaml(tmp_path, TORCHTUNE + "compile: false\n")).refused


def test_accelerate_dynamo_backend(tmp_path):
    base = "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\nmixed_precision: bf16\n"
    c = read_config(_yaml(tmp_path, base + "dynamo_config:\n  dynamo_backend: INDUCTOR\n  dynamo_mode: default\n"))
    assert not c.refused, c.refused
    assert c.options["compile"] == "inductor"
    cg = read_config(_yaml(tmp_path, base + "dynamo_config:\n  dynamo_backend: INDUCTOR\n  dynamo_mode: reduce-overhead\n"))
    assert cg.refused and cg.refused[0].startswith("dynamo_config.dynamo_mode: reduce-overhead")
    regional = read_config(_yaml(tmp_path, base + "dynamo_config:\n  dynamo_backend: INDUCTOR\n"
                                                  "  dynamo_use_regional_compilation: true\n"))
    assert regional.refused and "regional compilation" in regional.refused[0]
    off = read_config(_yaml(tmp_path, base + "dynamo_config:\n  dynamo_backend: 'NO'\n"))
    assert not off.refused and "compile" not in off.options
