"""Shared value maps (optimizer names, precision, LoRA targets) and the multi-GPU blocks every
format can carry: a DeepSpeed config (a JSON file or an inline dict), an FSDP block (HF's
`fsdp` + `fsdp_config`, axolotl's, accelerate's `fsdp_config`) -> --zero/--fsdp/--offload."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..io import hf_vocabulary
from ..specs.errors import PlannerError

from .rules import KeyRule, Report, flatten, modelled, no_effect, on, refused, show

# HF `optim` names -> gpuplan --optimizer: the one table in planner/io/hf_vocabulary.py
HF_OPTIM = {name: opt.value for name, opt in hf_vocabulary.HF_OPTIM.items()}


def mapped(table: dict[str, str], value: Any, key: str, path: str) -> str:
    """table[value], or a PlannerError naming the file, the key and what can be mapped."""
    if value not in table:
        raise PlannerError(f"{path}: {key}: {value!r} is not mappable; mappable: {', '.join(sorted(table))}")
    return table[value]


def optimizer(value: Any, key: str, path: str) -> str:
    return mapped(HF_OPTIM, str(value).lower(), key, path)


def read_optim(d: dict[str, Any], key: str, path: str, o: "Options") -> None:
    """An HF `optim` name (a `*_layerwise` one: that optimizer stepped inside backward), with
    `optim_args` and `optim_target_modules` beside it (parsed as TrainingArguments does)."""
    from ..specs.optim import parse_optim_args

    name = str(d[key]).lower()
    layerwise = hf_vocabulary.HF_LAYERWISE.get(name)
    o.use(key, "optimizer", optimizer(layerwise or name, key, path))
    if layerwise:
        o.use(key, "optimizer_in_backward", True)
    if d.get("optim_args"):
        parse_optim_args(str(d["optim_args"]))   # refuses what changes memory and is not modelled
        o.use("optim_args", "optim_args", str(d["optim_args"]))
    if d.get("optim_target_modules"):
        t = d["optim_target_modules"]
        o.use("optim_target_modules", "optim_target_modules", ",".join(t) if isinstance(t, list) else str(t))


def precision(bf16: Any, fp16: Any, mixed: bool = True) -> str | None:
    if bf16:
        return "bf16-mixed" if mixed else "bf16-true"
    if fp16:
        return "fp16-mixed" if mixed else "fp16-true"
    return None


def targets(value: Any) -> str | None:
    if value in (None, [], ""):
        return None
    if isinstance(value, str):
        return "all-linear" if value in ("all-linear", "all_linear", "all") else value.replace(" ", "")
    return ",".join(str(v) for v in value)


_FLAGS = {"gpus_per_node": "--gpus", "kbit_upcast": "--kbit-prepare", "response_len": "--response-length",
          "mini_batches": "--num-mini-batches"}   # option names whose CLI flag is spelled otherwise (app/options.py)


class Options(dict):
    """The setup options a read sets (app/options.py names), with the report of which key set them."""

    def __init__(self, report: Report):
        super().__init__()
        self.report = report

    def use(self, key: str, opt: str, value: Any) -> None:
        """Config key `key` set option `opt` to `value`: for the setup and for the "used" report."""
        self[opt] = value
        flag = _FLAGS.get(opt, f"--{opt.replace('_', '-')}")
        if isinstance(value, bool):
            flag = flag if value else "--no-" + flag[2:]
            self.report.set(key, flag)
        else:
            self.report.set(key, f"{flag} {value}")


# --- DeepSpeed --------------------------------------------------------------------------------------
# [deepspeed/runtime/zero/config.py DeepSpeedZeroConfig, deepspeed/runtime/config.py; the keys HF
# Trainer fills for "auto": transformers/integrations/deepspeed.py HfTrainerDeepSpeedConfig.trainer_config_process]
_AUTO = "the value HF Trainer fills for \"auto\" [transformers/integrations/deepspeed.py]"
_DS_DEFAULT_1E9 = 1_000_000_000   # DeepSpeed's default for stage3_max_live_parameters, max_reuse_distance, sub_group_size


def _not_auto(v: Any) -> bool:
    return v != "auto"


def _above_1e9(v: Any) -> bool:
    return v != "auto" and (not isinstance(v, (int, float)) or v > _DS_DEFAULT_1E9)


_BUCKET = ("gpuplan plans HF Trainer's \"auto\" bucket sizes: reduce h*h, prefetch 0.9*h*h, persistence 10*h "
           "[planner/sharding.py]")
_STAGE3_LIMIT = ("above DeepSpeed's default of 1e9 elements, more parameters stay gathered than gpuplan's "
                 "layer-at-a-time ZeRO-3 plan holds")
DEEPSPEED_TABLE: dict[str, KeyRule] = {
    "zero_optimization.stage": modelled("--zero"),
    "zero_optimization.offload_optimizer.device": modelled("cpu/nvme: --offload optimizer --offload-device; none: no offload"),
    "zero_optimization.offload_param.device": modelled("cpu/nvme: --offload params --offload-device; none: no offload"),
    "zero_optimization.offload_optimizer.ratio": refused("a partial optimizer offload ratio", lambda v: v != 1),
    "zero_optimization.overlap_comm": modelled("stage 1/2: planned with one reduce bucket; DeepSpeed double-buffers "
                                               "it (stage_1_and_2.py backward: \"Use double buffers to avoid data "
                                               "access conflict when overlap_comm is enabled\"): h*h 16-bit "
                                               "elements more than planned"),
    "zero_optimization.contiguous_gradients": modelled("gradients copied into the reduce bucket as it fills: planned"),
    "zero_optimization.reduce_bucket_size": refused(_BUCKET, _not_auto, "set it to auto"),
    "zero_optimization.stage3_prefetch_bucket_size": refused(_BUCKET, _not_auto, "set it to auto"),
    "zero_optimization.prefetch_bucket_size": refused(_BUCKET, _not_auto, "set it to auto"),
    "zero_optimization.stage3_param_persistence_threshold": refused(_BUCKET, _not_auto, "set it to auto"),
    "zero_optimization.param_persistence_threshold": refused(_BUCKET, _not_auto, "set it to auto"),
    "zero_optimization.allgather_bucket_size": modelled("stage 1/2 gather updated 16-bit partitions into the "
                                                        "full weights gpuplan counts live; the bucket is a view"),
    "zero_optimization.allgather_partitions": modelled("stage 1/2 all-gather of updated partitions (planned)"),
    "zero_optimization.reduce_scatter": modelled("gradients reduce-scattered into partitions (planned)"),
    "zero_optimization.stage3_max_live_parameters": refused(_STAGE3_LIMIT, _above_1e9, "set it to 1e9 or less"),
    "zero_optimization.max_live_parameters": refused(_STAGE3_LIMIT, _above_1e9, "set it to 1e9 or less"),
    "zero_optimization.stage3_max_reuse_distance": refused(_STAGE3_LIMIT, _above_1e9, "set it to 1e9 or less"),
    "zero_optimization.max_reuse_distance": refused(_STAGE3_LIMIT, _above_1e9, "set it to 1e9 or less"),
    "zero_optimization.sub_group_size": refused("optimizer sub-groups above 1e9 elements hold larger fp32 "
                                                "step buffers than gpuplan plans", _above_1e9, "set it to 1e9 or less"),
    "zero_optimization.zero_quantized_weights": refused("ZeRO++ quantized weight all-gather"),
    "zero_optimization.zero_quantized_gradients": refused("ZeRO++ quantized gradients"),
    "zero_optimization.zero_hpz_partition_size": refused("ZeRO++ hierarchical partitioning keeps a secondary "
                                                         "weight partition per node", lambda v: v not in (None, 1)),
    "zero_optimization.mics_shard_size": refused("MiCS sub-group sharding", lambda v: v not in (None, -1, 0)),
    "bf16.enabled": modelled("true: --precision bf16-mixed (DeepSpeed keeps fp32 master weights); auto: the trainer's bf16"),
    "fp16.enabled": modelled("true: --precision fp16-mixed (fp32 master weights); auto: the trainer's fp16"),
    "train_micro_batch_size_per_gpu": modelled("--batch-size (auto: the trainer's)"),
    "gradient_accumulation_steps": modelled("--grad-accum (auto: the trainer's)"),
    "train_batch_size": modelled("with micro-batch and accumulation numbers: the GPU count (world size)"),
    "optimizer.type": modelled("Adam/AdamW: DeepSpeed FusedAdam (CPUAdam when offloaded): --optimizer adamw"),
    "activation_checkpointing.partition_activations": refused("DeepSpeed activation partitioning across TP ranks"),
    "activation_checkpointing.cpu_checkpointing": refused("activation checkpoints offloaded to CPU"),
    "activation_checkpointing.contiguous_memory_optimization": refused("contiguous checkpoint buffers"),
    "communication_data_type": refused("a gradient communication dtype other than the model's",
                                       lambda v: v not in (None, "auto")),
    "data_types.grad_accum_dtype": refused("a gradient-accumulation dtype other than the model's",
                                           lambda v: v not in (None, "auto")),
    "compile.*": refused("DeepSpeed compile (DeepCompile)"),
    "amp.*": refused("apex AMP"),
    **no_effect("host-side offload buffers (pinned CPU memory, NVMe paths): not GPU memory",
                ["zero_optimization.offload_optimizer.pin_memory", "zero_optimization.offload_optimizer.nvme_path",
                 "zero_optimization.offload_optimizer.buffer_count", "zero_optimization.offload_optimizer.fast_init",
                 "zero_optimization.offload_optimizer.pipeline_read", "zero_optimization.offload_optimizer.pipeline_write",
                 "zero_optimization.offload_param.pin_memory", "zero_optimization.offload_param.nvme_path",
                 "zero_optimization.offload_param.buffer_count", "zero_optimization.offload_param.buffer_size",
                 "zero_optimization.offload_param.max_in_cpu", "aio.*"]),
    **no_effect("save-time gathers go parameter by parameter to host memory",
                ["zero_optimization.stage3_gather_16bit_weights_on_model_save",
                 "zero_optimization.gather_16bit_weights_on_model_save"]),
    **no_effect("checkpoint and validation switches", [
        "zero_optimization.elastic_checkpoint", "zero_optimization.load_from_fp32_weights",
        "zero_optimization.ignore_unused_parameters", "zero_optimization.round_robin_gradients",
        "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "checkpoint.*"]),
    **no_effect("loss scaling and clipping (scalars)", [
        "fp16.auto_cast", "fp16.loss_scale", "fp16.initial_scale_power", "fp16.loss_scale_window", "fp16.hysteresis",
        "fp16.min_loss_scale", "fp16.consecutive_hysteresis", "bf16.immediate_grad_update", "gradient_clipping",
        "prescale_gradients", "gradient_predivide_factor"]),
    **no_effect("optimizer hyperparameters and schedule", ["optimizer.params.*", "scheduler.*"]),
    **no_effect("logging and profiling", ["steps_per_print", "wall_clock_breakdown", "tensorboard.*", "wandb.*",
                                         "csv_monitor.*", "comms_logger.*", "flops_profiler.*", "dump_state"]),
}


def _ds_device(v: Any) -> str | None:
    v = str(v).lower()
    return None if v in ("none", "null", "") else v


def read_deepspeed(value: Any, base: Path, o: Options, key: str) -> int | None:
    """Map a DeepSpeed config (a path relative to `base`, else to the working directory, or an inline
    dict) into --zero/--offload/--offload-device (and batch/precision where not "auto");
    returns the world size it implies (train_batch_size / (micro x accum)), or None."""
    rep = o.report
    if isinstance(value, Mapping):
        cfg = dict(value)
    else:
        p = Path(str(value)).expanduser()
        found = next((c for c in ((base / p) if not p.is_absolute() else p, p) if c.is_file()), None)
        if found is None:
            raise PlannerError(f"{key}: DeepSpeed config {value} not found (looked next to the config file, "
                               f"in {base}, and in the working directory); give its path")
        try:
            cfg = json.loads(found.read_text())
        except json.JSONDecodeError as e:
            raise PlannerError(f"{key}: DeepSpeed config {found} is not JSON: {e.msg} at line {e.lineno}") from None
    flat = flatten(cfg)
    pre = f"{key}:"
    todo = [k[len(pre):] for k in rep.classify(DEEPSPEED_TABLE, {pre + k: v for k, v in flat.items()},
                                              lambda k: k[len(pre):])]

    def use(k: str, opt: str, v: Any) -> None:
        o.use(f"{key}:{k}", opt, v)

    stage = int(flat.get("zero_optimization.stage", 0) or 0)
    if "zero_optimization.stage" in todo:
        use("zero_optimization.stage", "zero", stage)
    opt_dev = _ds_device(flat.get("zero_optimization.offload_optimizer.device", "none"))
    par_dev = _ds_device(flat.get("zero_optimization.offload_param.device", "none"))
    if par_dev:
        use("zero_optimization.offload_param.device", "offload", "params")
        o.use(f"{key}:zero_optimization.offload_param.device", "offload_device", par_dev)
        if opt_dev and opt_dev != par_dev:
            rep.refuse(f"{key}:zero_optimization.offload_optimizer.device", opt_dev,
                       f"optimizer offloaded to {opt_dev} while parameters go to {par_dev}", "offload both to one device")
    elif opt_dev:
        use("zero_optimization.offload_optimizer.device", "offload", "optimizer")
        o.use(f"{key}:zero_optimization.offload_optimizer.device", "offload_device", opt_dev)
    for k in ("zero_optimization.offload_optimizer.device", "zero_optimization.offload_param.device"):
        if k in todo and f"{key}:{k}" not in rep.used:
            rep.set(f"{key}:{k}", "no offload")
    for k, opt in (("bf16.enabled", "bf16-mixed"), ("fp16.enabled", "fp16-mixed")):
        if k in todo:
            if flat[k] == "auto":
                rep.set(f"{key}:{k}", "auto: the trainer's precision")
            elif on(flat[k]) and "precision" not in o:
                use(k, "precision", opt)
            else:
                rep.set(f"{key}:{k}", f"{show(flat[k])}: the trainer's precision kept")
    for k, opt in (("train_micro_batch_size_per_gpu", "batch_size"), ("gradient_accumulation_steps", "grad_accum")):
        if k in todo:
            if flat[k] == "auto" or opt in o:
                rep.set(f"{key}:{k}", "auto: the trainer's" if flat[k] == "auto" else "the trainer's value kept")
            else:
                use(k, opt, int(flat[k]))
    if "optimizer.type" in todo:
        kind = str(flat["optimizer.type"]).lower()
        if kind not in ("adam", "adamw", "fusedadam", "cpuadam"):
            rep.refuse(f"{key}:optimizer.type", flat["optimizer.type"], "a DeepSpeed optimizer other than Adam/AdamW",
                       "use AdamW")
        else:
            use("optimizer.type", "optimizer", "adamw")
    for k in todo:
        if f"{key}:{k}" not in rep.used:
            rep.set(f"{key}:{k}", "auto: HF Trainer fills it" if flat[k] == "auto" else DEEPSPEED_TABLE[k].note)
    tb, mb, ga = (flat.get(k) for k in ("train_batch_size", "train_micro_batch_size_per_gpu",
                                         "gradient_accumulation_steps"))
    if all(isinstance(v, int) and v > 0 for v in (tb, mb, ga)) and tb % (mb * ga) == 0:
        return tb // (mb * ga)
    return None


# --- FSDP -------------------------------------------------------------------------------------------
# keys of HF TrainingArguments.fsdp_config / accelerate's FullyShardedDataParallelPlugin / axolotl's
# FSDPConfig, compared without their optional "fsdp_" prefix
# [transformers/training_args.py fsdp_config; accelerate/utils/dataclasses.py FullyShardedDataParallelPlugin;
#  axolotl/utils/schemas/fsdp.py FSDPConfig]
FSDP_STRATEGY = {"FULL_SHARD": "full", "1": "full", "SHARD_GRAD_OP": "grad-op", "2": "grad-op",
                 "HYBRID_SHARD": "hybrid", "4": "hybrid"}
FSDP_TABLE: dict[str, KeyRule] = {
    "version": modelled("1 or 2: --fsdp-version, the save phase's state-dict code (planner/memory/state_dicts.py) "
                        "and, for 1, FSDP1's FlatParameter step (planner/memory/fsdp1.py) where it is modelled "
                        "(FULL_SHARD, full fine-tuning or LoRA, no offload/TP/PP/CP); elsewhere FSDP2's step, with a "
                        "note naming what FSDP1's lacks; unset: the launcher's default (accelerate: 1)"),
    "sharding_strategy": modelled("FULL_SHARD: --fsdp full; SHARD_GRAD_OP: grad-op; HYBRID_SHARD: hybrid"),
    "reshard_after_forward": modelled("FSDP2: true: --fsdp full; false: --fsdp grad-op"),
    "offload_params": modelled("true: --offload params (CPUOffloadPolicy)"),
    "cpu_offload": modelled("true: --offload params"),
    "activation_checkpointing": modelled("true: --grad-ckpt (false: the trainer's gradient_checkpointing decides)"),
    "auto_wrap_policy": modelled("TRANSFORMER_BASED_WRAP: one unit per decoder layer, as planned"),
    "transformer_layer_cls_to_wrap": modelled("the decoder layer class: one unit per layer, as planned"),
    "backward_prefetch": modelled("BACKWARD_PRE: the next layer gathered during backward, as planned"),
    "forward_prefetch": modelled("true: --fsdp-forward-prefetch (FSDP1's step is not modelled with it: FSDP2's, "
                                 "whose next all-gather is issued during forward anyway, with a note); false: FSDP1's "
                                 "step as planned"),
    "limit_all_gathers": refused("without the rate limiter more than one unit's all-gather is in flight",
                                 lambda v: v is False or str(v).lower() == "false", "set it true"),
    "min_num_params": refused("size-based wrapping makes units other than one decoder layer"),
    "mixed_precision_policy": refused("an FSDP mixed-precision policy other than the trainer's dtype"),
    "fp8": refused("FP8 all-gather / training"),
    # YaFSDP's patched accelerate: FullyShardedDataParallelPlugin.ya_fsdp_enabled, --fsdp_ya_fsdp_enabled
    # [yandex/YaFSDP patches/accelerate.diff @ 669fc36]
    "ya_fsdp_enabled": modelled("true: --fsdp yafsdp (YaFSDP zero_stage=3 instead of FSDP; planner/memory/yafsdp.py)"),
    **no_effect("init order: the same bytes", ["sync_module_states"]),
    "use_orig_params": modelled("FSDP1 false: --fsdp-flat-params (the step's FlatParameters unpadded, their "
                                "gradients freed at zero_grad; its optimizer save gathers a unit's states "
                                "together); true, or FSDP2 (always the original parameters): as planned"),
    "cpu_ram_efficient_loading": modelled("true: --cpu-ram-efficient-loading (the load phase: rank 0 broadcasts each "
                                          "full tensor; planner/memory/load.py)"),
    "state_dict_type": modelled("FULL_STATE_DICT: --fsdp-state-dict full; SHARDED_STATE_DICT: sharded (the save "
                                "phase; unset: accelerate's default, full for FSDP1, sharded for FSDP2); LOCAL refused"),
    "final_state_dict_type": modelled("FULL_STATE_DICT: --final-full-state-dict (axolotl's final save_model gathers "
                                      "the model: train.py l.330-336); else the run's state_dict_type"),
    **no_effect("checkpoint contents; the optimizer's save is planned unless --save-only-model", ["save_only_model"]),
    **no_effect("compile/tracing switches that HF leaves off: xla only", ["xla", "xla_fsdp_settings",
                                                                          "xla_fsdp_grad_ckpt", "xla_fsdp_v2"]),
}
_WRAP_OK = {"TRANSFORMER_BASED_WRAP", "transformer_based_wrap"}
_STATE_DICT = {"FULL_STATE_DICT": "full", "SHARDED_STATE_DICT": "sharded", "1": "full", "3": "sharded"}


def _state_dict_defaults(o: Options, flat: Mapping[str, Any], version: Any, default_version: int,
                         default_orig_params: bool) -> None:
    """What the launcher picks for the keys the config leaves out: the FSDP version, and the state-dict type
    accelerate defaults it to (FULL_STATE_DICT for FSDP1, SHARDED_STATE_DICT for FSDP2: utils/dataclasses.py
    set_state_dict_type l.2047-2051); FSDP2 has no flat parameters (use_orig_params is dropped, l.1940-1942)."""
    if "fsdp" not in o or o["fsdp"] == "yafsdp":
        return
    v = int(flat.get("version") or version or default_version)
    o["fsdp_version"] = str(v)
    o.setdefault("fsdp_state_dict", "full" if v == 1 else "sharded")
    if v == 2:
        o.pop("fsdp_flat_params", None)
    elif "use_orig_params" not in flat and not default_orig_params:
        o["fsdp_flat_params"] = True


def _bare(k: str) -> str:
    return k[5:] if k.startswith("fsdp_") else k


def fsdp_words(value: Any) -> list[str]:
    """HF/axolotl `fsdp`: "full_shard auto_wrap" or [full_shard, auto_wrap] -> the words."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return ["full_shard"] if value is True else []


