"""torchtune recipe YAML -> setup options, with torchtune 0.6.1 recipe semantics.

torchtune is no longer actively maintained (its README: "torchtune development wound down in 2025",
pytorch/torchtune#2883); the table and the defaults describe its last release, v0.6.1 (tag commit
a6290a5b): the keys of every `recipes/configs/**/*.yaml` of that release and the recipes that read them
(`recipes/lora_finetune_single_device.py`, `full_finetune_single_device.py`, `*_distributed.py`), the
model builders of `torchtune/models/*/_model_builders.py`, and the loss of `torchtune/modules/loss/`.

Semantics taken from those recipes: the model is built in `dtype` with no autocast, LoRA adapters
in that dtype too (`training.set_default_dtype`); `tokenizer.max_seq_len` truncates each sample;
`CEWithChunkedOutputLoss` computes the loss per output chunk. The knobs a config leaves out take
torchtune's defaults, not HF/TRL's: the read names the `torchtune-0.6.1` stack (planner/specs/stack.py,
each default with its recipe line), which `--stack-versions` applies.
"""
from __future__ import annotations

import re
from typing import Any

from . import ConfigSetup
from .common import Options, mapped
from .rules import KeyRule, Report, flatten, modelled, no_effect, on, read_only_with, refused, show

VERSION = "0.6.1"
SEMANTICS = f"torchtune {VERSION} recipe semantics"

# torchtune 0.6.1 model builders -> gpuplan presets. Builders whose model has no preset, or whose
# config differs from the preset's, are refused by name. torchtune's mistral_7b is Mistral-7B-v0.1
# (vocab 32000 [torchtune/models/mistral/_model_builders.py]), not the v0.3 preset (vocab 32768).
BUILDERS = {
    "llama2_7b": "llama-2-7b", "llama2_13b": "llama-2-13b", "llama2_70b": "llama-2-70b",
    "llama3_8b": "llama-3-8b", "llama3_70b": "llama-3-70b",
    "llama3_1_8b": "llama-3.1-8b", "llama3_1_70b": "llama-3.1-70b", "llama3_1_405b": "llama-3.1-405b",
    "llama3_2_1b": "llama-3.2-1b", "llama3_2_3b": "llama-3.2-3b", "llama3_3_70b": "llama-3.3-70b",
    "gemma_7b": "gemma-7b", "gemma2_2b": "gemma-2-2b", "gemma2_9b": "gemma-2-9b", "gemma2_27b": "gemma-2-27b",
    "phi3_mini": "phi-3-mini-4k-instruct", "phi4_14b": "phi-4",
    "qwen2_5_0_5b": "qwen-2.5-0.5b", "qwen2_5_1_5b_base": "qwen-2.5-1.5b", "qwen2_5_1_5b_instruct": "qwen-2.5-1.5b",
    "qwen2_5_3b": "qwen-2.5-3b", "qwen2_5_7b_base": "qwen-2.5-7b", "qwen2_5_7b_instruct": "qwen-2.5-7b",
    "qwen2_5_14b_base": "qwen-2.5-14b", "qwen2_5_14b_instruct": "qwen-2.5-14b",
    "qwen2_5_32b_base": "qwen-2.5-32b", "qwen2_5_32b_instruct": "qwen-2.5-32b",
    "qwen2_5_72b_base": "qwen-2.5-72b", "qwen2_5_72b_instruct": "qwen-2.5-72b",
}
_OPTIM = {"torch.optim.AdamW": "adamw", "torch.optim.SGD": "sgd",
          "bitsandbytes.optim.PagedAdamW8bit": "paged-adamw-8bit", "bitsandbytes.optim.AdamW8bit": "adamw-8bit",
          "bitsandbytes.optim.PagedAdamW": "paged-adamw", "bitsandbytes.optim.Lion": "lion",
          "torchao.optim.AdamW8bit": "torchao-adamw-8bit", "torchao.optim.AdamW4bit": "torchao-adamw-4bit"}
# torchao 0.18 optim/adam.py: AdamW8bit(block_size=256), AdamW4bit(block_size=128) when the config sets none
_TORCHAO_BLOCK = {"torchao-adamw-8bit": 256, "torchao-adamw-4bit": 128}
# torchtune module names -> HF's; phi3 in HF fuses q/k/v into qkv_proj and gate/up into gate_up_proj
_LINEARS = {"output_proj": "o_proj", "q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj"}
_PHI3 = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "output_proj": "o_proj"}
_CHUNKED = {"torchtune.modules.loss.CEWithChunkedOutputLoss", "torchtune.modules.loss.LinearCrossEntropyLoss"}

