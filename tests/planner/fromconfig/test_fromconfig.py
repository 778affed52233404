"""--from-config: axolotl, HF/TRL and torchtune files into setup options; clear errors."""
from pathlib import Path

import pytest

from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.fromconfig import read_config
from config_files import write as _yaml   # the folder's one config-file helper

FX = Path(__file__).resolve().parents[1] / "fixtures"


def test_axolotl_qlora():
    c = read_config(str(FX / "axolotl_qlora.yaml"))
    assert c.format == "axolotl" and c.model == "meta-llama/Meta-Llama-3-8B"
    assert c.options == {"method": "qlora", "precision": "bf16-mixed", "batch_size": 2, "seq_len": 4096, "grad_accum": 4,
                         "lora_r": 32, "lora_alpha": 16.0, "lora_dropout": 0.05, "grad_ckpt": True,
                         "optimizer": "paged-adamw", "lora_targets": "all-linear", "attn": "flash",
                         "padding": "max-length"}
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
    assert c.options["loss"] == "chunked-output" and c.options["optimizer"] == "adamw-fused"


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


# --- the key tables' rules, one behaviour each -----------------------------------------------------------
import json  # noqa: E402

from gpuplan.planner.fromconfig import docs  # noqa: E402


def test_unknown_key_is_listed_apart_not_as_no_effect(tmp_path):
    c = read_config(_yaml(tmp_path, "base_model: x\nmicro_batch_size: 1\nmy_new_flag: true\nlearning_rate: 1e-4\n"))
    assert c.unknown == ("my_new_flag",) and "my_new_flag" not in c.no_effect and "learning_rate" in c.no_effect


def test_refused_key_stops_with_one_line_and_off_value_is_used(tmp_path):
    on = read_config(_yaml(tmp_path, "base_model: x\nflex_attention: true\n"))
    assert on.refused == ("flex_attention: true is not modelled yet (flex attention); remove it to plan the rest",)
    with pytest.raises(PlannerError, match=r"c\.yaml: flex_attention: true is not modelled yet"):
        on.check()
    off = read_config(_yaml(tmp_path, "base_model: x\nflex_attention: false\n"))
    assert not off.refused and off.used["flex_attention"] == "false: as gpuplan plans"


def test_packing_and_padding_keys_map_to_the_mask_options(tmp_path):
    """axolotl sample_packing -> packed rows; pad_to_sequence_len -> padded to max length; TRL packing (bfd)
    and padding_free -> one flattened row; DPO's padding_free falls back to padding (TRL 1.16)."""
    assert read_config(_yaml(tmp_path, "base_model: x\nsample_packing: true\npad_to_sequence_len: true\n"
                             )).options["packing"] == "rows"
    assert read_config(_yaml(tmp_path, "base_model: x\npad_to_sequence_len: true\n")).options["padding"] == "max-length"
    hf = tmp_path / "sft.json"
    hf.write_text('{"model_name_or_path": "x", "per_device_train_batch_size": 2, "packing": true}')
    assert read_config(str(hf)).options["packing"] == "flattened"
    hf.write_text('{"model_name_or_path": "x", "packing": true, "packing_strategy": "wrapped"}')
    assert "packing" not in read_config(str(hf)).options
    hf.write_text('{"model_name_or_path": "x", "padding_free": true, "beta": 0.1}')
    assert read_config(str(hf)).options["padding"] == "longest"
    hf.write_text('{"model_name_or_path": "x", "max_length": 1000, "pad_to_multiple_of": 64}')
    opts = read_config(str(hf)).options
    assert opts["padding"] == "longest" and opts["seq_len"] == 1024


