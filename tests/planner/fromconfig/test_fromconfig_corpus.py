"""The corpus of real configs (tests/fixtures/configs/<format>/, each copied verbatim from a public repo):
what each maps to (the exact options, and the exact refusal lines), which preset its model resolves to
(or the "unknown model" line), that no memory-relevant key is ever listed as having no effect, and
that every file names its source."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpuplan.planner import PlannerError, resolve_model
from gpuplan.planner.fromconfig import accelerate, axolotl, hf, llamafactory, read_config, torchtune, unsloth
from gpuplan.planner.fromconfig.common import DEEPSPEED_TABLE, FSDP_TABLE
from gpuplan.planner.fromconfig.rules import Rule

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"
SOURCES = json.loads((CORPUS / "SOURCES.json").read_text())
FILES = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
               if p.is_file() and p.name != "SOURCES.json" and p.suffix != ".json")

# words that mark a key as memory-relevant; a NO_EFFECT key containing one must be on HOST_SIDE with a reason
MEMORY_WORDS = ("batch", "seq", "len", "dtype", "bf16", "fp16", "fp8", "precision", "lora", "rank", "quant", "bit",
                "pack", "pad", "offload", "checkpoint", "shard", "fsdp", "zero", "deepspeed", "optim", "attn",
                "attention", "compile", "liger", "kernel", "vocab", "token", "cutoff", "adapter", "device", "gpu",
                "memory", "mem", "flash", "parallel", "cache", "accum", "bucket", "gather", "prefetch", "persist")
HOST_SIDE = {  # key (or its last dotted part) -> why it holds no GPU memory and takes no step time
    'dataloader_pin_memory': 'pinned host buffers of the data loader',
    'dataset_keep_in_memory': 'the dataset in host RAM',
    'low_cpu_mem_usage': 'how the checkpoint is read into host memory',
    'skip_memory_metrics': "the Trainer's memory logging", 'log_peak_memory_stats': "torchtune's memory logging",
    'profiler.profile_memory': "the profiler's output (the profiler itself is refused when enabled)",
    'tokenizer_type': 'the tokenizer class', 'tokenizer_config': "the tokenizer's path",
    'tokenizer_use_fast': 'the tokenizer implementation', 'tokenizer_legacy': 'the tokenizer implementation',
    'tokenizer_use_mistral_common': 'the tokenizer implementation', 'tokenizer_save_jinja_files': 'saving',
    'tokenizer._component_': 'the tokenizer builder', 'tokenizer.path': 'the tokenizer file',
    'tokenizer.merges_file': 'the tokenizer file', 'tokenizer.merges_path': 'the tokenizer file',
    'tokenizer.vocab_path': 'the tokenizer file', 'tokenizer.prompt_template': 'the prompt template',
    'tokenizer.special_tokens_path': 'the tokenizer file', 'tokenizer_name_or_path': "the tokenizer's source",
    'split_special_tokens': 'tokenization', 'use_fast_tokenizer': 'the tokenizer implementation',
    'eos_token': 'which token ends a sample (TRL raises unless the vocabulary has it: sft_trainer.py)',
    'pad_token': 'which token pads (TRL raises unless the vocabulary has it)', 'eot_tokens': 'end-of-turn ids',
    'hf_use_auth_token': 'hub access', 'hub_token': 'hub access', 'hf_hub_token': 'hub access',
    'ms_hub_token': 'hub access', 'om_hub_token': 'hub access', 'use_auth_token': 'hub access',
    'token': "hub access (Unsloth's from_pretrained)", 'fix_tokenizer': 'tokenizer fixes',
    'total_num_tokens': 'a dataset statistic', 'total_supervised_tokens': 'a dataset statistic',
    'include_tokens_per_second': 'logging', 'include_num_input_tokens_seen': 'logging',
    'include_effective_tokens_per_second': 'logging',
    'fix_untrained_tokens': 're-initializes existing rows in place',
    'sample_packing_group_size': 'packing settings: how samples fill the bins, not the bytes of a row',
    'sample_packing_bin_size': 'packing settings: how samples fill the bins, not the bytes of a row',
    'sample_packing_sequentially': 'packing settings: how samples fill the bins, not the bytes of a row',
    'sample_packing_mp_start_method': 'packing settings: how samples fill the bins, not the bytes of a row',
    'sample_packing_eff_est': 'packing settings: how samples fill the bins, not the bytes of a row',
    'streaming_multipack_buffer_size': 'packing settings: how samples fill the bins, not the bytes of a row',
    'pretrain_multipack_buffer_size': 'packing settings: how samples fill the bins, not the bytes of a row',
    'max_prompt_len': 'a filter on samples', 'min_sample_len': 'a filter on samples',
    'excess_length_strategy': 'what happens to samples over sequence_len (dropped or truncated)',
    'length_column_name': 'a dataset column', 'group_by_length': 'sample order',
    'pose_split_on_token_ids': 'PoSE settings (PoSE itself is refused)', 'pose_max_context_len': 'PoSE settings',
    'dataloader_prefetch_factor': 'host-side batches', 'dataset_batch_size': 'tokenization batch',
    'preprocessing_batch_size': 'tokenization batch', 'gradio_max_new_tokens': 'the demo',
    'eval_max_new_tokens': 'eval generation (scheduled apart)', 'generation_max_new_tokens': 'sample generation',
    'generation_max_length': 'predict runs', 'lora_model_dir': 'where a trained adapter is loaded from for merging',
    'lora_fan_in_fan_out': 'layout flag', 'peft_init_lora_weights': 'the initialization',
    'qlora_sharded_model_loading': 'load-time host memory', 'experimental_skip_move_to_device': 'load order',
    'merge_lora': 'after training', 'loraplus_lr_ratio': 'a learning rate',
    'loraplus_lr_embedding': 'a learning rate', 'optim_args': 'optimizer hyperparameters',
    'resume_from_checkpoint': 'where to resume', 'auto_resume_from_checkpoints': 'where to resume',
    'restore_callback_states_from_checkpoint': 'resuming', 'enable_jit_checkpoint': 'saving',
    'torch_empty_cache_steps': 'when the cache is emptied', 'deepspeed_multinode_launcher': 'the launcher',
    'zero3_save_16bit_model': 'save-time host gathers',
    'stage3_gather_16bit_weights_on_model_save': 'save-time host gathers',
    'gather_16bit_weights_on_model_save': 'save-time host gathers', 'elastic_checkpoint': 'checkpoint format',
    'load_from_fp32_weights': 'checkpoint loading', 'round_robin_gradients': 'CPU-offload copy order',
    'ignore_unused_parameters': 'a validation switch', 'zero_allow_untested_optimizer': 'a validation switch',
    'zero_force_ds_cpu_optimizer': 'a validation switch', 'pin_memory': 'pinned host buffers',
    'nvme_path': 'a path', 'offload_optimizer_nvme_path': 'a path', 'offload_param_nvme_path': 'a path',
    'buffer_count': 'host-side NVMe buffers', 'buffer_size': 'host-side NVMe buffers',
    'max_in_cpu': 'host-side parameter cache', 'fast_init': 'host-side init', 'pipeline_read': 'NVMe I/O',
    'pipeline_write': 'NVMe I/O', 'downcast_bf16': 'XLA/TPU only', 'gpu_ids': 'which GPUs, not how many',
    'cache_dir': 'a download path', 'overwrite_cache': 'preprocessing', 'profiler.*': "the profiler's settings",
    'bf16.immediate_grad_update': 'a flag',
    'quantization': "axolotl's post-training quantization (axolotl quantize, after training)",
    'dataset_shard_num': 'which data shard', 'dataset_shard_idx': 'which data shard',
    'num_dataset_shards_to_save': 'saving the prepared dataset', 'local_rank': "the launcher's rank",
    'machine_rank': "the launcher's rank", 'dataloader_persistent_workers': 'host-side data workers',
    'trackio_bucket_id': 'logging', 'optimizer.lr': 'a scalar', 'optimizer.weight_decay': 'a scalar',
    'optimizer.betas': 'scalars', 'optimizer.eps': 'a scalar', 'checkpointer.*': 'checkpoint paths',
    'save_adapter_weights_only': 'what is saved', 'ignore_pad_token_for_loss': 'label masking',
    'tokenized_path': 'a path', 'adapter_folder': 'a path',
    'profiler_profile_memory': "the profiler's output (the profiler itself is refused when enabled)",
    'gradient_clipping': 'a scalar', 'deepspeed_hostfile': 'a path',
    'checkpoint.*': "DeepSpeed's checkpoint format", 'fp16.auto_cast': 'loss scaling settings',
    'loss_scale': 'a scalar', 'initial_scale_power': 'a scalar', 'loss_scale_window': 'a scalar',
    'hysteresis': 'a scalar', 'min_loss_scale': 'a scalar', 'consecutive_hysteresis': 'a scalar',
    'optimizer.params.*': 'optimizer hyperparameters', 'xla_fsdp_settings': 'TPU only',
    'xla_fsdp_grad_ckpt': 'TPU only', 'xla_fsdp_v2': 'TPU only', 'tokenizer': "an object (Unsloth's SFTTrainer)",
}


def _bare(key: str) -> list[str]:
    """The dotted parts of a key, past a DeepSpeed 'deepspeed:' prefix, without FSDP's optional 'fsdp_'."""
    return [p[5:] if p.startswith("fsdp_") else p for p in key.split(":")[-1].split(".")]


