"""accelerate launcher config YAML (`accelerate config` / `accelerate launch --config_file`) -> the GPU
count, DeepSpeed or FSDP settings and mixed precision.

Key table: accelerate's `BaseConfig` / `ClusterConfig` [src/accelerate/commands/config/config_args.py,
accelerate 1.15; tests/planner/test_fromconfig.py checks it against the installed accelerate] and the
plugin fields its `deepspeed_config` / `fsdp_config` blocks fill [src/accelerate/utils/dataclasses.py
DeepSpeedPlugin, FullyShardedDataParallelPlugin].
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ConfigSetup
from .common import Options, read_deepspeed, read_fsdp
from . import compile as compile_keys   # torch.compile's keys (not the builtin)
from .rules import KeyRule, Report, modelled, no_effect, on, refused, show

_PC = "parallelism_config.parallelism_config_"   # the flattened keys of accelerate's parallelism_config block

TABLE: dict[str, KeyRule] = {
    "distributed_type": modelled("NO: one GPU; MULTI_GPU: DDP; DEEPSPEED: deepspeed_config; FSDP: fsdp_config; "
                                 "others refused"),
    "num_processes": modelled("processes in all: --gpus (per node) x --nodes"),
    "num_machines": modelled("--nodes"),
    "mixed_precision": modelled("bf16: --precision bf16-mixed; fp16: fp16-mixed; no: fp32; fp8: --precision bf16-mixed "
                                "--fp8 tensorwise (bf16 autocast plus torchao float8 with accelerate's filter, "
                                "skip-first-last: accelerator.py AORecipeKwargs, utils/ao.py convert_model_to_fp8_ao)"),
    "deepspeed_config.zero_stage": modelled("--zero"),
    "deepspeed_config.offload_optimizer_device": modelled("cpu/nvme: --offload optimizer --offload-device"),
    "deepspeed_config.offload_param_device": modelled("cpu/nvme: --offload params --offload-device"),
    "deepspeed_config.deepspeed_config_file": modelled("a DeepSpeed JSON: read as `deepspeed` is"),
    "deepspeed_config.gradient_accumulation_steps": modelled("--grad-accum (when the training config gives none)"),
    "deepspeed_config.zero3_init_flag": modelled("ZeRO-3 init partitions at load: planned"),
    "fsdp_config.*": modelled("FSDP plugin fields: read as HF fsdp_config is (common.py FSDP_TABLE)"),
    "use_cpu": refused("CPU training", lambda v: v is True),
    "dynamo_config.dynamo_backend": modelled("INDUCTOR: --compile inductor (prepare_model calls torch.compile(model) "
                                             "[accelerator.py L2068-2073]); NO: eager; other backends refused"),
    "dynamo_config.dynamo_mode": modelled("with INDUCTOR: default / max-autotune-no-cudagraphs; CUDA-graph modes refused"),
    "dynamo_config.dynamo_use_regional_compilation": refused(
        "regional compilation compiles the repeated decoder layers and the rest apart (the loss in its own graph): "
        "not counted", lambda v: on(v)),
    "dynamo_config.*": refused("torch.compile (TorchDynamo) options beyond backend and mode",
                               lambda v: str(v).upper() not in ("NO", "NONE", "FALSE", "")),
    "megatron_lm_config.*": refused("Megatron-LM through accelerate"),
    # ParallelismConfig's context/sequence-parallel fields [accelerate/commands/config/cluster.py: the
    # parallelism_config_ prefix; parallelism_config.py ParallelismConfig, 1.15.0]
    f"{_PC}cp_size": modelled("--context-parallel N --cp-kind torch (torch context_parallel over SDPA, FSDP2) "
                              "[accelerator.py _prepare_cp; techniques/context_parallel.py]"),
    f"{_PC}cp_comm_strategy": modelled("allgather: --cp-kind torch; alltoall: --cp-kind torch-alltoall "
                                       "[set_rotate_method]"),
    f"{_PC}cp_backend": modelled("torch, the only backend (ParallelismConfig: valid_cp_backends)"),
    f"{_PC}sp_size": modelled("--context-parallel N --cp-kind ulysses (DeepSpeed ALST UlyssesSPAttentionHF)"),
    f"{_PC}sp_backend": modelled("deepspeed, the only backend (ParallelismConfig: valid_sp_backends)"),
    f"{_PC}sp_seq_length": modelled("with sp_size: the training config's sequence length is --seq-len"),
    f"{_PC}sp_seq_length_is_variable": modelled("with sp_size: the micro-batch planned is --seq-len long"),
    f"{_PC}sp_attn_implementation": modelled("with sp_size: sdpa / flash_attention_2: --attention sdpa / flash"),
    f"{_PC}dp_shard_size": modelled("FSDP2 shards over dp_shard_size x cp_size ranks (the dp_shard_cp mesh): "
                                    "--fsdp over the GPUs, read when their product is num_processes"),
    "parallelism_config.*": refused("accelerate's N-D parallelism (context / tensor parallel) is not read yet",
                                    lambda v: v not in (None, 1, "1")),
    "fp8_config.backend": modelled("AO (or unset: accelerate picks torchao when it is installed): --fp8 tensorwise; "
                                   "TE / MSAMP refused"),
    "fp8_config.enable_fsdp_float8_all_gather": modelled("with --fp8: FSDP's float8 all-gather, which never runs on "
                                                         "one GPU (--fp8 on more GPUs is refused)"),
    "fp8_config.pad_inner_dim": modelled("with --fp8: accelerate's filter converts only linears whose features are "
                                         "multiples of 16, so nothing is padded"),
    "fp8_config.*": refused("FP8 options of the Transformer Engine / MS-AMP backends"),
    "deepspeed_config.deepspeed_moe_layer_cls_names": refused("ZeRO-3 leaf modules (MoE blocks gathered whole)"),
    "ipex_config.*": refused("Intel IPEX"),
    **no_effect("save-time gathers go to host memory", ["deepspeed_config.zero3_save_16bit_model"]),
    **no_effect("gradient clipping threshold (a scalar)", ["deepspeed_config.gradient_clipping"]),
    **no_effect("host-side offload paths", ["deepspeed_config.offload_optimizer_nvme_path",
                                            "deepspeed_config.offload_param_nvme_path"]),
    **no_effect("launcher plumbing: ranks, addresses, rendezvous, TPU/MPI settings", [
        "compute_environment", "debug", "machine_rank", "main_training_function", "rdzv_backend", "same_network",
        "tpu_env", "tpu_use_cluster", "tpu_use_sudo", "tpu_name", "tpu_zone", "main_process_ip",
        "main_process_port", "gpu_ids", "enable_cpu_affinity", "tpu_vm", "deepspeed_config.deepspeed_multinode_launcher",
        "deepspeed_config.deepspeed_hostfile", "mpirun_config.*", "commands", "command_file"]),
    **no_effect("bf16 downcast of XLA tensors (TPU only)", ["downcast_bf16"]),
}
_PREC = {"bf16": "bf16-mixed", "fp16": "fp16-mixed"}
_SP_ATTN = {"sdpa": "sdpa", "flash_attention_2": "flash"}


def _parallelism(pc: dict[str, Any], todo: set[str], o: Options, rep: Report, procs: int) -> None:
    """accelerate's parallelism_config: cp_size / sp_size -> --context-parallel and its kind; refused where
    ParallelismConfig itself raises (both set) or the sizes do not cover the processes."""
    def value(name: str) -> Any:
        return pc.get("parallelism_config_" + name)

    def key(name: str) -> str:
        return _PC + name

    cp, sp, shard = (int(value(n) or 1) for n in ("cp_size", "sp_size", "dp_shard_size"))
    if cp > 1 and sp > 1:
        rep.refuse(key("sp_size"), sp, "ParallelismConfig raises: CP and SP are mutually exclusive", "set one to 1")
        return
    if key("dp_shard_size") in todo and shard > 1:
        if shard * max(cp, sp) != procs:
            rep.refuse(key("dp_shard_size"), shard, f"dp_shard_size x cp/sp_size = {shard * max(cp, sp)} is not "
                       f"num_processes {procs}", "give sizes whose product is the process count")
        else:
            rep.set(key("dp_shard_size"), f"{shard}: FSDP2 over the {procs} GPUs (the dp_shard_cp mesh)")
    if cp > 1:
        o.use(key("cp_size"), "context_parallel", cp)
        strategy = str(value("cp_comm_strategy") or "allgather").lower()
        o.use(key("cp_comm_strategy") if key("cp_comm_strategy") in todo else key("cp_size"), "cp_kind",
              "torch-alltoall" if strategy == "alltoall" else "torch")
    elif sp > 1:
        o.use(key("sp_size"), "context_parallel", sp)
        o.use(key("sp_size"), "cp_kind", "ulysses")
        attn = value("sp_attn_implementation")
        if attn in _SP_ATTN:
            o.use(key("sp_attn_implementation"), "attn", _SP_ATTN[attn])
        elif attn is not None:
            rep.refuse(key("sp_attn_implementation"), attn, "an attention Ulysses is not planned with",
                       "use sdpa or flash_attention_2")
    for name in ("cp_size", "cp_comm_strategy", "cp_backend", "sp_size", "sp_backend", "sp_seq_length",
                 "sp_seq_length_is_variable", "sp_attn_implementation", "dp_shard_size"):
        if key(name) in todo and key(name) not in rep.used and not any(r.startswith(key(name)) for r in rep.refused):
            rep.set(key(name), f"{show(value(name))}: as gpuplan plans")


def read(d: dict[str, Any], path: str) -> ConfigSetup:
    rep = Report("accelerate")
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    todo = set(rep.classify(TABLE, flat))
    o = Options(rep)
    kind = str(d.get("distributed_type", "NO")).upper().replace("DISTRIBUTEDTYPE.", "")
    if kind not in ("NO", "MULTI_GPU", "DEEPSPEED", "FSDP"):
        rep.refuse("distributed_type", kind, f"accelerate's {kind} backend", "use MULTI_GPU, DEEPSPEED or FSDP")
    nodes = int(d.get("num_machines") or 1)
    procs = int(d.get("num_processes") or 1)
    if "num_machines" in todo:
        o.use("num_machines", "nodes", nodes)
    if "num_processes" in todo:
        if procs % nodes:
            rep.refuse("num_processes", procs, f"{procs} processes do not split evenly over {nodes} machines",
                       "give a multiple of num_machines")
        else:
            o.use("num_processes", "gpus_per_node", procs // nodes)
    mp = str(d.get("mixed_precision", "no")).lower()
    if "mixed_precision" in todo:
        if mp in _PREC:
            o.use("mixed_precision", "precision", _PREC[mp])
        elif mp == "fp8":
            fp8_backend = str(flat.get("fp8_config.backend") or "AO").upper()
            if fp8_backend in ("AO", "NO"):
                o["precision"], o["fp8"] = "bf16-mixed", "tensorwise"
                rep.set("mixed_precision", "--precision bf16-mixed --fp8 tensorwise")
            else:
                rep.refuse("mixed_precision", mp, f"FP8 training with the {fp8_backend} backend", "use fp8_config.backend AO")
        else:
            o.use("mixed_precision", "precision", "fp32")
    backend = flat.get("dynamo_config.dynamo_backend")
    if "dynamo_config.dynamo_backend" in todo and str(backend).upper() not in ("NO", "NONE", ""):
        compile_keys.read("dynamo_config.dynamo_backend", True, str(backend).lower(),
                          flat.get("dynamo_config.dynamo_mode"), o,
                          ("dynamo_config.dynamo_backend", "dynamo_config.dynamo_mode"))
    if isinstance(d.get("parallelism_config"), dict):
        _parallelism(d["parallelism_config"], todo, o, rep, procs)
    ds = d.get("deepspeed_config") or {}
    if kind == "DEEPSPEED":
        if ds.get("deepspeed_config_file"):
            read_deepspeed(ds["deepspeed_config_file"], Path(path).parent, o, "deepspeed_config.deepspeed_config_file")
        else:
            inline = {"zero_optimization": {"stage": int(ds.get("zero_stage", 0))}}
            for which in ("optimizer", "param"):
                dev = ds.get(f"offload_{which}_device")
                if dev is not None:
                    inline["zero_optimization"][f"offload_{which}"] = {"device": dev}
            read_deepspeed(inline, Path(path).parent, o, "deepspeed_config")
            o.report.used.pop("deepspeed_config:zero_optimization.stage", None)
            for which in ("optimizer", "param"):
                moved = o.report.used.pop(f"deepspeed_config:zero_optimization.offload_{which}.device", None)
                if moved:
                    rep.set(f"deepspeed_config.offload_{which}_device", moved)
            rep.set("deepspeed_config.zero_stage", f"--zero {o.get('zero', 0)}")
        if ds.get("gradient_accumulation_steps") not in (None, "auto"):
            o.use("deepspeed_config.gradient_accumulation_steps", "grad_accum", int(ds["gradient_accumulation_steps"]))
    if kind == "FSDP":
        fc = d.get("fsdp_config") or {}
        rep.used = {k: v for k, v in rep.used.items() if not k.startswith("fsdp_config.")}
        read_fsdp(["full_shard"] if not any(k.endswith(("sharding_strategy", "reshard_after_forward")) for k in fc)
                  else [], fc, o, "distributed_type", "fsdp_config")
    for k in todo:
        if k not in rep.used and k not in rep.no_effect and k not in rep.unknown and \
                not any(r.startswith(f"{k}:") for r in rep.refused):
            rep.set(k, f"{kind}: " + ("one GPU per process" if kind in ("NO", "MULTI_GPU") else
                                      f"its {kind.lower()}_config read") if k == "distributed_type" else
                    TABLE[k].note if kind in ("DEEPSPEED", "FSDP") or not k.startswith(("deepspeed", "fsdp")) else
                    f"not read: distributed_type is {kind}")
    return ConfigSetup.of("accelerate", None, o, rep)
