"""ModelSpec: the architecture numbers of a decoder-only LM, read from a HF `config.json`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .enums import MlpKind, NormKind
from .errors import PlannerError


@dataclass(frozen=True)
class LinearSpec:
    """One linear projection inside a decoder layer, named as peft's `target_modules` sees it."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    block: str            # "attn" or "mlp"
    experts: int = 1      # > 1: a fused (experts, out, in) weight, as transformers 5 stores MoE experts

    @property
    def weight_count(self) -> int:
        return self.experts * self.in_features * self.out_features

    @property
    def param_count(self) -> int:
        return self.weight_count + (self.experts * self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the estimator needs to know about a model; counts are exact."""

    name: str
    model_type: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    mlp_kind: MlpKind
    norm_kind: NormKind
    dense_linears: tuple[LinearSpec, ...]       # per dense layer
    moe_linears: tuple[LinearSpec, ...] = ()    # per MoE layer (attention + experts)
    moe_layers: int = 0                         # how many of n_layers are MoE
    n_experts: int = 0
    top_k: int = 0
    moe_intermediate: int = 0
    norms_per_layer: int = 2                    # hidden-sized norms in each layer
    qk_norm_size: int = 0                       # per-layer q_norm + k_norm parameters
    learned_positions: int = 0                  # GPT-2 wpe rows
    final_logit_softcap: float | None = None    # Gemma-2: logits / c, tanh, * c
    embed_scale: bool = False                   # Gemma: embeddings multiplied by sqrt(hidden)
    dropout: float = 0.0                        # residual/embedding dropout probability in training
    attention_dropout: float = 0.0
    sliding_window: int | None = None
    hf_config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dense_layers(self) -> int:
        return self.n_layers - self.moe_layers

    @property
    def supports_sdpa(self) -> bool:
        """transformers runs SDPA for this architecture (Gemma-2 refuses it: `_supports_sdpa =
        False`, its attention soft-capping has no SDPA path; users get eager attention)."""
        return self.model_type != "gemma2"

    @property
    def norm_params(self) -> int:
        """Parameters of one hidden-sized norm (LayerNorm has a bias too)."""
        return self.hidden * (2 if self.norm_kind is NormKind.LAYER else 1)

    def linear_names(self) -> set[str]:
        return {lin.name for lin in self.dense_linears + self.moe_linears}


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None, required: bool = True) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    if required and default is None:
        raise PlannerError(f"config.json lacks '{keys[0]}' (model_type {cfg.get('model_type')!r}); "
                           "pass the model's complete config.json")
    return default


def _llama_linears(h: int, a: int, kv: int, d: int, inter: int, qkv_bias: bool, o_bias: bool,
                   mlp_bias: bool) -> tuple[LinearSpec, ...]:
    return (
        LinearSpec("q_proj", h, a * d, qkv_bias, "attn"),
        LinearSpec("k_proj", h, kv * d, qkv_bias, "attn"),
        LinearSpec("v_proj", h, kv * d, qkv_bias, "attn"),
        LinearSpec("o_proj", a * d, h, o_bias, "attn"),
        LinearSpec("gate_proj", h, inter, mlp_bias, "mlp"),
        LinearSpec("up_proj", h, inter, mlp_bias, "mlp"),
        LinearSpec("down_proj", inter, h, mlp_bias, "mlp"),
    )


# model_type -> (norms per layer, q/k norm kind, attention bias rule)
# Sources: transformers 5.23 modeling_<type>.py for each model.
_LLAMA_LIKE = {
    "llama": dict(norms=2, qk_norm=None, qkv_bias="attention_bias", o_bias="attention_bias"),
    "mistral": dict(norms=2, qk_norm=None, qkv_bias=False, o_bias=False),
    "qwen2": dict(norms=2, qk_norm=None, qkv_bias=True, o_bias=False),
    "qwen3": dict(norms=2, qk_norm="head", qkv_bias="attention_bias", o_bias="attention_bias"),
    "gemma": dict(norms=2, qk_norm=None, qkv_bias="attention_bias", o_bias="attention_bias"),
    "gemma2": dict(norms=4, qk_norm=None, qkv_bias="attention_bias", o_bias="attention_bias"),
    "gemma3_text": dict(norms=4, qk_norm="head", qkv_bias="attention_bias", o_bias="attention_bias"),
    "olmo2": dict(norms=2, qk_norm="full", qkv_bias="attention_bias", o_bias="attention_bias"),
    "mixtral": dict(norms=2, qk_norm=None, qkv_bias=False, o_bias=False),
    "qwen3_moe": dict(norms=2, qk_norm="head", qkv_bias="attention_bias", o_bias="attention_bias"),
    "phi3": dict(norms=2, qk_norm=None, qkv_bias=False, o_bias=False),
}
SUPPORTED_MODEL_TYPES = tuple(sorted([*_LLAMA_LIKE, "gpt2", "gpt_neox"]))


def _bias(rule: Any, cfg: Mapping[str, Any]) -> bool:
    return bool(cfg.get(rule, False)) if isinstance(rule, str) else bool(rule)


def _from_llama_like(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    mt = cfg["model_type"]
    rules = _LLAMA_LIKE[mt]
    h = int(_get(cfg, "hidden_size"))
    a = int(_get(cfg, "num_attention_heads"))
    kv = int(_get(cfg, "num_key_value_heads", default=a))
    d = int(cfg.get("head_dim") or h // a)
    inter = int(_get(cfg, "intermediate_size"))
    n_layers = int(_get(cfg, "num_hidden_layers"))
    qkv_bias, o_bias = _bias(rules["qkv_bias"], cfg), _bias(rules["o_bias"], cfg)
    mlp_bias = bool(cfg.get("mlp_bias", False))
    dense = _llama_linears(h, a, kv, d, inter, qkv_bias, o_bias, mlp_bias)
    if mt == "phi3":  # fused projections: qkv_proj and gate_up_proj [modeling_phi3.py]
        dense = (
            LinearSpec("qkv_proj", h, (a + 2 * kv) * d, False, "attn"),
            LinearSpec("o_proj", a * d, h, False, "attn"),
            LinearSpec("gate_up_proj", h, 2 * inter, False, "mlp"),
            LinearSpec("down_proj", inter, h, False, "mlp"),
        )
    qk_norm = {None: 0, "head": 2 * d, "full": a * d + kv * d}[rules["qk_norm"]]
    moe = _moe_fields(cfg, n_layers, h, dense[:4])
    return ModelSpec(
        name=name, model_type=mt, n_layers=n_layers, hidden=h, n_heads=a, n_kv_heads=kv,
        head_dim=d, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        # transformers' config classes default tie_word_embeddings to True for Gemma, else False
        tied_embeddings=bool(cfg.get("tie_word_embeddings", mt.startswith("gemma"))),
        mlp_kind=MlpKind.GATED, norm_kind=NormKind.RMS, dense_linears=dense,
        norms_per_layer=rules["norms"], qk_norm_size=qk_norm,
        final_logit_softcap=cfg.get("final_logit_softcapping"),
        embed_scale=mt.startswith("gemma"),
        dropout=float(cfg.get("resid_pdrop", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0),
        sliding_window=cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None,
        hf_config=dict(cfg), **moe,
    )


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
        LinearSpec("down_proj", inter, h, False, "mlp", experts=experts),
    )
    return dict(moe_linears=linears, moe_layers=moe_layers, n_experts=experts, top_k=top_k,
                moe_intermediate=inter)


def _from_gpt2(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    h, a = int(_get(cfg, "n_embd", "hidden_size")), int(_get(cfg, "n_head", "num_attention_heads"))
    inter = int(cfg.get("n_inner") or 4 * h)
    linears = (  # Conv1D modules with biases [modeling_gpt2.py]
        LinearSpec("c_attn", h, 3 * h, True, "attn"),
        LinearSpec("attn.c_proj", h, h, True, "attn"),
        LinearSpec("c_fc", h, inter, True, "mlp"),
        LinearSpec("mlp.c_proj", inter, h, True, "mlp"),
    )
    return ModelSpec(
        name=name, model_type="gpt2", n_layers=int(_get(cfg, "n_layer", "num_hidden_layers")),
        hidden=h, n_heads=a, n_kv_heads=a, head_dim=h // a, intermediate=inter,
        vocab=int(_get(cfg, "vocab_size")), tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        mlp_kind=MlpKind.PLAIN, norm_kind=NormKind.LAYER, dense_linears=linears,
        learned_positions=int(_get(cfg, "n_positions", "max_position_embeddings")),
        dropout=float(cfg.get("resid_pdrop", 0.1)), attention_dropout=float(cfg.get("attn_pdrop", 0.1)),
        hf_config=dict(cfg),
    )


def _from_gpt_neox(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    h, a = int(_get(cfg, "hidden_size")), int(_get(cfg, "num_attention_heads"))
    inter = int(_get(cfg, "intermediate_size"))
    bias = bool(cfg.get("attention_bias", True))
    linears = (  # [modeling_gpt_neox.py]
        LinearSpec("query_key_value", h, 3 * h, bias, "attn"),
        LinearSpec("dense", h, h, bias, "attn"),
        LinearSpec("dense_h_to_4h", h, inter, True, "mlp"),
        LinearSpec("dense_4h_to_h", inter, h, True, "mlp"),
    )
    return ModelSpec(
        name=name, model_type="gpt_neox", n_layers=int(_get(cfg, "num_hidden_layers")), hidden=h,
        n_heads=a, n_kv_heads=a, head_dim=h // a, intermediate=inter, vocab=int(_get(cfg, "vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_kind=MlpKind.PLAIN,
        norm_kind=NormKind.LAYER, dense_linears=linears,
        dropout=float(cfg.get("hidden_dropout", 0.0) or 0.0),
        attention_dropout=float(cfg.get("attention_dropout", 0.0) or 0.0), hf_config=dict(cfg),
    )


def model_from_config(cfg: Mapping[str, Any], name: str | None = None) -> ModelSpec:
    """ModelSpec from a parsed HF config.json; raises PlannerError for what it cannot read."""
    from .io.validate import validate_model_config   # types, signs and shapes of every field read below

    validate_model_config(cfg)
    if not isinstance(cfg, Mapping):
        raise PlannerError("config.json must hold a JSON object")
    if "text_config" in cfg and "model_type" in cfg and cfg["model_type"] not in SUPPORTED_MODEL_TYPES:
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", "")}
    mt = cfg.get("model_type")
    if not mt:
        raise PlannerError("config.json has no 'model_type'; it is not a transformers model config")
    name = name or str(cfg.get("_name_or_path") or mt)
    if mt in _LLAMA_LIKE:
        return _from_llama_like(name, cfg)
    if mt == "gpt2":
        return _from_gpt2(name, cfg)
    if mt == "gpt_neox":
        return _from_gpt_neox(name, cfg)
    raise PlannerError(f"model_type {mt!r} is not supported yet; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
