"""LLaMA-Factory training YAML (`llamafactory-cli train FILE`) -> setup options.

In scope: LLaMA-Factory's classic format, one flat mapping parsed by HfArgumentParser into the
dataclasses of `src/llamafactory/hparams/` (model_args.py ModelArguments, data_args.py DataArguments,
finetuning_args.py FinetuningArguments, training_args.py TrainingArguments, which extends HF's
Seq2SeqTrainingArguments), as in its examples/train_lora, train_qlora, train_full; hiyouga/LLaMA-Factory
commit ff6d4d12 (after v0.9.5). Out of scope: the v1 format (examples/v1: `model:` with `peft_config`,
`dist_config`, `kernel_config` blocks), refused with one line.

Semantics taken from LLaMA-Factory: the model is loaded with torch_dtype="auto", the checkpoint's own
dtype (model/loader.py; 16-bit for the presets' checkpoints), and bf16/fp16 pick the autocast dtype
(hparams/parser.py `compute_dtype`); trainable parameters are upcast to fp32 unless pure_bf16, BAdam, or
ZeRO-3 without quantization, where they stay fp32 from loading (model/adapter.py
`cast_trainable_params_to_fp32`, init_adapter: "DeepSpeed ZeRO3 detected, remaining trainable params in
float32"); gradient checkpointing is on
unless disable_gradient_checkpointing (model/model_utils/checkpointing.py); lora_alpha defaults to
2 x lora_rank and lora_target "all" means every linear layer (hparams/finetuning_args.py).
"""
from __future__ import annotations

from typing import Any

from ..specs.errors import PlannerError

from . import ConfigSetup
from . import hf, liger
from .common import Options, targets
from .rules import KeyRule, Report, modelled, no_effect, on, read_only_with, refused

SCHEMA = "hiyouga/LLaMA-Factory@ff6d4d12 src/llamafactory/hparams/"
_PACKING = "packing changes the attention mask and the tokens per micro-batch"

