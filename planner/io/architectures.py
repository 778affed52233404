"""Config readers: a HF `config.json` -> ModelSpec, one reader per architecture family.

A new family is a reader that fills ModelSpec's fields (its linears with their roles, norms,
rope kind, quirks); the formulas never test `model_type`. Sources: transformers 5.23
`models/<type>/modeling_<type>.py` and `configuration_<type>.py` for each family.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..specs.enums import MlpKind, NormKind
from ..specs.errors import PlannerError
from ..specs.model import LinearRole, LinearSpec, ModelSpec, QkNorm, RopeKind
from .multimodal import MULTIMODAL_MODEL_TYPES, from_multimodal
from .validate import validate_model_config

IN, OUT = LinearRole.INPUT, LinearRole.OUTPUT

# peft's default target_modules per model_type when none are given
# [peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING]
PEFT_DEFAULT_TARGETS = {
    "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "mixtral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"), "qwen3": ("q_proj", "v_proj"), "qwen3_moe": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"), "gemma2": ("q_proj", "v_proj"), "gemma3_text": ("q_proj", "v_proj"),
    "olmo2": ("q_proj", "v_proj"), "phi3": ("qkv_proj",), "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",), "phi": ("q_proj", "v_proj", "fc1", "fc2"),
    "gpt_bigcode": ("c_attn",), "falcon": ("query_key_value",),
    "stablelm": ("q_proj", "v_proj"),
}

# peft 0.21 converts LoRA targets for transformers-5 MoE families (v4 module name -> what it adapts
# now): model types whose checkpoint conversion pattern is qwen2_moe [transformers 5.24
# conversion_mapping.py _MODEL_TO_CONVERSION_PATTERN: qwen3_moe, olmoe, deepseek_v2, deepseek_v3]
# and mixtral [peft/utils/transformers_weight_conversion.py: _MODEL_TO_CONVERSION_PATTERN["mixtral"],
# _MOE_TARGET_MODULE_MAPPING]; qwen2_moe itself is absent from the pattern table, so not converted
_QWEN2_MOE_EXPERTS = (("gate", "router"), ("gate_proj", "gate_up_proj"), ("up_proj", "gate_up_proj"),
                      ("down_proj", "down_proj"))
_MIXTRAL_EXPERTS = (("gate", "router"), ("w1", "gate_up_proj"), ("w3", "gate_up_proj"), ("w2", "down_proj"))
PEFT_EXPERT_TARGETS = {"qwen3_moe": _QWEN2_MOE_EXPERTS, "olmoe": _QWEN2_MOE_EXPERTS, "deepseek_v2": _QWEN2_MOE_EXPERTS,
                       "deepseek_v3": _QWEN2_MOE_EXPERTS, "mixtral": _MIXTRAL_EXPERTS}

# tensors of the MLP width each activation saves for backward: nn.GELU (exact or tanh) is one
# aten op saving its input; gelu_new is written in python ops saving x, tanh, 0.5x and 1+tanh
# [transformers/activations.py: GELUActivation, PytorchGELUTanh, NewGELUActivation]
_GELU_SAVED = {"gelu": 1, "gelu_pytorch_tanh": 1, "gelu_new": 4}


def _gelu_saved(name: str, act: str) -> int:
    if act not in _GELU_SAVED:
        raise PlannerError(f"{name}: activation {act!r} is not modelled for this family; "
                           f"modelled: {', '.join(sorted(_GELU_SAVED))}")
    return _GELU_SAVED[act]


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None, required: bool = True) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    if required and default is None:
        raise PlannerError(f"config.json lacks '{keys[0]}' (model_type {cfg.get('model_type')!r}); "
                           "pass the model's complete config.json")
    return default


def _max_positions(cfg: Mapping[str, Any]) -> int | None:
    value = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(value) if value else None


def _dims(cfg: Mapping[str, Any], head_dim_key: bool = True) -> tuple[int, int, int, int, int]:
    """(hidden, heads, kv heads, head dim, intermediate) of a HF config; the head dim from `head_dim`
    where the family's config class reads it (`head_dim_key`), else hidden // heads."""
    h, a = int(_get(cfg, "hidden_size")), int(_get(cfg, "num_attention_heads"))
    kv = int(cfg.get("num_key_value_heads") or a)
    d = int(cfg.get("head_dim") or h // a) if head_dim_key else h // a
    return h, a, kv, d, int(_get(cfg, "intermediate_size"))


def _attention_linears(h: int, a: int, kv: int, d: int, qkv_bias: bool, o_bias: bool,
                       out: str = "o_proj") -> tuple[LinearSpec, ...]:
    """q/k/v (grouped-query: kv heads) and the output projection, named as the family names it."""
    return (
        LinearSpec("q_proj", h, a * d, qkv_bias, "attn"),
        LinearSpec("k_proj", h, kv * d, qkv_bias, "attn"),
        LinearSpec("v_proj", h, kv * d, qkv_bias, "attn"),
        LinearSpec(out, a * d, h, o_bias, "attn", role=OUT),
    )


def _plain_mlp_linears(h: int, inter: int, bias: bool, up: str, down: str) -> tuple[LinearSpec, ...]:
    """An ungated MLP's two projections, named as the family names them."""
    return LinearSpec(up, h, inter, bias, "mlp"), LinearSpec(down, inter, h, bias, "mlp", role=OUT)


def _llama_linears(h: int, a: int, kv: int, d: int, inter: int, qkv_bias: bool, o_bias: bool,
                   mlp_bias: bool) -> tuple[LinearSpec, ...]:
    return _attention_linears(h, a, kv, d, qkv_bias, o_bias) + (
        LinearSpec("gate_proj", h, inter, mlp_bias, "mlp"),
        LinearSpec("up_proj", h, inter, mlp_bias, "mlp"),
        LinearSpec("down_proj", inter, h, mlp_bias, "mlp", role=OUT),
    )


# model_type -> norms per layer, q/k norm kind, attention bias rule, family quirks
_LLAMA_LIKE: dict[str, dict[str, Any]] = {
    "llama": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias="attention_bias", o_bias="attention_bias"),
    "mistral": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias=False, o_bias=False),
    "qwen2": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias=True, o_bias=False),
    "qwen3": dict(norms=2, qk_norm=QkNorm.PER_HEAD, qkv_bias="attention_bias", o_bias="attention_bias"),
    # Gemma: RMSNorm scales by (1 + weight.float()) in fp32; embeddings times sqrt(hidden); ties by default
    "gemma": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias="attention_bias", o_bias="attention_bias", gemma=True),
    # Gemma-2: `_supports_sdpa = False` (its attention soft-capping has no SDPA path): users get eager
    "gemma2": dict(norms=4, qk_norm=QkNorm.NONE, qkv_bias="attention_bias", o_bias="attention_bias", gemma=True,
                   sdpa=False),
    "gemma3_text": dict(norms=4, qk_norm=QkNorm.PER_HEAD, qkv_bias="attention_bias", o_bias="attention_bias",
                        gemma=True),
    "olmo2": dict(norms=2, qk_norm=QkNorm.FULL, qkv_bias="attention_bias", o_bias="attention_bias", post_norm=True),
    "mixtral": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias=False, o_bias=False),
    "qwen3_moe": dict(norms=2, qk_norm=QkNorm.PER_HEAD, qkv_bias="attention_bias", o_bias="attention_bias"),
    # OLMoE [modeling_olmoe.py OlmoeAttention]: pre-norm, q_norm over all heads and k_norm over the kv heads
    # on the projections' outputs (OLMo-2's full q/k norms), a MoE MLP in every layer
    "olmoe": dict(norms=2, qk_norm=QkNorm.FULL, qkv_bias="attention_bias", o_bias="attention_bias"),
    "phi3": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias=False, o_bias=False, fused=True),
    # IBM Granite 3.x [modeling_granite.py]: Llama's layer with four scalar multipliers, none of which saves
    # a tensor for backward: `inputs_embeds * embedding_multiplier` and `hidden * residual_multiplier` are
    # python-scalar products (a transient copy, the input let go), `attention_multiplier` is SDPA's `scale`,
    # `logits / logits_scaling` a transient copy of the 16-bit logits below the loss's own peak
    "granite": dict(norms=2, qk_norm=QkNorm.NONE, qkv_bias="attention_bias", o_bias="attention_bias"),
}