TABLE: dict[str, KeyRule] = {
    "model._component_": modelled(f"--model (builder -> preset) --method full/lora/qlora ({SEMANTICS})"),
    "model.lora_rank": modelled("--lora-r"),
    "model.lora_alpha": modelled("--lora-alpha"),
    "model.lora_dropout": modelled("--lora-dropout"),
    "model.lora_attn_modules": modelled("--lora-targets (output_proj -> o_proj; phi3: q/k/v -> qkv_proj)"),
    "model.apply_lora_to_mlp": modelled("true: --lora-targets += gate_proj,up_proj,down_proj (phi3: gate_up_proj)"),
    "model.quantize_base": modelled("true: --method qlora (NF4 base)"),
    "dtype": modelled("bf16: --precision bf16-true (no autocast), LoRA --adapter-dtype bf16; fp32: fp32"),
    "batch_size": modelled("--batch-size"),
    "gradient_accumulation_steps": modelled("--grad-accum"),
    "enable_activation_checkpointing": modelled("--grad-ckpt / --no-grad-ckpt (absent: off, the recipes' default; "
                                                "each layer wrapped by torch's non-reentrant checkpoint_wrapper)"),
    "tokenizer.max_seq_len": modelled("--seq-len (null: no truncation, refused)"),
    "optimizer._component_": modelled("--optimizer"),
    "optimizer.fused": modelled("true with torch.optim.AdamW: --optimizer adamw-fused"),
    "loss._component_": modelled("CEWithChunkedOutputLoss: --loss chunked-output (each output chunk's logits in the "
                                 "model dtype, upcast chunk by chunk); LinearCrossEntropyLoss (torchtune main, after "
                                 "0.6.1): --loss chunked"),
    "fsdp_cpu_offload": modelled("true: --fsdp full --offload params (the distributed recipes' FSDP2)"),
    "fsdp.cpu_offload": modelled("true: --fsdp full --offload params"),
    "device": modelled("cuda: the GPU planned; cpu refused"),
    "optimizer.amsgrad": refused("AMSGrad keeps a third state (max_exp_avg_sq) per parameter"),
    "optimizer.momentum": refused("SGD without momentum keeps no momentum buffer; gpuplan's SGD has one",
                                  lambda v: v in (0, 0.0)),
    "model.apply_lora_to_output": refused("LoRA on the output projection (lm_head) is not planned"),
    "model.use_dora": refused("DoRA adds a magnitude vector and the weight-norm activations per adapted linear"),
    # torchtune's PackedDataset packs samples into rows of max_seq_len; padded_collate_packed gives a
    # block-causal mask [torchtune/data/_collate.py] (a BlockMask under flex attention on sm80+ GPUs, a
    # (b, s, s) bool otherwise): planned as transformers' SDPA builds it from packed position_ids
    "dataset.packed": modelled("true: --packing rows (block-causal mask planned as SDPA's (b, 1, s, s))"),
    "dataloader.packed": modelled("true: --packing rows"),
    "enable_activation_offloading": modelled("true: --activation-offload torchtune (needs "
                                             "enable_activation_checkpointing, as the recipes require)"),
    "optimizer_in_bwd": modelled("true: --optimizer-in-backward (one optimizer per parameter stepped in its "
                                 "post-accumulate-grad hook); the recipes refuse it with gradient accumulation or "
                                 "clip_grad_norm"),
    "optimizer.block_size": modelled("torchao AdamW8bit/AdamW4bit: --optim-block-size"),
    "compile": refused("torchtune compiles each decoder layer and its loss apart (training.compile_model, "
                       "compile_loss); the layers' cut is --compile's, the compiled chunked loss is not modelled yet"),
    "custom_sharded_layers": refused("extra FSDP units (embeddings, output) sharded apart"),
    "tensor_parallel_plan._component_": refused("tensor parallelism through a torchtune plan (give --tp)"),
    "tensor_parallel_dim": refused("tensor parallelism (give --tp)", lambda v: v not in (None, 1)),
    "data_parallel_shard_dim": refused("an explicit device mesh", lambda v: v not in (None, -1)),
    "data_parallel_replicate_dim": refused("an explicit device mesh", lambda v: v not in (None, 1)),
    "context_parallel_dim": refused("context parallelism", lambda v: v not in (None, 1)),
    "memory_efficient_fsdp_wrap": refused("torchtune's memory-efficient FSDP wrapping of the output layer"),
    "ac_mode": modelled("full_finetune_distributed / qat_distributed, with enable_activation_checkpointing false: "
                        "full: --grad-ckpt; selective: --ckpt-every ac_option --ckpt-first ac_option-1; none: "
                        "--no-grad-ckpt [recipes/full_finetune_distributed.py _setup_model]"),
    "ac_option": modelled("with ac_mode selective: every ac_option-th layer (torchtune/training/activations.py); "
                          "\"op\" refused (int(\"op\") raises in 0.6.1)"),
    "quantizer._component_": refused("quantization-aware training fake-quantizes weights and activations"),
    "quantizer.*": refused("quantization-aware training"),
    "teacher_model._component_": refused("knowledge distillation keeps a teacher model"),
    "kd_loss._component_": refused("knowledge distillation"),
    "kd_ratio": refused("knowledge distillation"),
    "ref_checkpointer.*": refused("preference training keeps a reference model"),
    "policy_model._component_": refused("PPO keeps policy, reference, reward and value models"),
    "reward_and_value_model.*": refused("PPO keeps reward and value models"),
    "loss.label_smoothing": refused("label smoothing", lambda v: v not in (None, 0, 0.0)),
    "profiler.enabled": refused("the profiler's active steps run slower and hold traces", lambda v: v is True),
    "model.decoder_trainable": refused("vision (fusion) models"),
    "model.encoder_trainable": refused("vision (fusion) models"),
    "model.fusion_trainable": refused("vision (fusion) models"),
    "model.image_size": refused("vision inputs"),
    "tokenizer.image_size": refused("vision inputs"),
    "enable_kv_cache": refused("a KV cache (generation)", lambda v: v is True),
    "quantizer": refused("quantization-aware training (or a post-training quantization recipe)", lambda v: v is not None),
    "tasks": refused("an evaluation recipe (eleuther_eval), not a training run"),
    "max_new_tokens": refused("a generation recipe, not a training run"),
    "prompt.*": refused("a generation recipe, not a training run"),
    **read_only_with("the PPO recipe's policy_model / reward_and_value_model", [
        "forward_batch_size", "gamma", "kl_coeff", "lmbda", "loss.value_clip_range", "loss.value_coeff",
        "loss.epsilon", "min_response_length", "num_steps", "penalise_no_eos", "ppo_batch_size", "ppo_epochs",
        "reward_penalty", "whiten_rewards", "stop_token_ids", "temperature", "top_k", "max_generated_tokens",
        "ref_policy_checkpointer.*", "reward_checkpointer.*", "value_checkpointer.*"]),
    **read_only_with("ref_checkpointer (preference training)", ["loss.beta"]),
    **read_only_with("teacher_model (knowledge distillation)", ["teacher_checkpointer.*"]),
    **read_only_with("tasks (an evaluation recipe)", ["limit", "max_seq_length"]),
    **no_effect("data: dataset sources, splits, templates, collation, shuffling", [
        "dataset.*", "datasets", "collate_fn", "dataloader.*", "shuffle", "tokenizer._component_",
        "tokenizer.path", "tokenizer.merges_file", "tokenizer.merges_path", "tokenizer.vocab_path",
        "tokenizer.prompt_template", "tokenizer.special_tokens_path"]),
    **no_effect("optimizer hyperparameters, schedule and clipping (scalars)", [
        "optimizer.lr", "optimizer.weight_decay", "optimizer.betas", "optimizer.eps", "lr_scheduler.*", "clip_grad_norm", "epochs", "max_steps_per_epoch", "seed"]),
    **no_effect("checkpoint paths, saving and resuming (host-side)", [
        "output_dir", "checkpointer.*", "resume_from_checkpoint", "save_adapter_weights_only", "low_cpu_ram"]),
    **no_effect("logging and profiling switches (the profiler is refused when enabled)", [
        "metric_logger.*", "log_every_n_steps", "log_peak_memory_stats", "log_level", "profiler.*"]),
}


