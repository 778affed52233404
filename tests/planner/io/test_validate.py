"""planner/io: every user file and config is checked at the edge, one line naming field, value and fix."""
from __future__ import annotations

import json

import pytest

from gpuplan.planner import PlannerError, model_from_config
from gpuplan.planner.io.catalog import data_dir, load_preset, model_names, resolve_model
from gpuplan.planner.io.files import read_text
from gpuplan.planner.io.validate import (config_notes, context_check, validate_gpu_entry,
                                         validate_model_config)

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128}


def test_every_preset_config_passes():
    for name in model_names():
        validate_model_config(load_preset(name)["config"])


def test_every_catalog_gpu_passes():
    for g in json.loads((data_dir() / "gpus.json").read_text())["gpus"]:
        validate_gpu_entry(g, "data/gpus.json", new=True)


@pytest.mark.parametrize("field, value, words", [
    ("hidden_size", "big", ["hidden_size", "'big'", "whole number"]),
    ("hidden_size", -64, ["hidden_size", "-64", "at least 1"]),
    ("hidden_size", 0, ["hidden_size", "at least 1"]),
    ("hidden_size", 64.5, ["hidden_size", "64.5"]),
    ("hidden_size", float("nan"), ["hidden_size", "nan"]),
    ("hidden_size", 2**40, ["hidden_size", "int32"]),
    ("num_hidden_layers", True, ["num_hidden_layers", "boolean"]),
    ("vocab_size", None, ["vocab_size"]),                       # the reader's own "lacks" message
    ("num_attention_heads", 3, ["not divisible", "num_attention_heads 3", "head_dim"]),
    ("num_key_value_heads", 3, ["num_key_value_heads 3", "not divisible"]),
    ("tie_word_embeddings", "yes", ["tie_word_embeddings", "true or false"]),
    ("attention_dropout", 1.5, ["attention_dropout", "[0, 1)"]),
    ("rope_scaling", "linear", ["rope_scaling", "object"]),
])
def test_bad_field_is_named(field, value, words):
    cfg = {**TINY, field: value}
    with pytest.raises(PlannerError) as e:
        model_from_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_head_dim_lifts_the_divisibility_rule():
    m = model_from_config({**TINY, "num_attention_heads": 3, "num_key_value_heads": 3, "head_dim": 16})
    assert m.head_dim == 16 and m.n_heads == 3


def test_integral_float_is_accepted():
    assert model_from_config({**TINY, "hidden_size": 64.0}).hidden == 64


def test_gpt2_heads_must_divide_hidden():
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_head": 5, "n_layer": 2, "vocab_size": 100, "n_positions": 64}
    with pytest.raises(PlannerError, match="n_embd 64 is not divisible by n_head 5"):
        model_from_config(cfg)


def test_text_config_must_be_an_object():
    with pytest.raises(PlannerError, match="text_config"):
        model_from_config({"model_type": "llava", "text_config": [1, 2]})


def test_auto_map_says_custom_code_was_not_used():
    notes = config_notes({**TINY, "auto_map": {"AutoModelForCausalLM": "modeling_x.X"}})
    assert len(notes) == 1 and "custom code" in notes[0] and "not" in notes[0]
    assert config_notes(TINY) == []


def test_context_gpt2_refused_rope_noted():
    with pytest.raises(PlannerError, match="1024 learned positions"):
        context_check(resolve_model("gpt-2-small"), 2048)
    assert context_check(resolve_model("gpt-2-small"), 1024) == []
    qwen = resolve_model("qwen-2.5-0.5b")
    (note,) = context_check(qwen, 65536)
    assert "32,768" in note and "rope_scaling is not set" in note
    (note,) = context_check(resolve_model("llama-3.2-1b"), 262144)
    assert "rope_scaling is set (llama3" in note
    assert context_check(qwen, 32768) == []


def test_files_binary_and_not_utf8(tmp_path):
    b = tmp_path / "w.json"
    b.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(PlannerError, match="binary file"):
        read_text(b, "config.json")
    latin = tmp_path / "l.json"
    latin.write_bytes(b'{\n"a": "caf\xe9"}')
    with pytest.raises(PlannerError, match=r"not UTF-8 text \(byte 0xe9 at line 2\)"):
        read_text(latin, "config.json")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf{}")
    assert read_text(bom, "config.json") == "{}"
    with pytest.raises(PlannerError, match="does not exist"):
        read_text(tmp_path / "nope.json", "config.json")
    with pytest.raises(PlannerError, match="folder"):
        read_text(tmp_path, "config.json")


