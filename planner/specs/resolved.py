"""A setup resolved once for a model: what is trained, what is quantized, in which dtypes, on which
engine. Every formula reads these fields; none tests `Method`.

`Method` is the user's word for two choices at once (train adapters; quantize the frozen base):
full = neither, lora = adapters, qlora = adapters on a quantized base.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .engines import Engine, engine_of
from .enums import Choice, DType, Method, QuantType
from .errors import NoClosedForm, PlannerError
from .model import ModelSpec
from .setup import ALL_LINEAR, EMBEDDING_NAMES, HEAD_NAMES, LoraSpec, PeftSpec, QuantSpec, TrainingSetup


class AdapterKind(Choice):
    LORA = "lora"        # peft LoraConfig [Hu et al. 2021], DoRA [Liu et al. 2024] as its use_dora
    IA3 = "ia3"          # peft IA3Config [Liu et al. 2022]
    PROMPT_TUNING = "prompt-tuning"   # peft PromptTuningConfig [Lester et al. 2021]


@dataclass(frozen=True)
class AdapterSpec:
    """Trainable adapters on frozen linears, resolved for one model."""

    kind: AdapterKind
    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]   # linear names adapted in each layer (peft's defaults filled in)
    dtype: DType               # the adapters' (trainable) dtype
    use_dora: bool = False     # DoRA's magnitude vectors and per-forward weight norms (techniques/dora.py)
    # outside the decoder layers (techniques/outer.py): LoRA on the embedding / lm_head, and
    # modules_to_save's full trainable copies ("embedding", "head"); `tied_copies`: one copy shared
    embedding_lora: tuple[str, ...] = ()
    saved_copies: tuple[str, ...] = ()
    tied_copies: bool = False
    feedforward: tuple[str, ...] = ()   # IA3: linears whose input (not output) is scaled
    virtual_tokens: int = 0             # prompt tuning: embeddings prepended to every sequence
    # MoE layers under peft's transformers-5 conversion (techniques/moe_lora.py): fused expert
    # parameters adapted through lora.ParamWrapper with their rank, and the router's weight
    expert_ranks: tuple[tuple[str, int], ...] = ()
    router: bool = False


# adapter_config.json fields that change values, not bytes: read by nothing below [peft/tuners/lora/
# config.py LoraConfig: init_lora_weights (initial values), use_rslora (the scaling), fan_in_fan_out
# (Conv1D's transposed layout), megatron_core / qalora_group_size (read only with megatron_config /
# use_qalora), layers_pattern (read only with layers_to_transform), alpha_pattern (per-module scaling)]
_INERT = {"IA3": {"init_ia3_weights", "fan_in_fan_out"},
          # the prompt's initial values, and the model's sizes peft fills in itself
          # [peft/peft_model.py _prepare_prompt_learning_config]
          "PROMPT_TUNING": {"prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path",
                            "tokenizer_kwargs", "num_layers", "num_attention_heads", "token_dim",
                            "num_transformer_submodules"},
          "LORA": {"init_lora_weights", "use_rslora", "fan_in_fan_out", "megatron_core", "qalora_group_size",
                   "layers_pattern", "alpha_pattern"}}
_UNSET = (None, False, {}, [], (), "none")


def _lora_from_peft(p: PeftSpec) -> LoraSpec:
    """LoraSpec of a LORA adapter_config.json; NoClosedForm naming a field it cannot model."""
    read = {"r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "modules_to_save",
            "ensure_weight_tying"}
    for key, value in p.options:
        if key not in read and key not in _INERT["LORA"] and value not in _UNSET:
            raise NoClosedForm(f"LoRA {key}={value!r} has no closed form")
    targets = p.get("target_modules")
    if isinstance(targets, str):
        if targets != ALL_LINEAR:
            raise NoClosedForm(f"LoRA target_modules as a regular expression ({targets!r}) has no closed form")
        targets = (ALL_LINEAR,)
    return LoraSpec(r=int(p.get("r", 8)), alpha=float(p.get("lora_alpha", 8)), dropout=float(p.get("lora_dropout", 0.0)),
                    targets=tuple(targets or ()), use_dora=bool(p.get("use_dora")),
                    modules_to_save=tuple(p.get("modules_to_save") or ()),
                    ensure_weight_tying=bool(p.get("ensure_weight_tying")))


def _ia3(model: ModelSpec, setup: TrainingSetup) -> AdapterSpec:
    """AdapterSpec of an IA3 adapter_config.json; NoClosedForm naming what it cannot model."""
    p = setup.adapter
    if setup.method is Method.QLORA:
        raise NoClosedForm("IA3 on a 4/8-bit base has no closed form (its saved bytes there differ from the "
                           "simulated step's by 2 bytes per feed-forward input element)")
    for key, value in p.options:
        if key not in {"target_modules", "feedforward_modules"} | _INERT["IA3"] and value not in _UNSET:
            raise NoClosedForm(f"IA3 {key}={value!r} has no closed form")
    targets, ff = p.get("target_modules"), p.get("feedforward_modules")
    if not targets or isinstance(targets, str) or isinstance(ff, str):
        raise NoClosedForm("IA3 without an explicit target_modules / feedforward_modules list (peft's per-model "
                           "defaults, or a regular expression) has no closed form")
    ff = tuple(ff or ())
    names = {lin.name for lin in model.dense_linears + model.moe_linears if lin.experts == 1}
    unknown = [t for t in tuple(targets) + ff if t not in names]
    if unknown:
        raise PlannerError(f"IA3 target(s) {', '.join(unknown)} match no linear module of {model.name}; "
                           f"choose from {', '.join(sorted(names))}")
    if not set(ff) <= set(targets):
        raise PlannerError("IA3 feedforward_modules must be a subset of target_modules [peft IA3Config]")
    return AdapterSpec(AdapterKind.IA3, 0, 0.0, 0.0, tuple(targets), setup.adapter_dtype, feedforward=ff)


def virtual_tokens(setup: TrainingSetup) -> int:
    """Positions prompt tuning prepends to every sequence (0 for every other setup)."""
    a = setup.adapter
    if a is None or a.peft_type != "PROMPT_TUNING" or setup.method is Method.FULL:
        return 0
    return int(a.get("num_virtual_tokens") or 0)


def _prompt(model: ModelSpec, setup: TrainingSetup) -> AdapterSpec:
    p = setup.adapter
    for key, value in p.options:
        if key not in {"num_virtual_tokens"} | _INERT["PROMPT_TUNING"] and value not in _UNSET:
            raise NoClosedForm(f"prompt tuning {key}={value!r} has no closed form")
    n = virtual_tokens(setup)
    if n < 1:
        raise PlannerError("prompt tuning needs num_virtual_tokens >= 1")
    return AdapterSpec(AdapterKind.PROMPT_TUNING, 0, 0.0, 0.0, (), setup.adapter_dtype, virtual_tokens=n)


def _outer(names: tuple[str, ...]) -> tuple[str, ...]:
    """("embedding", "head") for the embedding / lm_head names among `names`."""
    return tuple(part for part, known in (("embedding", EMBEDDING_NAMES), ("head", HEAD_NAMES))
                 if any(n in known for n in names))


def adapter_spec(model: ModelSpec, setup: TrainingSetup) -> AdapterSpec | None:
    """The adapters `setup` trains on `model` (None: full fine-tuning); NoClosedForm for a peft method
    or option the planner does not model."""
    if setup.method is Method.FULL:
        return None
    lora = setup.lora
    if setup.loss.trl_chunked and (setup.adapter is not None or lora.modules_to_save):
        raise NoClosedForm("TRL's chunked_nll with a peft config or modules_to_save (its chunks read the wrapped "
                           "lm_head's weight) has no closed form")
    if setup.adapter is not None:
        if setup.adapter.peft_type == "IA3":
            return _ia3(model, setup)
        if setup.adapter.peft_type == "PROMPT_TUNING":
            return _prompt(model, setup)
        if setup.adapter.peft_type != "LORA":
            raise NoClosedForm(f"peft method {setup.adapter.peft_type} has no closed form in the planner")
        lora = _lora_from_peft(setup.adapter)
        setup = replace(setup, lora=lora, adapter=None)
    unknown = [n for n in lora.modules_to_save if n not in EMBEDDING_NAMES + HEAD_NAMES]
    if unknown:
        raise NoClosedForm(f"modules_to_save {', '.join(unknown)} has no closed form (embed_tokens and lm_head have)")
    if lora.use_dora and lora.dropout > 0:
        raise NoClosedForm("DoRA with lora_dropout > 0 (peft's second base matmul on the dropped input) has no "
                           "closed form")
    if lora.use_dora and setup.method is Method.QLORA and setup.quant.quant_type is QuantType.INT8:
        raise NoClosedForm("DoRA on an 8-bit base has no closed form checked against the simulator (QDoRA on 4 bit has)")
    names = setup.lora_targets(model)
    outer = _outer(names)
    if setup.loss.trl_chunked and "head" in outer:   # trl/trainer/sft_trainer.py l.1347-1358, TRL 1.14.0
        raise PlannerError("TRL's chunked_nll refuses a LoRA-adapted lm_head (`loss_type='chunked_nll'` is not "
                           "supported when `lm_head` is wrapped by a PEFT adapter): drop lm_head from the targets, "
                           "or use --loss hf (loss_type='nll')")
    if lora.use_dora and outer:
        raise NoClosedForm("DoRA on the embedding or lm_head has no closed form")
    inner = tuple(n for n in names if n not in EMBEDDING_NAMES + HEAD_NAMES)
    saved = _outer(lora.modules_to_save)
    if set(saved) & set(outer):
        raise PlannerError("a module cannot be both a LoRA target and in modules_to_save: peft wraps it once")
    tied = model.tied_embeddings and lora.ensure_weight_tying and len(saved) == 2
    inner, expert_ranks, router = _peft_expert_targets(model, setup, lora, inner)
    return AdapterSpec(AdapterKind.LORA, lora.r, lora.alpha, lora.dropout, inner, setup.adapter_dtype,
                       lora.use_dora, outer, saved, tied, expert_ranks=expert_ranks, router=router)


def _peft_expert_targets(model: ModelSpec, setup: TrainingSetup, lora: LoraSpec,
                         inner: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...], bool]:
    """(linear targets left, fused expert parameters adapted with their rank, router adapted) as
    peft 0.21 converts a LoRA config for a transformers-5 MoE family before injecting it
    [peft/utils/transformers_weight_conversion.py _convert_peft_config_moe]: "all-linear" resolves
    to every nn.Linear's name plus all the v4 expert and router names (`_resolve_string_target_modules`);
    each v4 name found moves from target_modules to target_parameters (the router's `gate.weight`,
    the fused `gate_up_proj`, `down_proj`), so a dense layer's or shared expert's gate_proj /
    up_proj / down_proj of that name is no longer adapted (target_parameters match only
    `<module>.<parameter>` keys). A fused parameter gets rank r times the names fused into it
    (rank_pattern), and half of a fused pair is refused by peft (ValueError)."""
    if not model.peft_expert_targets or not model.moe_layers:
        return inner, (), False
    olds = {old for old, _ in model.peft_expert_targets}
    asked = olds if lora.targets == (ALL_LINEAR,) else {t for t in inner if t in olds}
    if not asked:
        return inner, (), False
    fused: dict[str, list[str]] = {}
    for old, new in model.peft_expert_targets:
        fused.setdefault(new, []).append(old)
    ranks = []
    for new, names in fused.items():
        present = [n for n in names if n in asked]
        if present and len(present) < len(names):
            missing = ", ".join(n for n in names if n not in asked)
            raise PlannerError(f"peft cannot convert LoRA target(s) {', '.join(present)} on {model.model_type} without "
                               f"also targeting {missing}: transformers 5 fuses them into {new} "
                               "[peft _convert_peft_config_moe]; target both or neither")
        if present and new != "router":
            ranks.append((new, lora.r * len(names)))
    router = "router" in {new for old, new in model.peft_expert_targets if old in asked}
    if lora.dropout > 0:
        raise PlannerError(f"LoRA dropout {lora.dropout} with {model.model_type}'s experts or router targeted: peft's "
                           "lora.ParamWrapper raises 'does not work with lora_dropout != 0'; set --lora-dropout 0 or "
                           "leave the experts out (name the targets instead of all-linear)")
    if lora.use_dora:
        raise PlannerError(f"DoRA with {model.model_type}'s experts or router targeted: peft's lora.ParamWrapper raises "
                           "'does not work with use_dora=True'; leave the experts out (name the targets)")
    if setup.method is Method.QLORA:
        raise NoClosedForm(f"QLoRA with {model.model_type}'s fused experts targeted (peft's ParamWrapper on "
                           "unquantized 3-D expert weights) has no closed form checked against the simulator")
    return tuple(t for t in inner if t not in olds), tuple(ranks), router


@dataclass(frozen=True)
class Resolved:
    """`setup` as it runs on `model` (attention fallbacks applied), with every choice resolved.

    Resolved objects are memoized without the sizes that do not change them (batch size,
    gradient accumulation): read those from the setup at hand, never from `setup` here."""

    model: ModelSpec
    setup: TrainingSetup
    adapters: AdapterSpec | None     # None: full fine-tuning, every weight trains
    quantized: QuantSpec | None      # the frozen base's quantization; None: stored in `frozen`
    engine: Engine
    compute: DType                   # matmul dtype
    autocast: bool                   # torch.autocast around the forward
    frozen: DType                    # stored dtype of weights that are neither quantized nor trained
    residual: DType                  # the residual stream's dtype: the embedding weights'
    trainable: DType                 # dtype of the trainable weights (adapters, or every weight)

    @property
    def full(self) -> bool:
        return self.adapters is None


def resolve(model: ModelSpec, setup: TrainingSetup) -> Resolved:
    """Resolved for `setup` on `model`; raises PlannerError for LoRA targets that match nothing,
    NoClosedForm for a peft method or option without a closed form."""
    setup = setup.for_model(model)
    adapters = adapter_spec(model, setup)
    quantized = setup.quant if setup.method is Method.QLORA else None
    base = setup.base_weight_dtype
    recipe = setup.recipe    # the preset's, or the weights / autocast / kbit_upcast given (specs/recipe.py)
    if recipe.kbit_upcast and not recipe.autocast:
        raise NoClosedForm("QLoRA with prepare_model_for_kbit_training's fp32 upcast but no autocast (an fp32 residual "
                           "stream each 16-bit linear casts) has no closed form: 3.7% under the simulated step")
    return Resolved(model, setup, adapters, quantized, engine_of(setup.parallel), recipe.compute,
                    recipe.autocast, setup.frozen_dtype, base,
                    adapters.dtype if adapters else recipe.weights)