def test_deepspeed_json_relative_to_the_config_and_inline(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "z.json").write_text(json.dumps({
        "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/x"},
                              "offload_optimizer": {"device": "nvme"}, "reduce_bucket_size": "auto"},
        "train_batch_size": 64, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4}))
    c = read_config(_yaml(tmp_path, "base_model: x\ndeepspeed: ds/z.json\n"))
    assert c.options == {"zero": 3, "offload": "params", "offload_device": "nvme", "batch_size": 2, "grad_accum": 4,
                         "gpus_per_node": 8}
    assert "train_batch_size / (micro-batch x accumulation)" in c.notes[0]
    assert "deepspeed:zero_optimization.offload_param.nvme_path" in c.no_effect
    inline = read_config(_yaml(tmp_path, json.dumps({
        "model_name_or_path": "x", "deepspeed": {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"},
                                                                       "reduce_bucket_size": 5e8}}}), "t.json"))
    assert inline.options["zero"] == 2 and inline.options["offload"] == "optimizer"
    assert inline.refused == ("deepspeed:zero_optimization.reduce_bucket_size: 500000000.0 is not modelled yet "
                              "(gpuplan plans HF Trainer's \"auto\" bucket sizes: reduce h*h, prefetch 0.9*h*h, "
                              "persistence 10*h [planner/sharding.py]); set it to auto",)


def test_fsdp_blocks_of_hf_and_axolotl(tmp_path):
    c = read_config(_yaml(tmp_path, "model_name_or_path: x\nper_device_train_batch_size: 1\n"
                                    "fsdp: hybrid_shard auto_wrap offload\nfsdp_config:\n  backward_prefetch: "
                                    "backward_pre\n  activation_checkpointing: true\n"))
    assert c.options == {"batch_size": 1, "fsdp": "hybrid", "offload": "params", "grad_ckpt": True, "gpus_per_node": 8,
                         "nodes": 2}
    assert any("planned on 2 nodes" in n for n in c.notes)
    a = read_config(_yaml(tmp_path, "base_model: x\nfsdp_version: 2\nfsdp_config:\n  reshard_after_forward: false\n"
                                    "  offload_params: false\n  auto_wrap_policy: SIZE_BASED_WRAP\n"))
    assert a.options["fsdp"] == "grad-op" and "offload" not in a.options
    assert a.refused == ("fsdp_config.auto_wrap_policy: SIZE_BASED_WRAP is not modelled yet (wrapping other than one "
                         "unit per decoder layer); use TRANSFORMER_BASED_WRAP",)


def test_accelerate_config_gives_the_gpu_count_under_the_training_config(tmp_path):
    acc = _yaml(tmp_path, "distributed_type: DEEPSPEED\nnum_processes: 16\nnum_machines: 2\nmixed_precision: fp16\n"
                          "deepspeed_config:\n  zero_stage: 2\n  offload_optimizer_device: cpu\n", "acc.yaml")
    c = read_config(str(FX / "trl_sft.json"), accelerate=acc)
    assert c.options["gpus_per_node"] == 8 and c.options["nodes"] == 2 and c.options["zero"] == 2
    assert c.options["offload"] == "optimizer" and c.options["precision"] == "bf16-mixed"   # the trainer's bf16 wins
    assert any(n.startswith("precision: the training config's bf16-mixed over the accelerate config's fp16-mixed")
               for n in c.notes)
    assert c.used["accelerate:num_processes"] == "--gpus 8"
    with pytest.raises(PlannerError, match="is not an accelerate config"):
        read_config(str(FX / "trl_sft.json"), accelerate=str(FX / "trl_sft.json"))


def test_torchtune_null_max_seq_len_builders_and_phi3_names(tmp_path):
    c = read_config(_yaml(tmp_path, "model:\n  _component_: torchtune.models.phi3.lora_phi3_mini\n"
                                    "  lora_attn_modules: [q_proj, k_proj, output_proj]\n  apply_lora_to_mlp: true\n"
                                    "tokenizer:\n  max_seq_len: null\nloss:\n  _component_: "
                                    "torchtune.modules.loss.LinearCrossEntropyLoss\n"))
    assert c.model == "phi-3-mini-4k-instruct" and c.options["lora_targets"] == "qkv_proj,o_proj,gate_up_proj,down_proj"
    assert c.options["loss"] == "chunked" and "torchtune 0.6.1 recipe semantics" in c.used["model._component_"]
    assert c.refused == ("tokenizer.max_seq_len: null is not modelled yet (no truncation: each batch is as long as its "
                         "longest sample; give the length to plan for in the config); give --seq-len",)
    q = read_config(_yaml(tmp_path, "model:\n  _component_: torchtune.models.qwen2_5.qwen2_5_7b_instruct\n"))
    assert q.model == "qwen-2.5-7b" and q.options["method"] == "full"
    bad = read_config(_yaml(tmp_path, "model:\n  _component_: torchtune.models.qwen3.qwen3_8b\n"))
    assert bad.model is None and bad.refused[0].startswith("model._component_: torchtune.models.qwen3.qwen3_8b is not "
                                                           "modelled yet (the builder qwen3_8b maps to no gpuplan preset")


