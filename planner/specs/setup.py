"""TrainingSetup: every knob of one training step, with the defaults a transformers + peft + TRL
user gets when they leave the knob alone."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from typing import Any

from .enums import Attention, Choice, DType, Loss, Method, Objective, Optimizer, Packing, Padding, Precision, QuantType
from .enums import TrlVersion
from .enums import Compile   # torch.compile [techniques/compile.py]
from .enums import LoraVariant   # LoRA variants from papers [techniques/lora_variants.py]
from .enums import Fp8, Fp8Linears   # torchao float8 training [techniques/fp8.py]
from .errors import PlannerError
from .model import ModelSpec
from .optim import OptimSpec, optim_dict, validate_optimizer
from .parallel import CpKind, Fsdp, Offload, OffloadDevice, ParallelSpec
from .engines import engine_of
from .recipe import Recipe, preset_of, preset_recipe


class Checkpointing(Choice):
    NONE = "none"
    FULL = "full"   # every decoder layer recomputed in backward (HF gradient_checkpointing, non-reentrant)
    # per-op selective checkpointing (torch create_selective_checkpoint_contexts): as full, but the
    # attention kernel's outputs are saved, not recomputed (axolotl selective_checkpointing: true)
    SAVE_ATTENTION = "save-attention"
    # (TrainingSetup.ckpt_every = k > 1: only layers ckpt_first, ckpt_first + k, ...: transformers'
    # every_n_layers from layer 0, torchtune's ac_mode selective / ac_option k from layer k - 1)


class ActivationOffload(Choice):
    """Where saved activations go between forward and backward (planner/techniques/activation_offload.py)."""

    NONE = "none"
    TRL = "trl"              # TRL OffloadActivations on a side stream (SFTConfig.activation_offloading=True;
                             # axolotl activation_offloading: true / disk, gradient_checkpointing: offload)
    TRL_SYNC = "trl-sync"    # the same hooks on the compute stream, no stash (axolotl activation_offloading: legacy)
    TORCHTUNE = "torchtune"  # torchtune OffloadActivations around the forward only (enable_activation_offloading)
    LAYER_INPUTS = "layer-inputs"  # only each checkpointed layer's input to host (transformers'
                             # activation_checkpointing_kwargs offload, axolotl hidden_states)
    UNSLOTH = "unsloth"      # Unsloth's use_gradient_checkpointing="unsloth": the inputs but the last layer's,
                             # through two resident GPU buffers


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
    # a multimodal wrapper: targets matched inside the language model only (a `.*language_model.*` regex,
    # as unsloth's finetune_vision_layers=False builds), not in the vision tower; a no-op on a text model
    language_only: bool = False
    # a LoRA variant from a paper that peft lacks (DyLoRA, Delta-LoRA: modelled; LongLoRA, RoSA: refused)
    # [techniques/lora_variants.py]
    variant: LoraVariant = LoraVariant.NONE

    def is_plain(self) -> bool:
        """No LoRA variant or extra trainable module: what every setup before them was."""
        return not (self.use_dora or self.modules_to_save or self.ensure_weight_tying
                    or self.variant is not LoraVariant.NONE)


# the papers' LoRA variants refused in one line, naming what is missing [planner/techniques/lora_variants.py]
LORA_VARIANTS_REFUSED = {
    LoraVariant.LONGLORA: ("LongLoRA's S^2-Attn is a monkey patch of the attention over flash-attn "
                           "(dvlab-research/LongLoRA), not in transformers or peft 0.21.2: its shifted and regrouped "
                           "q/k/v/output copies are not modelled"),
    LoraVariant.ROSA: ("RoSA needs IST-DASLab's peft fork (peft-rosa) and the spops CUDA kernels, neither in peft "
                       "0.21.2: its sparse adapters' index and value buffers are not modelled"),
}
# LoraSpec fields a setup's dict shows only when they are set (older setups' dicts stay as they were)
_LORA_EXTRAS = {"use_dora": False, "modules_to_save": [], "ensure_weight_tying": False, "language_only": False,
               "variant": "none"}
# loop knobs a setup's dict shows only when they are set
_LOOP_EXTRAS = {"ckpt_every": 1, "ckpt_first": 0, "activation_offload": "none", "compile": "none",
                "tiled_mlp": False, "tiled_mlp_shards": 0,
                "fp8": "none", "fp8_linears": "skip-first-last"}
# PPO (PPOConfig, TRL 1.12.0; planner/techniques/ppo.py): shown only with --objective ppo, and only when set
_PPO_DEFAULTS = {"response_len": 53, "rollout_batch": 64, "mini_batches": 1, "reward_model": "", "value_model": ""}
_GRPO_DEFAULTS = {"num_generations": 8, "completion_len": 512, "steps_per_generation": None, "kl_beta": 0.0,
                  "vllm_colocate": 0.0, "vllm_server_gpus": 0, "ds3_gather_for_generation": True}
# mask fields a setup's dict shows only when they are not the default
_MASK_DEFAULTS = {"padding": Padding.NONE.value, "packing": Packing.NONE.value}
_IMAGE_DEFAULTS = {"images_per_example": 0}   # shown in to_dict only when set
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
class LigerSpec:
    """Liger Kernel's per-layer kernels, as `apply_liger_kernel_to_<family>(rope, rms_norm, swiglu/geglu)`
    switches them on [liger_kernel/transformers/monkey_patch.py, Liger-Kernel v0.8.2]. Off by default (a
    plain transformers model). Its fused linear cross-entropy is `loss=Loss.CHUNKED`."""

    rms_norm: bool = False
    rope: bool = False
    swiglu: bool = False    # LigerSwiGLUMLP, or LigerGEGLUMLP where the family's MLP is GeGLU (Gemma)
    # the classes are patched before the model is built (axolotl's LigerPlugin.pre_model_load), so every
    # RMSNorm of the family is Liger's, q_norm/k_norm included; False: HF Trainer/TRL patch the built instance
    before_load: bool = False
    # LigerCrossEntropyFunction in place of transformers' cross_entropy over the fp32 logits (not the fused one)
    cross_entropy: bool = False

    def any(self) -> bool:
        return self.rms_norm or self.rope or self.swiglu or self.cross_entropy


@dataclass(frozen=True)
class TrainingSetup:
    method: Method = Method.FULL
    precision: Precision = Precision.BF16_MIXED       # TRL: fp32 load + bf16=True
    optimizer: Optimizer = Optimizer.ADAMW_FUSED      # TrainingArguments.optim default
    batch_size: int = 8                               # per_device_train_batch_size
    seq_len: int = 1024                               # SFTConfig.max_length
    grad_accum: int = 1
    checkpointing: Checkpointing = Checkpointing.FULL  # SFTConfig.gradient_checkpointing=True
    ckpt_every: int = 1                               # checkpoint every k-th decoder layer (1: all of them)
    ckpt_first: int = 0                               # ... starting at this layer (torchtune: k - 1)
    activation_offload: ActivationOffload = ActivationOffload.NONE
    attention: Attention = Attention.SDPA
    loss: Loss = Loss.HF
    loss_token_fraction: float = 1.0                  # positions that carry a label (completion-only, padding)
    objective: Objective = Objective.SFT
    precompute_ref_log_probs: bool = False            # DPO: reference log-probs computed before training
    trl_version: TrlVersion = TrlVersion.TRL_1_16     # the TRL release whose DPOTrainer is planned (--stack-versions)
    # GRPO (GRPOConfig, TRL 1.16.0; planner/techniques/grpo.py): seq_len is prompt + completion
    num_generations: int = 8                          # completions per prompt
    completion_len: int = 512                         # max_completion_length, decoded to the full length
    steps_per_generation: int | None = None           # None: gradient_accumulation_steps
    kl_beta: float = 0.0                              # GRPOConfig.beta: > 0 keeps a reference model
    vllm_colocate: float = 0.0                        # use_vllm + vllm_mode colocate: vllm_gpu_memory_utilization
    vllm_server_gpus: int = 0                         # use_vllm + vllm_mode server: GPUs running `trl vllm-serve`
    ds3_gather_for_generation: bool = True            # GRPOConfig: ZeRO-3 gathers the whole policy for generate
    # PPO (PPOConfig, TRL 1.12.0 trl/experimental/ppo; planner/techniques/ppo.py): seq_len is query + response
    response_len: int = 53                            # response_length, generated to the full length
    rollout_batch: int = 64                           # local_rollout_forward_batch_size
    mini_batches: int = 1                             # num_mini_batches
    reward_model: str = ""                            # the reward model's preset or config ("": the policy's)
    value_model: str = ""                             # the value model's preset or config ("": the policy's)
    lora: LoraSpec = field(default_factory=LoraSpec)
    quant: QuantSpec = field(default_factory=QuantSpec)
    base_dtype: DType | None = None   # frozen base weights of LoRA; None: the precision's weight dtype
    parallel: ParallelSpec = field(default_factory=ParallelSpec)   # GPUs, sharding, offload
    adapter: PeftSpec | None = None   # a peft method other than LoraSpec's (method lora: on a 16-bit base, qlora: 4/8 bit)
    # the precision recipe's choices beyond the preset (specs/recipe.py); None: the preset's
    weights: DType | None = None      # load dtype (from_pretrained dtype): full: every weight; LoRA: as base_dtype
    autocast: bool | None = None      # torch.autocast around the forward (HF Trainer bf16/fp16=True)
    kbit_upcast: bool | None = None   # QLoRA: prepare_model_for_kbit_training's fp32 upcast
    liger: LigerSpec = field(default_factory=LigerSpec)   # Liger Kernel's RMSNorm / RoPE / SwiGLU patches
    # attention masks [planner/techniques/masks.py]: a padded batch, or packed samples (position_ids)
    padding: Padding = Padding.NONE
    packing: Packing = Packing.NONE
    # a multimodal wrapper's batches with images: images in each example, their image tokens part of
    # seq_len (as the processor expands them) [planner/techniques/images.py]; 0: text-only batches
    images_per_example: int = 0
    # the optimizer step inside backward: one optimizer per parameter, stepped and its gradient freed
    # by a post-accumulate-grad hook (torchtune optimizer_in_bwd, HF galore_*_layerwise) [techniques/in_backward.py]
    optimizer_in_backward: bool = False
    optim: OptimSpec = field(default_factory=OptimSpec)   # low-rank / block optimizers' knobs (GaLore, APOLLO, torchao)
    compile: Compile = Compile.NONE   # torch.compile of the model [techniques/compile.py]
    # axolotl's tiled MLP (ALST's TiledMLP): the MLP in sequence tiles, recomputed [techniques/tiled_mlp.py];
    # tiles: 0 for axolotl's default, ceil(seq_len / 32768)
    tiled_mlp: bool = False
    tiled_mlp_shards: int = 0
    fp8: Fp8 = Fp8.NONE   # torchao float8 training recipe [techniques/fp8.py]
    fp8_linears: Fp8Linears = Fp8Linears.SKIP_FIRST_LAST   # which linears it converts (accelerate's default)
    # PYTORCH_CUDA_ALLOC_CONF the caching allocator runs under ("": PyTorch's defaults) [planner/memory/reserved.py]
    alloc_conf: str = ""

    # --- resolved views (every default filled in) ---------------------------------------------
    @property
    def peft(self) -> bool:
        return self.method is not Method.FULL

    @property
    def adapter_dtype(self) -> DType:
        if self.lora.adapter_dtype is not None:
            return self.lora.adapter_dtype
        return DType.BF16 if self.method is Method.QLORA else DType.FP32

    @cached_property
    def recipe(self) -> Recipe:
        """The precision recipe: the preset's, with the choices given (weights, autocast, kbit_upcast)."""
        r = preset_recipe(self.precision, self.method)
        lora_base = self.base_dtype if self.method is Method.LORA else None
        autocast = r.autocast if self.autocast is None else self.autocast
        kbit = r.kbit_upcast if self.kbit_upcast is None else self.kbit_upcast
        return Recipe(r.compute, self.weights or lora_base or r.weights, autocast,
                      kbit and self.method is Method.QLORA)

    @property
    def frozen_dtype(self) -> DType:
        """dtype of weights that stay in 16/32 bit and are not trained (LoRA base; QLoRA's norms etc.)."""
        # QLoRA: prepare_model_for_kbit_training upcasts every non-quantized weight to fp32 [peft/utils/other.py]
        return self.recipe.frozen

    @property
    def base_weight_dtype(self) -> DType:
        """dtype of the stored weights that are not quantized: embeddings, norms, lm_head (and, for
        full fine-tuning and LoRA, every linear)."""
        return self.frozen_dtype if self.peft else self.recipe.weights

    def lora_targets(self, model: ModelSpec) -> tuple[str, ...]:
        """Linear names LoRA adapts in each layer (and embed_tokens / lm_head, where targeted);
        raises PlannerError if a name matches nothing."""
        names = [lin.name for lin in model.dense_linears + model.moe_linears if lin.experts == 1]
        if self.lora.targets == (ALL_LINEAR,):
            return tuple(dict.fromkeys(names))
        targets = self.lora.targets or model.peft_default_targets
        names += sorted(model.vision.linear_names()) if model.vision else []   # a wrapper's vision side, too
        if not targets:   # peft raises for a model_type missing from its default-targets table
            raise PlannerError(
                f"peft has no default LoRA target_modules for {model.model_type}; name them with --lora-targets, "
                f"from {', '.join(dict.fromkeys(names))} or 'all-linear'")
        v4_experts = [old for old, _ in model.peft_expert_targets]   # peft maps them to the experts / router
        vision = model.vision.linear_names() if model.vision else set()   # peft's suffix match [techniques/multimodal.py]
        unknown = [t for t in targets if t not in names + v4_experts and t not in EMBEDDING_NAMES + HEAD_NAMES
                   and not any(v == t or v.endswith("." + t) for v in vision)]
        if unknown or not targets:
            raise PlannerError(
                f"LoRA target(s) {', '.join(unknown) or '(none)'} match no linear module of {model.name}; "
                f"choose from {', '.join(dict.fromkeys(names))} or 'all-linear'")
        return tuple(targets)

    def labelled_positions(self, positions: int, sequences: int) -> int:
        """Positions whose label is not -100 among `positions` shifted ones (what TRL's heads, its
        chunked_nll and CCE project): GRPO's completion tokens, each sequence's `completion_len`
        (`labels[:, :-logits_to_keep] = -100`, trl/trainer/grpo_trainer.py); else `loss_token_fraction`
        of them, at least one."""
        if self.objective is Objective.GRPO:
            return sequences * self.completion_len
        return max(1, math.ceil(self.loss_token_fraction * positions))

    def batch_unit(self) -> int:
        """The micro-batches the setup's trainer accepts are the multiples of this: GRPOConfig requires the
        generation batch (micro-batch x steps per generation) to divide into `num_generations` groups
        [trl/trainer/grpo_config.py __post_init__, TRL 1.16.0]; 1 for every other objective."""
        if self.objective is not Objective.GRPO:
            return 1
        return self.num_generations // math.gcd(self.num_generations, self.steps_per_generation or self.grad_accum)

    def max_micro_batch(self) -> int | None:
        """The largest micro-batch the setup's trainer accepts, None where any is: llama3 context
        parallelism runs varlen rows of batch 1 (techniques/context_parallel.py, axolotl's assertion)."""
        if self.parallel.cp > 1 and self.parallel.cp_kind is CpKind.LLAMA3:
            return 1
        return None

    def min_seq_len(self) -> int:
        """The shortest sequence the setup takes: GRPO's prompt + completion needs one prompt token."""
        if self.objective is Objective.PPO:   # a query token before the response
            return self.response_len + 1
        return self.completion_len + 1 if self.objective is Objective.GRPO else 1

    def for_model(self, model: ModelSpec) -> "TrainingSetup":
        """The setup as it runs on `model`: SDPA falls back to eager attention where transformers
        has no SDPA path for the architecture (what a user who leaves --attn alone gets)."""
        setup = self.canonical()
        if setup.attention is Attention.SDPA and not model.supports_sdpa:
            return replace(setup, attention=Attention.EAGER)
        return setup

    def canonical(self) -> "TrainingSetup":
        """The same setup with its recipe spelled by the preset of its compute dtype and autocast, and
        only the choices that differ from that preset kept (LoRA's weights as base_dtype): a recipe a
        preset names becomes that preset."""
        if self.weights is None and self.autocast is None and self.kbit_upcast is None:
            return self
        r = self.recipe
        preset = next(p for p in Precision if p.compute_dtype is r.compute and p.autocast is r.autocast)
        base = preset_recipe(preset, self.method)
        eng = engine_of(self.parallel)
        if r.autocast and (eng.deepspeed or eng.fsdp) and self.method is not Method.LORA:
            # the sharding engine decides the stored dtypes, whatever the load dtype: DeepSpeed bf16/fp16
            # keeps fp32 master weights of a 16-bit module [deepspeed/runtime/bf16_optimizer.py], and
            # accelerate upcasts a low-precision model to fp32 under FSDP mixed precision ("FSDP upcast
            # of low precision parameters to fp32") [accelerate/utils/fsdp_utils.py fsdp2_prepare_model]
            return replace(self, precision=preset, weights=None, autocast=None, kbit_upcast=None)
        if self.method is Method.LORA:
            return replace(self, precision=preset, weights=None, autocast=None, kbit_upcast=None,
                           base_dtype=None if r.weights is preset.weight_dtype else r.weights)
        return replace(self, precision=preset, weights=None if r.weights is base.weights else r.weights,
                       autocast=None, kbit_upcast=None if r.kbit_upcast is base.kbit_upcast else r.kbit_upcast)

    def validate(self) -> "TrainingSetup":
        """Returns self, or raises PlannerError naming the first impossible value."""
        for name, value, low in (("batch size", self.batch_size, 1), ("sequence length", self.seq_len, 1),
                                 ("gradient accumulation", self.grad_accum, 1), ("LoRA rank", self.lora.r, 1)):
            if value < low:
                raise PlannerError(f"{name} must be at least {low}, got {value}")
        if self.ckpt_every < 1:
            raise PlannerError(f"--ckpt-every must be at least 1 (1: every layer), got {self.ckpt_every}")
        if not 0 <= self.ckpt_first < self.ckpt_every:
            raise PlannerError(f"--ckpt-first must be in [0, --ckpt-every) = [0, {self.ckpt_every}), got {self.ckpt_first}")
        if self.ckpt_every > 1 and self.checkpointing is Checkpointing.NONE:
            raise PlannerError(f"--ckpt-every {self.ckpt_every} picks which layers are checkpointed, but "
                               "--no-grad-ckpt turns checkpointing off: drop one of them")
        off = self.activation_offload
        if off in (ActivationOffload.TORCHTUNE, ActivationOffload.LAYER_INPUTS, ActivationOffload.UNSLOTH) \
                and self.checkpointing is Checkpointing.NONE:
            raise PlannerError(f"--activation-offload {off.value} moves checkpointed layers' inputs (torchtune raises "
                               "RuntimeError without activation checkpointing): drop --no-grad-ckpt, or use trl")
        if off is not ActivationOffload.NONE and not self.parallel.single_gpu:
            raise PlannerError(f"--activation-offload {off.value} is planned for one GPU only for now; drop the "
                               "multi-GPU / offload flags")
        if self.tiled_mlp_shards < 0 or (self.tiled_mlp_shards and not self.tiled_mlp):
            raise PlannerError(f"--tiled-mlp-shards {self.tiled_mlp_shards}: a positive tile count, with --tiled-mlp")
        if self.tiled_mlp and not self.parallel.single_gpu:
            raise PlannerError("--tiled-mlp is planned for one GPU only for now (its backward under FSDP2/ZeRO "
                               "defers resharding, not modelled); drop the multi-GPU flags")
        if self.seq_len > 4 * 1024 * 1024:
            raise PlannerError(f"sequence length {self.seq_len} is beyond any model's context (max 4M)")
        if self.images_per_example < 0:
            raise PlannerError(f"--images-per-example must be 0 (text-only) or more, got {self.images_per_example}")
        if not 0.0 <= self.lora.dropout < 1.0:
            raise PlannerError(f"LoRA dropout must be in [0, 1), got {self.lora.dropout}")
        if not 0.0 < self.loss_token_fraction <= 1.0:
            raise PlannerError(f"the loss-token fraction must be in (0, 1], got {self.loss_token_fraction}")
        if self.trl_version is not TrlVersion.TRL_1_16:   # TRL 1.8-1.12's DPOTrainer [planner/techniques/dpo19.py]
            self._validate_trl19()
        elif self.objective.has_reference and self.loss is not Loss.TRL:
            raise PlannerError(f"TRL's {self.objective.value.upper()}Trainer computes log-probs with its fused LM head: "
                               f"use --loss trl with --objective {self.objective.value}")
        if self.objective is Objective.KTO and self.batch_size < 2:
            raise PlannerError("TRL's KTOTrainer needs a micro-batch of at least 2 (its KL term pairs each prompt with "
                               "another example's completion): use --batch-size 2 or more")
        if self.loss is Loss.CHUNKED_OUTPUT and not self.parallel.single_gpu:
            raise PlannerError("--loss chunked-output (torchtune's CEWithChunkedOutputLoss) is planned for one GPU "
                               "only for now (its multi-GPU step is not checked against the simulator); drop the "
                               "multi-GPU flags")
        if self.objective is Objective.ORPO and (self.loss is not Loss.HF or self.liger.any()):
            raise PlannerError("TRL's ORPOTrainer computes its loss from the model's full logits (no fused head): "
                               "use --loss hf (the default) and no --liger with --objective orpo")
        if self.objective is Objective.PPO:   # TRL 1.12.0's PPOTrainer [planner/techniques/ppo.py]
            self._validate_ppo()
        self._validate_lora_variant()
        if self.objective is Objective.RM:
            self._validate_rm()
        if self.objective is Objective.GRPO:
            self._validate_grpo()
        # on several GPUs: planner/memory/preference_ranks.py (the reference as TRL prepares it)
        if self.lora.alpha <= 0:
            raise PlannerError(f"LoRA alpha must be positive, got {self.lora.alpha}")
        if self.method is Method.QLORA and self.precision is Precision.FP32:
            raise PlannerError("QLoRA stores weights in 4/8 bit and computes in 16 bit; "
                               "use --precision bf16-mixed (default), fp16-mixed, bf16-true or fp16-true")
        if self.method is Method.FULL and (self.adapter is not None or not self.lora.is_plain()):
            raise PlannerError("a peft method (--peft-config, --use-dora, --modules-to-save, --lora-variant) trains "
                               "adapters on a frozen base: use --method lora (or qlora for a 4/8-bit base)")
        if self.adapter is not None and not self.lora.is_plain():
            raise PlannerError(f"--use-dora / --modules-to-save are LoRA knobs; the {self.adapter.peft_type} config "
                               "given takes its own fields (put modules_to_save in its adapter_config.json)")
        if self.method is Method.FULL and self.base_dtype not in (None, self.recipe.weights):
            raise PlannerError("--base-dtype applies to LoRA/QLoRA; for full fine-tuning choose --precision")
        self._validate_recipe()
        if self.compile is not Compile.NONE and self.tiled_mlp:
            raise PlannerError("--compile with --tiled-mlp: the compiled partitioner's cut of a tiled MLP (an autograd "
                               "Function under no_grad) is not modelled; drop one of them")
        if self.loss.trl_chunked and self.liger.any():   # trl/trainer/sft_trainer.py l.1365-1366, TRL 1.14.0
            raise PlannerError("TRL refuses loss_type='chunked_nll' with use_liger_kernel=True (its default loss is "
                               "then 'nll' with Liger's fused linear cross-entropy): use --loss chunked, or drop --liger")
        if self.liger.cross_entropy and self.loss is not Loss.HF:
            raise PlannerError(f"Liger's cross_entropy replaces transformers' loss over the full logits; it cannot "
                               f"run with --loss {self.loss.value}: use --loss hf, or drop cross_entropy")
        if self.parallel.fsdp is Fsdp.YAFSDP and self.peft:
            raise PlannerError("--fsdp yafsdp trains the whole model: its is_trainable flag covers every parameter "
                               "(one fp32 master and gradient shard of all super tensors, or none), so a frozen "
                               "base with adapters is not supported; use --method full or --fsdp full")
        self.parallel.validate(optimizer=self.optimizer)   # model-free checks; estimate() adds the model's
        if self.padding is not Padding.NONE and self.packing is not Packing.NONE:
            raise PlannerError(f"--padding {self.padding} and --packing {self.packing} exclude each other: packed rows "
                               "carry no padding mask (transformers reads their position_ids); choose one")
        validate_optimizer(self)
        return self

    def _validate_recipe(self) -> None:
        """PlannerError naming the two knobs of a precision recipe no library runs."""
        if self.weights is None and self.autocast is None and self.kbit_upcast is None:
            return
        r = self.recipe
        if self.weights not in (None, DType.FP32, DType.BF16, DType.FP16):
            raise PlannerError(f"--weights-dtype {self.weights.value}: weights load in fp32, bf16 or fp16 "
                               "(quantized weights: --method qlora)")
        if self.kbit_upcast is not None and self.method is not Method.QLORA:
            raise PlannerError("--kbit-prepare / --no-kbit-prepare apply to --method qlora "
                               "(prepare_model_for_kbit_training upcasts a 4/8-bit model's other weights)")
        if self.method is Method.LORA and None not in (self.weights, self.base_dtype) and self.weights is not self.base_dtype:
            raise PlannerError(f"--weights-dtype {self.weights.value} and --base-dtype {self.base_dtype.value} "
                               "disagree: for LoRA both name the frozen base's dtype; give one")
        if r.autocast and r.compute is DType.FP32:
            raise PlannerError("--autocast with --precision fp32: autocast computes in 16 bit; choose --precision "
                               "bf16-mixed or fp16-mixed")
        if r.weights is not DType.FP32 and r.weights is not r.compute:
            raise PlannerError(f"--weights-dtype {r.weights.value} with --precision {self.precision.value}: 16-bit "
                               f"weights compute in their own dtype; load {r.compute.value} or fp32")
        if self.method is Method.QLORA and r.weights is not r.compute:
            raise PlannerError(f"--weights-dtype {r.weights.value} with --method qlora: its non-quantized weights load "
                               f"in the compute dtype ({r.compute.value}, bnb_4bit_compute_dtype); for fp32 ones keep "
                               "prepare_model_for_kbit_training's upcast (--kbit-prepare)")
        if r.weights is DType.FP32 and not r.autocast and r.compute is not DType.FP32:
            raise PlannerError(f"fp32 weights without autocast (--no-autocast with --precision {self.precision.value}) "
                               f"compute in fp32, not {r.compute.value}: add --weights-dtype {r.compute.value} (pure "
                               f"{r.compute.value}), keep autocast, or use --precision fp32")
        if self.method is Method.FULL and r.autocast and r.weights is DType.FP16:
            # HF Trainer's fp16=True GradScaler [torch/amp/grad_scaler.py _unscale_grads_]
            raise PlannerError("--weights-dtype fp16 with fp16 autocast in full fine-tuning: the Trainer's GradScaler "
                               "refuses fp16 gradients ('Attempting to unscale FP16 gradients'); use --precision "
                               "fp16-true or fp32 weights")
        if preset_of(self.canonical().recipe, self.method) is None and self.method is not Method.LORA \
                and not self.parallel.single_gpu:
            raise PlannerError("a precision recipe no --precision preset names (--weights-dtype / --autocast / "
                               "--no-kbit-prepare) is planned for one GPU only; drop the multi-GPU flags")

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
        lora = build(LoraSpec, d.pop("lora", {}) or {}, {"adapter_dtype": DType, "variant": LoraVariant})
        quant = build(QuantSpec, d.pop("quant", {}) or {}, {"quant_type": QuantType})
        adapter = d.pop("adapter", None)
        if adapter is not None:
            if not isinstance(adapter, dict) or not isinstance(adapter.get("peft_type"), str):
                raise PlannerError("adapter: expected {\"peft_type\": ..., \"options\": {...}}")
            adapter = PeftSpec.of(adapter["peft_type"], adapter.get("options") or {})
        liger = build(LigerSpec, d.pop("liger", {}) or {}, {})
        optim = build(OptimSpec, d.pop("optim", {}) or {}, {})
        parallel = build(ParallelSpec, d.pop("parallel", {}) or {},
                         {"fsdp": Fsdp, "offload": Offload, "offload_device": OffloadDevice, "cp_kind": CpKind})
        enums = {"method": Method, "precision": Precision, "optimizer": Optimizer, "checkpointing": Checkpointing,
                 "attention": Attention, "loss": Loss, "base_dtype": DType, "objective": Objective, "weights": DType,
                 "activation_offload": ActivationOffload, "padding": Padding, "packing": Packing,
                 "compile": Compile, "fp8": Fp8, "fp8_linears": Fp8Linears, "trl_version": TrlVersion}
        setup = build(cls, d, enums)
        return replace(setup, lora=lora, quant=quant, parallel=parallel, adapter=adapter, liger=liger, optim=optim)

    def _validate_trl19(self) -> None:
        """What gpuplan models of TRL 1.8-1.12's preference trainers (planner/techniques/dpo19.py)."""
        s = self
        stack = "--stack-versions trl-1.12 (TRL 1.8-1.12)"
        if s.objective in (Objective.KTO, Objective.GRPO):
            raise PlannerError(f"--objective {s.objective.value} with {stack}: TRL 1.9's {s.objective.value.upper()}"
                               "Trainer is not modelled (gpuplan plans TRL 1.16's); drop --stack-versions or use "
                               "trl-1.16")
        if s.objective is not Objective.DPO:
            raise PlannerError(f"trl_version {s.trl_version.value} picks TRL 1.9's DPOTrainer: it applies to "
                               f"--objective dpo, not {s.objective.value}")
        if s.loss is not Loss.HF or s.liger.any():
            raise PlannerError("TRL 1.9's DPOTrainer computes its log-probs from the model's full logits (no fused head; "
                               "use_liger_kernel is not modelled): use --loss hf and no --liger with --objective dpo "
                               f"and {stack}")
        if s.precision is Precision.FP32:
            raise PlannerError(f"--precision {s.precision.value} with --objective dpo and {stack}: fp32 logits take "
                               "selective_log_softmax's logsumexp path, which is not modelled; use bf16-mixed, "
                               "bf16-true or fp16-true")
        if s.lora.dropout:
            raise PlannerError("DPOConfig.disable_dropout=True (TRL 1.9.0 default) sets every nn.Dropout to 0, LoRA's "
                               "too: plan --lora-dropout 0")
        if s.ckpt_every != 1:
            raise PlannerError("--ckpt-every with --objective dpo and TRL 1.9: the reference forward's "
                               "disable_gradient_checkpointing re-enables checkpointing on every layer after the "
                               "first step; drop --ckpt-every")
        if not s.parallel.single_gpu:
            raise PlannerError(f"--objective dpo with {stack} is planned on one GPU only for now; drop the multi-GPU "
                               "flags")
        if s.packing is not Packing.NONE or s.padding is not Padding.NONE:
            raise PlannerError(f"--packing / --padding with --objective dpo and {stack}: DPOTrainer pads chosen and "
                               "rejected rows, whose mask is not modelled yet; plan unpadded rows of --seq-len")

    def _validate_grpo(self) -> None:
        """What GRPOConfig / GRPOTrainer raise (TRL 1.16.0), and what the plan does not model yet."""
        if self.loss is not Loss.TRL:
            raise PlannerError("TRL's GRPOTrainer scores completions with its fused LM head (fused_lm_head=True): use "
                               "--loss trl with --objective grpo")
        if self.loss_token_fraction != 1.0:
            raise PlannerError("GRPO's labelled positions are its completions (--max-completion-length): drop "
                               "--loss-tokens")
        if not 0 < self.completion_len or self.seq_len < self.min_seq_len():
            raise PlannerError(f"--max-completion-length {self.completion_len} must be positive and below --seq-len "
                               f"{self.seq_len} (prompt + completion)")
        if self.num_generations < 2:
            raise PlannerError("GRPO needs at least 2 generations per prompt (TRL raises otherwise): "
                               "--num-generations 2 or more")
        if self.steps_per_generation is not None and self.steps_per_generation < 1:
            raise PlannerError("--steps-per-generation must be at least 1")
        if not 0.0 <= self.vllm_colocate < 1.0:
            raise PlannerError(f"--vllm-colocate is vLLM's gpu_memory_utilization, a fraction in [0, 1), got "
                               f"{self.vllm_colocate}")
        if self.kl_beta < 0:
            raise PlannerError(f"--kl-beta must be 0 or more, got {self.kl_beta}")
        spg = self.steps_per_generation or self.grad_accum   # GRPOConfig: gradient_accumulation_steps by default
        if self.batch_size % self.batch_unit():   # (batch x spg) % num_generations, as GRPOConfig checks it
            raise PlannerError(f"the generation batch ({self.batch_size} x {spg} steps per generation = "
                               f"{self.batch_size * spg}) must be a multiple of --num-generations {self.num_generations} "
                               "(GRPOConfig raises otherwise): change --batch-size, --steps-per-generation or "
                               "--num-generations")
        if self.vllm_server_gpus < 0 or (self.vllm_server_gpus and self.vllm_colocate):
            raise PlannerError("--vllm-server-gpus N (vllm_mode server: generation on N other GPUs) and "
                               "--vllm-colocate (vLLM on the training GPUs) are two vLLM modes: give one")
        if not self.ds3_gather_for_generation and self.parallel.zero != 3:
            raise PlannerError("--no-ds3-gather-for-generation is ZeRO-3's (GRPOConfig.ds3_gather_for_generation): "
                               "add --zero 3 or drop it")

    def _validate_ppo(self) -> None:
        """What the PPO plan (TRL 1.12.0's PPOTrainer, planner/techniques/ppo.py) does not take, one line each."""
        s = self
        if not s.parallel.single_gpu:
            raise PlannerError("--objective ppo is planned on one GPU only: TRL 1.12's PPOTrainer on several GPUs "
                               "(DeepSpeed: prepare_deepspeed of the reward and reference models; ZeRO-3 gathers for "
                               "generate) is not modelled; drop the multi-GPU flags")
        if s.method not in (Method.FULL, Method.LORA) or s.adapter is not None:
            raise PlannerError(f"--objective ppo with --method {s.method.value} is not modelled: plan --method full or "
                               "lora (peft's LoRA on the policy)")
        if s.recipe.autocast:
            raise PlannerError(f"--objective ppo with --precision {s.precision.value}: TRL 1.12's PPOTrainer builds "
                               "Accelerator() without mixed_precision, so its models run in their load dtype; plan "
                               "--precision bf16-true or fp32 (autocast under accelerate launch --mixed_precision is "
                               "not modelled)")
        if s.loss is not Loss.HF or s.liger.any():
            raise PlannerError("TRL's PPOTrainer computes log-probs from the policy's full logits "
                               "(selective_log_softmax): use --loss hf (the default) and no --liger with --objective ppo")
        if s.padding is not Padding.NONE or s.packing is not Packing.NONE:
            raise PlannerError("--objective ppo plans unpadded queries of one length: drop --padding / --packing")
        if s.optimizer_in_backward or s.tiled_mlp or s.fp8.value != "none" or s.compile.value != "none" \
                or s.activation_offload.value != "none" or s.ckpt_every != 1:
            raise PlannerError("--objective ppo is planned with the plain loop only: drop --optimizer-in-backward, "
                               "--tiled-mlp, --fp8, --compile, --activation-offload and --ckpt-every")
        if not 0 < s.response_len < s.seq_len:
            raise PlannerError(f"--response-length {s.response_len} must be positive and below --seq-len {s.seq_len} "
                               "(the query comes first)")
        if s.rollout_batch < 1:
            raise PlannerError(f"--rollout-batch {s.rollout_batch} must be at least 1")
        if s.mini_batches < 1 or s.grad_accum % s.mini_batches:
            raise PlannerError(f"--num-mini-batches {s.mini_batches} must divide --grad-accum {s.grad_accum}: "
                               "PPOTrainer's exact_div needs local_batch_size = batch x grad-accum to split into whole "
                               "mini-batches of whole micro-batches")

    def ppo_value_setup(self) -> "TrainingSetup":
        """PPO's value model's setup: a sequence-classification model trained in full, never checkpointed
        (planner/techniques/ppo.py)."""
        return self.with_(objective=Objective.RM, method=Method.FULL, checkpointing=Checkpointing.NONE)

    def _validate_lora_variant(self) -> None:
        """A paper's LoRA variant (planner/techniques/lora_variants.py): refused, or what it cannot combine with."""
        v = self.lora.variant
        if v is LoraVariant.NONE:
            return
        if v in LORA_VARIANTS_REFUSED:
            raise PlannerError(f"--lora-variant {v.value}: {LORA_VARIANTS_REFUSED[v]}")
        if not self.peft or self.adapter is not None:
            raise PlannerError(f"--lora-variant {v.value} is a LoRA variant: use it with --method lora (or qlora for "
                               "dylora), not with full fine-tuning or --peft-config")
        if self.lora.use_dora:
            raise PlannerError(f"--lora-variant {v.value} with --use-dora: no paper or library combines them; drop one")
        if v is LoraVariant.DELTA_LORA:
            if self.method is Method.QLORA:
                raise PlannerError("--lora-variant delta-lora updates the pre-trained weights in place: a 4/8-bit base "
                                   "(--method qlora) cannot be updated; use --method lora")
            if self.lora.dropout > 0:
                raise PlannerError("--lora-variant delta-lora removes the LoRA dropout (Zi et al. 2023, Sec. 4.2): "
                                   "set --lora-dropout 0")

    def _validate_rm(self) -> None:
        """What reward modelling (TRL 1.14 RewardTrainer, planner/techniques/reward.py) runs, and what the plan
        does not model yet."""
        if self.loss is not Loss.HF or self.liger.any() or self.loss_token_fraction != 1.0:
            raise PlannerError("--objective rm scores each sequence with a hidden x 1 score head (no lm_head, no "
                               "vocabulary logits): --loss, --loss-tokens and --liger do not apply; drop them")
        named = [n for n in self.lora.targets + self.lora.modules_to_save if n in HEAD_NAMES]
        if named:
            raise PlannerError(f"--objective rm: the sequence-classification model has no {named[0]} (its score head "
                               "is a modules_to_save copy already): drop it from --lora-targets / --modules-to-save")
        if self.adapter is not None:
            raise PlannerError(f"--objective rm with a {self.adapter.peft_type} --peft-config is not modelled (the score "
                               "head's modules_to_save copy is planned for LoRA): use --method lora / qlora")
        if self.packing is not Packing.NONE:   # RewardConfig has no packing / padding_free [trl/trainer/reward_config.py]
            raise PlannerError(f"--packing {self.packing.value} with --objective rm: RewardTrainer pads chosen and "
                               "rejected rows (DataCollatorForPreference), it never packs; use --padding or neither")
        if not self.parallel.single_gpu:
            raise PlannerError("--objective rm is planned for one GPU only for now; drop the multi-GPU flags")

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
        if self.loss not in (Loss.TRL, Loss.CCE) and not self.loss.trl_chunked:
            d.pop("loss_token_fraction")   # only TRL's losses and CCE depend on it
        if not self.liger.any():
            d.pop("liger")   # shown only when a Liger kernel is on (older setups' dicts stay as they were)
        if self.objective is Objective.SFT:
            d.pop("objective")
            d.pop("precompute_ref_log_probs")
        elif not self.objective.has_reference:   # ORPO, RM: no reference model to precompute
            d.pop("precompute_ref_log_probs")
        if self.trl_version is TrlVersion.TRL_1_16:
            d.pop("trl_version")   # shown only when set (older setups' dicts stay as they were)
        if self.objective is not Objective.GRPO:
            for key in _GRPO_DEFAULTS:
                d.pop(key)
        else:
            for key, default in _GRPO_DEFAULTS.items():   # shown only when set
                if d[key] == default:
                    d.pop(key)
        for key, default in _PPO_DEFAULTS.items():   # PPO's knobs: only with --objective ppo, only when set
            if self.objective is not Objective.PPO or d[key] == default:
                d.pop(key)
        for key in ("weights", "autocast", "kbit_upcast"):   # shown only when given (older dicts unchanged)
            if d[key] is None:
                d.pop(key)
        for key, default in {**_LOOP_EXTRAS, **_MASK_DEFAULTS, **_IMAGE_DEFAULTS}.items():   # shown only when set: older setups' dicts stay as they were
            if d[key] == default:
                d.pop(key)
        optim_dict(self, d)   # shown only when set: older setups' dicts stay as they were
        d["parallel"] = self.parallel.as_dict()   # context-parallel fields only when set
        if not d["alloc_conf"]:
            d.pop("alloc_conf")   # shown only when set: older setups' dicts stay as they were
        return d
