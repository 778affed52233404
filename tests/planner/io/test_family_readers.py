"""The family readers added for issue 11 (phi, gpt_bigcode, ...): the ModelSpec fields they fill,
exact parameter counts against transformers' meta-device build of small variants (the bundled
presets are checked by tests/planner/specs/test_params.py and tests/data), peft's default targets,
and one clear line for what they do not model."""
import copy

import pytest

from gpuplan.planner import model_from_config, param_counts
from gpuplan.planner.io.catalog import load_preset, resolve_model
from gpuplan.planner.specs.errors import PlannerError


def _variant(preset, **changes):
    cfg = copy.deepcopy(load_preset(preset)["config"])
    cfg.update(changes)
    return cfg


def test_phi_fields():
    m = resolve_model("phi-2")
    assert m.shared_norm and m.lm_head_bias and m.norms_per_layer == 1
    assert m.rope_dim == 32                    # head_dim 80 * partial_rotary_factor 0.4
    assert m.dropout == 0.1 and m.embed_dropout == 0.0
    assert [lin.name for lin in m.dense_linears] == ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
    assert resolve_model("phi-1.5").rope_dim == 32   # head_dim 64 * 0.5


@pytest.mark.parametrize("preset,changes", [
    ("phi-1.5", dict(num_hidden_layers=2, num_key_value_heads=8)),          # GQA variant
    ("phi-1.5", dict(num_hidden_layers=2, tie_word_embeddings=True)),
    ("santacoder", dict(n_layer=2, multi_query=False)),                     # full multi-head c_attn
    ("santacoder", dict(n_layer=2, n_inner=None)),                          # 4 * hidden default
    ("falcon-40b", dict(num_hidden_layers=2, n_layer=2, bias=True)),
    ("falcon-40b", dict(num_hidden_layers=2, n_layer=2, num_ln_in_parallel_attn=1, ffn_hidden_size=20480)),
    ("deepseek-v2-lite", dict(num_hidden_layers=3, q_lora_rank=256)),           # q through a latent
    ("deepseek-v2-lite", dict(num_hidden_layers=3, first_k_dense_replace=0, n_shared_experts=1)),
    ("deepseek-v3", dict(num_hidden_layers=4, n_routed_experts=16, n_group=4, topk_group=2)),
    ("starcoder2-7b", dict(num_hidden_layers=2, use_bias=False, tie_word_embeddings=False)),
    ("stablelm-2-zephyr-1.6b", dict(num_hidden_layers=2, use_qkv_bias=False, num_key_value_heads=8)),
    ("olmoe-1b-7b", dict(num_hidden_layers=2, num_key_value_heads=4, attention_bias=True)),   # GQA k_norm, biases
    ("aya-23-8b", dict(num_hidden_layers=2, attention_bias=True, vocab_size=32000)),
    ("aya-23-8b", dict(num_hidden_layers=2, tie_word_embeddings=False, vocab_size=32000)),
])
def test_counts_match_transformers_on_meta(preset, changes, meta_causal_lm):
    cfg = _variant(preset, **changes)
    with meta_causal_lm(cfg) as model:
        assert param_counts(model_from_config(cfg)).total == sum(p.numel() for p in model.parameters())


def test_gpt_bigcode_multi_query():
    m = resolve_model("santacoder")
    assert m.n_kv_heads == 1 and m.learned_positions == 2048
    c_attn = m.dense_linears[0]
    assert (c_attn.name, c_attn.out_features) == ("c_attn", m.hidden + 2 * m.head_dim)
    assert m.act_saved_tensors == 1              # gelu_pytorch_tanh: one aten op saving its input
    mha = model_from_config(_variant("santacoder", multi_query=False))
    assert mha.n_kv_heads == mha.n_heads and mha.dense_linears[0].out_features == 3 * mha.hidden