def test_llamafactory_freeze_oft_special_tokens_and_8bit(tmp_path):
    base = "model_name_or_path: x\nstage: sft\ncutoff_len: 1024\n"
    assert read_config(_yaml(tmp_path, base + "finetuning_type: oft\n")).refused == (
        "finetuning_type: oft is not modelled yet (OFT adapters (orthogonal fine-tuning)); use lora",)
    assert read_config(_yaml(tmp_path, base + "finetuning_type: freeze\n")).refused[0].startswith(
        "finetuning_type: freeze is not modelled yet (freeze tuning")
    assert read_config(_yaml(tmp_path, base + "new_special_tokens_config: t.yaml\n")).refused == (
        "new_special_tokens_config: t.yaml is not modelled yet (new special tokens add embedding and lm_head rows); "
        "remove it to plan the rest",)
    c = read_config(_yaml(tmp_path, base + "finetuning_type: lora\nquantization_bit: 8\nlora_rank: 4\npure_bf16: true\n"))
    # pure_bf16 without bf16: no autocast; LLaMA-Factory does not call prepare_model_for_kbit_training
    assert c.options == {"method": "qlora", "quant_type": "int8", "precision": "bf16-true", "adapter_dtype": "bf16",
                         "kbit_upcast": False, "seq_len": 1024, "lora_r": 4, "lora_alpha": 8.0, "lora_targets": "all-linear", "grad_ckpt": True}


def test_unsloth_reads_literals_only_and_never_runs_the_file(tmp_path):
    f = tmp_path / "train.py"
    f.write_text("raise SystemExit('never run')\nfrom unsloth import FastLanguageModel, is_bfloat16_supported\n"
                 "max_seq_length = 4096\n"
                 "model, tok = FastLanguageModel.from_pretrained(model_name='unsloth/Llama-3.2-1B', "
                 "max_seq_length=max_seq_length, load_in_4bit=False)\n"
                 "model = FastLanguageModel.get_peft_model(model, r=8, use_gradient_checkpointing=True, "
                 "target_modules=['q_proj', 'v_proj'])\n"
                 "args = SFTConfig(per_device_train_batch_size=4, bf16=is_bfloat16_supported(), optim='adamw_8bit')\n"
                 "if False:\n    FastLanguageModel.from_pretrained(model_name='other')\n")
    c = read_config(str(f))
    assert c.model == "unsloth/Llama-3.2-1B" and not c.refused
    assert c.options == {"method": "lora", "precision": "bf16-mixed", "base_dtype": "bf16", "loss": "chunked",
                         "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.0, "lora_targets": "q_proj,v_proj",
                         "grad_ckpt": True, "seq_len": 4096, "batch_size": 4, "optimizer": "adamw-8bit"}
    assert c.unknown == ("SFTConfig.bf16 = is_bfloat16_supported() (not a literal: not read)",)


def test_docs_are_generated_from_the_tables():
    doc = Path(__file__).resolve().parents[3] / "docs" / "readme" / "from-config.md"
    assert doc.read_text() == docs.render(), "regenerate: python -m gpuplan.planner.fromconfig.docs > " + str(doc)