_OWN: dict[str, KeyRule] = {
    "model_name_or_path": modelled("--model"),
    "stage": modelled("sft: supervised fine-tuning, as planned; pt/rm/ppo/dpo/kto refused"),
    "do_train": modelled("true: the training run planned"),
    "finetuning_type": modelled("full: --method full; lora: --method lora (qlora with quantization_bit); "
                                "freeze and oft refused"),
    "lora_rank": modelled("--lora-r"),
    "lora_alpha": modelled("--lora-alpha (default 2 x lora_rank)"),
    "lora_dropout": modelled("--lora-dropout"),
    "lora_target": modelled("all: --lora-targets all-linear; a comma list: --lora-targets"),
    "use_rslora": modelled("rank-stabilized scaling alpha/sqrt(r): the same parameters and bytes"),
    "quantization_bit": modelled("4: --method qlora; 8: --method qlora --quant-type int8; --no-kbit-prepare "
                                 "(LLaMA-Factory's own prepare_model_for_training, no fp32 upcast)"),
    "quantization_method": modelled("bnb (bitsandbytes, as planned); hqq/eetq refused"),
    "quantization_type": modelled("nf4/fp4: --quant-type"),
    "double_quantization": modelled("--double-quant"),
    "quantization_device_map": refused("a device map for the quantized model", lambda v: v not in (None, "auto")),
    "cutoff_len": modelled("--seq-len"),
    "bf16": modelled("true: --precision bf16-mixed (bf16-loaded model, fp32 trainable parameters)"),
    "fp16": modelled("true: --precision fp16-mixed"),
    "pure_bf16": modelled("true: bf16 weights, no fp32 upcast: full: --precision bf16-true (bf16-mixed --weights-"
                          "dtype bf16 with bf16: true); LoRA: --adapter-dtype bf16, autocast only with bf16: true"),
    "flash_attn": modelled("auto/sdpa: --attn sdpa; fa2: flash; disabled: eager; fa3 refused"),
    "disable_gradient_checkpointing": modelled("true: --no-grad-ckpt (LLaMA-Factory checkpoints by default)"),
    "use_reentrant_gc": modelled("either way each layer's input is what is saved [torch/utils/checkpoint.py]"),
    "use_kv_cache": modelled("training turns the cache off [model/patcher.py]"),
    "infer_dtype": modelled("inference/export dtype: not used in training"),
    "moe_aux_loss_coef": modelled("MoE router loss weight (a scalar)"),
    "finetuning_args": modelled("read as the keys above"),
    # PackedSupervisedDatasetProcessor concatenates samples into rows of cutoff_len; without neat_packing the
    # attention_mask is all ones (samples attend to each other, no mask) [llamafactory/data/processor/supervised.py]
    "packing": modelled("true: rows of cutoff_len, no mask: as planned (--packing none)"),
    "neat_packing": refused("neat packing: LLaMA-Factory's collator builds its own 4-D attention mask "
                            "(SFTDataCollatorWith4DAttentionMask), not modelled yet"),
    "block_diag_attn": refused(_PACKING),
    "freeze_trainable_layers": modelled("read only with finetuning_type: freeze (refused)"),
    "freeze_trainable_modules": modelled("read only with finetuning_type: freeze (refused)"),
    "freeze_extra_modules": refused("freeze tuning trains extra modules"),
    "oft_rank": modelled("read only with finetuning_type: oft (refused)"),
    "oft_block_size": modelled("read only with finetuning_type: oft (refused)"),
    "oft_target": modelled("read only with finetuning_type: oft (refused)"),
    "module_dropout": refused("OFT module dropout", lambda v: v not in (None, 0, 0.0)),
    "new_special_tokens_config": refused("new special tokens add embedding and lm_head rows"),
    "add_tokens": refused("new tokens add embedding and lm_head rows"),
    "add_special_tokens": refused("new special tokens add embedding and lm_head rows"),
    "resize_vocab": refused("resizing the vocabulary changes the embedding rows"),
    "init_special_tokens": refused("new special tokens add embedding and lm_head rows",
                                   lambda v: v not in (None, "noise_init")),
    "additional_target": refused("additional modules trained in full (modules_to_save)"),
    "use_dora": refused("DoRA adds a magnitude vector and the weight-norm activations per adapted linear"),
    "pissa_init": refused("PiSSA initialization runs an SVD of every adapted weight at load"),
    "pissa_convert": refused("PiSSA conversion"),
    "create_new_adapter": refused("a second adapter on top of a loaded one"),
    "adapter_name_or_path": refused("a loaded adapter's rank and targets come from its own folder"),
    "use_galore": modelled("--optimizer galore-adamw (with optim adamw_torch or unset; LlamaFactory "
                           "train/trainer_utils.py _create_galore_optimizer); --galore-rank (default 16)"),
    "use_apollo": refused("APOLLO keeps projected optimizer states"),
    "use_badam": refused("BAdam trains one block at a time"),
    "use_adam_mini": modelled("--optimizer adam-mini (adam_mini.Adam_mini with the model's hidden size and head "
                              "counts: LlamaFactory train/trainer_utils.py _create_adam_mini_optimizer)"),
    "use_muon": refused("the Muon optimizer"),
    "use_llama_pro": refused("LLaMA Pro expands and trains added blocks"),
    "mixture_of_depths": refused("mixture-of-depths routing"),
    "shift_attn": refused("LongLoRA's shift short attention (S^2-Attn), a monkey patch over flash-attn that "
                          "transformers and peft lack (techniques/lora_variants.py)"),
    "rope_scaling": refused("RoPE scaling changes the context planned"),
    "model_max_length": refused("a tokenizer/model length override"),
    "enable_liger_kernel": modelled("true at stage sft: --liger --liger-before-load (the family's defaults, patched "
                                    "before the model is built) [model_utils/liger_kernel.py; fromconfig/liger.py]"),
    "use_unsloth": refused("Unsloth's patched model saves different activations"),
    "use_unsloth_gc": refused("Unsloth's gradient checkpointing offloads to host memory"),
    "upcast_layernorm": refused("layer norms upcast to fp32"),
    "upcast_lmhead_output": refused("lm_head output upcast to fp32 in the model"),
    "fp8": refused("FP8 training"),
    "fp8_backend": refused("FP8 training"),
    "fp8_enable_fsdp_float8_all_gather": refused("FP8 all-gather"),
    "use_mca": refused("Megatron-Core training"),
    "use_megatron_bridge": refused("Megatron training"),
    "use_hyper_parallel": refused("hyper-parallel (context parallel) training"),
    "hyper_parallel_cp_size": refused("context parallelism", lambda v: v not in (None, 1)),
    "use_v1_kernels": refused("LLaMA-Factory's v1 kernels"),
    "ref_model": refused("a reference model (preference training)"),
    "reward_model": refused("a reward model (PPO)"),
    "ref_model_quantization_bit": refused("a reference model"),
    "reward_model_quantization_bit": refused("a reward model"),
    "train_from_scratch": modelled("random init: the same bytes"),
    "print_param_status": modelled("logging"),
    "device_map": refused("a device map (model split across GPUs / CPU)", lambda v: v not in (None, "auto")),
    "offload_folder": refused("weights offloaded to disk", lambda v: v not in (None, "offload")),
    "enable_torch_profiler": refused("the profiler's active steps run slower and hold traces", lambda v: v is True),
    "compute_accuracy": refused("token accuracy keeps the argmax of every logit", lambda v: v is True),
    "streaming": refused("streamed datasets", lambda v: v is True),
    "use_asft_loss": refused("the ASFT loss"),
    "use_dft_loss": refused("the DFT loss"),
    "use_eaft_loss": refused("the EAFT loss"),
    "compute_dtype": modelled("set by LLaMA-Factory from bf16/fp16 (hparams/parser.py), read there"),
    **read_only_with("use_asft_loss / use_eaft_loss", ["asft_alpha", "eaft_alpha"]),
    **read_only_with("a multimodal model (vision/audio inputs)", [
        "audio_sampling_rate", "crop_to_patches", "image_do_pan_and_scan", "use_audio_in_video", "image_max_pixels",
        "image_min_pixels", "video_max_pixels", "video_min_pixels", "video_fps", "video_maxlen",
        "freeze_language_model", "freeze_multi_modal_projector", "freeze_vision_tower"]),
    **read_only_with("use_hyper_parallel / use_megatron_bridge", ["hyper_parallel_args", "megatron_bridge_args"]),
    **read_only_with("stage: ppo/rm/dpo/kto", ["ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target",
                                               "ppo_whiten_rewards", "pref_bco_weight", "ref_model_adapters",
                                               "reward_model_adapters", "reward_model_type"]),
    **no_effect("the inference backend of chat/predict runs", ["infer_backend"]),
    # LlamaFactory hparams/finetuning_args.py GaloreArguments (defaults: all, 16, 200, 2.0, std, false)
    "galore_target": modelled("all: every decoder-layer linear (find_all_linear_modules leaves lm_head out); "
                              "names: --optim-target-modules"),
    "galore_rank": modelled("--galore-rank [LlamaFactory default 16]"),
    "galore_update_interval": modelled("--galore-update-proj-gap"),
    "galore_layerwise": modelled("true: --optimizer-in-backward (a per-parameter optimizer and hook)"),
    "galore_proj_type": refused("a GaLore projection other than std", lambda v: str(v) != "std",
                                "use galore_proj_type: std"),
    **no_effect("GaLore's update scale (a scalar)", ["galore_scale"]),
    **{k: modelled(f"read only with {k.split('_')[0]} on (refused)") for k in (
        "apollo_target", "apollo_rank", "apollo_update_interval", "apollo_scale",
        "apollo_proj", "apollo_proj_type", "apollo_scale_type", "apollo_layerwise", "apollo_scale_front",
        "badam_mode", "badam_start_block", "badam_switch_mode", "badam_switch_interval", "badam_update_ratio",
        "badam_mask_mode", "badam_verbose", "pissa_iter")},
    **no_effect("data: datasets, templates, splits, preprocessing (not the sequence length: cutoff_len)", [
        "dataset", "dataset_dir", "eval_dataset", "template", "train_on_prompt", "mask_history", "buffer_size",
        "mix_strategy", "interleave_probs", "overwrite_cache", "preprocessing_batch_size", "preprocessing_num_workers",
        "max_samples", "eval_num_beams", "ignore_pad_token_for_loss", "val_size", "eval_on_each_dataset",
        "tokenized_path", "data_shared_file_system", "default_system", "enable_thinking", "preserve_thinking",
        "tool_format", "media_dir", "split_special_tokens", "use_fast_tokenizer", "cache_dir",
        "disable_shuffling"]),
    **no_effect("model source, hubs and loading switches", [
        "model_revision", "trust_remote_code", "hf_hub_token", "ms_hub_token", "om_hub_token", "low_cpu_mem_usage",
        "adapter_folder"]),
    **no_effect("learning rates and preference-loss scalars", [
        "loraplus_lr_ratio", "loraplus_lr_embedding", "pref_beta", "pref_ftx", "pref_loss", "simpo_gamma",
        "dpo_label_smoothing", "kto_chosen_weight", "kto_rejected_weight", "ld_alpha"]),
    **no_effect("logging, plotting and profiling output", [
        "plot_loss", "include_effective_tokens_per_second", "profiler_output_dir", "profiler_wait_steps",
        "profiler_warmup_steps", "profiler_active_steps", "profiler_repeat", "profiler_record_shapes",
        "profiler_profile_memory", "profiler_with_stack", "profile_modules"]),
    **no_effect("evaluation schedule and generation settings of predict runs", [
        "predict_with_generate", "generation_max_length", "generation_num_beams", "generation_config",
        "sortish_sampler", "early_stopping_steps"]),
    **no_effect("process-level switches: Ray workers, rendezvous", [
        "ray_num_workers", "ray_init_kwargs", "master_addr", "master_port"]),
}
# the HF TrainingArguments keys LLaMA-Factory's TrainingArguments inherits (not TRL's own)
TABLE: dict[str, KeyRule] = {**{k: r for k, r in hf.TABLE.items() if k not in hf.TRL_KEYS}, **_OWN}