def read_fsdp(words: list[str], fcfg: Mapping[str, Any] | None, o: Options, key: str, cfg_key: str,
              version: Any = None, default_version: int = 1, default_orig_params: bool = False) -> None:
    """Map HF/axolotl `fsdp` words and an fsdp_config block into --fsdp / --offload params / --grad-ckpt, and
    the save phase's --fsdp-version / --fsdp-state-dict / --fsdp-flat-params. `default_version`: the FSDP
    version the launcher picks when the config names none (accelerate: 1, FSDP_VERSION's default in
    utils/dataclasses.py l.1830-1831; HF TrainingArguments: 2, training_args.py l.2826), and FSDP1's
    use_orig_params when the config leaves it out (accelerate: false, FSDP_USE_ORIG_PARAMS's default,
    l.1938-1939; HF TrainingArguments: true, training_args.py l.2876-2877)."""
    rep = o.report
    words = [w.lower() for w in words]
    mode = None
    for w in words:
        if w in ("full_shard", "shard_grad_op", "hybrid_shard"):
            mode = {"full_shard": "full", "shard_grad_op": "grad-op", "hybrid_shard": "hybrid"}[w]
        elif w == "hybrid_shard_zero2":
            rep.refuse(key, " ".join(words), "HYBRID_SHARD_ZERO2 (grad-op inside a node)", "use hybrid_shard")
        elif w == "no_shard":
            rep.refuse(key, " ".join(words), "FSDP NO_SHARD is DDP: plan it with --gpus N", "remove it")
        elif w not in ("auto_wrap", "offload"):
            rep.refuse(key, " ".join(words), f"FSDP option {w!r}")
    if words:
        if mode:
            o.use(key, "fsdp", mode)
        if "offload" in words:
            o.use(key, "offload", "params")
    if version is not None:
        o.use("fsdp_version", "fsdp_version", str(int(version)))
    if not fcfg:
        if words:
            _state_dict_defaults(o, {}, version, default_version, default_orig_params)
        return
    flat = {k[5:] if k.startswith("fsdp_") else k: v for k, v in fcfg.items()}
    orig = {(k[5:] if k.startswith("fsdp_") else k): k for k in fcfg}
    pre = f"{cfg_key}."
    todo = [_bare(k[len(pre):]) for k in rep.classify(FSDP_TABLE, {pre + k: v for k, v in fcfg.items()},
                                                     lambda k: _bare(k[len(pre):]))]
    for k in todo:
        name, v = f"{cfg_key}.{orig[k]}", flat[k]
        if k == "sharding_strategy":
            s = str(v).split(".")[-1].upper()
            if s not in FSDP_STRATEGY:
                rep.refuse(name, v, f"FSDP sharding strategy {s}", "use FULL_SHARD, SHARD_GRAD_OP or HYBRID_SHARD")
            else:
                o.use(name, "fsdp", FSDP_STRATEGY[s])
        elif k == "reshard_after_forward":
            o.use(name, "fsdp", "full" if on(v) else "grad-op")
        elif k in ("offload_params", "cpu_offload"):
            if on(v):
                o.use(name, "offload", "params")
            else:
                rep.set(name, "no offload")
        elif k == "activation_checkpointing":
            if on(v):
                o.use(name, "grad_ckpt", True)
            else:
                rep.set(name, "false: the trainer's gradient_checkpointing decides")
        elif k == "auto_wrap_policy" and str(v) not in _WRAP_OK:
            rep.refuse(name, v, "wrapping other than one unit per decoder layer", "use TRANSFORMER_BASED_WRAP")
        elif k == "backward_prefetch" and str(v).upper() not in ("BACKWARD_PRE", "BACKWARDPREFETCH.BACKWARD_PRE"):
            rep.refuse(name, v, "backward prefetch other than BACKWARD_PRE", "use BACKWARD_PRE")
        elif k == "cpu_ram_efficient_loading":
            if on(v):
                o.use(name, "cpu_ram_efficient_loading", True)
            else:
                rep.set(name, "false: fully_shard moves each unit to the GPU whole, as planned")
        elif k == "version":
            o.use(name, "fsdp_version", str(int(v)))
        elif k in ("state_dict_type", "final_state_dict_type"):
            t = str(v).split(".")[-1].upper()
            if t not in _STATE_DICT:
                rep.refuse(name, v, f"FSDP {t} (each rank's flat local shards)", "use FULL_STATE_DICT or SHARDED_STATE_DICT")
            elif k == "state_dict_type":
                o.use(name, "fsdp_state_dict", _STATE_DICT[t])
            elif t == "FULL_STATE_DICT":
                o.use(name, "final_full_state_dict", True)
            else:
                rep.set(name, f"{t}: the final save as the checkpoints")
        elif k == "forward_prefetch":
            if on(v):
                o.use(name, "fsdp_forward_prefetch", True)
            else:
                rep.set(name, "false: no forward prefetch, as FSDP1's step plans")
        elif k == "use_orig_params":
            if not on(v):
                o.use(name, "fsdp_flat_params", True)
            else:
                rep.set(name, "true: the original parameters, as planned")
        else:
            rep.set(name, FSDP_TABLE[k].note)
    if "fsdp" not in o and (flat.get("version") or version):
        o.use(cfg_key, "fsdp", "full")   # FSDP2 without a strategy: reshard_after_forward defaults to True
    _state_dict_defaults(o, flat, version, default_version, default_orig_params)
    if "ya_fsdp_enabled" in todo and on(flat["ya_fsdp_enabled"]):   # replaces FSDP whatever the strategy
        o.use(f"{cfg_key}.{orig['ya_fsdp_enabled']}", "fsdp", "yafsdp")