def test_falcon_fields():
    m = resolve_model("falcon-40b")
    assert (m.n_heads, m.n_kv_heads, m.head_dim) == (128, 8, 64)
    assert m.expand_kv and m.causal_mask_always and m.parallel_residual and m.norms_per_layer == 2
    assert m.dense_linears[0].out_features == (128 + 2 * 8) * 64
    one_norm = model_from_config(_variant("falcon-40b", num_ln_in_parallel_attn=1))
    assert one_norm.norms_per_layer == 1 and one_norm.shared_norm


def test_falcon_sdpa_charges_the_mask_and_eager_the_scores():
    from gpuplan.planner import TrainingSetup, estimate

    m = resolve_model("falcon-40b")
    est = {(att, s): estimate(m, TrainingSetup.from_dict({"method": "lora", "base_dtype": "bf16", "attention": att,
                                                     "checkpointing": "none", "batch_size": 1, "seq_len": s}))
           for att in ("sdpa", "eager") for s in (256, 512)}
    # the memory-efficient kernel's converted mask grows with s^2 per layer, far less than eager's scores
    assert est[("sdpa", 512)].peak_allocated_bytes < est[("eager", 512)].peak_allocated_bytes


def test_starcoder2_fields():
    m = resolve_model("starcoder2-7b")
    assert (m.n_heads, m.n_kv_heads, m.sliding_window, m.act_saved_tensors) == (36, 4, 4096, 1)
    assert m.dropout == m.embed_dropout == m.attention_dropout == 0.1
    assert all(lin.bias for lin in m.dense_linears) and m.tied_embeddings


def test_stablelm_fields():
    m = resolve_model("stablelm-2-zephyr-1.6b")
    assert m.rope_dim == 16 and m.dropouts_per_layer == 1 and m.norms_per_layer == 2
    assert [lin.bias for lin in m.dense_linears] == [True, True, True, False, False, False, False]


