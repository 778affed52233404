"""ModelSpec: the architecture numbers of a decoder-only LM, and every family quirk as a field.

The config readers (planner/io/architectures.py) fill these fields from a HF `config.json`; no
formula ever tests `model_type`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .enums import Choice, MlpKind, NormKind
from .vision import VisionSpec


class LinearRole(Choice):
    """What a decoder-layer linear reads: the block's (normed) input, shared by every INPUT linear
    of the block, or the block's inner result (attention output, MLP hidden), read by its OUTPUT
    projection alone. Megatron splits OUTPUT linears by rows, the rest by columns."""

    INPUT = "input"
    OUTPUT = "output"


class RopeKind(Choice):
    NONE = "none"                  # learned absolute positions (GPT-2)
    SHARED = "shared"              # cos/sin computed once per forward and passed to every layer (Llama-like)
    IN_ATTENTION = "in-attention"  # applied inside each layer's attention, q and k roped copies saved (GPT-NeoX)


class QkNorm(Choice):
    NONE = "none"
    PER_HEAD = "per-head"   # one head_dim-sized q_norm and k_norm (Qwen-3, Gemma-3): replicated under TP
    FULL = "full"           # q_norm over all heads, k_norm over all kv heads (OLMo-2): split under TP


@dataclass(frozen=True)
class LinearSpec:
    """One linear projection inside a decoder layer, named as peft's `target_modules` sees it."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    block: str            # "attn" or "mlp"
    experts: int = 1      # > 1: a fused (experts, out, in) weight, as transformers 5 stores MoE experts
    role: LinearRole = LinearRole.INPUT

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
    sliding_layers: int = 0                     # layers attending within sliding_window (config layer_types)
    # family quirks, set by the config readers (planner/io/architectures.py)
    supports_sdpa: bool = True                  # transformers runs SDPA for this architecture
    norm_fp32_scale: bool = False               # Gemma's `output * (1 + weight.float())`: normalized tensor in fp32
    post_norm: bool = False                     # OLMo-2: norms on the sublayer outputs, projections read the residual
    parallel_residual: bool = False             # GPT-NeoX: attention and MLP read one input
    rope: RopeKind = RopeKind.SHARED
    qk_norm: QkNorm = QkNorm.NONE
    act_saved_tensors: int = 1                  # tensors of the MLP width the activation saves (gelu_new in python ops: 4)
    peft_default_targets: tuple[str, ...] = ()  # peft's target_modules when none are given
    max_positions: int | None = None            # the trained context: max_position_embeddings / n_positions
    shared_norm: bool = False                   # Phi, Falcon-7B: attention and MLP read one norm's output, in parallel
    lm_head_bias: bool = False                  # Phi: lm_head is nn.Linear(hidden, vocab, bias=True)
    rope_dim: int = 0                           # rotary dims per head when partial (Phi: head_dim * partial_rotary_factor); 0: head_dim
    embed_dropout: float | None = None          # dropout on the embeddings when it differs from `dropout` (Phi's embd_pdrop)
    expand_kv: bool = False                     # Falcon: k and v copied out to every query head before the kernel (_split_heads)
    causal_mask_always: bool = False            # Falcon: a 4-D causal mask is always built, so SDPA gets a mask
    # multi-head latent attention (DeepSeek-V2/V3): q (optionally through a q_lora_rank bottleneck
    # with its RMSNorm), a shared kv latent of kv_lora_rank plus one roped key head, expanded by
    # kv_b_proj to qk_nope_head_dim keys and v_head_dim values per head; head_dim is nope + rope
    q_lora_rank: int = 0
    kv_lora_rank: int = 0                       # > 0: MLA
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    shared_expert_intermediate: int = 0         # DeepSeek MoE: the always-on shared experts' MLP width
    dropouts_per_layer: int = 2                 # residual dropouts of a LayerNorm-rope layer (StarCoder2 2, StableLM 1)
    # peft's transformers-5 MoE target conversion for the family: (v4 module name, what it adapts
    # now: "router" or a fused expert parameter) [peft/utils/transformers_weight_conversion.py
    # _MOE_TARGET_MODULE_MAPPING, _convert_peft_config_moe]; () where peft converts nothing
    peft_expert_targets: tuple[tuple[str, str], ...] = ()
    moe_norm_topk: bool = False                 # the router renormalizes its top-k weights (norm_topk_prob; Mixtral always)
    # AutoModelForSequenceClassification (TRL's RewardTrainer, num_labels=1): a score head
    # nn.Linear(hidden, score_labels, bias=False) in place of the lm_head, untied from the embedding
    # [transformers modeling_layers.py GenericForSequenceClassification]; 0: a causal LM's lm_head
    score_labels: int = 0
    vision: VisionSpec | None = None            # a multimodal wrapper's vision tower and projector (specs/vision.py)
    hf_config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dense_layers(self) -> int:
        return self.n_layers - self.moe_layers

    @property
    def norm_params(self) -> int:
        """Parameters of one hidden-sized norm (LayerNorm has a bias too)."""
        return self.hidden * (2 if self.norm_kind is NormKind.LAYER else 1)

    @property
    def head_rows(self) -> int:
        """Output rows of the model's head: the vocabulary (lm_head), or a score head's labels."""
        return self.score_labels or self.vocab

    def linear_names(self) -> set[str]:
        return {lin.name for lin in self.dense_linears + self.moe_linears}

    def adapted_linears(self, targets: Iterable[str], moe: bool | None = False) -> list[LinearSpec]:
        """The linears of one layer that an adapter on `targets` wraps: those of a dense layer (moe False),
        of an MoE layer (True) or of both kinds in turn (None), in layer order. Fused expert weights
        (experts > 1) are not nn.Linear modules and are left to techniques/moe_lora.py."""
        names = set(targets)
        linears = (self.dense_linears + self.moe_linears if moe is None
                   else self.moe_linears if moe else self.dense_linears)
        return [lin for lin in linears if lin.name in names and lin.experts == 1]


