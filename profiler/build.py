"""Builds the real HF model and optimizer for a (ModelSpec, TrainingSetup), with random weights and
no download, applying each technique with the library users run: peft, bitsandbytes, torch."""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import transformers
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.optimization import Adafactor

from gpuplan.planner import Attention, Checkpointing, Method, ModelSpec, Optimizer, TrainingSetup
from gpuplan.planner.io.hf_vocabulary import hf_attention_name
from gpuplan.planner.specs.enums import Fp8, Fp8Linears, Objective
from gpuplan.planner.techniques.reward import SCORE_LABELS
from gpuplan.planner.specs.errors import PlannerError

from .dtypes import TORCH_DTYPES
from .kernels.attention import in_kernel, register


@dataclass
class Built:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    autocast: Callable[[], contextlib.AbstractContextManager]
    device: torch.device
    notes: list[str]
    reference: torch.nn.Module | None = None   # TRL 1.9 DPO, full fine-tuning: the frozen reference copy


def hf_attn_implementation(attention: Attention) -> str:
    """The `attn_implementation` a real (not simulated) run uses for `attention`: flash-attn 2 where
    the package is installed, else SDPA (whose CUDA flash backend saves the same tensors)."""
    if attention is Attention.FLASH and importlib.util.find_spec("flash_attn") is None:
        return hf_attention_name(Attention.SDPA)
    return hf_attention_name(attention)


def hf_config(model: ModelSpec, setup: TrainingSetup, simulated: bool = False):
    # a multimodal wrapper is built whole from its own config.json (planner/io/multimodal.py)
    source = model.vision.config if model.vision is not None else model.hf_config
    cfg = copy.deepcopy(dict(source))  # transformers edits rope_scaling in place
    model_type = cfg.pop("model_type")
    for key in ("architectures", "auto_map", "quantization_config", "torch_dtype", "dtype", "transformers_version"):
        cfg.pop(key, None)
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    setup = setup.for_model(model)   # Gemma-2: eager attention, as transformers runs it
    if simulated:  # CUDA kernels' memory behaviour, not the CPU kernels' [profiler/kernels/attention.py]
        config._attn_implementation = register()[setup.attention]
    else:
        config._attn_implementation = hf_attn_implementation(setup.attention)
    config.use_cache = False
    if setup.objective is Objective.RM:   # RewardTrainer: num_labels=1, and a pad token to find the last token
        config.num_labels = SCORE_LABELS
        if config.get_text_config().pad_token_id is None:
            config.get_text_config().pad_token_id = 0
    if model.vision is not None:
        config.get_text_config().use_cache = False
    return config


def build_model(model: ModelSpec, setup: TrainingSetup, device: torch.device,
                simulated: bool = False, target: torch.device | None = None) -> tuple[torch.nn.Module, list[str]]:
    """The causal LM with the setup's weights dtype, peft adapters and checkpointing applied.

    `target`: the real device the model will run on; QLoRA weights are then quantized onto it by
    bitsandbytes itself (without it, a stand-in that runs under fake tensors takes their place).
    """
    notes: list[str] = []
    config = hf_config(model, setup, simulated)
    load_dtype = TORCH_DTYPES[setup.frozen_dtype if setup.peft else setup.recipe.weights]
    if setup.method is Method.QLORA:
        load_dtype = TORCH_DTYPES[setup.recipe.weights]   # the compute dtype (bnb_4bit_compute_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device(device):
            if setup.objective is Objective.RM:   # RewardTrainer's model [trl/trainer/reward_trainer.py l.398]
                auto = transformers.AutoModelForSequenceClassification
            elif model.vision is not None:   # multimodal wrappers: their native ForConditionalGeneration class
                auto = transformers.AutoModelForImageTextToText   # (never remote code)
            else:
                auto = transformers.AutoModelForCausalLM
            lm = auto.from_config(config, dtype=load_dtype)
    lm.train()
    if setup.attention is Attention.FLASH and not simulated and config._attn_implementation != "flash_attention_2":
        notes.append("--attn flash: flash-attn is not installed here, so SDPA ran (on CUDA its flash "
                     "backend, which saves the same tensors)")
    if setup.method is Method.QLORA and target is not None:
        from .quantize_real import quantize_real   # lazy: bitsandbytes is loaded for QLoRA only

        lm = quantize_real(lm, setup, target)
    elif setup.method is Method.QLORA:
        from .kernels.bnb_linear import quantize_for_qlora  # lazy: bitsandbytes is loaded for QLoRA only

        lm = quantize_for_qlora(lm, model, setup)
        notes.append("bitsandbytes weights replaced by a byte-exact stand-in")
    if setup.peft:
        lm = _apply_lora(lm, model, setup)
    if setup.fp8 is not Fp8.NONE:   # accelerate's prepare() converts before the first step
        if simulated and setup.recipe.autocast:
            raise PlannerError("--fp8 under autocast cannot be simulated: Float8Linear tests CUDA's autocast flag, "
                               "which the simulator's CPU autocast never sets; use --precision bf16-true or the "
                               "closed form (modelled from source)")
        _convert_to_float8(lm, setup)
    if setup.checkpointing in (Checkpointing.FULL, Checkpointing.SAVE_ATTENTION):
        kwargs = {"use_reentrant": False}
        if setup.checkpointing is Checkpointing.SAVE_ATTENTION:
            kwargs["context_fn"] = _save_attention_context
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if setup.ckpt_every > 1:
            _checkpoint_every(lm, setup.ckpt_every, setup.ckpt_first)
        if setup.peft:
            lm.enable_input_require_grads()
    if setup.tiled_mlp:   # axolotl's TiledMLP on every decoder layer's MLP [profiler/tiled_mlp.py]
        from .tiled_mlp import apply_tiled_mlp   # lazy: axolotl's file is loaded for --tiled-mlp only

        apply_tiled_mlp(lm, setup)
        notes.append("axolotl's TiledMLP (its own autograd Function) on every decoder layer's MLP")
    return lm, notes


