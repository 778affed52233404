"""HF `TrainingArguments` / TRL `SFTConfig` (+ TRL `ModelConfig` and `ScriptArguments` keys of
`trl sft --config`, + alignment-handbook's data keys), JSON or YAML -> setup options.

Key table: the dataclass fields of transformers 5.24 `TrainingArguments` (transformers/training_args.py;
4.x names that 5.x dropped are listed too), TRL v1.9.0 (commit f2cd5771) `SFTConfig`
(trl/trainer/sft_config.py), `ModelConfig` (trl/trainer/model_config.py) and `ScriptArguments`
(trl/scripts/utils.py); tests/planner/test_fromconfig.py checks the table against the installed
transformers' TrainingArguments fields.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ConfigSetup, liger
from . import compile as compile_keys   # torch.compile's keys (not the builtin)
from . import ppo as ppo_keys   # TRL 1.12's PPOConfig keys
from .common import Options, fsdp_words, precision, read_deepspeed, read_fsdp, read_optim, targets
from .rules import KeyRule, Report, modelled, no_effect, on, refused, show

SCHEMA = "transformers 5.24 TrainingArguments; TRL v1.9.0 SFTConfig, ModelConfig, ScriptArguments"

_PACKING = "packing changes the attention mask and the tokens per micro-batch"
_EVAL_BATCH = ("with evaluation on (eval_strategy steps/epoch, or do_eval): --eval-batch-size, the eval phase planned "
               "beside the step [planner/memory/evaluation.py]; no effect when no evaluation runs")
_EVAL_ON = ("steps/epoch (or do_eval: true): evaluation runs, so the eval phase is planned at per_device_eval_batch_size "
            "(TrainingArguments' default 8) [transformers/training_args.py]")

TABLE: dict[str, KeyRule] = {
    # --- mapped [TrainingArguments, SFTConfig, ModelConfig] ---
    # GRPOConfig [trl/trainer/grpo_config.py, TRL 1.16.0]: num_generations marks a GRPO config
    "num_generations": modelled("--objective grpo --loss trl --num-generations (GRPOTrainer; its prompts' length is the "
                                "data's: give --seq-len, prompt + completion)"),
    "max_completion_length": modelled("with num_generations: --max-completion-length (decoded to full length)"),
    "steps_per_generation": modelled("with num_generations: --steps-per-generation"),
    "beta": modelled("with num_generations: --kl-beta (> 0 keeps a reference model); DPO/KTO/ORPO: the loss's scale"),
    "generation_batch_size": refused("a generation batch given in completions (it depends on the GPU count)",
                                     fix="give --steps-per-generation instead"),
    "use_vllm": modelled("with num_generations and vllm_mode colocate (TRL's default): --vllm-colocate "
                         "vllm_gpu_memory_utilization (default 0.3) of each GPU; server mode: --vllm-server-gpus"),
    "vllm_mode": modelled("colocate: as planned; server: generation on other GPUs (trl vllm-serve), planned with "
                          "--vllm-server-gpus N, whose count the config does not give"),
    "ds3_gather_for_generation": modelled("false: --no-ds3-gather-for-generation (ZeRO-3 gathers module by module "
                                          "during generate); true (default): the whole 16-bit policy gathered"),
    "vllm_gpu_memory_utilization": modelled("with use_vllm: --vllm-colocate"),
    "vllm_enable_sleep_mode": refused("vLLM's sleep mode frees its share during the training step"),
    "vllm_tensor_parallel_size": modelled("with use_vllm: inside vLLM's own share of each GPU"),
    "vllm_max_model_length": modelled("with use_vllm: inside vLLM's own share of each GPU (its cache sizing)"),
    "model_name_or_path": modelled("--model"),
    "per_device_train_batch_size": modelled("--batch-size"),
    "per_gpu_train_batch_size": modelled("--batch-size (4.x name)"),
    "gradient_accumulation_steps": modelled("--grad-accum"),
    "max_length": modelled("--seq-len (SFTConfig: sequences truncated to it)"),
    "max_seq_length": modelled("--seq-len (SFTConfig's name before TRL 0.20)"),
    "gradient_checkpointing": modelled("--grad-ckpt / --no-grad-ckpt"),
    "gradient_checkpointing_kwargs": modelled("use_reentrant either way: each layer's input is what is saved "
                                              "[torch/utils/checkpoint.py]; every_n_layers: --ckpt-every; offload: "
                                              "--activation-offload layer-inputs [trainer.py, transformers 5.24]"),
    "activation_checkpointing": modelled("true: --grad-ckpt (FSDP activation checkpointing)"),
    "activation_checkpointing_kwargs": modelled("use_reentrant either way: each layer's input is what is saved; "
                                                "every_n_layers: --ckpt-every; offload: --activation-offload layer-inputs"),
    **{k: modelled("eval-phase output handling: after the training step gpuplan plans (eval batch refused when "
                   "larger than training's)") for k in ("eval_do_concat_batches", "eval_use_gather_object",
                                                      "batch_eval_metrics")},
    "optim": modelled("--optimizer (transformers OptimizerNames)"),
    "bf16": modelled("true: --precision bf16-mixed (autocast), with a bf16-loaded full model --weights-dtype bf16; "
                     "false (and fp16 false) with a bf16-loaded full model: bf16-true"),
    "fp16": modelled("true: --precision fp16-mixed"),
    "tf32": modelled("bf16/fp16 runs: matmuls are 16-bit, TF32 does not apply; with fp32 training refused"),
    "use_peft": modelled("true: --method lora (qlora with load_in_4bit/8bit)"),
    "load_in_4bit": modelled("with use_peft: --method qlora"),
    "load_in_8bit": modelled("with use_peft: --method qlora --quant-type int8"),
    "bnb_4bit_quant_type": modelled("--quant-type"),
    "use_bnb_nested_quant": modelled("--double-quant"),
    "bnb_4bit_quant_storage": modelled("uint8 (bitsandbytes' default storage) as planned; others refused"),
    "lora_r": modelled("--lora-r"),
    "lora_alpha": modelled("--lora-alpha"),
    "lora_dropout": modelled("--lora-dropout"),
    "lora_target_modules": modelled("--lora-targets"),
    "lora_task_type": modelled("CAUSAL_LM (the task planned); SEQ_CLS: --objective rm (TRL's ModelConfig: \"use "
                               "'SEQ_CLS' for reward modeling\"); others refused"),
    # RewardConfig [trl/trainer/reward_config.py, TRL 1.14]: center_rewards_coefficient marks a reward config
    "center_rewards_coefficient": modelled("--objective rm (RewardTrainer); the centring term's tensors are b "
                                           "elements (compute_loss): nothing more planned"),
    "disable_dropout": modelled("true (RewardConfig's / DPOConfig's default): dropout modules set to p=0; planned as "
                                "the model's config dropout (0 for Llama, Qwen, Mistral, Gemma); false: as planned"),
    "use_rslora": modelled("rank-stabilized scaling alpha/sqrt(r): the same parameters and bytes"),
    "attn_implementation": modelled("flash_attention_2: --attn flash; sdpa; eager; others refused"),
    "dtype": modelled("the load dtype: bfloat16/float16: full: --weights-dtype (under bf16/fp16 autocast; "
                      "--precision *-true with both off); LoRA: --base-dtype; float32: as planned; auto refused"),
    "torch_dtype": modelled("as dtype (the name before transformers 4.56)"),
    "use_liger_kernel": modelled("true: --liger (the family's apply_liger_kernel_to_* defaults: RMSNorm, RoPE, "
                                 "SwiGLU/GeGLU, fused linear cross-entropy = --loss chunked) [fromconfig/liger.py]"),
    "liger_kernel_config": modelled("with use_liger_kernel: --liger-kernels, the dict's kernels over the defaults "
                                    "(cross_entropy: Liger's in-place cross-entropy over the fp32 logits)"),
    "deepspeed": modelled("a DeepSpeed JSON (path relative to the config file) or inline dict: --zero/--offload"),
    "fsdp": modelled("full_shard/shard_grad_op/hybrid_shard: --fsdp; offload: --offload params"),
    "fsdp_config": modelled("sharding strategy, offload_params, activation_checkpointing [training_args.py]"),
    "fsdp_transformer_layer_cls_to_wrap": modelled("one FSDP unit per decoder layer, as planned (4.x name)"),
    "per_device_eval_batch_size": modelled(_EVAL_BATCH),
    "per_gpu_eval_batch_size": modelled(_EVAL_BATCH),
    "use_cache": modelled("false in training: no KV cache is kept (as planned); true refused"),
    "model_init_kwargs": modelled("from_pretrained kwargs: dtype and attn_implementation read; others refused"),
    "ddp_find_unused_parameters": modelled("a graph walk after forward: no extra memory"),
    "ddp_broadcast_buffers": modelled("buffer broadcast: no extra gradient memory"),
    "ddp_backend": modelled("nccl: the collective backend planned"),
    "use_cpu": refused("CPU training", lambda v: v is True),
    "no_cuda": refused("CPU training", lambda v: v is True),
    # --- memory-relevant, not modelled yet ---
    # packing and padding [trl/trainer/sft_trainer.py v1.16.0: padding_free = args.padding_free or (packing and
    # packing_strategy in {bfd, bfd_split}); DataCollatorForLanguageModeling: padding-free flattens the
    # micro-batch into one row with restarting position_ids, else pads to the longest with an attention_mask]
    "packing": modelled("true: --packing flattened (bfd, TRL's default strategy, switches padding_free on); "
                        "with packing_strategy wrapped: full rows, no mask, as planned"),
    "packing_strategy": modelled("bfd / bfd_split: padding-free (--packing flattened); wrapped: full rows"),
    # a tokenizer to clone the template from adds its special tokens: embedding rows, and lm_head in full for PEFT
    # [trl/trainer/sft_trainer.py: clone_chat_template unless the path is a .jinja/.j2 file]
    "chat_template_path": refused("cloning another tokenizer's chat template adds its tokens (embedding rows; "
                                  "lm_head trained in full with PEFT)",
                                  lambda v: v is not None and not str(v).endswith((".jinja", ".j2")),
                                  "give a .jinja file to plan the rest"),
    "eval_packing": modelled("packing of the eval set: eval runs without gradients, below the training step"),
    "padding_free": modelled("true: --packing flattened (one row of the micro-batch's samples); DPOTrainer "
                             "disables it and pads (--padding longest) [trl/trainer/dpo_trainer.py v1.16.0]"),
    "pad_to_multiple_of": modelled("an int: --padding longest, --seq-len rounded up to the multiple; "
                                   "auto/null: no padding beyond the longest (off Neuron)"),
    "activation_offloading": modelled("true: --activation-offload trl (SFTConfig/DPOConfig: TRL's OffloadActivations "
                                      "around each training step [trl/models/activation_offloading.py])"),
    "torch_compile": modelled("true: --compile inductor (torch.compile(model) by accelerate; the min-cut "
                              "partitioner's saved set) [fromconfig/compile.py]"),
    "torch_compile_backend": modelled("inductor (also switches torch_compile on); other backends refused"),
    "torch_compile_mode": modelled("default / max-autotune-no-cudagraphs; the CUDA-graph modes refused"),
    "torchdynamo": refused("torch.compile"),
    "use_dora": refused("DoRA adds a magnitude vector and the weight-norm activations per adapted linear"),
    "lora_modules_to_save": refused("modules_to_save trains full copies of those modules (and their optimizer state)"),
    "lora_target_parameters": refused("LoRA on raw parameters (MoE experts) is not planned"),
    "neftune_noise_alpha": refused("NEFTune adds a noise tensor to the embeddings"),
    "auto_find_batch_size": refused("the batch size is halved after an OOM: give per_device_train_batch_size"),
    "parallelism_config": refused("accelerate N-D parallelism (context / tensor parallel)"),
    "bf16_full_eval": refused("eval in pure bf16 (eval phase not modelled)"),
    "fp16_full_eval": refused("eval in pure fp16 (eval phase not modelled)"),
    "eval_accumulation_steps": modelled("with evaluation on: --eval-accumulation-steps (predictions move to the host "
                                        "after that many steps; they are kept only with a compute_metrics)"),
    "eval_strategy": modelled(_EVAL_ON),
    "evaluation_strategy": modelled(_EVAL_ON + " (the name before transformers 4.46)"),
    "do_eval": modelled(_EVAL_ON),
    "ddp_bucket_cap_mb": refused("DDP gradient buckets of a custom size", lambda v: v not in (None, 25)),
    "ddp_static_graph": refused("DDP static graph", lambda v: v is True),
    "fsdp_min_num_params": refused("size-based FSDP wrapping makes units other than one decoder layer",
                                   lambda v: v not in (None, 0)),
    "label_smoothing_factor": refused("label smoothing builds a second fp32 logits-sized term in the loss",
                                      lambda v: v not in (None, 0, 0.0)),
    "loss_type": modelled("chunked_nll: --loss chunked-nll (TRL 1.13-1.14 SFTTrainer's default, trl/trainer/"
                          "sft_config.py l.332-334); nll: the model's own loss, as planned; others (dft) refused"),
    "router_aux_loss_coef": modelled("MoE router loss weight (a scalar)"),
    "assistant_only_loss": modelled("loss masked to assistant tokens: the same logits and loss bytes"),
    "completion_only_loss": modelled("loss masked to completion tokens: the same logits and loss bytes"),
    "optim_target_modules": modelled("GaLore: --optim-target-modules (names or regexes, or all-linear)"),
    "optim_args": modelled("--optim-args: rank, update_proj_gap, block_size read; proj_type other than std refused"),
    "average_tokens_across_devices": modelled("loss normalization (a scalar all-reduce)"),
    "half_precision_backend": refused("apex AMP", lambda v: v == "apex"),
    "fp16_backend": refused("apex AMP", lambda v: v == "apex"),
    "sharded_ddp": refused("FairScale sharded DDP", lambda v: v not in (None, "", [], False)),
    "use_ipex": refused("Intel IPEX"),
    "jit_mode_eval": refused("TorchScript eval"),
    "tpu_num_cores": refused("TPU training"),
    # --- no effect on per-GPU memory or step time ---
    **no_effect("data: datasets, splits, text fields, templates, preprocessing", [
        "dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split", "dataset_streaming",
        "dataset_mixture", "datasets", "dataset_text_field", "dataset_kwargs", "dataset_num_proc", "dataset_batch_size",
        "dataset_splits", "dataset_configs", "dataset_path", "chat_template", "eos_token",
        "pad_token", "truncation_mode", "shuffle_dataset", "remove_unused_columns", "label_names",
        "length_column_name", "group_by_length", "train_sampling_strategy", "dataloader_drop_last",
        "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
        "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "dataloader_in_order",
        "preprocessing_num_workers", "truncation_side", "auto_insert_empty_system_msg", "text_column",
        "ignore_bias_buffers", "data_seed", "data_dir", "data_files", "max_train_samples", "max_eval_samples"]),
    **no_effect("model source and loading switches", [
        "model_revision", "trust_remote_code", "tokenizer_name_or_path", "hub_token", "use_auth_token"]),
    **no_effect("optimizer hyperparameters and learning-rate schedule (scalars)", [
        "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio",
        "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "num_train_epochs",
        "max_steps", "seed", "full_determinism", "ignore_data_skip"]),
    **no_effect("logging, tracking and reporting", [
        "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
        "include_num_input_tokens_seen", "include_tokens_per_second", "log_level", "log_level_replica",
        "disable_tqdm", "report_to", "run_name", "project", "trackio_space_id", "trackio_bucket_id",
        "trackio_static_space_id", "logging_dir", "skip_memory_metrics", "debug", "local_rank"]),
    **no_effect("saving, hub upload and resuming (host-side)", [
        "output_dir", "overwrite_output_dir", "save_only_model", "save_strategy", "save_steps", "save_on_each_node",
        "save_total_limit", "save_safetensors", "enable_jit_checkpoint", "push_to_hub", "hub_private_repo",
        "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision", "load_best_model_at_end",
        "metric_for_best_model", "greater_is_better", "resume_from_checkpoint",
        "restore_callback_states_from_checkpoint"]),
    **no_effect("evaluation schedule and metrics (when and what, not the eval batch)", [
        "eval_steps", "eval_delay", "prediction_loss_only", "eval_on_start",
        "include_for_metrics", "include_inputs_for_metrics", "do_train", "do_predict"]),
    **no_effect("process-level switches: timeouts, cache clearing, accelerator plumbing", [
        "ddp_timeout", "torch_empty_cache_steps", "accelerator_config"]),
}

# the keys of TRL's ModelConfig / SFTConfig / ScriptArguments (not of TrainingArguments itself)
TRL_KEYS = frozenset({
    "model_name_or_path", "max_length", "max_seq_length", "use_peft", "load_in_4bit", "load_in_8bit",
    "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "lora_task_type", "use_rslora", "attn_implementation", "dtype", "torch_dtype",
    "model_init_kwargs", "packing", "packing_strategy", "eval_packing", "padding_free", "pad_to_multiple_of", "activation_offloading",
    "use_dora", "lora_modules_to_save", "lora_target_parameters", "loss_type", "router_aux_loss_coef",
    "assistant_only_loss", "completion_only_loss", "dataset_name", "dataset_config", "dataset_train_split",
    "dataset_test_split", "dataset_streaming", "dataset_mixture", "datasets", "dataset_text_field", "dataset_kwargs",
    "dataset_num_proc", "dataset_batch_size", "chat_template", "chat_template_path", "eos_token", "pad_token",
    "truncation_mode", "shuffle_dataset", "model_revision", "trust_remote_code", "use_cache"})

_ATTN = {"flash_attention_2": "flash", "sdpa": "sdpa", "eager": "eager"}
_DTYPE = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "float32": "fp32", "fp32": "fp32"}


def _checkpointing_kwargs(d: dict[str, Any], todo: set[str], o: Options) -> None:
    """every_n_layers and offload of (gradient|activation)_checkpointing_kwargs: Trainer pops both before
    the rest reaches torch.utils.checkpoint and passes them to activation_checkpointing_enable
    [transformers 5.24 trainer.py; modeling_utils.py _set_gradient_checkpointing: layer_index %
    every_n_layers == 0; _activation_checkpointing_enable: offload wraps each checkpoint in save_on_cpu]."""
    for key in ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"):
        kw = d.get(key) if key in todo else None
        if not isinstance(kw, dict):
            continue
        every = kw.get("every_n_layers")
        if every is not None and int(every) > 1:
            o.use(key, "ckpt_every", int(every))
        if on(kw.get("offload")):
            o.use(key, "activation_offload", "layer-inputs")


def _eval_phase(d: dict[str, Any], todo: set[str], o: Options) -> None:
    """The eval phase, when the config evaluates: Trainer evaluates every eval_steps or epoch unless
    eval_strategy is "no" (its default; do_eval alone does not schedule one, but the config says an
    evaluation is run) at per_device_eval_batch_size, default 8 [transformers 5.24 training_args.py]."""
    rep = o.report
    strategy = next((str(d[k]) for k in ("eval_strategy", "evaluation_strategy") if k in todo and d[k] is not None), "no")
    evaluates = strategy.lower() not in ("no", "intervalstrategy.no") or on(d.get("do_eval") if "do_eval" in todo else None)
    keys = [k for k in ("per_device_eval_batch_size", "per_gpu_eval_batch_size") if k in todo and d[k] is not None]
    if not evaluates:
        for k in keys + [k for k in ("eval_accumulation_steps",) if k in todo and d[k] is not None]:
            rep.set(k, f"{show(d[k])}: no evaluation runs (eval_strategy no), no effect")
        for k in ("eval_strategy", "evaluation_strategy", "do_eval"):
            if k in todo:
                rep.set(k, f"{show(d[k])}: no evaluation, as gpuplan plans")
        return
    source = next((k for k in ("eval_strategy", "evaluation_strategy", "do_eval") if k in todo), None)
    if keys:
        o.use(keys[0], "eval_batch_size", int(d[keys[0]]))
    elif source:
        o.use(source, "eval_batch_size", 8)   # TrainingArguments.per_device_eval_batch_size
    for k in ("eval_strategy", "evaluation_strategy", "do_eval"):
        if k in todo and k not in rep.used:
            rep.set(k, f"{show(d[k])}: evaluation runs (the eval phase)")
    if "eval_accumulation_steps" in todo and d["eval_accumulation_steps"] is not None:
        o.use("eval_accumulation_steps", "eval_accumulation_steps", int(d["eval_accumulation_steps"]))


TABLE.update(ppo_keys.TABLE)   # TRL 1.12.0's PPOConfig [planner/fromconfig/ppo.py]


def trainer_args(d: dict[str, Any], todo: set[str], o: Options, path: str) -> int | None:
    """Map the TrainingArguments keys every HF-Trainer-based format shares (batch, accumulation,
    checkpointing, optimizer, Liger, cache, eval batch, DeepSpeed, FSDP); returns the GPU count a
    DeepSpeed config implies, or None."""
    rep = o.report

    def get(k: str) -> Any:
        return d.get(k) if k in todo else None

    for key, opt in (("per_device_train_batch_size", "batch_size"), ("per_gpu_train_batch_size", "batch_size"),
                     ("gradient_accumulation_steps", "grad_accum")):
        if get(key) is not None:
            o.use(key, opt, int(d[key]))
    for key in ("gradient_checkpointing", "activation_checkpointing"):
        if key in todo and (key == "gradient_checkpointing" or on(d[key])):
            o.use(key, "grad_ckpt", bool(on(d[key])))
    _checkpointing_kwargs(d, todo, o)
    if "activation_offloading" in todo:
        if on(d["activation_offloading"]):
            o.use("activation_offloading", "activation_offload", "trl")
        else:   # off: worded as before it was modelled
            rep.set("activation_offloading", f"{show(d['activation_offloading'])}: as gpuplan plans")
    if get("optim"):
        read_optim(d, "optim", path, o)
    if on(get("use_liger_kernel")):
        liger.hf(get("liger_kernel_config"), o)
    loss_type = get("loss_type")
    if loss_type == "chunked_nll":
        o.use("loss_type", "loss", "chunked-nll")
    elif loss_type not in (None, "nll"):
        rep.refuse("loss_type", loss_type, "a loss other than negative log-likelihood", "use nll or chunked_nll")
    elif loss_type == "nll":
        rep.set("loss_type", "nll: the model's own loss, as planned")
    compile_keys.read("torch_compile", get("torch_compile"), get("torch_compile_backend"), get("torch_compile_mode"), o)
    if on(get("use_cache")):
        rep.refuse("use_cache", True, "a KV cache kept during training", "set it false")
    _eval_phase(d, todo, o)
    _grpo(d, todo, o)
    if "center_rewards_coefficient" in todo:   # a RewardConfig (the key is its own) [trl/trainer/reward_config.py]
        o.use("center_rewards_coefficient", "objective", "rm")
    ngpus = None
    if get("deepspeed"):
        ngpus = read_deepspeed(d["deepspeed"], Path(path).parent, o, "deepspeed")
    if get("fsdp"):
        fcfg = get("fsdp_config")
        if isinstance(fcfg, str):
            rep.refuse("fsdp_config", fcfg, "an fsdp_config JSON file path is not read yet", "inline it")
            fcfg = None
        read_fsdp(fsdp_words(d["fsdp"]), fcfg, o, "fsdp", "fsdp_config", default_version=2, default_orig_params=True)
    return ngpus


def _grpo(d: dict[str, Any], todo: set[str], o: Options) -> None:
    """A GRPOConfig (num_generations set): GRPOTrainer with HF generate [trl/trainer/grpo_config.py 1.16.0]."""
    get = lambda k: d.get(k) if k in todo else None   # noqa: E731
    if get("num_generations") is None:
        return
    o.use("num_generations", "objective", "grpo")
    o.use("num_generations", "loss", "trl")
    o.use("num_generations", "num_generations", int(d["num_generations"]))
    if get("max_completion_length") is not None:
        o.use("max_completion_length", "completion_len", int(d["max_completion_length"]))
    if get("steps_per_generation") is not None:
        o.use("steps_per_generation", "steps_per_generation", int(d["steps_per_generation"]))
    if get("beta") is not None:
        o.use("beta", "kl_beta", float(d["beta"]))
    if on(get("use_vllm")):
        mode = str(get("vllm_mode") or "colocate")
        if mode == "server":
            o.report.refuse_unless_given("vllm_mode", mode, "generation on a vLLM server's GPUs, which the config does "
                                         "not count", "vllm_server_gpus")
        elif mode != "colocate":
            o.report.refuse("vllm_mode", mode, "a vLLM mode other than colocate and server", "use one of them")
        else:
            o.use("use_vllm", "vllm_colocate", float(get("vllm_gpu_memory_utilization") or 0.3))
    if get("ds3_gather_for_generation") is not None and not on(get("ds3_gather_for_generation")):
        o.use("ds3_gather_for_generation", "ds3_gather_for_generation", False)
    if "seq_len" not in o:
        o.report.refuse_unless_given("num_generations", d["num_generations"], "GRPO's prompts are as long as the "
                                     "data's (GRPOConfig has no prompt length)", "seq_len")


def packing_options(d: dict[str, Any], get, o: Options) -> None:
    """TRL's packing / padding_free / pad_to_multiple_of as the SFT collator applies them."""
    dpo = any(k in d for k in ("beta", "ref_model_init_kwargs", "precompute_ref_log_probs", "rpo_alpha"))
    strategy = str(get("packing_strategy") or "bfd")
    if on(get("padding_free")):
        if dpo:   # "padding_free=True is temporarily unavailable ... Falling back to standard padding"
            o.use("padding_free", "padding", "longest")
        else:
            o.use("padding_free", "packing", "flattened")
    elif on(get("packing")) and strategy in ("bfd", "bfd_split"):
        o.use("packing", "packing", "flattened")
        if get("packing_strategy"):
            o.report.set("packing_strategy", f"{strategy}: padding-free rows")
    elif on(get("packing")):
        o.report.set("packing", f"true with packing_strategy {strategy}: rows of max_length, no mask, as planned")
    multiple = get("pad_to_multiple_of")
    if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple > 1 and "packing" not in o:
        o.use("pad_to_multiple_of", "padding", "longest")
        seq = o.get("seq_len")
        if seq:
            o.use("pad_to_multiple_of", "seq_len", -(-int(seq) // multiple) * multiple)


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    rep = Report("hf")
    todo = set(rep.classify(TABLE, d))
    o = Options(rep)

    def get(k: str) -> Any:
        return d.get(k) if k in todo else None

    peft = on(get("use_peft"))
    if get("load_in_4bit") or get("load_in_8bit"):
        key = "load_in_4bit" if get("load_in_4bit") else "load_in_8bit"
        if not peft:
            rep.refuse(key, True, "training quantized weights without an adapter", "set use_peft: true (QLoRA)")
        else:
            o.use(key, "method", "qlora")
            if get("load_in_8bit"):
                o.use(key, "quant_type", "int8")
            if get("bnb_4bit_quant_type"):
                o.use("bnb_4bit_quant_type", "quant_type", str(d["bnb_4bit_quant_type"]))
            if get("use_bnb_nested_quant") is not None:
                o.use("use_bnb_nested_quant", "double_quant", bool(on(d["use_bnb_nested_quant"])))
    elif peft:
        o.use("use_peft", "method", "lora")
    method = o.get("method", "full")
    if get("bnb_4bit_quant_storage") not in (None, "uint8"):
        rep.refuse("bnb_4bit_quant_storage", d["bnb_4bit_quant_storage"], "4-bit weights stored in a wider dtype",
                   "use uint8")
    mik = get("model_init_kwargs") or {}
    if not isinstance(mik, dict):
        mik = {}
    dkey = next((k for k in ("dtype", "torch_dtype") if get(k) is not None), None)
    dval = d[dkey] if dkey else mik.get("dtype", mik.get("torch_dtype"))
    dkey = dkey or ("model_init_kwargs" if dval is not None else None)
    other = sorted(set(mik) - {"dtype", "torch_dtype", "attn_implementation", "revision", "trust_remote_code",
                               "use_cache"})
    if other:
        rep.refuse("model_init_kwargs", ", ".join(other), "from_pretrained keyword arguments gpuplan does not read",
                   "remove them to plan the rest")
    load = None
    if dval is not None:
        load = _DTYPE.get(str(dval).replace("torch.", ""))
        if load is None:
            rep.refuse(dkey, dval, "the checkpoint's own dtype (auto) is not read from the preset",
                       "give bfloat16, float16 or float32")
    bf16, fp16 = on(get("bf16")), on(get("fp16"))
    # HF Trainer autocasts under bf16/fp16=True [training_args.py]; the weights keep the load dtype: a
    # bf16-loaded full model trains bf16 weights, gradients and AdamW states, under autocast where
    # bf16/fp16 is on (TRL's SFTConfig turns bf16 on when neither is given [trl/trainer/sft_config.py
    # __post_init__]); with both set false, without it (gpuplan's bf16-true).
    no_autocast = not (bf16 or fp16) and ("bf16" in d or "fp16" in d)
    if method == "full" and load in ("bf16", "fp16") and no_autocast:
        o.use(dkey, "precision", f"{load}-true")
    elif method == "full" and load in ("bf16", "fp16"):
        half = "bf16" if bf16 or not fp16 else "fp16"
        o.use("bf16" if bf16 else "fp16" if fp16 else dkey, "precision", f"{half}-mixed")
        o.use(dkey, "weights_dtype", load)
    else:
        prec = precision(bf16, fp16)
        if prec:
            o.use("bf16" if bf16 else "fp16", "precision", prec)
        if load in ("bf16", "fp16") and method == "lora":
            o.use(dkey, "base_dtype", load)
        elif load and dkey not in rep.used:
            rep.set(dkey, f"{load} load: as planned" if method != "qlora" else
                    f"{load}: QLoRA's compute dtype for the 4-bit base")
    if not (bf16 or fp16) and on(get("tf32")) and "precision" not in o:
        rep.refuse("tf32", d["tf32"], "TF32 matmuls under fp32 training run at TF32 speed, which the step time "
                   "does not model", "set it false, or bf16: true")
    seq_key = next((k for k in ("max_length", "max_seq_length") if get(k) is not None), None)
    if seq_key:
        o.use(seq_key, "seq_len", int(d[seq_key]))
    if method != "full":
        for key, opt, conv in (("lora_r", "lora_r", int), ("lora_alpha", "lora_alpha", float),
                               ("lora_dropout", "lora_dropout", float)):
            if get(key) is not None:
                o.use(key, opt, conv(d[key]))
        if targets(get("lora_target_modules")):
            o.use("lora_target_modules", "lora_targets", targets(d["lora_target_modules"]))
    if get("lora_task_type") == "SEQ_CLS":   # the score head in modules_to_save [peft PeftModelForSequenceClassification]
        o.use("lora_task_type", "objective", "rm")
    elif get("lora_task_type") not in (None, "CAUSAL_LM"):
        rep.refuse("lora_task_type", d["lora_task_type"], "only causal-LM adapters are planned", "use CAUSAL_LM")
    attn = get("attn_implementation") or mik.get("attn_implementation")
    if attn:
        akey = "attn_implementation" if get("attn_implementation") else "model_init_kwargs"
        if attn in _ATTN:
            o.use(akey, "attn", _ATTN[attn])
        else:
            rep.refuse(akey, attn, f"the {attn} attention kernel", "use flash_attention_2, sdpa or eager")
    packing_options(d, get, o)
    ngpus = trainer_args(d, todo, o, path)
    if method == "lora" and load in ("bf16", "fp16") and o.get("zero") == 3:
        # TRL passes autocast_adapter_dtype=False to get_peft_model under ZeRO-3 with a non-quantized base:
        # the adapters stay in the base dtype [trl/trainer/sft_trainer.py, v1.9.0, TRL issue #6089]
        o.use(dkey, "adapter_dtype", load)
    ppo_keys.read(d, todo, o)   # a PPOConfig: --objective ppo and its knobs
    model = get("model_name_or_path")
    if model:
        rep.set("model_name_or_path", f"--model {model}")
    elif get("sft_model_path"):   # PPOConfig: the policy TRL's example loads
        model = get("sft_model_path")
        rep.set("sft_model_path", f"--model {model}")
    for k in todo:
        rep.fallback(k, d[k], "no adapter (use_peft unset): not read"
                     if k.startswith(("lora_", "bnb_", "use_bnb")) and method == "full" else
                     "fsdp unset: not read" if k == "fsdp_config" and not get("fsdp") else TABLE[k].note)
    return ConfigSetup.of("hf", model, o, rep, implied_gpus=ngpus)
