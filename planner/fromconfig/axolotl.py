"""axolotl YAML -> setup options.

The key table follows axolotl's own config schema, `src/axolotl/utils/schemas/` (config.py
AxolotlInputConfig and the mixins it inherits: model.py, peft.py, training.py, integrations.py,
fsdp.py, deprecated.py) and the plugin arguments under `src/axolotl/integrations/*/args.py`, as of
axolotl-ai-cloud/axolotl commit 067b021c (after v0.18.0).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ConfigSetup, liger
from . import compile as compile_keys   # torch.compile's keys (not the builtin)
from .common import Options, fsdp_words, read_deepspeed, read_fsdp, read_optim, targets
from .rules import KeyRule, Report, modelled, no_effect, on, read_only_with, refused, show

SCHEMA = "axolotl-ai-cloud/axolotl@067b021c src/axolotl/utils/schemas/"

_PACKING = "packing changes the attention mask and the tokens per micro-batch"
_NOT_CAUSAL_LM = "only decoder language-model fine-tuning (SFT) is planned"

_GENERATES = ("true with an eval set: the eval phase generates eval_max_new_tokens per prompt "
              "(--eval-generate-tokens, --eval-batch-size eval_batch_size or micro_batch_size, prompts up to "
              "sequence_len)")

TABLE: dict[str, KeyRule] = {
    # --- the setup gpuplan plans [schemas/model.py, peft.py, training.py, config.py] ---
    "base_model": modelled("--model"),
    "base_model_config": modelled("--model (the config.json the architecture is read from)"),
    "model_type": modelled("AutoModelForCausalLM (the class gpuplan plans); other classes refused"),
    "type_of_model": modelled("AutoModelForCausalLM (the class gpuplan plans); other classes refused"),
    "adapter": modelled("lora: --method lora; qlora: --method qlora; absent: --method full"),
    "load_in_4bit": modelled("with adapter lora/qlora: --method qlora"),
    "load_in_8bit": modelled("with an adapter: --method qlora --quant-type int8"),
    "lora_r": modelled("--lora-r"),
    "lora_alpha": modelled("--lora-alpha"),
    "lora_dropout": modelled("--lora-dropout"),
    "lora_target_modules": modelled("--lora-targets"),
    "lora_target_linear": modelled("true: --lora-targets all-linear"),
    "micro_batch_size": modelled("--batch-size"),
    "batch_size": modelled("without gradient_accumulation_steps: --grad-accum batch_size / micro_batch_size "
                           "(axolotl divides by the GPU count too) [utils/config normalize_config]"),
    "sequence_len": modelled("--seq-len"),
    "gradient_accumulation_steps": modelled("--grad-accum"),
    "gradient_checkpointing": modelled("true/false: --grad-ckpt/--no-grad-ckpt; offload / offload_disk: --grad-ckpt "
                                       "--activation-offload trl (rewritten to activation_offloading true / disk "
                                       "[utils/schemas/validation.py check_gradient_checkpointing_w_offload])"),
    "gradient_checkpointing_kwargs": modelled("use_reentrant either way: each layer's input is what is saved "
                                              "[torch/utils/checkpoint.py]"),
    "optimizer": modelled("--optimizer (transformers OptimizerNames)"),
    "bf16": modelled("true/auto: bf16 weights under bf16 autocast: full: --precision bf16-mixed --weights-dtype "
                     "bf16; LoRA: bf16-mixed --base-dtype bf16; `full` (bf16_full_eval only): no autocast, bf16-true"),
    "fp16": modelled("true: fp16 weights under fp16 autocast: LoRA: fp16-mixed --base-dtype fp16; full refused "
                     "(the GradScaler refuses fp16 gradients)"),
    "tf32": modelled("bf16/fp16 runs: matmuls are 16-bit, TF32 does not apply; with fp32 training refused"),
    "flash_attention": modelled("true: --attn flash"),
    "sdp_attention": modelled("true: --attn sdpa"),
    "eager_attention": modelled("true: --attn eager"),
    "attn_implementation": modelled("flash_attention_2: flash; sdpa; eager; others refused"),
    "liger_fused_linear_cross_entropy": modelled("true: --liger-kernels flce (--loss chunked) [integrations/liger/"
                                                 "plugin.py; fromconfig/liger.py]"),
    "liger_rms_norm": modelled("true: --liger-kernels rms_norm, classes patched before load (--liger-before-load)"),
    "liger_rope": modelled("true: --liger-kernels rope (in place; saves cos/sin only, as HF's RoPE)"),
    "liger_glu_activation": modelled("true: --liger-kernels swiglu,geglu (the family's GLU kernel)"),
    "liger_swiglu": modelled("true: as liger_glu_activation (its deprecated name, integrations/liger/args.py)"),
    "liger_layer_norm": modelled("true: no LayerNorm in the families Liger patches here (layer_norm is not in "
                                 "their apply_liger_kernel_to_* signature): no effect"),
    "cut_cross_entropy": modelled("true: --loss cce (Cut Cross-Entropy, impl cce) [integrations/cut_cross_entropy/"
                                  "args.py; techniques/cut_ce.py]"),
    "plugins": modelled("the plugins whose keys are read here (liger, cut_cross_entropy); others refused"),
    "deepspeed": modelled("a DeepSpeed JSON (path relative to the config file) or inline dict: --zero/--offload"),
    "fsdp": modelled("full_shard/shard_grad_op/hybrid_shard: --fsdp; offload: --offload params"),
    "fsdp_config": modelled("sharding strategy, offload_params, activation_checkpointing [schemas/fsdp.py]"),
    "fsdp_version": modelled("1 or 2: --fsdp-version, the save phase's state-dict code and, for 1, FSDP1's step "
                             "where modelled (FULL_SHARD, full fine-tuning or LoRA, no offload; elsewhere FSDP2's, "
                             "with a note) (unset: FSDP1, accelerate's default: axolotl sets FSDP_VERSION only for "
                             "2, utils/trainer.py l.601-602)"),
    # padding and packing [axolotl utils/collators/batching.py: DataCollatorForSeq2Seq pads with the tokenizer
    # (attention_mask, padding="max_length" under pad_to_sequence_len); V2BatchSamplerDataCollatorForSeq2Seq
    # concatenates a bin's samples, position_ids restarting, attention_mask holding sample ids padded to
    # sequence_len: a (b, 1, s, s) mask under sdpa/eager, varlen under flash attention]
    "pad_to_sequence_len": modelled("true: --padding max-length (every row padded to sequence_len, with a mask); "
                                    "with sample_packing: the packed rows' length"),
    # axolotl raises for an adapter run whose new special token (other than pad) lacks lora_modules_to_save
    # [loaders/tokenizer.py: "Please set lora_modules_to_save ... when using an adapter and changing the special
    # tokens"]; lora_modules_to_save is refused, so an adapter run that gets here names tokens the vocabulary has
    "special_tokens": modelled("pad/bos/eos/unk roles: tokens assumed in the vocabulary (no new rows; a new one "
                               "adds one embedding and one lm_head row)"),
    "eval_batch_size": modelled("eval without gradients at <= micro_batch_size stays below the step's peak; "
                                "larger refused"),
    "device": modelled("cuda / a GPU index: the GPU planned"),
    "eval_sequence_len": modelled("eval at <= sequence_len stays below the step's peak; longer refused"),
    # --- memory-relevant, not modelled yet: refused while on ---
    "sample_packing": modelled("true: --packing rows (bins of sequence_len; flash: varlen, no mask; sdpa: a "
                               "(b, 1, s, s) mask)"),
    "eval_sample_packing": modelled("packing of the eval set: eval runs without gradients, below the training step"),
    "multipack_real_batches": refused(_PACKING),
    "pretrain_multipack_attn": refused(_PACKING),
    "pretraining_sample_concatenation": refused(_PACKING),
    "batch_flattening": refused("padding-free batches change the tokens per micro-batch"),
    "max_packed_sequence_len": refused(_PACKING),
    "activation_offloading": modelled("true / disk: --activation-offload trl (TRL's manager with streams; disk "
                                      "writes nothing to disk at this commit); legacy: trl-sync; hidden_states: "
                                      "layer-inputs [core/trainers/mixins/activation_checkpointing.py]"),
    "layer_offloading": refused("layer offloading moves parameters to host memory between uses"),
    "torch_compile": modelled("true: --compile inductor (handed to HF's TrainingArguments: torch.compile(model)) "
                              "[fromconfig/compile.py]"),
    "peft_use_dora": modelled("--use-dora: DoRA's magnitude vectors and weight-norm activations (planner/techniques/dora.py)"),
    "peft_use_rslora": modelled("rank-stabilized scaling alpha/sqrt(r): the same parameters and bytes"),
    "lora_modules_to_save": modelled("--modules-to-save: trainable full copies of those modules and their optimizer state"),
    "peft_trainable_token_indices": refused("trainable token rows keep a delta of the embedding rows"),
    "lora_target_parameters": refused("LoRA on raw parameters (MoE experts) is not planned"),
    "lora_rank_pattern": refused("per-module ranks differ from --lora-r"),
    "lora_alpha_pattern": modelled("per-module alpha scales the update only: the same parameters and bytes"),
    "peft_layers_to_transform": refused("adapters on a subset of layers"),
    "peft_layers_pattern": refused("adapters on a subset of layers"),
    "peft_layer_replication": refused("layer replication adds decoder layers"),
    "peft": refused("a nested PEFT block (LoftQ init) is not read yet"),
    "peft_autocast_adapter_dtype": refused("adapters kept in the base dtype instead of peft's fp32",
                                           lambda v: v is False),
    "embeddings_skip_upcast": refused("embeddings left in 16-bit instead of PEFT's fp32 upcast"),
    "unfrozen_parameters": refused("training a regex-chosen subset of parameters (freeze tuning)"),
    "tokens": refused("new tokens add embedding and lm_head rows (resize_token_embeddings)"),
    "added_tokens_overrides": refused("token overrides can resize the embeddings"),
    "resize_token_embeddings_to_32x": refused("resizing the vocabulary to a multiple of 32 adds rows"),
    "shrink_embeddings": refused("shrinking the vocabulary removes rows"),
    "sequence_parallel_degree": modelled("deprecated spelling of context_parallel_size, read when that is unset "
                                         "[utils/schemas/validation.py check_context_parallel_size]"),
    "context_parallel_size": modelled("--context-parallel N --cp-kind ring-flash (ring_attn_func batch_ring, the "
                                      "default without sample_packing) or llama3 (varlen_llama3, the default with it) "
                                      "[utils/schemas/validation.py validate_ring_attn_func; techniques/context_parallel.py]"),
    "ring_attn_func": modelled("batch_ring: --cp-kind ring-flash; varlen_llama3: --cp-kind llama3"),
    "heads_k_stride": modelled("--heads-k-stride (varlen_llama3 only: batch_ring does not read it "
                               "[monkeypatch/ring_attn/patch.py register_ring_attn_from_device_mesh])"),
    "tensor_parallel_size": refused("axolotl's DTensor tensor parallelism is not planned from a config yet "
                                    "(give --tp)", lambda v: v not in (None, 1)),
    "dp_shard_size": refused("an explicit N-D device mesh", lambda v: v not in (None, 1)),
    "dp_replicate_size": refused("an explicit N-D device mesh", lambda v: v not in (None, 1)),
    "expert_parallel_size": refused("expert parallelism", lambda v: v not in (None, 1)),
    "tiled_mlp": modelled("true: --tiled-mlp (ALST's TiledMLP patched into the MLP class "
                          "[loaders/patch_manager.py _apply_tiled_mlp; techniques/tiled_mlp.py])"),
    "tiled_mlp_num_shards": modelled("--tiled-mlp-shards (unset: ceil(seqlen / 32768) [monkeypatch/tiled_mlp/patch.py])"),
    "tiled_mlp_use_original_mlp": modelled("the family's MLP forward or a generic gate/up/down one: the same "
                                           "tensors either way"),
    "lora_mlp_kernel": refused("axolotl's LoRA MLP kernels fuse the adapter math and save fewer activations"),
    "lora_qkv_kernel": refused("axolotl's LoRA QKV kernels fuse the adapter math and save fewer activations"),
    "lora_o_kernel": refused("axolotl's LoRA O kernels fuse the adapter math and save fewer activations"),
    "lora_embedding_kernel": refused("axolotl's LoRA embedding kernel"),
    "liger_rms_norm_gated": refused("Liger's gated RMSNorm kernel"),
    "liger_cross_entropy": modelled("true: --liger-kernels cross_entropy (in-place gradient over the fp32 logits, "
                                    "which still exist)"),
    "liger_use_token_scaling": refused("Liger token scaling"),
    "chunked_cross_entropy": refused("chunked cross-entropy over full logits (not fused with lm_head)"),
    "flash_attn_cross_entropy": refused("flash-attn's cross-entropy kernel"),
    "flash_attn_fuse_mlp": refused("flash-attn's fused MLP"),
    "flash_attn_rms_norm": refused("flash-attn's RMSNorm kernel"),
    "xformers_attention": refused("xformers memory-efficient attention"),
    "flex_attention": refused("flex attention"),
    "sage_attention": refused("SageAttention (8-bit attention)"),
    "flash_optimum": refused("BetterTransformer attention"),
    "s2_attention": refused("shifted-sparse attention"),
    "sdpa_varlen": refused("varlen attention of packed rows"),
    "fused_attn_kernel": refused("fused q/k norm + RoPE kernel"),
    "scaling_softmax": refused("scaled softmax attention"),
    "use_kernels": refused("hub kernels (MegaBlocks ...)"),
    "experts_implementation": refused("an MoE expert kernel other than HF's"),
    "quantize_moe_experts": refused("quantized MoE experts"),
    "llama4_linearized_experts": refused("linearized Llama-4 experts"),
    "use_scattermoe": refused("ScatterMoE kernels"),
    "use_sonicmoe": refused("SonicMoE kernels"),
    "fp8": modelled("true: --fp8 tensorwise (axolotl patches the Trainer's Accelerator to mixed_precision fp8 with "
                    "torchao's recipe: monkeypatch/trainer_accelerator_args.py; accelerate's convert_model_to_fp8_ao "
                    "filter, skip-first-last)"),
    "fp8_enable_fsdp_float8_all_gather": modelled("with fp8: FSDP's float8 all-gather, which never runs on one GPU "
                                                  "(--fp8 on more GPUs is refused)"),
    "fp32_norms": refused("norms kept in fp32 under FSDP2"),
    "bfloat16": modelled("true: as bf16: true (bf16 load, TrainingArguments bf16=True)"),
    "float16": modelled("true: fp16 weights without autocast unless fp16: --precision fp16-true"),
    "float32": refused("an explicit fp32 load"),
    "gptq": refused("GPTQ-quantized base weights"),
    "model_quantization_config": refused("MXFP4 / FP8 model quantization"),
    "bnb_config_kwargs": refused("custom bitsandbytes quantization settings (gpuplan plans nf4 + double quant)"),
    "use_onebitllms": refused("1.58-bit training"),
    "qat": refused("quantization-aware training fake-quantizes weights and activations"),
    "relora": refused("ReLoRA"),
    "lisa_n_layers": refused("LISA trains a changing subset of layers"),
    "spectrum_top_fraction": refused("Spectrum trains a subset of layers"),
    "spectrum_model_name": refused("Spectrum trains a subset of layers"),
    "mora": refused("MoRA adapters"),
    "use_mora": refused("MoRA adapters"),
    "neftune_noise_alpha": refused("NEFTune adds a noise tensor to the embeddings"),
    "noisy_embedding_alpha": refused("NEFTune adds a noise tensor to the embeddings"),
    "use_pose": refused("PoSE position skipping"),
    "rope_scaling": refused("RoPE scaling overrides the model's config"),
    "overrides_of_model_config": refused("overrides of the model's config.json change the architecture planned"),
    "model_config": refused("overrides of the model's config.json change the architecture planned"),
    "overrides_of_model_kwargs": refused("from_pretrained keyword overrides"),
    "model_kwargs": refused("from_pretrained keyword overrides"),
    "rl": modelled("orpo: --objective orpo (TRL's ORPOTrainer, trl.experimental in TRL 1.x; axolotl "
                   "core/trainers/dpo ... ORPO); dpo / ipo: --objective dpo --stack-versions trl-1.12 (axolotl "
                   "0.19.0 pins trl==1.9.0: TRL 1.9's DPOTrainer, planner/techniques/dpo19.py; ipo is its "
                   "loss_type ['ipo'], per-sequence scalars); kto/simpo/grpo/gdpo/ebft refused (TRL 1.9's trainers "
                   "not modelled)"),
    "reward_model": modelled("true: --objective rm (axolotl's AxolotlRewardTrainer, TRL's RewardTrainer; with "
                             "model_type AutoModelForSequenceClassification and num_labels 1)"),
    "num_labels": modelled("with reward_model: 1 (RewardTrainer's score head); other counts refused"),
    "center_rewards_coefficient": modelled("with reward_model: the centring term's tensors are b elements "
                                           "(RewardTrainer.compute_loss): nothing more planned"),
    "process_reward_model": refused(_NOT_CAUSAL_LM),
    "trainer_cls": refused("a custom trainer class"),
    "kd_trainer": refused("knowledge distillation keeps teacher logits"),
    "diffusion": refused("diffusion language-model training"),
    "ebft": refused("EBFT training"),
    "dynamic_checkpoint": refused("dynamic activation checkpointing"),
    "selective_checkpointing": modelled("true / {save: [attention]}: --ckpt-policy save-attention "
                                        "[monkeypatch/selective_checkpointing.py]; other op lists and offload refused"),
    "deepcompile": refused("DeepSpeed DeepCompile"),
    "gpu_memory_limit": refused("a per-GPU memory cap for a device map"),
    "max_memory": refused("a per-GPU memory cap for a device map"),
    "device_map": refused("a device map (model split across GPUs / CPU)", lambda v: v not in (None, "auto", 0, "cuda")),
    "lora_on_cpu": refused("LoRA loading on CPU"),
    "auto_find_batch_size": refused("the batch size is halved after an OOM: give micro_batch_size"),
    "pad_to_multiple_of": modelled("an int: --padding longest, --seq-len rounded up to the multiple"),
    "streaming": refused("streamed pretraining data is packed"),
    "pretraining_dataset": refused("pretraining datasets are packed"),
    "image_size": refused("vision inputs"),
    "processor_type": refused("multimodal processors (vision/audio inputs)"),
    "freeze_mm_modules": refused("multimodal models"),
    "ddp_bucket_cap_mb": refused("DDP gradient buckets of a custom size", lambda v: v not in (None, 25)),
    "ddp_broadcast_buffers": modelled("buffer broadcast: no extra gradient memory"),
    "ddp_find_unused_parameters": modelled("a graph walk after forward: no extra memory"),
    "ddp": modelled("DDP across the GPUs of the launcher (--gpus)"),
    "world_size": modelled("--gpus (the launcher's world size)"),
    "optim_target_modules": modelled("GaLore: --optim-target-modules (names or regexes, or all-linear)"),
    "optim_args": modelled("--optim-args: rank, update_proj_gap, block_size read; proj_type other than std refused"),
    "trl": modelled("with rl: dpo / ipo: beta (a scalar: no effect); the other sub-keys are read by axolotl's "
                    "GRPOStrategy only (core/trainers/grpo/__init__.py): no effect on DPO; with other rl: refused"),
    "rl_adapter_ref_model": refused("with an adapter: a second reference model loaded beside the policy "
                                    "(axolotl train.py setup_reference_model)"),
    "vllm": refused("a vLLM engine beside the training model"),
    "gemma4_hybrid_attn_impl": refused("Gemma-4 hybrid attention kernels"),
    "large_head_attention": refused("large-head attention kernels"),
    "flash_attn_d512": refused("flash attention for head dim 512"),
    "use_eaft": refused("the EAFT loss"),
    **read_only_with("model_quantization_config", ["model_quantization_config_kwargs"]),
    **read_only_with("relora", ["relora_prune_ratio", "relora_prune_method", "relora_cpu_offload"]),
    **read_only_with("optimizer: dion", ["dion_lr", "dion_momentum", "dion_rank_fraction", "dion_rank_multiple_of"]),
    **read_only_with("optimizer: qgalore", [
        "qgalore_rank", "qgalore_update_proj_gap", "qgalore_scale", "qgalore_proj_type", "qgalore_proj_quant",
        "qgalore_proj_bits", "qgalore_proj_group_size", "qgalore_cos_threshold", "qgalore_gamma_proj",
        "qgalore_queue_size"]),
    **read_only_with("lisa_n_layers", ["lisa_step_interval", "lisa_layers_attribute"]),
    # with rl: dpo / ipo (axolotl 0.19.0 core/trainers/dpo/__init__.py DPOStrategy.set_training_args_kwargs)
    "precompute_ref_log_probs": modelled("with rl: dpo: --precompute-ref-log-probs (no reference forward)"),
    "dpo_loss_type": modelled("with rl: dpo: DPOConfig.loss_type; every type but sft is a per-sequence scalar "
                              "formula (dpo_trainer.py l.1432-1576, TRL 1.9.0): as planned; sft refused (a cross-"
                              "entropy over the chosen logits)"),
    "dpo_loss_weights": modelled("with rl: dpo: DPOConfig.loss_weights, scalars: as planned"),
    "dpo_label_smoothing": modelled("with rl: dpo: DPOConfig.label_smoothing, a scalar: as planned"),
    "dpo_use_weighting": modelled("with rl: dpo: false as planned; true refused (WPO's logsumexp over the full "
                                  "logits, dpo_trainer.py l.1566-1576)"),
    "dpo_padding_free": modelled("with rl: dpo: false as planned; true refused (padding-free rows)"),
    "dpo_use_liger_kernel": modelled("with rl: dpo: false as planned; true refused (Liger's fused DPO loss)"),
    **read_only_with("rl", ["dpo_use_logits_to_keep", "dpo_generate_during_eval", "dpo_norm_loss", "rpo_alpha",
                            "kto_desirable_weight", "kto_undesirable_weight"]),
    **read_only_with("flex_attention", ["flex_attn_compile_kwargs"]),
    **read_only_with("scaling_softmax", ["scaling_softmax_factor", "scaling_softmax_bias"]),
    **read_only_with("chunked_cross_entropy", ["chunked_cross_entropy_num_chunks"]),
    **read_only_with("use_eaft", ["eaft_alpha", "eaft_k"]),
    **read_only_with("fp32_norms", ["fp32_norm_classes"]),
    "torch_compile_backend": modelled("with torch_compile: inductor; other backends refused"),
    "torch_compile_mode": modelled("with torch_compile: default / max-autotune-no-cudagraphs; CUDA-graph modes refused"),
    "torch_compile_options": refused("inductor options (they can change what is fused and saved)"),
    # --- no effect on per-GPU memory or step time ---
    **no_effect("post-training quantization (axolotl quantize runs after training)", ["quantization"]),
    **no_effect("a library path", ["torchdistx_path"]),
    **no_effect("data: datasets, prompt formats, preparation, splits", [
        "datasets", "test_datasets", "dataset_prepared_path", "val_set_size", "shuffle_merged_datasets",
        "shuffle_before_merging_datasets", "dataset_shard_num", "dataset_shard_idx", "skip_prepare_dataset",
        "num_dataset_shards_to_save", "dataset_processes", "dataset_num_proc", "dataset_exact_deduplication",
        "dataset_keep_in_memory", "push_dataset_to_hub", "train_on_inputs", "group_by_length", "chat_template",
        "chat_template_jinja", "chat_template_kwargs", "eot_tokens", "default_system_message", "is_preprocess",
        "preprocess_iterable", "total_num_tokens", "total_supervised_tokens", "sample_packing_eff_est",
        "excess_length_strategy", "min_sample_len", "max_prompt_len", "curriculum_sampling", "remove_unused_columns",
        "sample_packing_group_size", "sample_packing_bin_size", "sample_packing_sequentially",
        "sample_packing_mp_start_method", "streaming_multipack_buffer_size", "pretrain_multipack_buffer_size",
        "role_boundaries", "image_resize_algorithm", "pose_split_on_token_ids", "pose_max_context_len",
        "pose_num_chunks", "dataloader_pin_memory", "dataloader_num_workers",
        "dataloader_prefetch_factor", "dataloader_drop_last", "fix_untrained_tokens", "mean_resizing_embeddings"]),
    **no_effect("tokenizer class and loading switches", [
        "tokenizer_type", "tokenizer_config", "tokenizer_use_fast", "tokenizer_legacy",
        "tokenizer_use_mistral_common", "tokenizer_save_jinja_files", "processor_kwargs", "trust_remote_code",
        "hf_use_auth_token", "revision_of_model", "low_cpu_mem_usage", "experimental_skip_move_to_device",
        "cls_model_config", "is_falcon_derived_model", "is_llama_derived_model", "is_mistral_derived_model",
        "is_qwen_derived_model", "lora_model_dir", "lora_fan_in_fan_out", "peft_init_lora_weights",
        "peft_ensure_weight_tying", "qlora_sharded_model_loading", "reinit_weights", "strict"]),
    **no_effect("optimizer hyperparameters and learning-rate schedule (scalars)", [
        "learning_rate", "embedding_lr", "embedding_lr_scale", "weight_decay", "lr_scheduler",
        "lr_scheduler_kwargs", "lr_quadratic_warmup", "cosine_min_lr_ratio", "cosine_constant_lr_ratio",
        "lr_div_factor", "lr_groups", "adam_epsilon", "adam_epsilon2", "adam_beta1", "adam_beta2", "adam_beta3",
        "max_grad_norm", "warmup_steps", "warmup_ratio", "loraplus_lr_ratio", "loraplus_lr_embedding",
        "jagged_restart_steps", "jagged_restart_warmup_steps", "jagged_restart_anneal_steps", "num_epochs",
        "max_steps", "dpo_beta", "rl_beta", "orpo_alpha", "simpo_gamma", "cpo_alpha", "seed"]),
    **no_effect("logging, tracking and profiling", [
        "use_wandb", "wandb_name", "wandb_run_id", "wandb_mode", "wandb_project", "wandb_entity", "wandb_watch",
        "wandb_log_model", "use_mlflow", "mlflow_tracking_uri", "mlflow_experiment_name", "mlflow_run_name",
        "hf_mlflow_log_artifacts", "use_comet", "comet_api_key", "comet_workspace", "comet_project_name",
        "comet_experiment_key", "comet_mode", "comet_online", "comet_experiment_config", "use_trackio",
        "trackio_project_name", "trackio_run_name", "trackio_space_id", "use_otel_metrics", "otel_metrics_host",
        "otel_metrics_port", "use_swanlab", "swanlab_project", "swanlab_experiment_name", "swanlab_mode",
        "logging_steps", "use_tensorboard", "profiler_steps", "profiler_steps_start", "include_tokens_per_second",
        "include_tkps", "loss_watchdog_threshold", "loss_watchdog_patience", "debug", "local_rank"]),
    **no_effect("saving, hub upload and resuming (host-side)", [
        "output_dir", "hub_model_id", "hub_strategy", "hub_revision", "save_safetensors", "save_steps",
        "saves_per_epoch", "save_strategy", "save_total_limit", "save_first_step", "save_only_model",
        "resume_from_checkpoint", "auto_resume_from_checkpoints", "early_stopping_patience",
        "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "merge_lora", "merge_method",
        "axolotl_config_path"]),
    "fsdp_final_state_dict_type": modelled("FULL_STATE_DICT: --final-full-state-dict (deprecated spelling of "
                                           "fsdp_config.final_state_dict_type; train.py l.330-336)"),
    **no_effect("evaluation schedule and metrics (when and what, not the eval batch)", [
        "eval_steps", "evals_per_epoch", "eval_strategy", "evaluation_strategy",
        "eval_causal_lm_metrics", "do_bench_eval", "bench_dataset", "bench_split",
        "generation_temperature", "generation_top_p", "generation_top_k", "generation_prompt_ratio",
        "generation_do_sample"]),
    # generation during evaluation: model.generate over each eval batch's prompts, greedy, with the KV cache
    # [axolotl utils/callbacks/__init__.py causal_lm_bench_eval_callback_factory, log_prediction_callback_factory]
    "do_causal_lm_eval": modelled(_GENERATES),
    "eval_table_size": modelled("> 0 with wandb/mlflow/comet: " + _GENERATES + " (and the eval batch's logits)"),
    "eval_max_new_tokens": modelled("with do_causal_lm_eval or eval_table_size: --eval-generate-tokens (schema "
                                    "default 128)"),
    "generate_samples": refused("sample generation during training (GenerateSamplesCallback) is not modelled"),
    **read_only_with("generate_samples", ["num_generation_samples", "generation_max_new_tokens"]),
    **no_effect("process-level switches: timeouts, garbage collection, the Gradio demo, Ray workers", [
        "ddp_timeout", "gc_steps", "gc_collect_steps", "torch_empty_cache_steps", "gradio_title", "gradio_share",
        "gradio_server_name", "gradio_server_port", "gradio_max_new_tokens", "gradio_temperature", "use_ray",
        "ray_run_name", "ray_num_workers", "resources_per_worker", "accelerator_config"]),
}

# axolotl's schema: eval_max_new_tokens "Total number of tokens generated for predictions sent to wandb.
# Default is 128" [utils/schemas/config.py]
EVAL_MAX_NEW_TOKENS = 128


def _eval_generation(d: dict[str, Any], get, o: Options) -> None:
    """do_causal_lm_eval, and eval_table_size > 0 with a logger that takes the table: at each evaluation
    axolotl's callbacks generate over every eval batch, greedy, `max_new_tokens=eval_max_new_tokens`
    (schema default 128), on the prompts padded to the longest [axolotl utils/callbacks/__init__.py
    causal_lm_bench_eval_callback_factory, log_prediction_callback_factory]. Planned as the eval phase
    with generation at the eval batch (eval_batch_size, else micro_batch_size, axolotl's
    per_device_eval_batch_size) on prompts as long as a training sample can be (sequence_len)."""
    rep = o.report
    table = get("eval_table_size")
    # the table goes to wandb (on with wandb_project), mlflow or comet: without one the callback is not added
    logger = any(on(d.get(k)) for k in ("use_wandb", "wandb_project", "use_mlflow", "mlflow_experiment_name", "use_comet"))
    logs_table = bool(table) and int(table) > 0 and logger
    keys = [k for k, active in (("do_causal_lm_eval", on(get("do_causal_lm_eval"))), ("eval_table_size", logs_table))
            if active]
    has_eval_set = bool(d.get("test_datasets")) or float(d.get("val_set_size") or 0) > 0
    for k in ("do_causal_lm_eval", "eval_table_size", "eval_max_new_tokens"):
        if get(k) is not None and (not keys or not has_eval_set):
            rep.set(k, f"{show(d[k])}: no generation at evaluation (no eval set, or the callback is off)")
    if not keys or not has_eval_set:
        return
    tokens = int(get("eval_max_new_tokens") or EVAL_MAX_NEW_TOKENS)
    o["eval_batch_size"] = int(d.get("eval_batch_size") or d.get("micro_batch_size") or 1)
    flags = f"--eval-batch-size {o['eval_batch_size']} --eval-generate-tokens {tokens}"
    if d.get("eval_sequence_len"):   # else the training sequence length
        o["eval_seq_len"] = int(d["eval_sequence_len"])
        flags += f" --eval-seq-len {o['eval_seq_len']}"
    o["eval_generate_tokens"] = tokens
    for k in keys + (["eval_max_new_tokens"] if get("eval_max_new_tokens") is not None else []):
        rep.set(k, flags)


_ATTN = {"flash_attention_2": "flash", "flash_attention": "flash", "sdpa": "sdpa", "eager": "eager"}
_PLUGINS = {"axolotl.integrations.liger.LigerPlugin", "axolotl.integrations.liger.plugin.LigerPlugin",
            "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"}
_ROLES = {"pad_token", "bos_token", "eos_token", "unk_token"}



# axolotl activation_offloading -> the offloader it runs [core/trainers/mixins/activation_checkpointing.py
# ActivationOffloadingMixin: use_streams = mode != "legacy"; "hidden_states": the checkpoint-input offloader
# of monkeypatch/checkpoint_activation_offload.py; anything else: TRL's get_act_offloading_ctx_manager]
_AXOLOTL_OFFLOAD = {"true": "trl", "disk": "trl", "legacy": "trl-sync", "hidden_states": "layer-inputs"}


def _selective_checkpointing(value: Any, gc: Any, o: Options, rep: Report) -> None:
    """selective_checkpointing (SelectiveCheckpointingConfig: save [attention], save_sliding_window false,
    offload false by default) -> --ckpt-policy save-attention; validation raises without checkpointing."""
    if not on(value):
        rep.set("selective_checkpointing", f"{show(value)}: as gpuplan plans")
        return
    cfg = value if isinstance(value, dict) else {}
    if not on(gc):
        rep.refuse("selective_checkpointing", value, "axolotl raises \"selective_checkpointing requires "
                   "gradient_checkpointing\" [utils/schemas/validation.py]", "set gradient_checkpointing: true")
    elif list(cfg.get("save") or ["attention"]) != ["attention"] or on(cfg.get("offload")) \
            or on(cfg.get("save_sliding_window")):
        rep.refuse("selective_checkpointing", value, "a save list other than [attention], offloaded saved ops or "
                   "saved sliding-window attention", "use selective_checkpointing: true")
    else:
        o.use("selective_checkpointing", "ckpt_policy", "save-attention")


def _activation_offloading(value: Any, gc: Any, o: Options, rep: Report) -> None:
    if not on(value):   # off: worded as before it was modelled
        rep.set("activation_offloading", f"{show(value)}: as gpuplan plans")
        return
    mode = "true" if value is True else str(value).lower()
    if mode not in _AXOLOTL_OFFLOAD:
        rep.refuse("activation_offloading", value, "not one of axolotl's true/legacy/disk/hidden_states",
                   "use true, legacy, disk or hidden_states")
    elif not on(gc):
        rep.refuse("activation_offloading", value, "axolotl raises \"activation_offloading requires "
                   "gradient_checkpointing\" [utils/schemas/validation.py]", "set gradient_checkpointing: true")
    else:
        o.use("activation_offloading", "activation_offload", _AXOLOTL_OFFLOAD[mode])
        o.use("activation_offloading", "grad_ckpt", True)

_DPO_KEYS = ("precompute_ref_log_probs", "dpo_loss_type", "dpo_loss_weights", "dpo_label_smoothing",
             "dpo_use_weighting", "dpo_padding_free", "dpo_use_liger_kernel")


def _dpo(d: dict[str, Any], get, o: Options, rep: Report) -> None:
    """rl: dpo / ipo: TRL 1.9's DPOTrainer (axolotl 0.19.0 pins trl==1.9.0), through the trl-1.12 stack row (TRL
    1.8-1.12) [axolotl core/builders/rl.py, core/trainers/dpo/__init__.py; planner/techniques/dpo19.py]."""
    o.use("rl", "objective", "dpo")
    o.use("rl", "stack_versions", "trl-1.12")
    o.use("rl", "loss", "hf")
    if on(get("precompute_ref_log_probs")):
        o.use("precompute_ref_log_probs", "precompute_ref_log_probs", True)
    types = get("dpo_loss_type")
    if types is not None:
        if "sft" in (types if isinstance(types, list) else [types]):
            rep.refuse("dpo_loss_type", types, "loss_type sft adds a cross-entropy over the chosen logits",
                       "drop sft from the list")
        else:
            rep.set("dpo_loss_type", f"{show(types)}: per-sequence scalars, as planned")
    for key, why in (("dpo_use_weighting", "WPO's weights take a logsumexp over the full logits"),
                     ("dpo_padding_free", "padding-free rows change the batch layout"),
                     ("dpo_use_liger_kernel", "Liger's fused DPO loss")):
        if on(get(key)):
            rep.refuse(key, d[key], why, f"set {key}: false")
    trl = get("trl")
    if isinstance(trl, dict):
        rest = sorted(k for k in trl if k != "beta")
        rep.set("trl", "beta: a scalar, as planned" + (f"; {', '.join(rest)}: read by axolotl's GRPOStrategy only, "
                                                         "no effect with rl: dpo" if rest else ""))
    if get("lora_dropout"):   # DPOConfig.disable_dropout=True [trl/trainer/dpo_trainer.py l.913-916, TRL 1.9.0]
        o.use("lora_dropout", "lora_dropout", 0.0)
        rep.set("lora_dropout", "(then 0: DPOConfig.disable_dropout=True sets every nn.Dropout, LoRA's too, to 0)")


def _rl(value: Any, o: Options, rep: Report, d: dict[str, Any] | None = None, get=None) -> None:
    """`rl:` names the TRL trainer axolotl runs [axolotl/utils/schemas/enums.py RLType]."""
    if value is None or value is False:
        if get is not None and get("trl") is not None:
            rep.refuse("trl", d["trl"], "TRL settings of preference / RL training without rl:", "remove it")
        return
    if str(value).lower() in ("dpo", "ipo") and d is not None:
        _dpo(d, get, o, rep)
        return
    if get is not None and get("trl") is not None:
        rep.refuse("trl", d["trl"], f"TRL settings of rl: {value}, which is refused", "remove it")
    if str(value).lower() == "orpo":
        o.use("rl", "objective", "orpo")
    else:
        rep.refuse("rl", value, f"axolotl 0.19.0 pins trl==1.9.0, whose {str(value).upper()} trainer gpuplan does "
                   "not model (rl: orpo, dpo and ipo are)", "plan its SFT step, or rl: dpo / orpo")
def _reward_model(d: dict[str, Any], get, o: Options, rep: Report) -> bool:
    """`reward_model: true`: axolotl's builder (core/builders/causal.py) trains with AxolotlRewardTrainer, a
    TRL RewardTrainer [axolotl core/trainers/trl.py], on AutoModelForSequenceClassification with num_labels 1
    (examples/gemma2/reward-model.yaml); True where planned."""
    if not on(get("reward_model")):
        for key in ("num_labels", "center_rewards_coefficient"):
            if get(key) is not None:
                rep.set(key, f"{show(d[key])}: read only with reward_model (no effect on a causal LM)")
        return False
    labels = get("num_labels")
    if labels not in (None, 1):
        rep.refuse("num_labels", labels, "RewardTrainer scores with one label (it raises for num_labels != 1)",
                   "set num_labels: 1")
        return False
    o.use("reward_model", "objective", "rm")
    if labels is not None:
        rep.set("num_labels", "1: the score head planned")
    if get("center_rewards_coefficient") is not None:
        rep.set("center_rewards_coefficient", f"{show(d['center_rewards_coefficient'])}: b-element tensors, nothing planned")
    return True


# axolotl ring_attn_func -> gpuplan's --cp-kind [utils/schemas/enums.py RingAttnFunc]
_RING_ATTN = {"batch_ring": "ring-flash", "varlen_llama3": "llama3"}


def _context_parallel(d: dict[str, Any], todo: set[str], o: Options, rep: Report) -> None:
    """context_parallel_size (or the deprecated sequence_parallel_degree) -> --context-parallel and the
    ring-flash-attn function axolotl picks [utils/schemas/validation.py check_context_parallel_size,
    validate_ring_attn_func @ 067b021c]."""
    key = "context_parallel_size" if d.get("context_parallel_size") else "sequence_parallel_degree"
    size = d.get(key)
    on_size = size not in (None, 1)
    for k in ("context_parallel_size", "sequence_parallel_degree"):
        if k in todo and (k != key or not on_size):
            rep.set(k, "overridden by context_parallel_size" if on_size else f"{show(d[k])}: as gpuplan plans")
    if not on_size:
        for k in ("ring_attn_func", "heads_k_stride"):
            if k in todo:
                rep.set(k, f"{show(d[k])}: no effect without context_parallel_size > 1")
        return
    o.use(key, "context_parallel", int(size))
    func = d.get("ring_attn_func") or ("varlen_llama3" if on(d.get("sample_packing")) else "batch_ring")
    if func not in _RING_ATTN:
        rep.refuse("ring_attn_func", func, "not one of axolotl's batch_ring / varlen_llama3", "use one of them")
        return
    o.use("ring_attn_func" if "ring_attn_func" in todo else key, "cp_kind", _RING_ATTN[func])
    stride = d.get("heads_k_stride")
    if "heads_k_stride" in todo:
        if func == "varlen_llama3" and stride is not None:
            o.use("heads_k_stride", "heads_k_stride", int(stride))
        else:
            rep.set("heads_k_stride", f"{show(stride)}: batch_ring does not read it")


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    rep = Report("axolotl")
    todo = set(rep.classify(TABLE, d))
    o = Options(rep)

    def get(k: str) -> Any:
        return d.get(k) if k in todo else None

    adapter = get("adapter")
    if adapter not in (None, "lora", "qlora"):
        rep.refuse("adapter", adapter, "adapters other than lora and qlora", "use lora or qlora")
    if adapter and get("load_in_8bit"):
        o.use("load_in_8bit", "method", "qlora")
        o.use("load_in_8bit", "quant_type", "int8")
    elif adapter == "qlora" or (adapter == "lora" and get("load_in_4bit")):
        o.use("adapter" if adapter == "qlora" else "load_in_4bit", "method", "qlora")
    elif adapter == "lora":
        o.use("adapter", "method", "lora")
    elif "adapter" in d:
        o.use("adapter", "method", "full")
    method = o.get("method", "full")
    if method == "full" and (get("load_in_4bit") or get("load_in_8bit")):
        rep.refuse("load_in_4bit" if get("load_in_4bit") else "load_in_8bit", True,
                   "training quantized weights without an adapter", "add adapter: qlora")
    # axolotl loads the model in bf16 when `bf16` or `bfloat16` is set, else in fp16 with `fp16` or
    # `float16` (cfg.torch_dtype [axolotl/utils/config/__init__.py normalize_config], passed to
    # from_pretrained [loaders/model.py]), and hands TrainingArguments bf16 = bf16 or bfloat16 (`bf16:
    # full` sets only bf16_full_eval) and fp16 = fp16 and not bf16 [core/builders/base.py
    # _configure_precision_settings]: the Trainer autocasts those 16-bit weights. Full fine-tuning trains
    # them, their gradients and AdamW states in 16 bit; LoRA keeps a 16-bit frozen base, fp32 adapters.
    bf16 = on(get("bf16")) or on(get("bfloat16"))
    fp16, float16 = not bf16 and on(get("fp16")), not bf16 and on(get("float16"))
    key = next((k for k, v in (("bf16", on(get("bf16"))), ("bfloat16", bf16), ("fp16", fp16), ("float16", float16))
                if v), None)
    if key:
        half = "bf16" if bf16 else "fp16"
        autocast = fp16 or (bf16 and str(get("bf16")).lower() != "full")
        if method == "full" and autocast and half == "fp16":
            rep.refuse(key, get(key), "full fine-tuning of fp16-loaded weights under fp16 autocast: the Trainer's "
                       "GradScaler refuses fp16 gradients ('Attempting to unscale FP16 gradients')", "use bf16: true")
        else:
            o.use(key, "precision", f"{half}-{'mixed' if autocast else 'true'}")
            if method == "full" and autocast:
                o.use(key, "weights_dtype", half)
            if method == "lora":
                o.use(key, "base_dtype", half)
            if method == "qlora" and not autocast:   # prepare_model_for_kbit_training runs all the same
                o.use(key, "kbit_upcast", True)
    elif get("tf32") and on(get("tf32")):
        rep.refuse("tf32", get("tf32"), "TF32 matmuls under fp32 training run at TF32 speed, which the step time "
                   "does not model", "set it false, or bf16: true")
    for key, opt, conv in (("micro_batch_size", "batch_size", int), ("sequence_len", "seq_len", int),
                           ("gradient_accumulation_steps", "grad_accum", int)):
        if get(key) is not None:
            o.use(key, opt, conv(d[key]))
    if get("batch_size") is not None and get("gradient_accumulation_steps") is None:
        o.use("batch_size", "grad_accum", max(1, int(d["batch_size"]) // int(d.get("micro_batch_size") or 1)))
    if adapter in ("lora", "qlora"):
        for key, opt, conv in (("lora_r", "lora_r", int), ("lora_alpha", "lora_alpha", float),
                               ("lora_dropout", "lora_dropout", float)):
            if get(key) is not None:
                o.use(key, opt, conv(d[key]))
        if get("lora_target_linear"):
            o.use("lora_target_linear", "lora_targets", "all-linear")
        elif targets(get("lora_target_modules")):
            o.use("lora_target_modules", "lora_targets", targets(d["lora_target_modules"]))
        if on(get("peft_use_dora")):     # axolotl passes it to LoraConfig(use_dora=...)
            o.use("peft_use_dora", "use_dora", True)
        if targets(get("lora_modules_to_save")):
            o.use("lora_modules_to_save", "modules_to_save", targets(d["lora_modules_to_save"]))
    gc = get("gradient_checkpointing")
    if "gradient_checkpointing" in todo:
        if isinstance(gc, str) and gc.lower() in ("offload", "offload_disk"):
            o.use("gradient_checkpointing", "grad_ckpt", True)
            o.use("gradient_checkpointing", "activation_offload", "trl")
        else:
            o.use("gradient_checkpointing", "grad_ckpt", bool(on(gc)))
    if "activation_offloading" in todo:
        if isinstance(gc, str) and gc.lower() in ("offload", "offload_disk"):   # validation overrides it
            rep.set("activation_offloading", "overridden by gradient_checkpointing: " + gc)
        else:
            _activation_offloading(d["activation_offloading"], gc, o, rep)
    if "selective_checkpointing" in todo:
        _selective_checkpointing(d["selective_checkpointing"], gc, o, rep)
    gck = get("gradient_checkpointing_kwargs")
    if isinstance(gck, dict) and (gck.get("every_n_layers", 1) not in (1, None) or on(gck.get("offload"))):
        rep.refuse("gradient_checkpointing_kwargs", gck, "every_n_layers / offload: axolotl's loader also passes "
                   "these kwargs to gradient_checkpointing_enable for adapters [loaders/model.py]",
                   "drop every_n_layers / offload")
    if get("optimizer"):
        read_optim(d, "optimizer", path, o)
    attn = get("attn_implementation")
    if attn:
        if attn in _ATTN:
            o.use("attn_implementation", "attn", _ATTN[attn])
        else:
            rep.refuse("attn_implementation", attn, f"the {attn} attention kernel",
                       "use flash_attention_2, sdpa or eager")
    for key, value in (("flash_attention", "flash"), ("sdp_attention", "sdpa"), ("eager_attention", "eager")):
        if on(get(key)) and "attn" not in o:
            o.use(key, "attn", value)
    if on(get("sample_packing")):
        o.use("sample_packing", "packing", "rows")
    elif on(get("pad_to_sequence_len")):
        o.use("pad_to_sequence_len", "padding", "max-length")
    elif isinstance(get("pad_to_multiple_of"), int) and d["pad_to_multiple_of"] > 1:
        o.use("pad_to_multiple_of", "padding", "longest")
        if o.get("seq_len"):
            o.use("pad_to_multiple_of", "seq_len", -(-int(o["seq_len"]) // d["pad_to_multiple_of"]) * d["pad_to_multiple_of"])
    liger.axolotl(d, todo, o)
    if "torch_compile" in todo:   # axolotl hands backend and mode on only with torch_compile
        tc = on(d["torch_compile"])
        compile_keys.read("torch_compile", d["torch_compile"], get("torch_compile_backend") if tc else None,
                     get("torch_compile_mode") if tc else None, o)
    if on(get("tiled_mlp")):
        o.use("tiled_mlp", "tiled_mlp", True)
        if get("tiled_mlp_num_shards"):
            o.use("tiled_mlp_num_shards", "tiled_mlp_shards", int(d["tiled_mlp_num_shards"]))
    for k in ("tiled_mlp", "tiled_mlp_num_shards", "tiled_mlp_use_original_mlp"):
        if k in todo and k not in rep.used:
            rep.set(k, f"{show(d[k])}: as gpuplan plans")
    if todo & {"context_parallel_size", "sequence_parallel_degree", "ring_attn_func", "heads_k_stride"}:
        _context_parallel(d, todo, o, rep)
    if on(get("fp8")):
        o.use("fp8", "fp8", "tensorwise")
    if on(get("cut_cross_entropy")):
        o.use("cut_cross_entropy", "loss", "cce")
    if get("plugins"):
        other = [p for p in d["plugins"] if p not in _PLUGINS]
        if other:
            rep.refuse("plugins", ", ".join(other), "plugins whose keys gpuplan's axolotl table does not read",
                       "remove them to plan the rest")
    _rl(get("rl"), o, rep, d, get)
    reward = _reward_model(d, get, o, rep)
    for key in ("model_type", "type_of_model"):
        if reward and get(key) == "AutoModelForSequenceClassification":
            rep.set(key, f"{d[key]}: the reward model planned (--objective rm)")
        elif get(key) and d[key] not in ("AutoModelForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"):
            rep.refuse(key, d[key], _NOT_CAUSAL_LM, "use AutoModelForCausalLM")
    st = get("special_tokens")
    if isinstance(st, dict):
        extra = sorted(set(st) - _ROLES)
        if extra:
            rep.refuse("special_tokens", ", ".join(extra), "added special tokens add embedding and lm_head rows",
                       "name only pad/bos/eos/unk tokens the vocabulary has")
        else:
            rep.set("special_tokens", "roles of tokens assumed in the vocabulary: no new rows (axolotl refuses new "
                    "ones for adapter runs without lora_modules_to_save)")
    eb = get("eval_batch_size")
    if eb is not None and int(eb) > int(d.get("micro_batch_size") or 1):
        rep.refuse("eval_batch_size", eb, "eval at a larger batch than training can peak above the step "
                   "(logits of the eval batch)", f"set it to {d.get('micro_batch_size') or 1} or less")
    el = get("eval_sequence_len")
    if el is not None and int(el) > int(d.get("sequence_len") or 0):
        rep.refuse("eval_sequence_len", el, "eval at a longer sequence than training can peak above the step "
                   "(logits of the eval batch)", f"set it to {d.get('sequence_len')} or less")
    _eval_generation(d, get, o)
    ngpus = None
    if get("deepspeed"):
        ngpus = read_deepspeed(d["deepspeed"], Path(path).parent, o, "deepspeed")
    if get("fsdp") or get("fsdp_config") or get("fsdp_version"):
        read_fsdp(fsdp_words(get("fsdp")), get("fsdp_config"), o, "fsdp", "fsdp_config", version=get("fsdp_version"))
    final = get("fsdp_final_state_dict_type")
    if final is not None:
        if str(final).upper() == "FULL_STATE_DICT":
            o.use("fsdp_final_state_dict_type", "final_full_state_dict", True)
        else:
            rep.set("fsdp_final_state_dict_type", f"{final}: the final save as the checkpoints")
    if get("world_size"):
        o.use("world_size", "gpus_per_node", int(d["world_size"]))
    model = get("base_model")
    if model:
        rep.set("base_model", f"--model {model}")
    for k in todo:
        rep.fallback(k, d[k], "no adapter: not read" if k.startswith("lora_") and method == "full" else TABLE[k].note)
    return ConfigSetup.of("axolotl", model, o, rep, implied_gpus=ngpus)
