"""TrainingSetup: every knob of one training step, with the defaults a transformers + peft + TRL
user gets when they leave the knob alone."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .enums import Attention, Choice, DType, Loss, Method, Objective, Optimizer, Precision, QuantType
from .errors import PlannerError
from .model import ModelSpec
from .optim import OptimSpec, optim_dict, validate_optimizer
from .parallel import Fsdp, Offload, OffloadDevice, ParallelSpec


class Checkpointing(Choice):
    NONE = "none"
    FULL = "full"   # every decoder layer recomputed in backward (HF gradient_checkpointing, non-reentrant)


ALL_LINEAR = "all-linear"



def _plain(v: Any) -> Any:
    """JSON-able copy of a (nested) frozen dataclass: enums by value, tuples as lists.

    Hand-rolled rather than dataclasses.asdict, which deep-copies every leaf: estimate() calls
    this once per estimate, and asdict alone cost a third of its time.
    """
    if isinstance(v, Enum):
        return v.value
    if hasattr(v, "__dataclass_fields__"):
        return {name: _plain(getattr(v, name)) for name in v.__dataclass_fields__}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


@dataclass(frozen=True)
class LoraSpec:
    """peft LoraConfig knobs. Defaults are LoraConfig's: r=8, alpha=8, dropout=0."""

    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    targets: tuple[str, ...] = ()        # () = peft's default for the model; ("all-linear",) = all
    adapter_dtype: DType | None = None   # None: fp32 (peft autocast_adapter_dtype); bf16 for QLoRA (TRL)
    # DoRA [Liu et al. 2024]: LoraConfig(use_dora=True), a magnitude vector per adapted linear and the
    # weight norm of the (dequantized) merged weight in every forward [peft/tuners/lora/dora.py]
    use_dora: bool = False
    # LoraConfig.modules_to_save: full trainable copies of these modules beside the frozen originals
    # [peft/utils/other.py ModulesToSaveWrapper]; on a tied model embed_tokens and lm_head make two
    # copies unless ensure_weight_tying=True
    modules_to_save: tuple[str, ...] = ()
    ensure_weight_tying: bool = False

    def is_plain(self) -> bool:
        """No LoRA variant or extra trainable module: what every setup before them was."""
        return not (self.use_dora or self.modules_to_save or self.ensure_weight_tying)


# LoraSpec fields a setup's dict shows only when they are set (older setups' dicts stay as they were)
_LORA_EXTRAS = {"use_dora": False, "modules_to_save": [], "ensure_weight_tying": False}
# module names peft's LoRA can target besides the decoder layers' linears [peft/tuners/lora/layer.py
# Embedding; lm_head is an nn.Linear], as transformers names them in the families gpuplan reads
EMBEDDING_NAMES = ("embed_tokens", "wte", "embed_in")
HEAD_NAMES = ("lm_head", "embed_out")


class FrozenDict(tuple):
    """A JSON object made hashable: its sorted (key, value) pairs (told apart from a list)."""


