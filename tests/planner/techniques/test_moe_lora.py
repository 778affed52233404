"""LoRA on MoE routers and fused experts (planner/techniques/moe_lora.py): what peft 0.21 adapts on
transformers 5 for all-linear and for v4 expert names, trainable counts equal to peft's own on the
meta-device build of small variants, the merged-weight bytes, and the refusals peft itself raises."""
import copy

import pytest

from gpuplan.planner import TrainingSetup, estimate, model_from_config
from gpuplan.planner.io.catalog import load_preset, resolve_model
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import moe_lora

ALL = {"method": "lora", "base_dtype": "bf16", "lora": {"targets": ["all-linear"]}}


def _variant(preset, **changes):
    cfg = copy.deepcopy(load_preset(preset)["config"])
    cfg.update(changes)
    return cfg


def _peft_trainable(build, config, targets, r=8):
    peft = pytest.importorskip("peft")
    with build(config) as model:
        pm = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets))
        return pm.get_nb_trainable_parameters()[0]


def _setup(targets, r=8, **kw):
    return TrainingSetup.from_dict({"method": "lora", "base_dtype": "bf16", "lora": {"r": r, "targets": targets}, **kw})


@pytest.mark.parametrize("preset,changes,targets", [
    ("qwen-3-30b-a3b", dict(num_hidden_layers=2, num_experts=16), "all-linear"),
    ("qwen-3-30b-a3b", dict(num_hidden_layers=2, num_experts=16), ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]),
    ("qwen-3-30b-a3b", dict(num_hidden_layers=3, num_experts=16, mlp_only_layers=[0]), "all-linear"),   # dense layer: no MLP LoRA
    ("mixtral-8x7b", dict(num_hidden_layers=1, num_local_experts=4), "all-linear"),
    ("deepseek-v2-lite", dict(num_hidden_layers=2, n_routed_experts=16), "all-linear"),   # dense first layer, shared experts
])
def test_trainable_counts_are_peft_own(preset, changes, targets, meta_causal_lm):
    cfg = _variant(preset, **changes)
    m = model_from_config(cfg)
    ours = estimate(m, _setup([targets] if isinstance(targets, str) else targets, r=4)).trainable_params
    assert ours == _peft_trainable(meta_causal_lm, cfg, targets, r=4)


def test_all_linear_adapts_router_and_experts_with_doubled_rank_on_gate_up():
    m = resolve_model("qwen-3-30b-a3b")
    ad = resolve(m, _setup(["all-linear"])).adapters
    assert ad.router and dict(ad.expert_ranks) == {"gate_up_proj": 16, "down_proj": 8}
    # the v4 names move to target_parameters: no nn.Linear of that name is adapted any more
    assert not {"gate_proj", "up_proj", "down_proj"} & set(ad.targets)
    named = resolve(m, _setup(["q_proj", "gate_proj", "up_proj", "down_proj"])).adapters
    assert not named.router and dict(named.expert_ranks) == {"gate_up_proj": 16, "down_proj": 8}
    plain = resolve(m, _setup(["q_proj", "v_proj"])).adapters
    assert not plain.router and not plain.expert_ranks


def test_merged_weights_are_the_expert_stacks_in_the_base_dtype():
    m = resolve_model("qwen-3-30b-a3b")
    rs = resolve(m, _setup(["all-linear"]))
    E, h, inter = m.n_experts, m.hidden, m.moe_intermediate
    stacks = 2 * E * 3 * inter * h                       # gate_up (E, 2I, H) and down (E, H, I) in bf16
    factors = 2 * E * (16 * (h + 2 * inter) + 8 * (inter + h))   # fp32 adapters' bf16 copies for baddbmm
    assert moe_lora.merged_bytes_per_layer(m, rs) == stacks + factors + 2 * E * h
    bf16 = resolve(m, TrainingSetup.from_dict({**ALL, "lora": {"targets": ["all-linear"], "adapter_dtype": "bf16"}}))
    assert moe_lora.merged_bytes_per_layer(m, bf16) == stacks + 2 * E * h
    # they dominate the step: all-linear without checkpointing is about twice q/v's peak
    big = estimate(m, _setup(["all-linear"], checkpointing="none", batch_size=1, seq_len=256)).peak_allocated_bytes
    small = estimate(m, _setup(["q_proj", "v_proj"], checkpointing="none", batch_size=1, seq_len=256)).peak_allocated_bytes
    assert big > small + m.moe_layers * stacks


def test_a_family_peft_does_not_convert_is_untouched():
    m = resolve_model("llama-3.2-1b")
    ad = resolve(m, _setup(["all-linear"])).adapters
    assert not ad.router and not ad.expert_ranks and "down_proj" in ad.targets


@pytest.mark.parametrize("lora,method,error,fragment", [
    ({"targets": ["all-linear"], "dropout": 0.05}, "lora", PlannerError, "lora_dropout != 0"),
    ({"targets": ["all-linear"], "use_dora": True}, "lora", PlannerError, "use_dora=True"),
    ({"targets": ["q_proj", "gate_proj"]}, "lora", PlannerError, "without also targeting up_proj"),
    ({"targets": ["all-linear"]}, "qlora", NoClosedForm, "no closed form"),
])
def test_what_peft_refuses_is_refused_in_one_line(lora, method, error, fragment):
    m = resolve_model("qwen-3-30b-a3b")
    with pytest.raises(error, match=fragment) as exc:
        resolve(m, TrainingSetup.from_dict({"method": method, "lora": lora}))
    assert "\n" not in str(exc.value)


def test_mixtral_v4_names_are_accepted_as_targets():
    m = resolve_model("mixtral-8x7b")
    ad = resolve(m, _setup(["q_proj", "w1", "w3", "w2", "gate"])).adapters
    assert ad.router and dict(ad.expert_ranks) == {"gate_up_proj": 16, "down_proj": 8}
    assert ad.targets == ("q_proj",)


def test_the_note_gives_the_merged_bytes():
    m = resolve_model("qwen-3-30b-a3b")
    est = estimate(m, _setup(["all-linear"]))
    assert any("lora.ParamWrapper" in n and "GiB per MoE layer" in n for n in est.notes)


def test_the_note_says_dense_mlps_lose_their_lora():
    m = resolve_model("deepseek-v2-lite")     # first layer dense, two shared experts per MoE layer
    notes = estimate(m, _setup(["all-linear"])).notes
    assert any("dense layers and shared experts get no LoRA" in n for n in notes)
    assert not any("get no LoRA" in n for n in estimate(resolve_model("mixtral-8x7b"), _setup(["all-linear"])).notes)