def test_deepseek_mla_fields():
    m = resolve_model("deepseek-v2-lite")
    assert (m.kv_lora_rank, m.qk_rope_head_dim, m.qk_nope_head_dim, m.v_head_dim, m.q_lora_rank) == (512, 64, 128, 128, 0)
    assert m.head_dim == 192 and m.moe_layers == 26 and m.n_experts == 64 and m.top_k == 6
    assert m.shared_expert_intermediate == 2 * 1408
    v3 = resolve_model("deepseek-v3")
    assert v3.q_lora_rank == 1536 and v3.moe_layers == 61 - 3
    assert {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"} <= v3.linear_names()


def test_deepseek_lora_needs_named_targets():
    from gpuplan.planner import TrainingSetup, estimate

    with pytest.raises(PlannerError, match="no default LoRA target_modules for deepseek_v2"):
        estimate(resolve_model("deepseek-v2-lite"), TrainingSetup.from_dict({"method": "lora"}))
    est = estimate(resolve_model("deepseek-v2-lite"),
                   TrainingSetup.from_dict({"method": "lora", "lora": {"targets": ["q_proj", "kv_b_proj"]}}))
    assert est.peak_allocated_bytes > 0


def test_peft_default_targets_are_peft_own():
    constants = pytest.importorskip("peft.utils.constants")
    mapping = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    for preset in ("phi-2", "santacoder", "falcon-40b", "stablelm-2-zephyr-1.6b"):
        m = resolve_model(preset)
        assert list(m.peft_default_targets) == list(mapping[m.model_type])
    assert "deepseek_v2" not in mapping and "deepseek_v3" not in mapping
    assert resolve_model("deepseek-v3").peft_default_targets == ()
    assert "starcoder2" not in mapping and resolve_model("starcoder2-7b").peft_default_targets == ()


@pytest.mark.parametrize("preset,changes,fragment", [
    ("phi-2", dict(qk_layernorm=True), "qk_layernorm"),
    ("phi-2", dict(hidden_act="relu"), "hidden_act"),
    ("santacoder", dict(activation_function="relu"), "activation 'relu'"),
    ("falcon-40b", dict(alibi=True), "alibi"),
    ("stablelm-2-zephyr-1.6b", dict(qk_layernorm=True), "qk_layernorm"),
    ("stablelm-2-zephyr-1.6b", dict(use_parallel_residual=True), "use_parallel_residual"),
    ("falcon-40b", dict(new_decoder_architecture=False), "new_decoder_architecture false"),
])
def test_unmodelled_variants_are_refused_in_one_line(preset, changes, fragment):
    with pytest.raises(PlannerError) as err:
        model_from_config(_variant(preset, **changes))
    assert fragment in str(err.value) and "\n" not in str(err.value)



def test_olmoe_fields():
    from gpuplan.planner.specs.model import QkNorm

    m = resolve_model("olmoe-1b-7b")
    assert m.qk_norm is QkNorm.FULL and m.qk_norm_size == 2048 + 2048     # q_norm over all heads, k_norm over kv heads
    assert (m.moe_layers, m.n_experts, m.top_k, m.moe_intermediate) == (16, 64, 8, 1024)
    assert not m.moe_norm_topk and m.peft_default_targets == ()            # OlmoeConfig: norm_topk_prob False
    with pytest.raises(PlannerError, match="clip_qkv") as exc:
        model_from_config(_variant("olmoe-1b-7b", clip_qkv=8.0))
    assert "\n" not in str(exc.value)


def test_cohere_fields():
    from gpuplan.planner.specs.enums import MlpKind, NormKind

    m = resolve_model("aya-23-8b")
    assert m.shared_norm and m.mlp_kind is MlpKind.GATED and m.norm_kind is NormKind.LAYER_NO_BIAS
    assert m.norms_per_layer == 1 and m.norm_params == m.hidden and m.tied_embeddings   # CohereConfig ties by default
    assert m.peft_default_targets == ()
    with pytest.raises(PlannerError, match="use_qk_norm") as exc:
        model_from_config(_variant("aya-23-8b", use_qk_norm=True))
    assert "\n" not in str(exc.value)


def test_cohere_first_layer_saves_no_norm_or_mlp_without_an_upstream_gradient():
    from gpuplan.planner import TrainingSetup
    from gpuplan.planner.memory.layers import activation_bytes
    from gpuplan.planner.specs.resolved import resolve

    m = resolve_model("aya-23-8b")
    def per_layer(**kw):
        return activation_bytes(m, resolve(m, TrainingSetup.from_dict({"method": "lora", "base_dtype": "bf16", **kw}))).per_layer
    qv = {"targets": ["q_proj", "v_proj"]}
    off = per_layer(checkpointing="none", lora=qv)
    on_embed = per_layer(checkpointing="none", lora={**qv, "modules_to_save": ["embed_tokens"]})
    assert (on_embed - off) * m.n_layers == 8 * m.hidden + 4 + 3 * 2 * m.intermediate


GRANITE = "tests/fixtures/models/granite-3.3-8b-instruct.config.json"   # see tests/fixtures/models/README.md


def _granite(**changes):
    import json
    from pathlib import Path

    cfg = json.loads((Path(__file__).resolve().parents[3] / GRANITE).read_text())
    return {**cfg, **changes}


def test_granite_reads_as_llama_with_its_multipliers_kept():
    """Granite's four multipliers save no tensor (modeling_granite.py): the spec is Llama's, the
    config kept whole for the simulator; 8,170,864,640 parameters (tied embeddings)."""
    m = model_from_config(_granite(), "granite-3.3-8b-instruct")
    assert m.model_type == "granite" and m.tied_embeddings and m.n_kv_heads == 8 and m.head_dim == 128
    assert [lin.name for lin in m.dense_linears] == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"]
    assert m.peft_default_targets == ()      # peft 0.21 has no default target_modules for granite
    assert m.hf_config["logits_scaling"] == 16.0 and m.hf_config["residual_multiplier"] == 0.22
    assert param_counts(m).total == 8_170_864_640


@pytest.mark.parametrize("changes", [
    dict(num_hidden_layers=2),
    dict(num_hidden_layers=2, attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
])
def test_granite_counts_match_transformers_on_meta(changes, meta_causal_lm):
    cfg = _granite(**changes)
    with meta_causal_lm(cfg) as model:
        assert param_counts(model_from_config(cfg)).total == sum(p.numel() for p in model.parameters())