def test_every_transformers_training_argument_has_a_rule():
    """The fields of the installed transformers' TrainingArguments, read from its source (importing it takes
    seconds), each have a rule in hf.TABLE."""
    import ast
    import importlib.util

    from gpuplan.planner.fromconfig import hf

    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        pytest.skip("transformers is not installed")
    tree = ast.parse((Path(spec.origin).parent / "training_args.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingArguments")
    fields = [s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    assert len(fields) > 100
    missing = [f for f in fields if f not in hf.TABLE]
    assert not missing, f"TrainingArguments fields with no rule in hf.TABLE: {missing}"


def test_unsloth_fastmodel_switches_and_embedding_targets(tmp_path):
    f = tmp_path / "cpt.py"
    f.write_text("from unsloth import FastModel\n"
                 "m, t = FastModel.from_pretrained(model_name='unsloth/gemma-3-4b-it', load_in_4bit=True)\n"
                 "m = FastModel.get_peft_model(m, finetune_vision_layers=False, finetune_mlp_modules=False, r=4,\n"
                 "    use_gradient_checkpointing=False)\n")
    c = read_config(str(f))
    assert c.options["lora_targets"] == "q_proj,k_proj,v_proj,o_proj" and c.options["grad_ckpt"] is False
    assert c.used["get_peft_model.finetune_vision_layers"] == "false: as gpuplan plans"
    g = tmp_path / "emb.py"
    g.write_text("m, t = FastLanguageModel.from_pretrained(model_name='x')\n"
                 "m = FastLanguageModel.get_peft_model(m, target_modules=['q_proj', 'embed_tokens', 'lm_head'],\n"
                 "    use_gradient_checkpointing=True)\n"
                 "trainer = UnslothTrainer(args=UnslothTrainingArguments(embedding_learning_rate=1e-5, "
                 "per_device_train_batch_size=2))\n")
    c = read_config(str(g))
    assert c.options["lora_targets"] == "q_proj" and c.options["batch_size"] == 2
    assert c.refused == ("get_peft_model.target_modules: embed_tokens, lm_head is not modelled yet (embed_tokens / "
                         "lm_head in target_modules are trained in full (Unsloth makes them modules_to_save)); "
                         "remove them to plan the rest",)
    assert "TrainingArguments.embedding_learning_rate" in c.no_effect


def test_every_accelerate_config_field_has_a_rule():
    """BaseConfig / ClusterConfig fields of the installed accelerate, read from its source."""
    import ast
    import importlib.util

    from gpuplan.planner.fromconfig import accelerate
    from gpuplan.planner.fromconfig.rules import lookup

    spec = importlib.util.find_spec("accelerate")
    if spec is None or spec.origin is None:
        pytest.skip("accelerate is not installed")
    tree = ast.parse((Path(spec.origin).parent / "commands" / "config" / "config_args.py").read_text())
    fields = [s.target.id for c in tree.body if isinstance(c, ast.ClassDef) and c.name in ("BaseConfig", "ClusterConfig")
              for s in c.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    assert len(fields) > 20
    # a block (deepspeed_config, fsdp_config ...) is read key by key: its keys have rules
    missing = [f for f in fields if lookup(accelerate.TABLE, f) is None and
               not any(k.startswith(f + ".") for k in accelerate.TABLE)]
    assert not missing, f"accelerate config fields with no rule: {missing}"


@pytest.mark.parametrize("fmt", ["axolotl", "llamafactory", "torchtune"])
def test_every_schema_key_of_the_pinned_release_has_a_rule(fmt):
    """The keys of axolotl's schema, LLaMA-Factory's hparams and torchtune 0.6.1's recipes (names taken with ast
    from the pinned commits: fixtures/fromconfig_schema_keys.json) each have a rule in that reader's table."""
    from gpuplan.planner.fromconfig import axolotl, llamafactory, torchtune
    from gpuplan.planner.fromconfig.rules import lookup

    table = {"axolotl": axolotl.TABLE, "llamafactory": llamafactory.TABLE, "torchtune": torchtune.TABLE}[fmt]
    keys = json.loads((FX / "fromconfig_schema_keys.json").read_text())[fmt]["keys"]
    assert len(keys) > 150
    missing = [k for k in keys if lookup(table, k) is None]
    assert not missing, f"{fmt} keys with no rule: {missing}"


def test_trl_keeps_lora_adapters_in_the_base_dtype_under_zero3(tmp_path):
    base = {"model_name_or_path": "x", "use_peft": True, "dtype": "bfloat16", "bf16": True}
    z3 = read_config(_yaml(tmp_path, json.dumps({**base, "deepspeed": {"zero_optimization": {"stage": 3}}}), "a.json"))
    assert z3.options["adapter_dtype"] == "bf16" and z3.options["base_dtype"] == "bf16"
    z2 = read_config(_yaml(tmp_path, json.dumps({**base, "deepspeed": {"zero_optimization": {"stage": 2}}}), "b.json"))
    assert "adapter_dtype" not in z2.options
