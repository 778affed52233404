"""--from-config: selective checkpointing and activation offloading keys, as each library reads them."""
from __future__ import annotations


import pytest

from gpuplan.planner.fromconfig import read_config
from config_files import write as _yaml   # the folder's one config-file helper

FULL_8B = "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n"


def test_torchtune_selective_ac_every_k_layers_from_k_minus_1(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: 2\n"))
    assert not c.refused
    assert (c.options["grad_ckpt"], c.options["ckpt_every"], c.options["ckpt_first"]) == (True, 2, 1)
    one = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: 1\n"))
    assert one.options["grad_ckpt"] is True and "ckpt_every" not in one.options
    none = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: none\n"))
    assert none.options["grad_ckpt"] is False


def test_torchtune_ac_mode_with_full_ac_on_wraps_nothing(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: true\nac_mode: selective\nac_option: 2\n"))
    assert c.options["grad_ckpt"] is False and any("no layer is checkpointed" in n for n in c.notes)


def test_torchtune_per_op_ac_is_refused(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: op\n"))
    assert c.refused and c.refused[0].startswith("ac_option: op is not modelled yet")


def test_torchtune_activation_offloading(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: true\nenable_activation_offloading: true\n"))
    assert c.options["activation_offload"] == "torchtune" and not c.refused
    bad = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nenable_activation_offloading: true\n"))
    assert bad.refused and "needs enable_activation_checkpointing" in bad.refused[0]
    off = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_offloading: false\n"))
    assert "activation_offload" not in off.options


def test_trl_activation_offloading_and_checkpointing_kwargs(tmp_path):
    c = read_config(_yaml(tmp_path, "model_name_or_path: Qwen/Qwen2.5-0.5B\nactivation_offloading: true\n"
                                    "gradient_checkpointing: true\n"
                                    "gradient_checkpointing_kwargs:\n  use_reentrant: false\n  every_n_layers: 3\n"))
    assert not c.refused
    assert c.options["activation_offload"] == "trl" and c.options["ckpt_every"] == 3 and c.options["grad_ckpt"] is True
    hf = read_config(_yaml(tmp_path, "model_name_or_path: Qwen/Qwen2.5-0.5B\nactivation_checkpointing: true\n"
                                     "activation_checkpointing_kwargs:\n  offload: true\n"))
    assert hf.options["activation_offload"] == "layer-inputs"
    off = read_config(_yaml(tmp_path, "model_name_or_path: Qwen/Qwen2.5-0.5B\nactivation_offloading: false\n"))
    assert "activation_offload" not in off.options and off.used["activation_offloading"] == "false: as gpuplan plans"


AXOLOTL = "base_model: meta-llama/Llama-3.2-1B\nadapter: lora\nmicro_batch_size: 2\nsequence_len: 2048\n"


@pytest.mark.parametrize("keys, offload", [
    ("gradient_checkpointing: true\nactivation_offloading: true\n", "trl"),
    ("gradient_checkpointing: true\nactivation_offloading: disk\n", "trl"),        # no disk code at 067b021c
    ("gradient_checkpointing: true\nactivation_offloading: legacy\n", "trl-sync"),
    ("gradient_checkpointing: true\nactivation_offloading: hidden_states\n", "layer-inputs"),
    ("gradient_checkpointing: offload\n", "trl"),
    ("gradient_checkpointing: offload_disk\n", "trl"),
])
def test_axolotl_offloading_modes(tmp_path, keys, offload):
    c = read_config(_yaml(tmp_path, AXOLOTL + keys))
    assert not c.refused, c.refused
    assert c.options["activation_offload"] == offload and c.options["grad_ckpt"] is True


def test_axolotl_offloading_needs_checkpointing(tmp_path):
    c = read_config(_yaml(tmp_path, AXOLOTL + "activation_offloading: true\n"))
    assert c.refused and "requires gradient_checkpointing" in c.refused[0]


def test_unsloth_default_checkpointing_is_offloaded(tmp_path):
    f = tmp_path / "train.py"
    f.write_text("from unsloth import FastLanguageModel\n"
                 "model, tok = FastLanguageModel.from_pretrained(model_name='unsloth/Llama-3.2-1B', max_seq_length=2048)\n"
                 "model = FastLanguageModel.get_peft_model(model, r=8, target_modules=['q_proj', 'v_proj'])\n")
    c = read_config(str(f))
    assert not c.refused and c.options["activation_offload"] == "unsloth" and c.options["grad_ckpt"] is True


def test_axolotl_selective_checkpointing_saves_attention(tmp_path):
    c = read_config(_yaml(tmp_path, AXOLOTL + "gradient_checkpointing: true\nselective_checkpointing: true\n"))
    assert not c.refused and c.options["ckpt_policy"] == "save-attention"
    ops = read_config(_yaml(tmp_path, AXOLOTL + "gradient_checkpointing: true\nselective_checkpointing:\n"
                                                "  save: [aten::mm]\n"))
    assert ops.refused and ops.refused[0].startswith("selective_checkpointing:")
    off = read_config(_yaml(tmp_path, AXOLOTL + "selective_checkpointing: true\n"))
    assert off.refused and "requires gradient_checkpointing" in off.refused[0]


_AXO_EVAL = ("base_model: meta-llama/Llama-3.2-1B\nadapter: lora\nmicro_batch_size: 2\nsequence_len: 2048\n"
             "val_set_size: 0.05\n")


@pytest.mark.parametrize("extra, generates", [
    ("do_causal_lm_eval: true\neval_max_new_tokens: 256\n", 256),
    ("do_causal_lm_eval: true\n", 128),                                   # the schema's default
    ("eval_table_size: 5\nwandb_project: p\n", 128),                      # the prediction table, logged to wandb
    ("eval_table_size: 5\n", None),                                       # no logger: the callback is not added
])
def test_axolotl_generation_at_evaluation_plans_the_eval_phase(tmp_path, extra, generates):
    f = tmp_path / "a.yaml"
    f.write_text(_AXO_EVAL + extra)
    c = read_config(str(f))
    assert c.options.get("eval_generate_tokens") == generates
    if generates:
        assert c.options["eval_batch_size"] == 2


def test_axolotl_generation_without_an_eval_set_is_nothing(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(_AXO_EVAL.replace("val_set_size: 0.05\n", "") + "do_causal_lm_eval: true\n")
    c = read_config(str(f))
    assert "eval_generate_tokens" not in c.options and "no generation" in c.used["do_causal_lm_eval"]


def test_axolotl_generate_samples_is_refused_naming_it(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(_AXO_EVAL + "generate_samples: true\n")
    assert any("generate_samples" in str(r) for r in read_config(str(f)).refused)