def _frozen(v: Any) -> Any:
    """A JSON value made hashable: lists as tuples, objects as FrozenDicts."""
    if isinstance(v, dict):
        return FrozenDict(sorted((k, _frozen(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def _thawed(v: Any) -> Any:
    """The JSON value `_frozen` was made from."""
    if isinstance(v, FrozenDict):
        return {k: _thawed(x) for k, x in v}
    if isinstance(v, tuple):
        return [_thawed(x) for x in v]
    return v


@dataclass(frozen=True)
class PeftSpec:
    """A peft config beyond LoraSpec's knobs, as peft's adapter_config.json holds it: the PEFT type
    (peft.PeftType's value: "IA3", "PREFIX_TUNING", "BOFT", ...) and its fields. The set of types is
    the installed peft's, so it is checked where peft is at hand (gpuplan.profiler.peft_config), not
    here. Fields peft fills itself (base_model_name_or_path, revision, task_type...) are dropped."""

    peft_type: str
    options: tuple[tuple[str, Any], ...] = ()   # sorted (field, hashable JSON value) pairs

    @classmethod
    def of(cls, peft_type: str, options: dict[str, Any]) -> "PeftSpec":
        return cls(peft_type.upper(), tuple(sorted((k, _frozen(v)) for k, v in options.items())))

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def options_dict(self) -> dict[str, Any]:
        return {k: _thawed(v) for k, v in self.options}


@dataclass(frozen=True)
class QuantSpec:
    """bitsandbytes BitsAndBytesConfig knobs, defaulting to the QLoRA paper's recipe."""

    quant_type: QuantType = QuantType.NF4
    double_quant: bool = True


@dataclass(frozen=True)
class TrainingSetup:
    method: Method = Method.FULL
    precision: Precision = Precision.BF16_MIXED       # TRL: fp32 load + bf16=True
    optimizer: Optimizer = Optimizer.ADAMW_FUSED      # TrainingArguments.optim default
    batch_size: int = 8                               # per_device_train_batch_size
    seq_len: int = 1024                               # SFTConfig.max_length
    grad_accum: int = 1
    checkpointing: Checkpointing = Checkpointing.FULL  # SFTConfig.gradient_checkpointing=True
    attention: Attention = Attention.SDPA
    loss: Loss = Loss.HF
    loss_token_fraction: float = 1.0                  # positions that carry a label (completion-only, padding)
    objective: Objective = Objective.SFT
    precompute_ref_log_probs: bool = False            # DPO: reference log-probs computed before training
    lora: LoraSpec = field(default_factory=LoraSpec)
    quant: QuantSpec = field(default_factory=QuantSpec)
    base_dtype: DType | None = None   # frozen base weights of LoRA; None: the precision's weight dtype
    parallel: ParallelSpec = field(default_factory=ParallelSpec)   # GPUs, sharding, offload
    adapter: PeftSpec | None = None   # a peft method other than LoraSpec's (method lora: on a 16-bit base, qlora: 4/8 bit)
    # the optimizer step inside backward: one optimizer per parameter, stepped and its gradient freed
    # by a post-accumulate-grad hook (torchtune optimizer_in_bwd, HF galore_*_layerwise) [techniques/in_backward.py]
    optimizer_in_backward: bool = False
    optim: OptimSpec = field(default_factory=OptimSpec)   # low-rank / block optimizers' knobs (GaLore, APOLLO, torchao)

    # --- resolved views (every default filled in) ---------------------------------------------
    @property
    def peft(self) -> bool:
        return self.method is not Method.FULL

    @property
    def adapter_dtype(self) -> DType:
        if self.lora.adapter_dtype is not None:
            return self.lora.adapter_dtype
        return DType.BF16 if self.method is Method.QLORA else DType.FP32

    @property
    def frozen_dtype(self) -> DType:
        """dtype of weights that stay in 16/32 bit and are not trained (LoRA base; QLoRA's norms etc.)."""
        if self.method is Method.QLORA:
            # prepare_model_for_kbit_training upcasts every non-quantized weight to fp32 [peft/utils/other.py]
            return DType.FP32 if self.precision.autocast else self.precision.compute_dtype
        return self.base_dtype or self.precision.weight_dtype

    @property
    def base_weight_dtype(self) -> DType:
        """dtype of the stored weights that are not quantized: embeddings, norms, lm_head (and, for
        full fine-tuning and LoRA, every linear)."""
        return self.frozen_dtype if self.peft else self.precision.weight_dtype

    def lora_targets(self, model: ModelSpec) -> tuple[str, ...]:
        """Linear names LoRA adapts in each layer (and embed_tokens / lm_head, where targeted);
        raises PlannerError if a name matches nothing."""
        names = [lin.name for lin in model.dense_linears + model.moe_linears if lin.experts == 1]
        if self.lora.targets == (ALL_LINEAR,):
            return tuple(dict.fromkeys(names))
        targets = self.lora.targets or model.peft_default_targets
        unknown = [t for t in targets if t not in names and t not in EMBEDDING_NAMES + HEAD_NAMES]
        if unknown or not targets:
            raise PlannerError(
                f"LoRA target(s) {', '.join(unknown) or '(none)'} match no linear module of {model.name}; "
                f"choose from {', '.join(dict.fromkeys(names))} or 'all-linear'")
        return tuple(targets)

    def for_model(self, model: ModelSpec) -> "TrainingSetup":
        """The setup as it runs on `model`: SDPA falls back to eager attention where transformers
        has no SDPA path for the architecture (what a user who leaves --attn alone gets)."""
        if self.attention is Attention.SDPA and not model.supports_sdpa:
            return replace(self, attention=Attention.EAGER)
        return self

    def validate(self) -> "TrainingSetup":
        """Returns self, or raises PlannerError naming the first impossible value."""
        for name, value, low in (("batch size", self.batch_size, 1), ("sequence length", self.seq_len, 1),
                                 ("gradient accumulation", self.grad_accum, 1), ("LoRA rank", self.lora.r, 1)):
            if value < low:
                raise PlannerError(f"{name} must be at least {low}, got {value}")
        if self.seq_len > 4 * 1024 * 1024:
            raise PlannerError(f"sequence length {self.seq_len} is beyond any model's context (max 4M)")
        if not 0.0 <= self.lora.dropout < 1.0:
            raise PlannerError(f"LoRA dropout must be in [0, 1), got {self.lora.dropout}")
        if not 0.0 < self.loss_token_fraction <= 1.0:
            raise PlannerError(f"the loss-token fraction must be in (0, 1], got {self.loss_token_fraction}")
        if self.objective is Objective.DPO and self.loss is not Loss.TRL:
            raise PlannerError("TRL's DPOTrainer computes log-probs with its fused LM head: use --loss trl with "
                               "--objective dpo")
        if self.objective is Objective.DPO and not self.parallel.single_gpu:
            raise PlannerError("--objective dpo is planned for one GPU only for now; drop the multi-GPU flags")
        if self.lora.alpha <= 0:
            raise PlannerError(f"LoRA alpha must be positive, got {self.lora.alpha}")
        if self.method is Method.QLORA and self.precision is Precision.FP32:
            raise PlannerError("QLoRA stores weights in 4/8 bit and computes in 16 bit; "
                               "use --precision bf16-mixed (default), fp16-mixed, bf16-true or fp16-true")
        if self.method is Method.FULL and (self.adapter is not None or not self.lora.is_plain()):
            raise PlannerError("a peft method (--peft-config, --use-dora, --modules-to-save) trains adapters on a "
                               "frozen base: use --method lora (or qlora for a 4/8-bit base)")
        if self.adapter is not None and not self.lora.is_plain():
            raise PlannerError(f"--use-dora / --modules-to-save are LoRA knobs; the {self.adapter.peft_type} config "
                               "given takes its own fields (put modules_to_save in its adapter_config.json)")
        if self.method is Method.FULL and self.base_dtype not in (None, self.precision.weight_dtype):
            raise PlannerError("--base-dtype applies to LoRA/QLoRA; for full fine-tuning choose --precision")
        self.parallel.validate(optimizer=self.optimizer)   # model-free checks; estimate() adds the model's
        validate_optimizer(self)
        return self

    def with_(self, **changes: Any) -> "TrainingSetup":
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainingSetup":
        """The inverse of `to_dict` (missing keys keep their defaults); raises PlannerError on
        unknown keys or values."""
        def build(kind: type, data: dict[str, Any], enums: dict[str, type]) -> Any:
            known = {f for f in kind.__dataclass_fields__}
            unknown = sorted(set(data) - known)
            if unknown:
                raise PlannerError(f"unknown setup key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            out = {}
            for k, v in data.items():
                if k in enums and v is not None:
                    try:
                        v = enums[k](v)
                    except ValueError:
                        raise PlannerError(f"{k}: {v!r} is not one of {', '.join(enums[k].values())}") from None
                elif isinstance(v, list):
                    v = tuple(v)
                out[k] = v
            return kind(**out)

        d = {k: v for k, v in d.items() if k != "model"}
        lora = build(LoraSpec, d.pop("lora", {}) or {}, {"adapter_dtype": DType})
        quant = build(QuantSpec, d.pop("quant", {}) or {}, {"quant_type": QuantType})
        adapter = d.pop("adapter", None)
        if adapter is not None:
            if not isinstance(adapter, dict) or not isinstance(adapter.get("peft_type"), str):
                raise PlannerError("adapter: expected {\"peft_type\": ..., \"options\": {...}}")
            adapter = PeftSpec.of(adapter["peft_type"], adapter.get("options") or {})
        optim = build(OptimSpec, d.pop("optim", {}) or {}, {})
        parallel = build(ParallelSpec, d.pop("parallel", {}) or {},
                         {"fsdp": Fsdp, "offload": Offload, "offload_device": OffloadDevice})
        enums = {"method": Method, "precision": Precision, "optimizer": Optimizer, "checkpointing": Checkpointing,
                 "attention": Attention, "loss": Loss, "base_dtype": DType, "objective": Objective}
        setup = build(cls, d, enums)
        return replace(setup, lora=lora, quant=quant, parallel=parallel, adapter=adapter, optim=optim)

    def to_dict(self, model: ModelSpec | None = None) -> dict[str, Any]:
        """Plain JSON-able dict with every default resolved."""
        d = _plain(self)
        d["base_dtype"] = self.base_weight_dtype.value
        for key, default in _LORA_EXTRAS.items():
            if d["lora"][key] == default:
                d["lora"].pop(key)
        if self.adapter is None:
            d.pop("adapter")
        else:
            d["adapter"] = {"peft_type": self.adapter.peft_type, "options": self.adapter.options_dict()}
        if self.peft:
            d["lora"]["adapter_dtype"] = self.adapter_dtype.value
            if model is not None and self.adapter is None:
                d["lora"]["targets"] = list(self.lora_targets(model))
        else:
            d.pop("lora")
        if self.method is not Method.QLORA:
            d.pop("quant")
        if self.loss is not Loss.TRL:
            d.pop("loss_token_fraction")   # only TRL's fused LM head depends on it
        if self.objective is Objective.SFT:
            d.pop("objective")
            d.pop("precompute_ref_log_probs")
        optim_dict(self, d)   # shown only when set: older setups' dicts stay as they were
        return d