def _convert_to_float8(lm: torch.nn.Module, setup: TrainingSetup) -> None:
    """Swap nn.Linear for torchao's Float8Linear in place, with the filter accelerate or torchao uses.

    accelerate 1.15 `convert_model_to_fp8_ao` (accelerate/utils/ao.py) passes `filter_linear_layers` with
    the first and last nn.Linear of `named_modules()`; torchao 0.18 `convert_to_float8_training` with no
    `module_filter_fn` converts every nn.Linear.
    """
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training   # lazy: torchao only for --fp8

    config = Float8LinearConfig.from_recipe_name(setup.fp8.value)
    module_filter_fn = None
    if setup.fp8_linears is Fp8Linears.SKIP_FIRST_LAST:
        from accelerate.utils.ao import filter_linear_layers, find_first_last_linear_layers   # lazy: only for --fp8

        first, last = find_first_last_linear_layers(lm)
        module_filter_fn = functools.partial(filter_linear_layers, layers_to_filter=[first, last])
    convert_to_float8_training(lm, module_filter_fn=module_filter_fn, config=config)


def _save_attention_policy(ctx, op, *args, **kwargs):
    """axolotl's selective-checkpointing policy with its default `save: [attention]` [axolotl
    monkeypatch/selective_checkpointing.py build_sac_policy]: MUST_SAVE for the attention kernel's
    op, PREFER_RECOMPUTE for every other; the simulator's kernel is the flash stand-in."""
    return CheckpointPolicy.MUST_SAVE if in_kernel() else CheckpointPolicy.PREFER_RECOMPUTE


def _save_attention_context():
    return create_selective_checkpoint_contexts(_save_attention_policy)


def _checkpoint_every(lm: torch.nn.Module, k: int, first: int) -> None:
    """Leaves checkpointing on for decoder layers first, first + k, ... only, as transformers'
    `every_n_layers` does from layer 0 (modeling_utils.py _set_gradient_checkpointing sets each
    GradientCheckpointingLayer's `gradient_checkpointing` flag) and torchtune's selective wrapper
    from layer k - 1."""
    layers = [mod for mod in lm.modules() if isinstance(mod, GradientCheckpointingLayer)]
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i >= first and (i - first) % k == 0


def _apply_lora(lm: torch.nn.Module, model: ModelSpec, setup: TrainingSetup) -> torch.nn.Module:
    import peft   # lazy: peft (which imports bitsandbytes) is loaded for adapter methods only

    from .peft_config import dequantize_standins, peft_config   # LoRA's knobs, or any peft method's config

    if setup.method is Method.QLORA:
        dequantize_standins()   # QDoRA's weight norm reads the dequantized base weight
    lm = peft.get_peft_model(lm, peft_config(model, setup), autocast_adapter_dtype=True)
    adapter = TORCH_DTYPES[setup.adapter_dtype]
    for name, p in lm.named_parameters():
        if p.requires_grad and p.dtype != adapter:
            p.data = p.data.to(adapter)
    return lm


def build_optimizer(lm: torch.nn.Module, setup: TrainingSetup) -> torch.optim.Optimizer:
    """The optimizer HF Trainer builds for `optim=...`, over the trainable parameters; with
    optimizer_in_backward, one per parameter stepped by its post-accumulate-grad hook."""
    params = [p for p in lm.parameters() if p.requires_grad]
    if setup.optimizer_in_backward:
        from .in_backward import InBackward   # lazy: only the step inside backward needs it

        return InBackward(params, lambda one: _optimizer(one, setup, lm))
    return _optimizer(params, setup, lm)