_ATTN = {"auto": "sdpa", "sdpa": "sdpa", "fa2": "flash", "disabled": "eager", "eager": "eager"}
_V1_KEYS = ("peft_config", "dist_config", "kernel_config", "init_config", "model_class", "train_dataset")


def _galore(d: dict[str, Any], o: Options, rep: Report, path: str) -> None:
    """use_galore: LlamaFactory picks GaLoreAdamW for optim adamw_torch (its transformers' default),
    GaLoreAdamW8bit / GaLoreAdafactor for adamw_bnb_8bit / adafactor (not modelled)."""
    optim = str(d.get("optim") or "adamw_torch")
    if optim not in ("adamw_torch", "adamw_torch_fused"):
        rep.refuse("use_galore", d["use_galore"], f"GaLore with optim {optim}", "use optim: adamw_torch")
        return
    o.use("use_galore", "optimizer", "galore-adamw")
    o.use("galore_rank" if "galore_rank" in d else "use_galore", "galore_rank", int(d.get("galore_rank", 16)))
    if "galore_update_interval" in d:
        o.use("galore_update_interval", "galore_update_proj_gap", int(d["galore_update_interval"]))
    target = str(d.get("galore_target", "all"))
    if target != "all":
        o.use("galore_target", "optim_target_modules", target)
    if on(d.get("galore_layerwise")):
        o.use("galore_layerwise", "optimizer_in_backward", True)


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    if any(k in d for k in _V1_KEYS):
        raise PlannerError(f"{path}: LLaMA-Factory's v1 config format (model/peft_config/dist_config, examples/v1) "
                           "is not read yet; gpuplan reads the classic format of src/llamafactory/hparams "
                           "(finetuning_type, lora_rank, cutoff_len, ...)")
    rep = Report("llamafactory")
    todo = set(rep.classify(TABLE, d))
    o = Options(rep)

    def get(k: str) -> Any:
        return d.get(k) if k in todo else None

    stage = str(d.get("stage", "sft"))
    if stage != "sft":
        rep.refuse("stage", stage, "stages other than sft (pre-training packs; rm/ppo/dpo/kto keep more models "
                   "or pairs)", "use stage: sft")
    if on(get("enable_liger_kernel")) and stage == "sft":   # other stages are refused above
        liger.llamafactory(o)
    ft = str(d.get("finetuning_type", "lora"))    # FinetuningArguments.finetuning_type default: lora
    qbit = get("quantization_bit")
    if ft == "freeze":
        rep.refuse("finetuning_type", ft, "freeze tuning trains only the last freeze_trainable_layers layers",
                   "use full or lora")
    elif ft == "oft":
        rep.refuse("finetuning_type", ft, "OFT adapters (orthogonal fine-tuning)", "use lora")
    elif ft not in ("full", "lora"):
        rep.refuse("finetuning_type", ft, f"finetuning_type {ft}", "use full or lora")
    elif ft == "lora":
        o.use("finetuning_type", "method", "qlora" if qbit else "lora")
    else:
        o.use("finetuning_type", "method", "full")
        if qbit:
            rep.refuse("quantization_bit", qbit, "training quantized weights without an adapter",
                       "use finetuning_type: lora")
    method = o.get("method", "full")
    if qbit and method == "qlora":
        if int(qbit) == 8:
            o.use("quantization_bit", "quant_type", "int8")
        elif int(qbit) != 4:
            rep.refuse("quantization_bit", qbit, f"{qbit}-bit quantization", "use 4 or 8")
        else:
            rep.set("quantization_bit", "4-bit base")
        qm = str(d.get("quantization_method", "bnb"))
        if qm not in ("bnb", "bitsandbytes"):
            rep.refuse("quantization_method", qm, f"{qm} quantization", "use bnb")
        if get("quantization_type") and int(qbit) == 4:
            o.use("quantization_type", "quant_type", str(d["quantization_type"]))
        if get("double_quantization") is not None and int(qbit) == 4:
            o.use("double_quantization", "double_quant", bool(on(d["double_quantization"])))
    bf16, fp16, pure = on(get("bf16")), on(get("fp16")), on(get("pure_bf16"))
    if pure:
        # pure_bf16 loads bf16 (compute_dtype) and keeps the trainable parameters bf16; the Trainer
        # autocasts only where bf16 is set too, which LLaMA-Factory allows (hparams/parser.py
        # get_train_args checks only the device and ZeRO-3): bf16 weights with or without autocast
        if method == "full":
            o.use("pure_bf16", "precision", "bf16-mixed" if bf16 else "bf16-true")
            if bf16:
                o.use("pure_bf16", "weights_dtype", "bf16")
        else:
            o.use("pure_bf16", "precision", "bf16-mixed" if bf16 else "bf16-true")
            o.use("pure_bf16", "adapter_dtype", "bf16")
            if method == "lora":
                o.use("pure_bf16", "base_dtype", "bf16")
    elif bf16 or fp16:
        half = "bf16" if bf16 else "fp16"
        o.use(half, "precision", f"{half}-mixed")
        if method == "lora":   # the frozen base stays in the compute dtype it was loaded in
            o.use(half, "base_dtype", half)
        if method == "qlora":  # cast_trainable_params_to_fp32 (model/adapter.py init_adapter): fp32 adapters
            o.use(half, "adapter_dtype", "fp32")
    if method == "qlora":
        # LLaMA-Factory prepares a quantized model with its own prepare_model_for_training
        # (model/model_utils/checkpointing.py), not peft's prepare_model_for_kbit_training: the
        # non-quantized weights keep the load dtype unless upcast_layernorm (refused above)
        o.use("quantization_bit", "kbit_upcast", False)
    if get("cutoff_len") is not None:
        o.use("cutoff_len", "seq_len", int(d["cutoff_len"]))
    if method != "full":
        r = int(d["lora_rank"]) if get("lora_rank") is not None else 8   # FinetuningArguments.lora_rank default
        if get("lora_rank") is not None:
            o.use("lora_rank", "lora_r", r)
        alpha = float(d["lora_alpha"]) if get("lora_alpha") is not None else float(2 * r)
        o.use("lora_alpha" if get("lora_alpha") is not None else "lora_rank", "lora_alpha", alpha)
        if get("lora_dropout") is not None:
            o.use("lora_dropout", "lora_dropout", float(d["lora_dropout"]))
        tgt = d.get("lora_target", "all")
        t = "all-linear" if str(tgt).strip() == "all" else targets(tgt)
        if t:
            o.use("lora_target" if "lora_target" in d else "finetuning_type", "lora_targets", t)
    attn = get("flash_attn")
    if attn is not None:
        if str(attn) in _ATTN:
            o.use("flash_attn", "attn", _ATTN[str(attn)])
        else:
            rep.refuse("flash_attn", attn, f"the {attn} attention kernel", "use auto, sdpa, fa2 or disabled")
    o.use("disable_gradient_checkpointing" if "disable_gradient_checkpointing" in d else "finetuning_type",
          "grad_ckpt", not on(d.get("disable_gradient_checkpointing")))
    ngpus = hf.trainer_args(d, todo, o, path)
    if on(get("use_galore")):   # after the Trainer's keys: it replaces what `optim` mapped to
        _galore(d, o, rep, path)
    if on(get("use_adam_mini")):
        o.use("use_adam_mini", "optimizer", "adam-mini")
    model = get("model_name_or_path")
    if model:
        rep.set("model_name_or_path", f"--model {model}")
    for k in todo:
        rep.fallback(k, d[k], TABLE[k].note)
    return ConfigSetup.of("llamafactory", model, o, rep, implied_gpus=ngpus)