def _bias(rule: Any, cfg: Mapping[str, Any]) -> bool:
    return bool(cfg.get(rule, False)) if isinstance(rule, str) else bool(rule)


def _from_llama_like(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    mt = cfg["model_type"]
    rules = _LLAMA_LIKE[mt]
    gemma = rules.get("gemma", False)
    if mt == "olmoe" and cfg.get("clip_qkv") is not None:
        raise PlannerError(f"{name}: OLMoE with clip_qkv (in-place clamps of q, k and v) is not modelled yet; "
                           "released OLMoE checkpoints set clip_qkv null")
    h = int(_get(cfg, "hidden_size"))
    a = int(_get(cfg, "num_attention_heads"))
    kv = int(_get(cfg, "num_key_value_heads", default=a))
    d = int(cfg.get("head_dim") or h // a)
    inter = int(_get(cfg, "intermediate_size"))
    n_layers = int(_get(cfg, "num_hidden_layers"))
    qkv_bias, o_bias = _bias(rules["qkv_bias"], cfg), _bias(rules["o_bias"], cfg)
    mlp_bias = bool(cfg.get("mlp_bias", False))
    dense = _llama_linears(h, a, kv, d, inter, qkv_bias, o_bias, mlp_bias)
    if rules.get("fused"):  # Phi-3's fused projections: qkv_proj and gate_up_proj [modeling_phi3.py]
        dense = (
            LinearSpec("qkv_proj", h, (a + 2 * kv) * d, False, "attn"),
            LinearSpec("o_proj", a * d, h, False, "attn", role=OUT),
            LinearSpec("gate_up_proj", h, 2 * inter, False, "mlp"),
            LinearSpec("down_proj", inter, h, False, "mlp", role=OUT),
        )
    qk = rules["qk_norm"]
    qk_norm_size = {QkNorm.NONE: 0, QkNorm.PER_HEAD: 2 * d, QkNorm.FULL: a * d + kv * d}[qk]
    moe = _moe_fields(cfg, n_layers, h, dense[:4])
    return ModelSpec(
        name=name, model_type=mt, n_layers=n_layers, hidden=h, n_heads=a, n_kv_heads=kv,
        head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        # transformers' config classes default tie_word_embeddings to True for Gemma, else False
        tied_embeddings=bool(cfg.get("tie_word_embeddings", gemma)),
        mlp_kind=MlpKind.GATED, norm_kind=NormKind.RMS, dense_linears=dense,
        norms_per_layer=rules["norms"], qk_norm_size=qk_norm_size, qk_norm=qk,
        final_logit_softcap=cfg.get("final_logit_softcapping"),
        embed_scale=gemma, norm_fp32_scale=gemma, supports_sdpa=rules.get("sdpa", True),
        post_norm=rules.get("post_norm", False),
        dropout=float(cfg.get("resid_pdrop", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        sliding_window=cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None,
        sliding_layers=_sliding_layers(cfg, n_layers),
        # olmoe: none in peft's table, name them (--lora-targets)
        peft_default_targets=PEFT_DEFAULT_TARGETS.get(mt, ()), max_positions=_max_positions(cfg),
        hf_config=dict(cfg), **moe,
    )


def _sliding_layers(cfg: Mapping[str, Any], n_layers: int) -> int:
    """Decoder layers that attend within `sliding_window`, as transformers 5.24's config classes lay them
    out: `layer_types` when given; else Gemma-3's every layer but each `sliding_window_pattern`-th
    (default 6), Gemma-2's every other, Qwen2's layers from `max_window_layers` on, and every layer of
    the rest (Mistral v0.1, StarCoder2) [models/*/configuration_*.py: layer_types]."""
    if not (cfg.get("sliding_window") and cfg.get("use_sliding_window", True)):
        return 0
    types = cfg.get("layer_types")
    if types:
        return sum(1 for t in types if t == "sliding_attention")
    mt = cfg.get("model_type")
    if mt in ("gemma3", "gemma3_text"):
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        return sum(1 for i in range(n_layers) if (i + 1) % pattern)
    if mt == "gemma2":
        return sum(1 for i in range(n_layers) if (i + 1) % 2)
    if "max_window_layers" in cfg:
        return max(0, n_layers - int(cfg["max_window_layers"]))
    return n_layers


def _moe_fields(cfg: Mapping[str, Any], n_layers: int, h: int,
                attn: tuple[LinearSpec, ...]) -> dict[str, Any]:
    """Experts held per MoE layer; transformers 5 fuses them into gate_up_proj and down_proj."""
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    if experts == 0:
        return {}
    top_k = int(_get(cfg, "num_experts_per_tok"))
    inter = int(cfg.get("moe_intermediate_size") or _get(cfg, "intermediate_size"))
    step = int(cfg.get("decoder_sparse_step", 1) or 1)
    only_mlp = set(cfg.get("mlp_only_layers") or [])
    moe_layers = sum(1 for i in range(n_layers) if i not in only_mlp and (i + 1) % step == 0)
    linears = attn + (
        LinearSpec("gate_up_proj", h, 2 * inter, False, "mlp", experts=experts),
        LinearSpec("down_proj", inter, h, False, "mlp", experts=experts, role=OUT),
    )
    return dict(moe_linears=linears, moe_layers=moe_layers, n_experts=experts, top_k=top_k,
                moe_intermediate=inter, peft_expert_targets=PEFT_EXPERT_TARGETS.get(cfg["model_type"], ()),
                # MixtralTopKRouter always renormalizes; the others per norm_topk_prob (their config classes
                # default it to False) [modeling_mixtral.py, modeling_qwen3_moe.py, modeling_olmoe.py TopKRouter]
                moe_norm_topk=cfg["model_type"] == "mixtral" or bool(cfg.get("norm_topk_prob", False)))


def _from_gpt2(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    h, a = int(_get(cfg, "n_embd", "hidden_size")), int(_get(cfg, "n_head", "num_attention_heads"))
    inter = int(cfg.get("n_inner") or 4 * h)
    linears = (  # Conv1D modules with biases [modeling_gpt2.py]
        LinearSpec("c_attn", h, 3 * h, True, "attn"),
        LinearSpec("attn.c_proj", h, h, True, "attn", role=OUT),
    ) + _plain_mlp_linears(h, inter, True, "c_fc", "mlp.c_proj")
    return ModelSpec(
        name=name, model_type="gpt2", n_layers=int(_get(cfg, "n_layer", "num_hidden_layers")),
        hidden=h, n_heads=a, n_kv_heads=a, head_dim=h // a, intermediate=inter,
        vocab=int(_get(cfg, "vocab_size")), tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        mlp_kind=MlpKind.PLAIN, norm_kind=NormKind.LAYER, dense_linears=linears,
        learned_positions=int(_get(cfg, "n_positions", "max_position_embeddings")), rope=RopeKind.NONE,
        # gelu_new is written in python ops: x, tanh, 0.5x and 1+tanh are saved [activations.py NewGELUActivation]
        act_saved_tensors=4,
        dropout=float(cfg.get("resid_pdrop", 0.1)), attention_dropout=float(cfg.get("attn_pdrop", 0.1)),
        peft_default_targets=PEFT_DEFAULT_TARGETS["gpt2"], max_positions=_max_positions(cfg),
        hf_config=dict(cfg),
    )


def _from_gpt_neox(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    h, a = int(_get(cfg, "hidden_size")), int(_get(cfg, "num_attention_heads"))
    inter = int(_get(cfg, "intermediate_size"))
    bias = bool(cfg.get("attention_bias", True))
    linears = (  # [modeling_gpt_neox.py]
        LinearSpec("query_key_value", h, 3 * h, bias, "attn"),
        LinearSpec("dense", h, h, bias, "attn", role=OUT),
    ) + _plain_mlp_linears(h, inter, True, "dense_h_to_4h", "dense_4h_to_h")
    return ModelSpec(
        name=name, model_type="gpt_neox", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=a, head_dim=h // a, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_kind=MlpKind.PLAIN,
        norm_kind=NormKind.LAYER, dense_linears=linears, rope=RopeKind.IN_ATTENTION,
        parallel_residual=bool(cfg.get("use_parallel_residual", True)),
        dropout=float(cfg.get("hidden_dropout", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        peft_default_targets=PEFT_DEFAULT_TARGETS["gpt_neox"], max_positions=_max_positions(cfg),
        hf_config=dict(cfg),
    )


def _rope_factor(cfg: Mapping[str, Any], default: float) -> float:
    """partial_rotary_factor at the top level (transformers 4.x configs) or in rope_parameters (5.x)."""
    params = cfg.get("rope_parameters") or {}
    return float(cfg.get("partial_rotary_factor") or params.get("partial_rotary_factor") or default)


def _from_phi(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Phi-1/1.5/2 [modeling_phi.py]: one LayerNorm per layer whose output feeds attention and the
    MLP in parallel (`attn_outputs + mlp(hidden_states) + residual`), q/k/v/dense with biases, rope
    on the first `head_dim * partial_rotary_factor` dims, gelu_new MLP fc1/fc2, lm_head with a bias."""
    h, a, kv, d, inter = _dims(cfg)
    if cfg.get("qk_layernorm"):
        raise PlannerError(f"{name}: Phi with qk_layernorm=true is not modelled yet (no released Phi "
                           "checkpoint uses it); pass a config with qk_layernorm false")
    linears = _attention_linears(h, a, kv, d, True, True, out="dense") + _plain_mlp_linears(h, inter, True, "fc1", "fc2")
    act = cfg.get("hidden_act", "gelu_new")
    if act != "gelu_new":
        raise PlannerError(f"{name}: Phi with hidden_act {act!r} is not modelled (released Phi models use gelu_new)")
    return ModelSpec(
        name=name, model_type="phi", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_kind=MlpKind.PLAIN,
        norm_kind=NormKind.LAYER, dense_linears=linears, norms_per_layer=1, rope=RopeKind.SHARED,
        shared_norm=True, lm_head_bias=True, rope_dim=int(d * _rope_factor(cfg, 0.5)),
        # gelu_new in python ops: x, tanh, 0.5x and 1+tanh are saved [activations.py NewGELUActivation]
        act_saved_tensors=4,
        dropout=float(cfg.get("resid_pdrop", 0.0) or 0.0),
        embed_dropout=float(cfg.get("embd_pdrop", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        peft_default_targets=PEFT_DEFAULT_TARGETS["phi"], max_positions=_max_positions(cfg),
        hf_config=dict(cfg),
    )


def _from_gpt_bigcode(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """StarCoder / SantaCoder [modeling_gpt_bigcode.py]: GPT-2's block (ln_1, attention, ln_2,
    MLP, learned positions, biases, dropouts) with multi-query attention: c_attn projects to
    hidden + 2 * head_dim when `multi_query` (one shared key/value head), else 3 * hidden."""
    h, a = int(_get(cfg, "n_embd", "hidden_size")), int(_get(cfg, "n_head", "num_attention_heads"))
    d = h // a
    kv = 1 if cfg.get("multi_query", True) else a
    inter = int(cfg.get("n_inner") or 4 * h)
    linears = (
        LinearSpec("c_attn", h, h + 2 * kv * d, True, "attn"),
        LinearSpec("attn.c_proj", h, h, True, "attn", role=OUT),
    ) + _plain_mlp_linears(h, inter, True, "c_fc", "mlp.c_proj")
    return ModelSpec(
        name=name, model_type="gpt_bigcode", n_layers=int(_get(cfg, "n_layer", "num_hidden_layers")),
        hidden=h, n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter,
        vocab=int(_get(cfg, "vocab_size")), tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        mlp_kind=MlpKind.PLAIN, norm_kind=NormKind.LAYER, dense_linears=linears,
        learned_positions=int(_get(cfg, "n_positions", "max_position_embeddings")), rope=RopeKind.NONE,
        act_saved_tensors=_gelu_saved(name, cfg.get("activation_function", "gelu_pytorch_tanh")),
        dropout=float(cfg.get("resid_pdrop", 0.1)), embed_dropout=float(cfg.get("embd_pdrop", 0.1)),
        attention_dropout=float(cfg.get("attn_pdrop", 0.1)),
        peft_default_targets=PEFT_DEFAULT_TARGETS["gpt_bigcode"], max_positions=_max_positions(cfg),
        hf_config=dict(cfg),
    )


def _from_falcon(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Falcon-40B/180B (`new_decoder_architecture`) [modeling_falcon.py]: attention and MLP in
    parallel, each on its own LayerNorm of the same input (`num_ln_in_parallel_attn` 2, or one
    shared), grouped-query attention fused in query_key_value ((heads + 2 kv_heads) * head_dim),
    rope, GELU MLP dense_h_to_4h / dense_4h_to_h, FalconLinear biases per `bias`."""
    if cfg.get("alibi") or not cfg.get("new_decoder_architecture"):
        raise PlannerError(f"{name}: Falcon with new_decoder_architecture false or alibi (falcon-7b, falcon-rw) "
                           "is not modelled yet; modelled: new_decoder_architecture true with rope (falcon-40b, -180b)")
    if not cfg.get("parallel_attn", True):
        raise PlannerError(f"{name}: Falcon with parallel_attn false is not modelled yet")
    h, a = int(_get(cfg, "hidden_size", "n_embd")), int(_get(cfg, "num_attention_heads", "n_head"))
    kv = int(cfg.get("num_kv_heads") or a)
    d = h // a
    inter = int(cfg.get("ffn_hidden_size") or 4 * h)
    bias = bool(cfg.get("bias", False))
    act = cfg.get("activation", "gelu")
    norms = int(cfg.get("num_ln_in_parallel_attn") or 2)
    linears = (
        LinearSpec("query_key_value", h, (a + 2 * kv) * d, bias, "attn"),
        LinearSpec("dense", h, h, bias, "attn", role=OUT),
        LinearSpec("dense_h_to_4h", h, inter, bias, "mlp"),
        LinearSpec("dense_4h_to_h", inter, h, bias, "mlp", role=OUT),
    )
    return ModelSpec(
        name=name, model_type="falcon", n_layers=int(_get(cfg, "num_hidden_layers", "n_layer")), hidden=h,
        n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)), mlp_kind=MlpKind.PLAIN,
        norm_kind=NormKind.LAYER, dense_linears=linears, norms_per_layer=norms, rope=RopeKind.SHARED,
        parallel_residual=norms == 2, shared_norm=norms == 1, expand_kv=True, causal_mask_always=True,
        act_saved_tensors=_gelu_saved(name, act),
        dropout=float(cfg.get("hidden_dropout", 0.0) or 0.0), embed_dropout=0.0,
        attention_dropout=0.0,   # the rope path calls SDPA with dropout_p=0.0 and eager without dropout
        peft_default_targets=PEFT_DEFAULT_TARGETS["falcon"], max_positions=_max_positions(cfg) or 2048,
        hf_config=dict(cfg),
    )


def _from_deepseek(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """DeepSeek-V2/V3 [modeling_deepseek_v2.py, modeling_deepseek_v3.py]: multi-head latent attention
    (q_proj, or q_a_proj + q_a_layernorm + q_b_proj; kv_a_proj_with_mqa to the kv latent and one
    roped key head, kv_a_layernorm, kv_b_proj to per-head keys and values; o_proj from v_head_dim
    per head), llama-style norms; the first `first_k_dense_replace` layers have a dense gated MLP,
    the rest a MoE of fused routed experts (gate_up_proj, down_proj), a router weight (experts,
    hidden) and shared experts: one gated MLP of moe_intermediate_size * n_shared_experts."""
    mt = cfg["model_type"]
    h, a = int(_get(cfg, "hidden_size")), int(_get(cfg, "num_attention_heads"))
    qr = int(cfg.get("q_lora_rank") or 0)
    kvr = int(_get(cfg, "kv_lora_rank"))
    rope, nope, vd = (int(_get(cfg, k)) for k in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"))
    qk = nope + rope
    bias = bool(cfg.get("attention_bias", False))
    q = ((LinearSpec("q_a_proj", h, qr, bias, "attn"), LinearSpec("q_b_proj", qr, a * qk, False, "attn"))
         if qr else (LinearSpec("q_proj", h, a * qk, False, "attn"),))
    attn = q + (
        LinearSpec("kv_a_proj_with_mqa", h, kvr + rope, bias, "attn"),
        # q_b_proj / kv_b_proj read their own latent's norm output, not the block input: OUTPUT role
        LinearSpec("kv_b_proj", kvr, a * (nope + vd), False, "attn", role=OUT),
        LinearSpec("o_proj", a * vd, h, bias, "attn", role=OUT),
    )
    inter = int(_get(cfg, "intermediate_size"))
    mlp_bias = bool(cfg.get("mlp_bias", False))
    dense = attn + _llama_linears(h, a, a, qk, inter, False, False, mlp_bias)[4:]
    n_layers = int(_get(cfg, "num_hidden_layers"))
    experts = int(_get(cfg, "n_routed_experts", "num_local_experts", "num_experts"))
    moe_inter = int(_get(cfg, "moe_intermediate_size"))
    shared = moe_inter * int(cfg.get("n_shared_experts") or 0)
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    moe_linears = attn + (
        LinearSpec("gate_up_proj", h, 2 * moe_inter, False, "mlp", experts=experts),
        LinearSpec("down_proj", moe_inter, h, False, "mlp", experts=experts, role=OUT),
    ) + (_llama_linears(h, a, a, qk, shared, False, False, mlp_bias)[4:] if shared else ())
    return ModelSpec(
        name=name, model_type=mt, n_layers=n_layers, hidden=h, n_heads=a, n_kv_heads=a, head_dim=qk,
        intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_kind=MlpKind.GATED,
        norm_kind=NormKind.RMS, dense_linears=dense, norms_per_layer=2, qk_norm_size=qr + kvr,
        moe_linears=moe_linears, moe_layers=max(0, n_layers - first_dense), n_experts=experts,
        top_k=int(_get(cfg, "num_experts_per_tok")), moe_intermediate=moe_inter,
        q_lora_rank=qr, kv_lora_rank=kvr, qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=vd,
        shared_expert_intermediate=shared, rope_dim=rope, peft_expert_targets=PEFT_EXPERT_TARGETS[mt],
        moe_norm_topk=bool(cfg.get("norm_topk_prob", False)),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        # peft has no default target_modules for DeepSeek: name them (--lora-targets)
        peft_default_targets=(), max_positions=_max_positions(cfg), hf_config=dict(cfg),
    )


def _from_starcoder2(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """StarCoder2 [modeling_starcoder2.py]: pre-LayerNorm blocks in sequence, q/k/v/o and c_fc/c_proj
    with biases (`use_bias`), grouped-query attention with shared rope tables, a GELU MLP, residual,
    attention and embedding dropouts, sliding window."""
    h, a, kv, d, inter = _dims(cfg)
    bias = bool(cfg.get("use_bias", True))
    linears = _attention_linears(h, a, kv, d, bias, bias) + _plain_mlp_linears(h, inter, bias, "c_fc", "c_proj")
    return ModelSpec(
        name=name, model_type="starcoder2", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)), mlp_kind=MlpKind.PLAIN,
        norm_kind=NormKind.LAYER, dense_linears=linears, rope=RopeKind.SHARED,
        act_saved_tensors=_gelu_saved(name, cfg.get("hidden_act", "gelu_pytorch_tanh")),
        dropout=float(cfg.get("residual_dropout", 0.0) or 0.0),
        embed_dropout=float(cfg.get("embedding_dropout", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        sliding_window=cfg.get("sliding_window"),
        # peft has no default target_modules for starcoder2: name them (--lora-targets)
        peft_default_targets=(), max_positions=_max_positions(cfg), hf_config=dict(cfg),
    )


def _from_stablelm(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """StableLM / StableLM-2 [modeling_stablelm.py]: Llama's projections (q/k/v biases per
    `use_qkv_bias`, o_proj and the gated MLP without) with LayerNorms, rope on the first
    `head_dim * partial_rotary_factor` dims, one dropout on the MLP output (`hidden_dropout`)."""
    if cfg.get("qk_layernorm") or cfg.get("use_parallel_residual"):
        raise PlannerError(f"{name}: StableLM with qk_layernorm or use_parallel_residual (stablelm-2-12b) is "
                           "not modelled yet; modelled: the sequential StableLM / StableLM-2 1.6B layout")
    h, a, kv, d, inter = _dims(cfg, head_dim_key=False)   # the modeling file takes hidden // heads
    linears = _llama_linears(h, a, kv, d, inter, bool(cfg.get("use_qkv_bias", False)), False, False)
    return ModelSpec(
        name=name, model_type="stablelm", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_kind=MlpKind.GATED,
        norm_kind=NormKind.LAYER, dense_linears=linears, rope=RopeKind.SHARED,
        rope_dim=int(d * _rope_factor(cfg, 0.25)), dropouts_per_layer=1,
        dropout=float(cfg.get("hidden_dropout", 0.0) or 0.0), embed_dropout=0.0,
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        peft_default_targets=PEFT_DEFAULT_TARGETS["stablelm"], max_positions=_max_positions(cfg),
        hf_config=dict(cfg),
    )


def _from_cohere(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Cohere / Command-R / Aya-23 [modeling_cohere.py]: one weight-only CohereLayerNorm per layer
    whose output feeds attention and Llama's gated MLP in parallel, q/k/v/o (biases per
    `attention_bias`), rope on interleaved pairs in fp32, tied embeddings by default, logits times
    `logit_scale` (a scalar product on the logits, saving nothing)."""
    if cfg.get("use_qk_norm"):
        raise PlannerError(f"{name}: Cohere with use_qk_norm=true (Command-R+) is not modelled yet; "
                           "modelled: use_qk_norm false (Command-R, Aya-23)")
    h, a, kv, d, inter = _dims(cfg, head_dim_key=False)   # the modeling file takes hidden // heads
    bias = bool(cfg.get("attention_bias", False))
    return ModelSpec(
        name=name, model_type="cohere", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=kv, head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        # CohereConfig defaults tie_word_embeddings to True [configuration_cohere.py]
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)), mlp_kind=MlpKind.GATED,
        norm_kind=NormKind.LAYER_NO_BIAS, dense_linears=_llama_linears(h, a, kv, d, inter, bias, bias, False),
        norms_per_layer=1, shared_norm=True, rope=RopeKind.SHARED,
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        # peft has no default target_modules for cohere: name them (--lora-targets)
        peft_default_targets=(), max_positions=_max_positions(cfg), hf_config=dict(cfg),
    )


_READERS: dict[str, Callable[[str, Mapping[str, Any]], ModelSpec]] = {
    **{mt: _from_llama_like for mt in _LLAMA_LIKE}, "gpt2": _from_gpt2, "gpt_neox": _from_gpt_neox,
    "phi": _from_phi, "gpt_bigcode": _from_gpt_bigcode,
    "falcon": _from_falcon, "deepseek_v2": _from_deepseek, "deepseek_v3": _from_deepseek,
    "starcoder2": _from_starcoder2, "stablelm": _from_stablelm, "cohere": _from_cohere,
}
TEXT_MODEL_TYPES = tuple(sorted(_READERS))
SUPPORTED_MODEL_TYPES = tuple(sorted(_READERS.keys() | set(MULTIMODAL_MODEL_TYPES)))


def model_from_config(cfg: Mapping[str, Any], name: str | None = None) -> ModelSpec:
    """ModelSpec from a parsed HF config.json; raises PlannerError for what it cannot read."""
    validate_model_config(cfg, TEXT_MODEL_TYPES)   # a wrapper's text_config, as its text reader reads it
    if not isinstance(cfg, Mapping):
        raise PlannerError("config.json must hold a JSON object")
    if cfg.get("model_type") in MULTIMODAL_MODEL_TYPES:   # planner/io/multimodal.py
        return from_multimodal(name or str(cfg.get("_name_or_path") or cfg["model_type"]), cfg,
                               lambda n, text: _READERS[text["model_type"]](n, text))
    if "text_config" in cfg and "model_type" in cfg and cfg["model_type"] not in SUPPORTED_MODEL_TYPES:
        if cfg.get("vision_config") is not None:   # its vision tower would be left out without a word
            raise PlannerError(f"multimodal model_type {cfg['model_type']!r} is not supported yet; supported wrappers: "
                               f"{', '.join(MULTIMODAL_MODEL_TYPES)} (pass its text_config alone to plan the text "
                               "tower without the vision tower)")
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", "")}
    mt = cfg.get("model_type")
    if not mt:
        raise PlannerError("config.json has no 'model_type'; it is not a transformers model config")
    reader = _READERS.get(mt)
    if reader is None:
        raise PlannerError(f"model_type {mt!r} is not supported yet; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return reader(name or str(cfg.get("_name_or_path") or mt), cfg)