def _host_side(key: str) -> bool:
    parts = _bare(key)
    return any(".".join(parts[i:]) in HOST_SIDE for i in range(len(parts))) or \
        any(".".join(parts[:i]) + ".*" in HOST_SIDE for i in range(1, len(parts)))


def _memory_word(key: str) -> str | None:
    name = ".".join(_bare(key)).lower()
    if name.startswith("fsdp_config."):
        name = name[len("fsdp_config."):]
    return next((w for w in MEMORY_WORDS if w in name), None)


@dataclass(frozen=True)
class Expect:
    format: str = ""
    model: str | None = None           # the preset it resolves to, or the "unknown model" line
    options: dict[str, Any] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    error: str | None = None           # a file gpuplan does not read at all: the one line


# torchtune recipes repeat these two: one refusal line and the all-projection LoRA target list.
NO_MAX_SEQ_LEN = ('tokenizer.max_seq_len: null is not modelled yet (no truncation: each batch is as long as its '
                  'longest sample; give the length to plan for in the config); give --seq-len')
TORCHTUNE_TARGETS = 'q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj'
TORCHTUNE_STACK = 'torchtune-0.6.1'    # the knobs a recipe leaves out take torchtune's defaults

EXPECTED: dict[str, Expect] = {
    'axolotl/archived-qwen-lora.yml': Expect(
        'axolotl', "unknown model 'Qwen/Qwen-7B'",
        dict(method='qlora', quant_type='int8', precision='bf16-mixed', batch_size=2, seq_len=2048, grad_accum=4,
             lora_r=32, lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=False,
             optimizer='adamw-8bit')),
    'axolotl/bigstral-ds-zero3.yaml': Expect(
        'axolotl', "mixtral-8x22b",   # bf16 weights; ZeRO-3 keeps fp32 master weights (the engine decides)
        dict(packing='rows', precision='bf16-mixed', weights_dtype='bf16', batch_size=1, seq_len=2048, grad_accum=1, grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash', zero=3, offload='params', offload_device='cpu', gpus_per_node=8),
        refused=[
            'unfrozen_parameters: [^lm_head.weight$, ^model.embed_tokens.weight$, '
             'model.layers.4[4-9]+.block_sparse_moe.gate, ... (6 items)] is not modelled yet (training a '
             'regex-chosen subset of parameters (freeze tuning)); remove it to plan the rest',
            "model_config: {output_router_logits: true} is not modelled yet (overrides of the model's "
             'config.json change the architecture planned); remove it to plan the rest',
            'tokens: [<|im_start|>] is not modelled yet (new tokens add embedding and lm_head rows '
             '(resize_token_embeddings)); remove it to plan the rest',
        ]),
    'axolotl/gemma-3-1b-qlora.yml': Expect(
        'axolotl', "gemma-3-1b",
        dict(packing='rows', method='qlora', precision='bf16-mixed', batch_size=1, seq_len=2048, grad_accum=4, lora_r=32,
             lora_alpha=16.0, lora_dropout=0.0, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-8bit',
             attn='flash'),
        refused=[
            'unfrozen_parameters: [^model.language_model.*, ^lm_head.*] is not modelled yet (training a '
             'regex-chosen subset of parameters (freeze tuning)); remove it to plan the rest',
        ]),
    'axolotl/llama-2-qlora-fsdp.yml': Expect(
        'axolotl', 'llama-2-7b',
        dict(method='qlora', precision='bf16-mixed', batch_size=4, seq_len=512, grad_accum=4, lora_r=32,
             lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-fused',
             attn='flash', fsdp='full', cpu_ram_efficient_loading=True, offload='params', gpus_per_node=8,
             fsdp_version='1', fsdp_state_dict='full', fsdp_flat_params=True)),   # the save phase: FSDP1's hooks
    'axolotl/llama-3-fft-8b-liger-fsdp.yaml': Expect(
        'axolotl', 'llama-3.1-8b',    # bf16 weights; accelerate upcasts them to fp32 under FSDP mixed precision
        dict(packing='rows', precision='bf16-mixed', weights_dtype='bf16', batch_size=2, seq_len=4096, grad_accum=4, grad_ckpt=True,
             optimizer='adamw-fused', attn='flash', liger_kernels='rope,rms_norm,swiglu,geglu,flce',
             liger_before_load=True, fsdp='full', cpu_ram_efficient_loading=True, offload='params', gpus_per_node=8,
             fsdp_version='1', fsdp_state_dict='full', fsdp_flat_params=True)),
    'axolotl/llama3-8b-fsdp2-alst.yaml': Expect(
        'axolotl', 'llama-3.1-8b',    # ALST: context_parallel_size with sample_packing -> ring-flash-attn varlen_llama3
        dict(precision='bf16-mixed', weights_dtype='bf16', batch_size=1, seq_len=500000, grad_accum=1, grad_ckpt=True,
             activation_offload='trl-sync', optimizer='torchao-adamw-8bit', attn='flash', packing='rows',
             tiled_mlp=True, context_parallel=8, cp_kind='llama3', fsdp='full', gpus_per_node=8,
             fsdp_version='2', fsdp_state_dict='sharded')),
    'axolotl/llama-3-fft-8b.yaml': Expect(
        'axolotl', 'llama-3.1-8b',    # bf16: true loads bf16 weights and autocasts (TrainingArguments bf16=True)
        dict(packing='rows', precision='bf16-mixed', weights_dtype='bf16', batch_size=1, seq_len=8192, grad_accum=8, grad_ckpt=True,
             optimizer='paged-adamw-8bit', attn='flash'),
        refused=[
        ]),
    'axolotl/llama-3-instruct-lora-8b.yml': Expect(
        'axolotl', "llama-3-8b",
        dict(method='qlora', quant_type='int8', precision='bf16-mixed', batch_size=2, seq_len=4096, grad_accum=4,
             lora_r=32, lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash')),
    'axolotl/llama-3-lora-1b-kernels.yml': Expect(
        'axolotl', 'llama-3.2-1b',
        dict(packing='rows', method='lora', precision='bf16-mixed', base_dtype='bf16', batch_size=2, seq_len=2048, grad_accum=2,
             lora_r=16, lora_alpha=32.0, lora_targets='gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj',
             grad_ckpt=True, optimizer='adamw-8bit', attn='flash'),
        refused=[
            "lora_mlp_kernel: true is not modelled yet (axolotl's LoRA MLP kernels fuse the adapter math and "
             'save fewer activations); remove it to plan the rest',
            "lora_qkv_kernel: true is not modelled yet (axolotl's LoRA QKV kernels fuse the adapter math and "
             'save fewer activations); remove it to plan the rest',
            "lora_o_kernel: true is not modelled yet (axolotl's LoRA O kernels fuse the adapter math and save "
             'fewer activations); remove it to plan the rest',
        ]),
    'axolotl/llama-3-lora-1b.yml': Expect(
        'axolotl', 'llama-3.2-1b',
        dict(packing='rows', method='lora', precision='bf16-mixed', base_dtype='bf16', batch_size=2, seq_len=2048, grad_accum=2,
             lora_r=16, lora_alpha=32.0, lora_dropout=0.05,
             lora_targets='gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash'),
        refused=[
        ]),
    'axolotl/llama-3-lora-8b.yml': Expect(
        'axolotl', 'llama-3-8b',
        dict(packing='rows', method='qlora', quant_type='int8', precision='bf16-mixed', batch_size=2, seq_len=4096, grad_accum=4,
             lora_r=32, lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash', modules_to_save='embed_tokens,lm_head'),
        refused=[
        ]),
    'axolotl/llama-3-qlora-1b.yml': Expect(
        'axolotl', 'llama-3.2-1b',
        dict(packing='rows', method='qlora', precision='bf16-mixed', batch_size=2, seq_len=2048, grad_accum=4, lora_r=32,
             lora_alpha=16.0, lora_dropout=0.05,
             lora_targets='gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash'),
        refused=[
        ]),
    'axolotl/llama-3-qlora-fsdp-70b.yaml': Expect(
        'axolotl', "unknown model 'casperhansen/llama-3-70b-fp16'",
        dict(method='qlora', precision='bf16-mixed', batch_size=1, seq_len=512, grad_accum=4, lora_r=8,
             lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-fused',
             attn='flash', fsdp='full', cpu_ram_efficient_loading=True, offload='params', gpus_per_node=8,
             fsdp_version='1', fsdp_state_dict='full', fsdp_flat_params=True)),
    'axolotl/llama-3-qlora.yml': Expect(
        'axolotl', 'llama-3-8b',
        dict(packing='rows', method='qlora', precision='bf16-mixed', batch_size=2, seq_len=4096, grad_accum=4, lora_r=32,
             lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='paged-adamw',
             attn='flash'),
        refused=[
        ]),
    'axolotl/mistral-lora.yml': Expect(
        'axolotl', "mistral-7b-v0.1",
        dict(packing='rows', method='qlora', quant_type='int8', precision='bf16-mixed', batch_size=2, seq_len=8192, grad_accum=4,
             lora_r=32, lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash'),
        refused=[
        ]),
    'axolotl/mistral-qlora-orpo.yml': Expect(   # rl: orpo -> TRL's ORPOTrainer
        'axolotl', "mistral-7b-v0.1",
        dict(method='qlora', precision='bf16-mixed', batch_size=2, seq_len=4096, grad_accum=4, lora_r=32,
             lora_alpha=16.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-8bit',
             attn='flash', objective='orpo'),
        refused=[]),
    'axolotl/qwen2-dpo.yaml': Expect(   # rl: dpo -> TRL 1.9's DPOTrainer (axolotl 0.19 pins trl==1.9.0)
        'axolotl', "qwen-2.5-0.5b",
        dict(precision='bf16-mixed', weights_dtype='bf16', batch_size=2, seq_len=2048, grad_accum=4, grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash', objective='dpo', stack_versions='trl-1.12', loss='hf'),
        refused=[]),
    'axolotl/llama-3-instruct-dpo-lora-8b.yml': Expect(   # rl: dpo, 8-bit LoRA; DPOConfig.disable_dropout zeroes LoRA's
        'axolotl', "llama-3-8b",
        dict(method='qlora', quant_type='int8', precision='bf16-mixed', batch_size=2, seq_len=4096, grad_accum=4,
             lora_r=32, lora_alpha=16.0, lora_dropout=0.0, lora_targets='all-linear', grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash', objective='dpo', stack_versions='trl-1.12', loss='hf'),
        refused=[]),
    'axolotl/llama-3-qlora-1b-kto.yaml': Expect(   # rl: kto: TRL 1.9's KTOTrainer is not modelled
        'axolotl', "llama-3.2-1b",
        dict(method='qlora', precision='bf16-mixed', batch_size=2, seq_len=2048, grad_accum=1, lora_r=32,
             lora_alpha=64.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-8bit',
             attn='flash'),
        refused=['rl: kto is not modelled yet (axolotl 0.19.0 pins trl==1.9.0, whose KTO trainer gpuplan does not '
                 'model (rl: orpo, dpo and ipo are)); plan its SFT step, or rl: dpo / orpo']),
    'axolotl/gemma2-reward-model.yaml': Expect(   # reward_model: true -> TRL's RewardTrainer
        'axolotl', "gemma-2-2b",
        dict(precision='bf16-mixed', weights_dtype='bf16', batch_size=2, seq_len=2048, grad_accum=4, grad_ckpt=True,
             optimizer='adamw-8bit', attn='flash', padding='max-length', objective='rm'),
        refused=[]),
    'axolotl/phi3-ft.yml': Expect(
        'axolotl', 'phi-3-mini-4k-instruct',
        dict(packing='rows', method='lora', precision='bf16-mixed', base_dtype='bf16', batch_size=2, seq_len=4096, grad_accum=1,
             lora_r=64, lora_alpha=32.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True,
             optimizer='adamw-fused', attn='flash', eval_batch_size=2, eval_generate_tokens=32),
        refused=[
            'resize_token_embeddings_to_32x: true is not modelled yet (resizing the vocabulary to a multiple '
             'of 32 adds rows); remove it to plan the rest',
        ]),
    'axolotl/qwen2-qlora-fsdp.yaml': Expect(
        'axolotl', "unknown model 'Qwen/Qwen2-7B'",
        dict(packing='rows', method='qlora', precision='bf16-mixed', batch_size=1, seq_len=2048, grad_accum=4, lora_r=32,
             lora_alpha=64.0, lora_dropout=0.05, lora_targets='all-linear', grad_ckpt=True, optimizer='adamw-fused',
             attn='flash', fsdp='full', cpu_ram_efficient_loading=True, offload='params', gpus_per_node=8,
             fsdp_version='1', fsdp_state_dict='full', fsdp_flat_params=True),
        refused=[
        ]),
    'hf/alignment-handbook-accelerate-ddp.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed')),
    'hf/alignment-handbook-accelerate-fsdp.yaml': Expect(
        'accelerate', None,   # no fsdp_version: accelerate's FSDP1
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed', fsdp='full', cpu_ram_efficient_loading=True,
             fsdp_version='1', fsdp_state_dict='sharded', fsdp_forward_prefetch=True)),
    'hf/alignment-handbook-accelerate-zero3.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed', zero=3)),
    'hf/alignment-handbook-smollm2-sft-config.yaml': Expect(
        'hf', 'smollm-2-1.7b',   # torch_dtype bfloat16 + bf16: true: bf16 weights under autocast
        dict(precision='bf16-mixed', weights_dtype='bf16', seq_len=8192, attn='flash', batch_size=4, grad_accum=4, grad_ckpt=True,
             eval_batch_size=4)),   # eval_strategy epoch: the eval phase at per_device_eval_batch_size
    'hf/alignment-handbook-zephyr-7b-beta-sft-config_full.yaml': Expect(
        'hf', "mistral-7b-v0.1",
        dict(precision='bf16-mixed', weights_dtype='bf16', seq_len=2048, attn='flash', batch_size=16, grad_accum=1, grad_ckpt=True,
             eval_batch_size=8)),
    'hf/alignment-handbook-zephyr-7b-beta-sft-config_qlora.yaml': Expect(
        'hf', "mistral-7b-v0.1",
        dict(method='qlora', precision='bf16-mixed', seq_len=2048, lora_r=16, lora_alpha=16.0, lora_dropout=0.05,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', attn='flash', batch_size=4,
             grad_accum=2, grad_ckpt=True, eval_batch_size=8)),   # was refused before the eval phase was read
    'hf/trl-accelerate-deepspeed_zero2.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed', zero=2)),
    'hf/trl-accelerate-fsdp2.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed', fsdp='full', cpu_ram_efficient_loading=True,
             fsdp_version='2', fsdp_state_dict='full')),
    'hf/trl-accelerate-multi_gpu.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=8, precision='bf16-mixed')),
    'hf/trl-cli-example_config.yaml': Expect(
        'hf', 'qwen-2.5-0.5b',
        dict()),
    'llamafactory/accelerate_fsdp_config.yaml': Expect(
        'accelerate', None,
        dict(nodes=1, gpus_per_node=2, precision='bf16-mixed', fsdp='full', cpu_ram_efficient_loading=True,
             fsdp_version='1', fsdp_state_dict='full')),
    'llamafactory/fsdp_qlora_llama3_lora_sft-v0.9.3.yaml': Expect(
        'llamafactory', "llama-3-8b",   # fp32 adapters, no prepare_model_for_kbit_training (model/adapter.py)
        dict(method='qlora', precision='bf16-mixed', adapter_dtype='fp32', kbit_upcast=False, seq_len=2048, lora_r=8,
             lora_alpha=16.0, lora_targets='all-linear', grad_ckpt=True, batch_size=1, grad_accum=8)),
    'llamafactory/galore_llama3_full_sft-v0.9.3.yaml': Expect(
        'llamafactory', "llama-3-8b",
        dict(method='full', precision='bf16-true', seq_len=2048, grad_ckpt=True, batch_size=1, grad_accum=1,
             optimizer='galore-adamw', galore_rank=128, optimizer_in_backward=True)),
    'llamafactory/llama3_full_sft-v0.9.3.yaml': Expect(
        'llamafactory', "llama-3-8b",
        dict(method='full', precision='bf16-mixed', seq_len=2048, grad_ckpt=True, batch_size=1, grad_accum=2,
             zero=3, gpus_per_node=8)),
    'llamafactory/llama3_lora_sft-v0.9.3.yaml': Expect(
        'llamafactory', "llama-3-8b",
        dict(method='lora', precision='bf16-mixed', base_dtype='bf16', seq_len=2048, lora_r=8, lora_alpha=16.0,
             lora_targets='all-linear', grad_ckpt=True, batch_size=1, grad_accum=8)),
    'llamafactory/llama_pro_llama3_freeze_sft-v0.9.3.yaml': Expect(
        'llamafactory', "unknown model 'models/llama3-8b-pro'",
        dict(precision='bf16-mixed', seq_len=2048, grad_ckpt=True, batch_size=1, grad_accum=8),
        refused=[
            'use_llama_pro: true is not modelled yet (LLaMA Pro expands and trains added blocks); remove it '
             'to plan the rest',
            'finetuning_type: freeze is not modelled yet (freeze tuning trains only the last '
             'freeze_trainable_layers layers); use full or lora',
        ]),
    'llamafactory/qwen3_full_sft.yaml': Expect(
        'llamafactory', 'qwen-3-4b-instruct-2507',
        dict(method='full', precision='bf16-mixed', seq_len=2048, grad_ckpt=True, batch_size=1, grad_accum=2,
             zero=3, gpus_per_node=8)),
    'llamafactory/qwen3_lora_sft.yaml': Expect(
        'llamafactory', 'qwen-3-4b-instruct-2507',
        dict(method='lora', precision='bf16-mixed', base_dtype='bf16', seq_len=2048, lora_r=8, lora_alpha=16.0,
             lora_targets='all-linear', grad_ckpt=True, batch_size=1, grad_accum=8)),
    'llamafactory/qwen3_lora_sft_ds3.yaml': Expect(
        'llamafactory', 'qwen-3-4b-instruct-2507',
        dict(method='lora', precision='bf16-mixed', base_dtype='bf16', seq_len=2048, lora_r=8, lora_alpha=16.0,
             lora_targets='all-linear', grad_ckpt=True, batch_size=1, grad_accum=2, zero=3, gpus_per_node=8)),
    'llamafactory/qwen3_lora_sft_otfq.yaml': Expect(
        'llamafactory', 'qwen-3-4b-instruct-2507',
        dict(method='qlora', precision='bf16-mixed', adapter_dtype='fp32', kbit_upcast=False, seq_len=2048, lora_r=8, lora_alpha=16.0,
             lora_targets='all-linear', grad_ckpt=True, batch_size=1, grad_accum=8)),
    'llamafactory/v1_train_lora_sft.yaml': Expect(error=(
        "LLaMA-Factory's v1 config format (model/peft_config/dist_config, examples/v1) is not read yet; "
         'gpuplan reads the classic format of src/llamafactory/hparams (finetuning_type, lora_rank, '
         'cutoff_len, ...)')),
    'torchtune/gemma2-2B_lora_single_device.yaml': Expect(
        'torchtune', 'gemma-2-2b',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=64, lora_alpha=128.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=8, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output')),
    'torchtune/llama3_1-70B_lora.yaml': Expect(
        'torchtune', 'llama-3.1-70b',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=16, lora_alpha=32.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=2, grad_accum=1, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/llama3_1-8B_full_single_device.yaml': Expect(
        'torchtune', 'llama-3.1-8b',
        dict(stack_versions=TORCHTUNE_STACK, method='full', precision='bf16-true', batch_size=2, grad_accum=1, grad_ckpt=True,
             optimizer='paged-adamw-8bit', loss='chunked-output', optimizer_in_backward=True),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/llama3_1-8B_lora_single_device.yaml': Expect(
        'torchtune', 'llama-3.1-8b',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=8, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=2, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/llama3_1-8B_qlora_single_device.yaml': Expect(
        'torchtune', 'llama-3.1-8b',
        dict(stack_versions=TORCHTUNE_STACK, method='qlora', lora_r=8, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=2, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/llama3_2-1B_lora_single_device.yaml': Expect(
        'torchtune', 'llama-3.2-1b',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=64, lora_alpha=128.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=4, grad_accum=8, grad_ckpt=False, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/llama3_2-3B_full.yaml': Expect(
        'torchtune', 'llama-3.2-3b',
        dict(stack_versions=TORCHTUNE_STACK, method='full', precision='bf16-true', batch_size=4, grad_accum=8, grad_ckpt=True,
             optimizer='adamw-fused', loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/mistral-7B_lora_single_device.yaml': Expect(
        'torchtune', None,
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=64, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=4, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            'model.apply_lora_to_output: true is not modelled yet (LoRA on the output projection (lm_head) is '
             'not planned); remove it to plan the rest',
            'model._component_: torchtune.models.mistral.lora_mistral_7b is not modelled yet (the builder '
             "mistral_7b maps to no gpuplan preset (mapped: torchtune 0.6.1's llama2/3/3.1/3.2/3.3, gemma_7b, "
             'gemma2, phi3_mini, phi4 and qwen2_5 builders)); give --model with a preset or a config.json',
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/phi3-mini_lora_single_device.yaml': Expect(
        'torchtune', 'phi-3-mini-4k-instruct',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=8, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='qkv_proj,o_proj,gate_up_proj,down_proj', precision='bf16-true', adapter_dtype='bf16',
             batch_size=2, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused', loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/qwen2-0.5B_lora_single_device.yaml': Expect(
        'torchtune', None,
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=32, lora_alpha=64.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=4, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            'model._component_: torchtune.models.qwen2.lora_qwen2_0_5b is not modelled yet (the builder '
             "qwen2_0_5b maps to no gpuplan preset (mapped: torchtune 0.6.1's llama2/3/3.1/3.2/3.3, gemma_7b, "
             'gemma2, phi3_mini, phi4 and qwen2_5 builders)); give --model with a preset or a config.json',
            NO_MAX_SEQ_LEN,
        ]),
    'torchtune/qwen2_5-7B_lora_single_device.yaml': Expect(
        'torchtune', 'qwen-2.5-7b',
        dict(stack_versions=TORCHTUNE_STACK, method='lora', lora_r=8, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets=TORCHTUNE_TARGETS, precision='bf16-true',
             adapter_dtype='bf16', batch_size=2, grad_accum=8, grad_ckpt=True, optimizer='adamw-fused',
             loss='chunked-output'),
        refused=[
            NO_MAX_SEQ_LEN,
        ]),
    'unsloth/Gemma2_2B-Alpaca.py': Expect(
        'unsloth', 'gemma-2-2b',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Gemma3_4B.py': Expect(   # FastModel loads the whole Gemma3ForConditionalGeneration
        'unsloth', 'gemma-3-4b-it-multimodal',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=8, lora_alpha=8.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', lora_language_only=True,
             seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Llama3.1_8B-Alpaca.ipynb': Expect(
        'unsloth', 'llama-3.1-8b',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Llama3.1_8B-Alpaca.py': Expect(
        'unsloth', 'llama-3.1-8b',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Llama3.2_1B_and_3B-Conversational.ipynb': Expect(
        'unsloth', "llama-3.2-3b",
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Mistral_v0.3_7B-CPT.py': Expect(
        'unsloth', 'mistral-7b-v0.3',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=128, lora_alpha=32.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=8, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[
            'get_peft_model.target_modules: embed_tokens, lm_head is not modelled yet (embed_tokens / lm_head '
             'in target_modules are trained in full (Unsloth makes them modules_to_save)); remove them to plan '
             'the rest',
        ]),
    'unsloth/Mistral_v0.3_7B-Conversational.py': Expect(
        'unsloth', "unknown model 'unsloth/mistral-7b-instruct-v0.3-bnb-4bit'",
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Phi_4-Conversational.py': Expect(
        'unsloth', 'phi-4',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
    'unsloth/Qwen2.5_7B-Alpaca.py': Expect(
        'unsloth', 'qwen-2.5-7b',
        dict(method='qlora', precision='bf16-mixed', loss='chunked', lora_r=16, lora_alpha=16.0, lora_dropout=0.0,
             lora_targets='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', seq_len=2048, batch_size=2,
             grad_accum=4, optimizer='adamw-8bit', grad_ckpt=True,
             activation_offload='unsloth'),
        refused=[]),
}


def test_the_corpus_is_the_expected_one():
    assert sorted(EXPECTED) == FILES
    assert len(FILES) >= 40 and {f.split("/")[0] for f in FILES} >= {"axolotl", "torchtune", "hf", "llamafactory",
                                                                       "unsloth"}


@pytest.mark.parametrize("name", FILES)
def test_every_file_names_its_source(name):
    p = CORPUS / name
    if p.suffix == ".ipynb":
        src = SOURCES[name]
        assert set(src) == {"repo", "path", "commit"} and re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    else:
        first = p.read_text().splitlines()[0]
        assert re.fullmatch(r"# source: https://github\.com/[\w.-]+/[\w.-]+ \S+ @ [0-9a-f]{40} \(copied verbatim below\)",
                            first), first


def test_manifest_lists_only_files_that_exist():
    assert all((CORPUS / k).is_file() and k.endswith((".json", ".ipynb")) for k in SOURCES)
    assert {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.suffix in (".json", ".ipynb")
            and p.name != "SOURCES.json"} == set(SOURCES)


@pytest.mark.parametrize("name", FILES)
def test_each_config_maps_to_what_it_says(name, monkeypatch):
    monkeypatch.setenv("GPUPLAN_OFFLINE", "1")
    exp = EXPECTED[name]
    path = str(CORPUS / name)
    if exp.error:
        with pytest.raises(PlannerError) as e:
            read_config(path)
        assert str(e.value) == f"{path}: {exp.error}"
        return
    c = read_config(path)
    assert c.format == exp.format
    assert c.options == exp.options
    assert list(c.refused) == exp.refused
    assert not c.unknown, f"keys unknown to the {c.format} table: {c.unknown}"
    if exp.refused:
        with pytest.raises(PlannerError) as e:
            c.check()
        assert str(e.value) == f"{path}: " + " | ".join(exp.refused)
    else:
        assert c.check() is c
    if c.model is not None:
        try:
            got = resolve_model(c.model).name
        except PlannerError as e:
            got = str(e).split(";")[0].split(" (list")[0]
            assert got.startswith("unknown model ")
        assert got == exp.model
    for key in c.no_effect:
        word = _memory_word(key)
        assert word is None or _host_side(key), f"{key} (memory word {word!r}) is listed as no effect"


TABLES = {"axolotl": axolotl.TABLE, "hf": hf.TABLE, "torchtune": torchtune.TABLE, "llamafactory": llamafactory.TABLE,
          "accelerate": accelerate.TABLE, "deepspeed": DEEPSPEED_TABLE, "fsdp": FSDP_TABLE,
          **{f"unsloth.{k}": t for k, t in unsloth.TABLES.items()}}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_no_memory_relevant_key_is_in_any_no_effect_group(table):
    bad = [k for k, r in TABLES[table].items() if r.rule is Rule.NO_EFFECT and _memory_word(k) and not _host_side(k)]
    assert not bad, f"{table}: memory-relevant keys listed as no effect: {bad}"


def test_the_memory_check_can_fail():
    assert _memory_word("micro_batch_size") == "batch" and not _host_side("micro_batch_size")
    assert _host_side("deepspeed:zero_optimization.offload_param.pin_memory")
