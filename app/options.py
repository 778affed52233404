"""The setup flags shared by `estimate` and `profile`, and their translation into planner types."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import click

from gpuplan.planner.specs.enums import (Attention, DType, Loss, Method, Objective, Optimizer, Packing, Padding,
                                        Precision, QuantType)
from gpuplan.planner.specs.enums import Compile
from gpuplan.planner.specs.enums import Fp8, Fp8Linears
from gpuplan.planner.specs.enums import LoraVariant
from gpuplan.planner.specs.enums import TrlVersion
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.model import ModelSpec
from gpuplan.planner.specs.optim import optim_from_options
from gpuplan.planner.specs.parallel import CpKind, Fsdp, Offload, OffloadDevice, ParallelSpec
from gpuplan.planner.specs.setup import ALL_LINEAR, ActivationOffload, Checkpointing, LigerSpec, LoraSpec, QuantSpec, TrainingSetup
from gpuplan.planner.specs.stack import Stack

_D = TrainingSetup()
LENGTH_HISTOGRAM_META = "gpuplan.length_histogram"
# --method spellings that are LoRA's with a knob set: (method, use_dora)
METHOD_ALIASES = {"dora": (Method.LORA, True), "qdora": (Method.QLORA, True)}


def _choice(enum) -> click.Choice:
    return click.Choice(enum.values(), case_sensitive=False)


SETUP_OPTIONS = [
    click.option("--model", "-m", default=None, help="Preset name (gpuplan models), a config.json path, or a hub id."),
    click.option("--from-config", default=None, type=click.Path(dir_okay=False),
                 help="Your training config (axolotl YAML, HF TrainingArguments/TRL SFTConfig JSON or YAML, "
                      "torchtune YAML, LLaMA-Factory YAML, Unsloth .py/.ipynb, accelerate YAML); flags given "
                      "explicitly override its values."),
    click.option("--accelerate-config", default=None, type=click.Path(dir_okay=False),
                 help="Your `accelerate launch --config_file` YAML: GPU count, DeepSpeed or FSDP settings "
                      "(under --from-config's values)."),
    click.option("--method", type=click.Choice(Method.values() + list(METHOD_ALIASES), case_sensitive=False),
                 default=_D.method.value, show_default=True,
                 help="dora = lora with --use-dora, qdora = qlora with --use-dora."),
    click.option("--precision", type=_choice(Precision), default=_D.precision.value, show_default=True),
    click.option("--optimizer", type=_choice(Optimizer), default=_D.optimizer.value, show_default=True),
    click.option("--optimizer-in-backward", is_flag=True, default=False,
                 help="The optimizer step inside backward (torchtune optimizer_in_bwd, HF galore_*_layerwise): "
                      "each parameter steps in its post-accumulate-grad hook; no full gradient set is live."),
    click.option("--galore-rank", type=int, default=None, help="GaLore/APOLLO projection rank [HF: 128]."),
    click.option("--galore-update-proj-gap", type=int, default=None,
                 help="GaLore/APOLLO steps between projector updates (SVD) [HF: 200]."),
    click.option("--optim-target-modules", default=None,
                 help="GaLore/APOLLO: comma list of linear names, or all-linear (lm_head too) [every decoder linear]."),
    click.option("--optim-block-size", type=int, default=None, help="torchao low-bit AdamW block size [HF: 256]."),
    click.option("--optim-args", default=None,
                 help="HF's optim_args string, e.g. rank=64,update_proj_gap=100 (rank, update_proj_gap, block_size "
                      "are read; the rest do not change memory)."),
    click.option("--batch-size", "-b", type=int, default=_D.batch_size, show_default=True, help="Micro-batch per GPU."),
    click.option("--seq-len", "-s", type=int, default=_D.seq_len, show_default=True),
    click.option("--grad-accum", type=int, default=_D.grad_accum, show_default=True),
    click.option("--grad-ckpt/--no-grad-ckpt", default=True, show_default=True,
                 help="Gradient checkpointing of every decoder layer (TRL's default: on)."),
    click.option("--ckpt-policy", type=click.Choice([c.value for c in Checkpointing if c is not Checkpointing.NONE],
                                                    case_sensitive=False), default=Checkpointing.FULL.value,
                 show_default=True,
                 help="What a checkpointed layer keeps: full (its input only) or save-attention (also the attention "
                      "kernel's outputs: per-op selective checkpointing, axolotl selective_checkpointing)."),
    click.option("--ckpt-every", type=click.IntRange(min=1), default=_D.ckpt_every, show_default=True,
                 help="Checkpoint only every K-th decoder layer, from --ckpt-first (transformers' every_n_layers: "
                      "layers 0, K, 2K, ...); the others keep their activations."),
    click.option("--ckpt-first", type=click.IntRange(min=0), default=_D.ckpt_first, show_default=True,
                 help="The first checkpointed layer under --ckpt-every (torchtune's ac_mode selective: K-1)."),
    click.option("--activation-offload", type=_choice(ActivationOffload), default=_D.activation_offload.value,
                 show_default=True,
                 help="Saved activations moved to host memory between forward and backward: trl (SFTConfig "
                      "activation_offloading, axolotl true/disk), trl-sync (axolotl legacy), torchtune "
                      "(enable_activation_offloading), layer-inputs (only each checkpointed layer's input: Unsloth's "
                      "\"unsloth\" checkpointing, transformers' checkpointing offload, axolotl hidden_states)."),
    click.option("--compile", type=_choice(Compile), default=_D.compile.value, show_default=True,
                 help="torch.compile(model) (HF/TRL/axolotl torch_compile, torchtune compile): inductor's min-cut "
                      "partitioner recomputes elementwise ops instead of saving them; needs --no-grad-ckpt."),
    click.option("--tiled-mlp", is_flag=True, default=False,
                 help="axolotl tiled_mlp (ALST's TiledMLP): each layer's MLP in sequence tiles under no_grad, "
                      "recomputed tile by tile in backward; only its input is saved (modelled from source)."),
    click.option("--tiled-mlp-shards", type=click.IntRange(min=0), default=0, show_default=True,
                 help="--tiled-mlp's tiles (axolotl tiled_mlp_num_shards); 0: its default, ceil(seq_len / 32768)."),
    click.option("--fp8", type=_choice(Fp8), default=_D.fp8.value, show_default=True,
                 help="torchao float8 training (accelerate mixed_precision fp8 with the AO backend, axolotl fp8): "
                      "dynamic tensorwise or rowwise scaling; full fine-tuning on an fp8 GPU (Ada, Hopper, Blackwell)."),
    click.option("--fp8-linears", type=_choice(Fp8Linears), default=_D.fp8_linears.value, show_default=True,
                 help="With --fp8: skip-first-last (accelerate's default filter: the first linear and the lm_head "
                      "stay high precision; axolotl goes through it too) or all (torchao's own default)."),
    click.option("--attn", type=_choice(Attention), default=_D.attention.value, show_default=True),
    click.option("--padding", type=_choice(Padding), default=_D.padding.value, show_default=True,
                 help="none: rows of --seq-len real tokens, no attention mask; longest / max-length: a padded batch "
                      "with an attention mask (SDPA then runs its memory-efficient kernel with an s x s bias)."),
    click.option("--packing", type=_choice(Packing), default=_D.packing.value, show_default=True,
                 help="rows: samples packed into rows of --seq-len (position_ids restart; axolotl sample_packing); "
                      "flattened: the micro-batch in one row of b x --seq-len (TRL padding_free / packing)."),
    click.option("--length-histogram", default=None, type=click.Path(dir_okay=False),
                 help="JSON {\"length\": count, ...} or CSV rows `length,count` of your samples' token lengths: "
                      "plans the worst micro-batch (--seq-len then caps the lengths, as max_length truncates)."),
    click.option("--loss", type=_choice(Loss), default=_D.loss.value, show_default=True,
                 help="hf: full fp32 logits (transformers, TRL <= 1.6); chunked: fused linear cross-entropy "
                      "(Liger, Unsloth); trl: TRL >= 1.15 SFTTrainer's fused LM head (labelled positions only); "
                      "chunked-output: torchtune's CEWithChunkedOutputLoss (logits per sequence chunk); cce: "
                      "Cut Cross-Entropy (apple/ml-cross-entropy, axolotl's cut_cross_entropy); chunked-nll: TRL 1.13-1.14 "
                      "SFTTrainer's default loss_type='chunked_nll' (lm_head in checkpointed 256-position chunks); "
                      "chunked-nll-fp32: TRL 1.8-1.12's, each chunk projected from fp32 copies."),
    click.option("--liger", is_flag=True, default=False,
                 help="Liger Kernel as apply_liger_kernel_to_<family>() applies it by default: RMSNorm, RoPE, "
                      "SwiGLU/GeGLU and the fused linear cross-entropy (--loss chunked); modelled from source."),
    click.option("--liger-kernels", default=None,
                 help="Comma list of Liger kernels instead of --liger's all: rms_norm, rope, swiglu (geglu for Gemma), flce."),
    click.option("--liger-before-load", is_flag=True, default=False,
                 help="Liger patches the model classes before the model is built (axolotl, LLaMA-Factory): every "
                      "RMSNorm of the family, q_norm/k_norm included, is Liger's [default: HF Trainer/TRL's "
                      "patch of the built model]."),
    click.option("--objective", type=_choice(Objective), default=_D.objective.value, show_default=True,
                 help="sft: one sequence per example; dpo: TRL's DPOTrainer (chosen + rejected, a reference model; "
                      "needs --loss trl); kto: TRL's KTOTrainer (one completion, a no-grad KL forward, a reference "
                      "model; needs --loss trl and a micro-batch of 2 or more); orpo: trl.experimental's ORPOTrainer (chosen + "
                      "rejected, the full logits, no reference model; --loss hf); grpo: GRPOTrainer with HF generate (a "
                      "generation phase, then a fused-head step on the completions; --loss trl); ppo: TRL 1.12's "
                      "trl.experimental.ppo PPOTrainer (policy, value, reference and reward models; one GPU, "
                      "--precision bf16-true or fp32); rm: RewardTrainer."),
    click.option("--response-length", "response_len", type=int, default=_D.response_len, show_default=True,
                 help="PPO: tokens generated per query (PPOConfig.response_length); --seq-len is query + response."),
    click.option("--rollout-batch", type=int, default=_D.rollout_batch, show_default=True,
                 help="PPO: queries generated and scored at once in the rollout "
                      "(PPOConfig.local_rollout_forward_batch_size)."),
    click.option("--num-mini-batches", "mini_batches", type=int, default=_D.mini_batches, show_default=True,
                 help="PPO: mini-batches each rollout of batch x grad-accum queries splits into (num_mini_batches)."),
    click.option("--reward-model", default="", help="PPO: the reward model's preset or config.json [the policy's]."),
    click.option("--value-model", default="", help="PPO: the value model's preset or config.json [the policy's]."),
    click.option("--num-generations", type=int, default=_D.num_generations, show_default=True,
                 help="GRPO: completions per prompt (GRPOConfig.num_generations); the generation batch must be a "
                      "multiple of it."),
    click.option("--max-completion-length", "completion_len", type=int, default=_D.completion_len, show_default=True,
                 help="GRPO: tokens generated per completion, decoded to the full length (min_new_tokens = "
                      "max_new_tokens); --seq-len is prompt + completion."),
    click.option("--steps-per-generation", type=int, default=None,
                 help="GRPO: micro-batches generated at once per GPU (GRPOConfig.steps_per_generation) "
                      "[--grad-accum]."),
    click.option("--kl-beta", type=float, default=_D.kl_beta, show_default=True,
                 help="GRPO: GRPOConfig.beta; above 0 a reference model is kept (full fine-tuning: a frozen copy)."),
    click.option("--vllm-colocate", type=float, default=_D.vllm_colocate, show_default=True,
                 help="GRPO: vLLM in colocate mode generates, holding this fraction of each GPU "
                      "(vllm_gpu_memory_utilization; TRL's default 0.3); 0: HF generate."),
    click.option("--vllm-server-gpus", type=int, default=_D.vllm_server_gpus, show_default=True,
                 help="GRPO: vLLM in server mode (trl vllm-serve) on this many other GPUs generates; the training GPUs "
                      "hold no vLLM share, and the run needs these GPUs too."),
    click.option("--ds3-gather-for-generation/--no-ds3-gather-for-generation", default=True, show_default=True,
                 help="GRPO under --zero 3: gather the whole policy for generate (GRPOConfig.ds3_gather_for_generation)."),
    click.option("--precompute-ref-log-probs", is_flag=True, help="DPO/KTO: reference log-probs computed before "
                 "training, no reference model kept."),
    click.option("--loss-tokens", "loss_token_fraction", type=float, default=1.0, show_default=True,
                 help="Fraction of positions that carry a label (completion-only or assistant-only loss); "
                      "--loss trl computes the LM head on those alone."),
    click.option("--lora-r", type=int, default=None, help="LoRA rank [peft default 8]."),
    click.option("--lora-alpha", type=float, default=None, help="LoRA alpha [peft default 8]."),
    click.option("--lora-dropout", type=float, default=None, help="LoRA dropout [peft default 0]."),
    click.option("--lora-targets", default=None, help="Comma list of module names, or all-linear [peft's default per model]."),
    click.option("--lora-variant", type=click.Choice(LoraVariant.values()), default=None,
                 help="A LoRA variant from a paper that peft lacks: dylora and delta-lora are modelled from their "
                      "papers; longlora and rosa are refused, naming what is missing [none]."),
    click.option("--lora-language-only", is_flag=True, default=False,
                 help="Multimodal models: adapt the named targets in the language model only, not in the vision "
                      "tower [peft matches names in both towers]."),
    click.option("--images-per-example", type=int, default=0, show_default=True,
                 help="Multimodal models (LLaVA, Gemma-3): images in each example; their image tokens (576 / 256 "
                      "per image) are part of --seq-len."),
    click.option("--adapter-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
                 help="[LoRA: fp32 as peft does; QLoRA: bf16 as TRL does]"),
    click.option("--base-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
                 help="Frozen base weights of LoRA [the precision's weight dtype: fp32 for *-mixed]."),
    # the precision recipe's choices (planner/specs/recipe.py), each None: the --precision preset's
    click.option("--weights-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
                 help="Load dtype of the weights, from_pretrained(dtype=...) [the precision's: fp32 for *-mixed, "
                      "16 bit for *-true; QLoRA: the compute dtype]. bf16 with bf16-mixed: a bf16-loaded model "
                      "under Trainer's bf16=True autocast (transformers 5's own default load)."),
    click.option("--autocast/--no-autocast", default=None,
                 help="torch.autocast around the forward, HF Trainer's bf16/fp16=True [on for *-mixed, off for *-true]."),
    click.option("--kbit-prepare/--no-kbit-prepare", "kbit_upcast", default=None,
                 help="QLoRA: peft's prepare_model_for_kbit_training upcasts the non-quantized weights to fp32 "
                      "[on under autocast]; off: they keep the load dtype."),
    click.option("--stack-versions", type=_choice(Stack), default=None,
                 help="The library versions whose defaults fill the knobs left alone (--loss, --precision, "
                      "--grad-ckpt) [gpuplan's own: trl-1.6's]; installed: the row of the versions installed "
                      "here. The output names the versions."),
    click.option("--use-dora", is_flag=True, default=False, help="DoRA: LoraConfig(use_dora=True)."),
    click.option("--modules-to-save", default=None,
                 help="Comma list of modules trained in full beside LoRA (peft modules_to_save), e.g. embed_tokens,lm_head."),
    click.option("--peft-config", default=None, type=click.Path(dir_okay=False),
                 help="peft's adapter_config.json (any peft_type); LoRA maps to the closed form, others are simulated."),
    click.option("--quant-type", type=_choice(QuantType), default=None, help="QLoRA weights [nf4]."),
    click.option("--double-quant/--no-double-quant", default=None, help="QLoRA double quantization [on]."),
    # multi-GPU and offload (planner/parallel.py); defaults: one GPU, nothing sharded
    click.option("--gpus-per-node", "gpus_per_node", type=int, default=1, show_default=True,
                 help="GPUs per node (data-parallel, ZeRO/FSDP or TP/PP ranks on each node)."),
    click.option("--gpus", "gpus_legacy", type=int, default=None, hidden=True,
                 help="Deprecated spelling of --gpus-per-node."),
    click.option("--nodes", type=int, default=1, show_default=True),
    click.option("--zero", type=click.IntRange(0, 3), default=0, show_default=True,
                 help="DeepSpeed ZeRO stage (0: plain DDP when more than one GPU)."),
    click.option("--fsdp", type=click.Choice(["full", "grad-op", "hybrid", "yafsdp", "none"]), default="none",
                 show_default=True, help="PyTorch FSDP2 sharding (full: FULL_SHARD, grad-op: SHARD_GRAD_OP, hybrid: HSDP); "
                                         "yafsdp: Yandex's YaFSDP (full fine-tuning; modelled from source)."),
    click.option("--offload", type=click.Choice(["none", "optimizer", "params"]), default="none", show_default=True,
                 help="Offload optimizer state (ZeRO-Offload), or parameters too (ZeRO-3, FSDP2 CPUOffloadPolicy)."),
    click.option("--offload-device", type=click.Choice(["cpu", "nvme"]), default="cpu", show_default=True,
                 help="nvme: ZeRO-Infinity (needs --zero 3)."),
    click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel degree (Megatron layout)."),
    click.option("--alloc-conf", default=None, metavar="PYTORCH_CUDA_ALLOC_CONF",
                 help="The caching allocator's settings the run uses, as PYTORCH_CUDA_ALLOC_CONF "
                      "(expandable_segments:True, max_split_size_mb:128, ...) [unset: PyTorch's defaults]."),
    click.option("--pp", type=int, default=1, show_default=True, help="Pipeline stages (1F1B)."),
    click.option("--context-parallel", "context_parallel", type=int, default=1, show_default=True,
                 help="Context/sequence-parallel degree: each GPU of a group holds 1/N of every sequence "
                      "(planner/techniques/context_parallel.py; modelled from source)."),
    click.option("--cp-kind", type=click.Choice(["torch", "torch-alltoall", "ring-flash", "llama3", "ulysses"]),
                 default="torch", show_default=True,
                 help="torch: accelerate's cp_size (torch context_parallel over SDPA, FSDP2; -alltoall: "
                      "cp_comm_strategy alltoall); ring-flash / llama3: axolotl's context_parallel_size "
                      "(ring-flash-attn batch_ring / varlen_llama3, flash-attn 2); ulysses: DeepSpeed ALST "
                      "(accelerate sp_size, ZeRO)."),
    click.option("--heads-k-stride", type=int, default=1, show_default=True,
                 help="--cp-kind llama3: K/V heads all-gathered at a time (axolotl heads_k_stride)."),
]


def setup_options(func: Callable) -> Callable:
    for option in reversed(SETUP_OPTIONS):
        func = option(func)
    return func


def setup_from_options(**kw: Any) -> tuple[ModelSpec, TrainingSetup]:
    """(ModelSpec, validated TrainingSetup) from the flags; raises PlannerError on bad input."""
    from gpuplan.planner.io.catalog import resolve_model   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.io.files import read_text   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.io.validate import context_check   # lazy: each command loads what it needs (fast start)

    from .from_config import merge_config   # lazy: each command loads what it needs (fast start)

    if kw.get("from_config"):   # binary / not UTF-8, then value types: one line each, before the format readers
        _check_training_config(kw["from_config"], read_text(kw["from_config"], "--from-config file"))
    kw = merge_config(kw)
    kw = _legacy_gpus(kw)
    if not kw.get("model"):
        raise PlannerError("--model is required (or a --from-config file that names the model)")

    name = kw["method"].lower()
    method, use_dora = METHOD_ALIASES[name] if name in METHOD_ALIASES else (Method(name), False)
    use_dora = use_dora or bool(kw.get("use_dora"))
    modules_to_save = tuple(t.strip() for t in (kw.get("modules_to_save") or "").split(",") if t.strip())
    adapter = None
    if kw.get("peft_config"):
        from gpuplan.profiler.peft_config import read_adapter_config   # lazy: each command loads what it needs (fast start)

        adapter = read_adapter_config(kw["peft_config"])
        if method is Method.FULL:
            method = Method.LORA   # an adapter config trains adapters; --method qlora puts them on a 4/8-bit base
        if use_dora or modules_to_save or any(kw.get(k) is not None for k in ("lora_r", "lora_alpha", "lora_dropout",
                                                                              "lora_targets")):
            raise PlannerError("--peft-config gives the adapter's own fields; drop --lora-*/--use-dora/"
                               "--modules-to-save (or edit the adapter_config.json)")
    if method is Method.FULL and (use_dora or modules_to_save):
        raise PlannerError("--use-dora / --modules-to-save are LoRA options: add --method lora (or qlora)")
    lora_flags = [k for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "adapter_dtype", "base_dtype")
                  if kw.get(k) is not None]
    if method is Method.FULL and lora_flags:
        raise PlannerError(f"--{lora_flags[0].replace('_', '-')} applies to --method lora or qlora")
    if method is not Method.QLORA and (kw.get("quant_type") or kw.get("double_quant") is not None):
        raise PlannerError("--quant-type / --double-quant apply to --method qlora")
    model = resolve_model(kw["model"])
    from .stack_options import apply_stack, objective_loss   # lazy: each command loads what it needs (fast start)

    kw = apply_stack(kw, model)
    kw = objective_loss(kw)   # DPO/KTO/GRPO: TRL's fused LM head unless a loss was chosen
    liger_spec, loss_name = _liger(kw, model)
    targets: tuple[str, ...] = ()
    if kw.get("lora_targets"):
        targets = tuple(t.strip() for t in kw["lora_targets"].split(",") if t.strip())
        if any(t.lower() == ALL_LINEAR for t in targets):
            targets = (ALL_LINEAR,)
    lora = LoraSpec(
        r=kw["lora_r"] if kw.get("lora_r") is not None else LoraSpec.r,
        alpha=kw["lora_alpha"] if kw.get("lora_alpha") is not None else LoraSpec.alpha,
        dropout=kw["lora_dropout"] if kw.get("lora_dropout") is not None else LoraSpec.dropout,
        targets=targets,
        adapter_dtype=DType(kw["adapter_dtype"]) if kw.get("adapter_dtype") else None,
        use_dora=use_dora, modules_to_save=modules_to_save, language_only=bool(kw.get("lora_language_only")),
        variant=LoraVariant(kw["lora_variant"]) if kw.get("lora_variant") else LoraVariant.NONE,
    )
    quant = QuantSpec(
        quant_type=QuantType(kw["quant_type"]) if kw.get("quant_type") else QuantSpec.quant_type,
        double_quant=kw["double_quant"] if kw.get("double_quant") is not None else QuantSpec.double_quant,
    )
    if not kw["grad_ckpt"] and (kw.get("ckpt_policy") or "full") != "full":
        raise PlannerError(f"--ckpt-policy {kw['ckpt_policy']} says what checkpointed layers keep, but --no-grad-ckpt "
                           "turns checkpointing off: drop one of them")
    setup = TrainingSetup(
        method=method, precision=Precision(kw["precision"]), optimizer=Optimizer(kw["optimizer"]),
        batch_size=kw["batch_size"], seq_len=kw["seq_len"], grad_accum=kw["grad_accum"],
        checkpointing=Checkpointing(kw.get("ckpt_policy") or "full") if kw["grad_ckpt"] else Checkpointing.NONE,
        ckpt_every=kw.get("ckpt_every") or 1, ckpt_first=kw.get("ckpt_first") or 0,
        activation_offload=ActivationOffload(kw.get("activation_offload") or "none"),
        attention=Attention(kw["attn"]), loss=Loss(loss_name), lora=lora, quant=quant, liger=liger_spec,
        loss_token_fraction=kw.get("loss_token_fraction") or 1.0,
        objective=Objective(kw.get("objective") or "sft"),
        images_per_example=kw.get("images_per_example") or 0,
        precompute_ref_log_probs=bool(kw.get("precompute_ref_log_probs")),
        trl_version=TrlVersion(kw.get("trl_version") or TrlVersion.TRL_1_16.value),   # set by --stack-versions
        num_generations=kw.get("num_generations") or _D.num_generations,
        completion_len=kw.get("completion_len") or _D.completion_len,
        steps_per_generation=kw.get("steps_per_generation"), kl_beta=kw.get("kl_beta") or 0.0,
        vllm_colocate=kw.get("vllm_colocate") or 0.0, vllm_server_gpus=kw.get("vllm_server_gpus") or 0,
        ds3_gather_for_generation=kw.get("ds3_gather_for_generation", True) is not False,
        response_len=kw.get("response_len") or _D.response_len, rollout_batch=kw.get("rollout_batch") or _D.rollout_batch,
        mini_batches=kw.get("mini_batches") or _D.mini_batches, reward_model=kw.get("reward_model") or "",
        value_model=kw.get("value_model") or "",
        base_dtype=DType(kw["base_dtype"]) if kw.get("base_dtype") else None,
        parallel=parallel_from_options(kw), adapter=adapter,
        weights=DType(kw["weights_dtype"]) if kw.get("weights_dtype") else None,
        autocast=kw.get("autocast"), kbit_upcast=kw.get("kbit_upcast"),
        padding=Padding(kw.get("padding") or "none"), packing=Packing(kw.get("packing") or "none"),
        optimizer_in_backward=bool(kw.get("optimizer_in_backward")), optim=optim_from_options(kw),
        compile=Compile(kw.get("compile") or "none"),
        tiled_mlp=bool(kw.get("tiled_mlp")), tiled_mlp_shards=kw.get("tiled_mlp_shards") or 0,
        fp8=Fp8(kw.get("fp8") or "none"), fp8_linears=Fp8Linears(kw.get("fp8_linears") or "skip-first-last"),
        alloc_conf=_alloc_conf(kw.get("alloc_conf")),
    )
    if kw.get("length_histogram"):
        from gpuplan.planner.io.lengths import read_length_histogram   # lazy: each command loads what it needs (fast start)
        from gpuplan.planner.techniques.masks import worst_micro_batch   # lazy: each command loads what it needs (fast start)

        worst = worst_micro_batch(read_length_histogram(kw["length_histogram"]), setup)
        setup = setup.with_(seq_len=worst.seq_len)
        click.echo(f"note: {worst.note}", err=True)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:   # setup_notes() adds it to the estimate's notes (table and --json)
            ctx.meta[LENGTH_HISTOGRAM_META] = worst.note
    setup = setup.validate()
    if setup.peft and adapter is None:
        setup.lora_targets(model)  # raises for targets that match no module
    setup.parallel.validate(model, setup.optimizer)
    context_check(model, setup.seq_len)   # refuses GPT-2 past its learned positions
    return model, setup


def _liger(kw: dict[str, Any], model: ModelSpec) -> tuple[LigerSpec, str]:
    """(Liger's per-layer kernels, the --loss name) from --liger / --liger-kernels: Liger's fused linear
    cross-entropy is --loss chunked; raises PlannerError where Liger does not apply."""
    from gpuplan.planner.techniques import liger   # lazy: each command loads what it needs (fast start)

    loss = kw["loss"]
    if kw.get("liger_kernels"):
        spec, flce = liger.parse_kernels(kw["liger_kernels"], model)
    elif kw.get("liger"):
        spec, flce = liger.family_defaults(model)
    elif kw.get("liger_before_load"):
        raise PlannerError("--liger-before-load says how Liger is applied: add --liger or --liger-kernels")
    else:
        return LigerSpec(), loss
    spec = replace(spec, before_load=bool(kw.get("liger_before_load")))   # set by axolotl's LigerPlugin
    liger.check(model, spec)
    if flce and loss not in (Loss.HF.value, Loss.CHUNKED.value):
        raise PlannerError(f"Liger's fused linear cross-entropy is the loss (--loss chunked), not --loss {loss}: "
                           "drop --loss, or leave flce out of --liger-kernels")
    return spec, Loss.CHUNKED.value if flce else loss


def _check_training_config(path: str, text: str) -> None:
    from gpuplan.planner.io.training_config import validate_training_config   # lazy: each command loads what it needs (fast start)

    try:
        if str(path).endswith(".json"):
            import json   # lazy: each command loads what it needs (fast start)

            data = json.loads(text)
        else:
            import yaml   # lazy: each command loads what it needs (fast start)

            data = yaml.safe_load(text)
    except Exception:   # a syntax error: the config reader reports it with line and column
        return
    from gpuplan.planner.fromconfig import detect   # lazy: each command loads what it needs (fast start)

    try:
        fmt = detect(data) if isinstance(data, dict) else None
    except PlannerError:
        return          # an unknown format: the reader says so
    validate_training_config(data, path, fmt)


def _legacy_gpus(kw: dict[str, Any]) -> dict[str, Any]:
    """--gpus N (the old spelling of --gpus-per-node) still works, with a one-line note on stderr."""
    legacy = kw.pop("gpus_legacy", None)
    if legacy is None:
        return kw
    click.echo("note: --gpus N is deprecated in estimate/fit/profile (it is a count per node): "
               "use --gpus-per-node N", err=True)
    ctx = click.get_current_context(silent=True)
    from click.core import ParameterSource   # lazy: each command loads what it needs (fast start)

    if ctx is not None and ctx.get_parameter_source("gpus_per_node") is ParameterSource.COMMANDLINE \
            and kw.get("gpus_per_node") != legacy:
        raise PlannerError(f"--gpus {legacy} and --gpus-per-node {kw['gpus_per_node']} disagree; give only "
                           "--gpus-per-node")
    return {**kw, "gpus_per_node": legacy}


def setup_notes(model: ModelSpec, setup: TrainingSetup) -> list[str]:
    """What the user should know beyond the estimate's own notes: custom code not run (auto_map), a
    sequence past the trained context (RoPE models; whether rope_scaling is set)."""
    from gpuplan.planner.io.validate import config_notes, context_check   # lazy: each command loads what it needs (fast start)

    ctx = click.get_current_context(silent=True)
    histogram = [ctx.meta[LENGTH_HISTOGRAM_META]] if ctx is not None and LENGTH_HISTOGRAM_META in ctx.meta else []
    return histogram + config_notes(model.hf_config) + context_check(model, setup.seq_len)


def parallel_from_options(kw: dict[str, Any]) -> ParallelSpec:
    """ParallelSpec from --gpus/--nodes/--zero/--fsdp/--offload/--offload-device/--tp/--pp (missing: defaults)."""
    def get(key: str, default: Any) -> Any:
        return default if kw.get(key) is None else kw[key]

    return ParallelSpec(
        gpus=get("gpus_per_node", 1), nodes=get("nodes", 1), zero=get("zero", 0), fsdp=Fsdp(get("fsdp", "none")),
        offload=Offload(get("offload", "none")), offload_device=OffloadDevice(get("offload_device", "cpu")),
        tp=get("tp", 1), pp=get("pp", 1), cp=get("context_parallel", 1), cp_kind=CpKind(get("cp_kind", "torch")),
        heads_k_stride=get("heads_k_stride", 1),
    )


def _alloc_conf(text: str | None) -> str:
    """--alloc-conf as the canonical PYTORCH_CUDA_ALLOC_CONF ("" for the defaults); PlannerError if bad."""
    if not text:
        return ""
    from gpuplan.planner.memory.alloc_config import AllocatorConfig   # lazy: each command loads what it needs (fast start)

    return AllocatorConfig.parse(text).to_conf()