def _optimizer(params: list[torch.nn.Parameter], setup: TrainingSetup, lm: torch.nn.Module) -> torch.optim.Optimizer:
    kind = setup.optimizer
    if kind is Optimizer.ADAMW:
        return torch.optim.AdamW(params, lr=1e-5, foreach=True)
    if kind is Optimizer.ADAMW_FUSED:
        return torch.optim.AdamW(params, lr=1e-5, fused=True)
    if kind is Optimizer.SGD:
        return torch.optim.SGD(params, lr=1e-5, momentum=0.9, foreach=True)
    if kind is Optimizer.ADAFACTOR:
        return Adafactor(params, lr=1e-5, scale_parameter=False, relative_step=False)
    if kind is Optimizer.LORAFA:   # peft's LoRA-FA: freezes every lora_A, AdamW-hf on B [peft/optimizers/lorafa.py]
        from peft.optimizers import create_lorafa_optimizer   # lazy: peft loads with the peft model only

        lora = setup.lora
        return create_lorafa_optimizer(lm, r=lora.r, lora_alpha=lora.alpha, lr=1e-5)
    if kind.low_rank or kind.torchao or kind in (Optimizer.SCHEDULE_FREE_ADAMW, Optimizer.ADAM_MINI, Optimizer.MUON):
        from .optimizers import extra_optimizer   # lazy: each library is loaded for its optimizers only

        return extra_optimizer(params, setup, lm)
    from .kernels.bnb_optim import bnb_optimizer   # lazy: bitsandbytes is loaded for its optimizers only

    return bnb_optimizer(params, kind, model=lm)


def autocast_for(setup: TrainingSetup, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if not setup.recipe.autocast:   # HF Trainer bf16/fp16=True, whatever dtype the weights loaded in
        return contextlib.nullcontext
    dtype = TORCH_DTYPES[setup.recipe.compute]
    return lambda: torch.autocast(device.type, dtype=dtype)


def materialize(lm: torch.nn.Module, device: torch.device) -> None:
    """Gives every meta parameter and buffer an (uninitialized) tensor on `device`, in place.

    Under FakeTensorMode the new tensors are fake: they cost nothing but know their bytes.
    Parameters shared by two modules (tied embeddings) stay shared.
    """
    done: dict[int, torch.Tensor] = {}
    for module in lm.modules():
        for table in (module._parameters, module._buffers):
            for name, t in table.items():
                if t is None or t.device.type != "meta":
                    continue
                if id(t) not in done:
                    new = torch.empty(t.shape, dtype=t.dtype, device=device)
                    if isinstance(t, torch.nn.Parameter):
                        new = torch.nn.Parameter(new, requires_grad=t.requires_grad)
                    for attr in ("quant_type", "compress_statistics", "blocksize"):  # bnb stand-in tags
                        if hasattr(t, attr):
                            setattr(new, attr, getattr(t, attr))
                    done[id(t)] = new
                table[name] = done[id(t)]


def initialize(lm: torch.nn.Module) -> None:
    """Real (not fake) tensors get what from_config would give them: random weights from the
    model's own `_init_weights`, RoPE tables, peft's LoRA init; so that losses are finite."""
    peft_model = hasattr(lm, "get_base_model")
    base = lm.get_base_model() if peft_model else lm
    with torch.no_grad():
        for module in base.modules():
            if hasattr(module, "_is_hf_initialized"):
                module._is_hf_initialized = False   # materialize() replaced what from_config set
            try:
                base._init_weights(module)
            except (RuntimeError, TypeError, NotImplementedError, AttributeError):
                pass   # quantized (integer) weights: bitsandbytes fills them when it quantizes
        for t in list(lm.parameters()) + list(lm.buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                t.normal_(0.0, 0.02)
        if not peft_model:
            return
        from peft.tuners.lora import LoraLayer   # lazy: peft (which imports bitsandbytes) for peft models only

        for module in lm.modules():
            if isinstance(module, LoraLayer):
                for adapter in module.lora_A:
                    module.reset_lora_parameters(adapter, True)


def build(model: ModelSpec, setup: TrainingSetup, device: torch.device,
          fake_mode: contextlib.AbstractContextManager | None = None) -> Built:
    """Model and optimizer on `device`, built on `meta` first; with `fake_mode` the tensors are fake."""
    lm, notes = build_model(model, setup, torch.device("meta"), simulated=fake_mode is not None,
                            target=None if fake_mode is not None else device)
    with fake_mode or contextlib.nullcontext():
        materialize(lm, device)
        if fake_mode is None:
            initialize(lm)
        optimizer = build_optimizer(lm, setup)
    return Built(lm, optimizer, autocast_for(setup, device), device, notes)