GOOD_NEW = {"name": "my-card", "memory_bytes": 25757220864, "peak_flops": {"bf16": 1.65e14},
            "memory_bandwidth_bytes_per_s": 1.0e12, "interconnect": {"kind": "pcie4", "bytes_per_s": 3.2e10},
            "power_watts": 450, "prices": [{"provider": "lab", "usd_per_hour": 0.3}]}


def test_good_entry_passes():
    validate_gpu_entry(GOOD_NEW, "my.yaml", new=True)


@pytest.mark.parametrize("change, words", [
    ({"prices": {"aws": 3.0}}, ["prices is an object", "list"]),
    ({"prices": [{"provider": "aws", "usd_per_hour": "3"}]}, ["usd_per_hour", "number"]),
    ({"prices": [{"provider": "aws"}]}, ["lacks usd_per_hour"]),
    ({"prices": [{"usd_per_hour": 1}]}, ["provider"]),
    ({"prices": [{"provider": "a", "usd_per_hour": 1}, {"provider": "a", "usd_per_hour": 2}]}, ["twice"]),
    ({"prices": [{"provider": "a", "usd_per_hour": -1}]}, ["positive"]),
    ({"peak_flops": "lots"}, ["peak_flops is 'lots'"]),
    ({"peak_flops": {"bf16": "1.65e14"}}, ["peak_flops.bf16", "without quotes"]),
    ({"peak_flops": {"bf16": 165}}, ["too small", "FLOP/s"]),
    ({"peak_flops": {"bfloat16": 1e14}}, ["unknown peak_flops dtype", "bfloat16", "bf16"]),
    ({"memory_bytes": 24}, ["memory_bytes is 24", "bytes"]),
    ({"memory_bytes": "24GB"}, ["memory_bytes"]),
    ({"interconnect": "pcie4"}, ["interconnect", "object"]),
    ({"interconnect": {"kind": "pcie4"}}, ["interconnect.bytes_per_s"]),
    ({"power_watts": 450.5}, ["whole watts"]),
    ({"memry_bytes": 1}, ["unknown field 'memry_bytes'", "memory_bytes"]),
    ({"aliases": "x"}, ["aliases"]),
])
def test_bad_gpu_entry_is_named(change, words):
    with pytest.raises(PlannerError) as e:
        validate_gpu_entry({**GOOD_NEW, **change}, "my.yaml", new=True)
    msg = str(e.value)
    assert "my-card" in msg and "my.yaml" in msg and "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_yaml_exponent_floats_are_numbers():
    from gpuplan.planner.io.files import load_yaml

    assert load_yaml("a: 5.0e14\nb: 1e3\nc: '5e14'\nd: 12\ne: 1.5\nf: 1.0.0") == {
        "a": 5e14, "b": 1000.0, "c": "5e14", "d": 12, "e": 1.5, "f": "1.0.0"}


def test_training_config_value_types():
    from gpuplan.planner.io.training_config import validate_training_config

    validate_training_config({"base_model": "x", "micro_batch_size": 2, "optimizer": "adamw_8bit", "bf16": "auto"},
                             "a.yaml", "axolotl")
    validate_training_config({"model": {"_component_": "t.lora_llama3_1_8b", "lora_rank": 8},
                              "optimizer": {"_component_": "torch.optim.AdamW"}}, "t.yaml", "torchtune")
    for data, fmt, words in (
            ({"micro_batch_size": "big"}, "axolotl", ["micro_batch_size is 'big'", "whole number"]),
            ({"sequence_len": -3}, "axolotl", ["sequence_len is -3"]),
            ({"base_model": 7}, "axolotl", ["base_model is 7", "text"]),
            ({"optimizer": {"_component_": "x"}}, "axolotl", ["optimizer", "text"]),
            ({"lora_dropout": 1.5}, "hf", ["lora_dropout", "[0, 1)"]),
            ({"per_device_train_batch_size": [1]}, "hf", ["per_device_train_batch_size"]),
            ({"gradient_checkpointing": "yes"}, "hf", ["gradient_checkpointing", "true or false"]),
            ({"model": {"_component_": "x"}, "tokenizer": "t"}, "torchtune", ["tokenizer is 't'", "mapping"]),
            ({"model": {"_component_": "x", "lora_rank": "8"}}, "torchtune", ["model.lora_rank"]),
    ):
        with pytest.raises(PlannerError) as e:
            validate_training_config(data, "f.yaml", fmt)
        assert "--from-config file f.yaml" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