def _builder(component: str, rep: Report) -> tuple[str | None, str]:
    """(preset name or None, method) from e.g. torchtune.models.llama3_1.qlora_llama3_1_8b."""
    m = re.fullmatch(r"torchtune\.models\.(\w+)\.(lora_|qlora_)?(\w+)", component)
    name = m.group(3) if m else component
    method = {"lora_": "lora", "qlora_": "qlora"}.get((m.group(2) if m else "") or "", "full")
    if name not in BUILDERS:
        rep.refuse("model._component_", component, f"the builder {name} maps to no gpuplan preset (mapped: "
                   f"torchtune {VERSION}'s llama2/3/3.1/3.2/3.3, gemma_7b, gemma2, phi3_mini, phi4 and qwen2_5 builders)",
                   "give --model with a preset or a config.json")
        return None, method
    return BUILDERS[name], method


def _selective_ac(flat: dict[str, Any], o: Options, rep: Report, notes: list[str]) -> None:
    """ac_mode / ac_option as full_finetune_distributed.py _setup_model reads them (torchtune 0.6.1):
    selective AC runs only with enable_activation_checkpointing false; with it true and ac_mode set,
    neither branch wraps a layer."""
    mode, option = str(flat["ac_mode"]), flat.get("ac_option")
    if flat.get("enable_activation_checkpointing"):
        o.use("ac_mode", "grad_ckpt", False)
        notes.append("torchtune applies ac_mode only with enable_activation_checkpointing: false, and full AC only "
                     "with ac_mode unset: with both set no layer is checkpointed (full_finetune_distributed.py)")
        return
    if mode == "none":
        o.use("ac_mode", "grad_ckpt", False)
    elif mode == "full":
        o.use("ac_mode", "grad_ckpt", True)
    elif mode == "selective":
        try:
            k = int(option)
        except (TypeError, ValueError):
            rep.refuse("ac_option", option, "torchtune 0.6.1's selective AC takes a layer interval: its "
                       "checkpoint_wrapper calls int(ac_option), which raises for per-op AC (\"op\")",
                       "give an integer k (every k-th layer)")
            return
        o.use("ac_mode", "grad_ckpt", True)
        if k > 1:   # 0 and 1 wrap every layer (`not every_x_layer or count % every_x_layer == 0`)
            o.use("ac_option", "ckpt_every", k)
            o.use("ac_option", "ckpt_first", k - 1)
    else:
        rep.refuse("ac_mode", mode, "torchtune raises NotImplementedError for an ac_mode other than full or "
                   "selective", "use full or selective")


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    rep = Report("torchtune")
    flat = flatten(d)
    todo = set(rep.classify(TABLE, flat))
    o = Options(rep)
    notes: list[str] = []

    model, method = _builder(str(flat.get("model._component_", "")), rep)
    if flat.get("model.quantize_base") and method == "lora":
        method = "qlora"
    o["method"] = method
    # torchtune's own defaults for the knobs a config leaves out (planner/specs/stack.py, torchtune 0.6.1):
    # e.g. no activation checkpointing without enable_activation_checkpointing, where HF/TRL's is on
    o["stack_versions"] = "torchtune-0.6.1"
    rep.set("model._component_", f"--model {model} --method {method} ({SEMANTICS})" if model else
            f"--method {method} ({SEMANTICS})")
    phi3 = str(flat.get("model._component_", "")).startswith("torchtune.models.phi3.")
    if method != "full":
        for key, opt, conv in (("model.lora_rank", "lora_r", int), ("model.lora_alpha", "lora_alpha", float),
                               ("model.lora_dropout", "lora_dropout", float)):
            if flat.get(key) is not None:
                o.use(key, opt, conv(flat[key]))
        names = _PHI3 if phi3 else _LINEARS
        mods = [names.get(m, m) for m in flat.get("model.lora_attn_modules") or []]
        if flat.get("model.apply_lora_to_mlp"):
            mods += ["gate_up_proj", "down_proj"] if phi3 else ["gate_proj", "up_proj", "down_proj"]
        mods = list(dict.fromkeys(mods))
        if mods:
            o.use("model.lora_attn_modules", "lora_targets", ",".join(mods))
            if phi3:
                rep.set("model.lora_attn_modules", "(HF phi3 fuses q/k/v into qkv_proj and gate/up into "
                        "gate_up_proj: one adapter per fused projection)")
    dtype = flat.get("dtype")
    if dtype:
        # torchtune trains in the given dtype without autocast: weights, grads and states alike
        dmap = {"bf16": "bf16-true", "fp16": "fp16-true", "fp32": "fp32"}
        if dtype not in dmap:
            rep.refuse("dtype", dtype, "a dtype other than bf16, fp16, fp32", "use bf16")
        else:
            o.use("dtype", "precision", dmap[dtype])
            if method != "full" and dtype != "fp32":
                o.use("dtype", "adapter_dtype", dtype)   # the adapters are built in the model's dtype too
    for key, opt in (("batch_size", "batch_size"), ("gradient_accumulation_steps", "grad_accum")):
        if flat.get(key) is not None:
            o.use(key, opt, int(flat[key]))
    for key in ("dataset.packed", "dataloader.packed"):
        if flat.get(key) is True:
            o.use(key, "packing", "rows")
    if "enable_activation_checkpointing" in flat:
        o.use("enable_activation_checkpointing", "grad_ckpt", bool(flat["enable_activation_checkpointing"]))
    if flat.get("ac_mode") is not None:
        _selective_ac(flat, o, rep, notes)
    if flat.get("enable_activation_offloading"):
        if not flat.get("enable_activation_checkpointing"):
            rep.refuse("enable_activation_offloading", True, "torchtune raises RuntimeError: activation offloading "
                       "needs enable_activation_checkpointing [recipes/*_single_device.py __init__]",
                       "set enable_activation_checkpointing: true")
        else:
            o.use("enable_activation_offloading", "activation_offload", "torchtune")
    elif "enable_activation_offloading" in flat:   # off: worded as before it was modelled
        rep.set("enable_activation_offloading", f"{show(flat['enable_activation_offloading'])}: as gpuplan plans")
    if "tokenizer.max_seq_len" in flat:
        seq = flat["tokenizer.max_seq_len"]
        if seq is None:
            rep.refuse_unless_given("tokenizer.max_seq_len", None, "no truncation: each batch is as long as its "
                                    "longest sample; give the length to plan for in the config", "seq_len")
        else:
            o.use("tokenizer.max_seq_len", "seq_len", int(seq))
    opt = flat.get("optimizer._component_")
    if opt:
        value = mapped(_OPTIM, opt, "optimizer._component_", path)
        if value == "adamw" and flat.get("optimizer.fused"):
            value = "adamw-fused"
        o.use("optimizer._component_", "optimizer", value)
        if value in _TORCHAO_BLOCK:
            block = flat.get("optimizer.block_size", _TORCHAO_BLOCK[value])
            if block != 256 or "optimizer.block_size" in flat:
                o.use("optimizer.block_size" if "optimizer.block_size" in flat else "optimizer._component_",
                      "optim_block_size", int(block))
    if on(flat.get("optimizer_in_bwd")):
        # recipes/full_finetune_single_device.py __init__: "Gradient accumulation is not supported with
        # optimizer in bwd"; "Gradient clipping is not supported with optimizer in bwd"
        if flat.get("clip_grad_norm") is not None:
            rep.refuse("optimizer_in_bwd", flat["optimizer_in_bwd"], "gradient clipping (clip_grad_norm) with the "
                       "optimizer step in backward, which torchtune's recipes refuse", "set clip_grad_norm: null")
        else:
            o.use("optimizer_in_bwd", "optimizer_in_backward", True)
    loss = flat.get("loss._component_")
    if loss in _CHUNKED:
        # CEWithChunkedOutputLoss keeps every output chunk's logits in the model dtype: --loss chunked-output
        # (techniques/chunked_output.py, simulated); LinearCrossEntropyLoss (after 0.6.1) fuses the head: chunked
        o.use("loss._component_", "loss", "chunked-output" if loss.endswith("CEWithChunkedOutputLoss") else "chunked")
    elif loss and "loss._component_" in todo:
        rep.refuse("loss._component_", loss, "a loss other than cross-entropy", "use CEWithChunkedOutputLoss")
    if flat.get("device") not in (None, "cuda") and not str(flat.get("device")).startswith("cuda"):
        rep.refuse("device", flat["device"], "training on a device other than a CUDA GPU", "use cuda")
    for key in ("fsdp_cpu_offload", "fsdp.cpu_offload"):
        if key in flat:
            o.use(key, "fsdp", "full")
            if flat[key]:
                o.use(key, "offload", "params")
    for k in todo:
        rep.fallback(k, flat[k], TABLE[k].note)
    if "fsdp" not in o:
        notes.append("planned as a single-device recipe; a *_distributed recipe (tune run --nproc_per_node N) "
                     "shards with FSDP2: add --gpus N --fsdp full")
    return ConfigSetup.of("torchtune", model, o, rep, notes=tuple(notes))
