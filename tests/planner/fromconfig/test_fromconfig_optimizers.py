"""The config keys of the optimizers beyond AdamW and of the optimizer step inside backward: HF/TRL
`optim` (galore_*, *_layerwise, torchao, schedule-free), `optim_args`, `optim_target_modules`; torchtune
`optimizer_in_bwd` and torchao components; LLaMA-Factory `use_galore` (its fixture is in the corpus test)."""
from __future__ import annotations

import json

import pytest
import yaml

from gpuplan.planner import PlannerError, TrainingSetup
from gpuplan.planner.fromconfig import read_config
from gpuplan.planner.specs.optim import optim_from_options, parse_optim_args


def _hf(tmp_path, **keys):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"model_name_or_path": "meta-llama/Llama-3.2-1B", "bf16": True, **keys}))
    return read_config(str(path))


def test_hf_layerwise_galore_is_galore_stepped_in_backward(tmp_path):
    c = _hf(tmp_path, optim="galore_adamw_layerwise", optim_args="rank=64, update_proj_gap=100, scale=0.25",
            optim_target_modules=["attn", "mlp"])
    assert not c.refused
    assert c.options["optimizer"] == "galore-adamw" and c.options["optimizer_in_backward"] is True
    spec = optim_from_options(c.options)
    assert (spec.rank, spec.update_proj_gap, spec.targets) == (64, 100, ("attn", "mlp"))


@pytest.mark.parametrize("name, value", [("adamw_torch_8bit", "torchao-adamw-8bit"),
                                         ("adamw_torch_4bit", "torchao-adamw-4bit"),
                                         ("schedule_free_adamw", "schedule-free-adamw"),
                                         ("galore_adamw", "galore-adamw")])
def test_hf_optim_names(tmp_path, name, value):
    c = _hf(tmp_path, optim=name)
    assert c.options["optimizer"] == value and "optimizer_in_backward" not in c.options


def test_optim_args_that_change_memory_unmodelled_are_refused_in_one_line():
    assert parse_optim_args("rank=8,block_size=128,lr=1e-4") == {"rank": 8, "block_size": 128}
    for bad in ("proj_type=full", "rank=x", "amsgrad=True", "rank"):
        with pytest.raises(PlannerError) as err:
            parse_optim_args(bad)
        assert "\n" not in str(err.value)


def test_a_flag_and_optim_args_that_disagree_are_refused():
    with pytest.raises(PlannerError, match="disagree"):
        optim_from_options({"optim_args": "rank=64", "galore_rank": 32})
    with pytest.raises(PlannerError, match="GaLore and APOLLO"):
        TrainingSetup(optim=optim_from_options({"galore_rank": 32})).validate()


def _torchtune(tmp_path, **keys):
    cfg = {"model": {"_component_": "torchtune.models.llama3_2.llama3_2_1b"}, "batch_size": 2,
           "tokenizer": {"max_seq_len": 1024}, "gradient_accumulation_steps": 1, **keys}
    path = tmp_path / "tt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return read_config(str(path))


def test_torchtune_optimizer_in_bwd_and_its_refusal_with_clipping(tmp_path):
    c = _torchtune(tmp_path, optimizer_in_bwd=True, clip_grad_norm=None,
                   optimizer={"_component_": "torch.optim.AdamW", "fused": True})
    assert c.options["optimizer_in_backward"] is True and not c.refused
    c = _torchtune(tmp_path, optimizer_in_bwd=True, clip_grad_norm=1.0,
                   optimizer={"_component_": "torch.optim.AdamW"})
    assert any("clip_grad_norm" in r and "optimizer_in_bwd" in r for r in c.refused)


def test_torchtune_torchao_components_keep_torchao_block_sizes(tmp_path):
    c = _torchtune(tmp_path, optimizer={"_component_": "torchao.optim.AdamW4bit"})
    assert c.options["optimizer"] == "torchao-adamw-4bit" and c.options["optim_block_size"] == 128
    c = _torchtune(tmp_path, optimizer={"_component_": "torchao.optim.AdamW8bit"})
    assert c.options["optimizer"] == "torchao-adamw-8bit" and "optim_block_size" not in c.options


def test_llamafactory_adam_mini(tmp_path):
    path = tmp_path / "lf.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "meta-llama/Llama-3.2-1B", "stage": "sft", "do_train": True,
                                    "finetuning_type": "full", "use_adam_mini": True, "cutoff_len": 512}))
    c = read_config(str(path))
    assert c.options["optimizer"] == "adam-mini" and not c.refused
