"""ParallelSpec: how one training step is spread over GPUs and offloaded to the host.

The single-GPU estimate is the case `ParallelSpec()` (one GPU, nothing sharded or offloaded).
Semantics follow the engines as users run them: DeepSpeed ZeRO stages, PyTorch FSDP2
`fully_shard`, Megatron-style tensor and pipeline parallelism, DDP gradient buckets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .enums import Choice, Optimizer
from .errors import PlannerError

if TYPE_CHECKING:
    from .model import ModelSpec


class Fsdp(Choice):
    NONE = "none"
    FULL = "full"          # FSDP2 reshard_after_forward=True: params, grads, optimizer sharded
    GRAD_OP = "grad-op"    # reshard_after_forward=False (ZeRO-2-like): params stay gathered fwd->bwd
    HYBRID = "hybrid"      # shard inside a node, replicate across nodes
    YAFSDP = "yafsdp"      # Yandex's YaFSDP (zero_stage=3): reusable gather buffers, fp32 master shard


class CpKind(Choice):
    """Which context/sequence-parallel attention splits the sequence (planner/techniques/context_parallel.py)."""

    TORCH = "torch"                    # torch context_parallel ring over SDPA, K/V all-gathered (accelerate cp_size)
    TORCH_ALLTOALL = "torch-alltoall"  # the same, K/V rotated rank to rank (cp_comm_strategy: alltoall)
    RING_FLASH = "ring-flash"          # ring-flash-attn ring_flash_attn_func (axolotl ring_attn_func: batch_ring)
    LLAMA3 = "llama3"                  # ring-flash-attn llama3_flash_attn_varlen_func (axolotl varlen_llama3)
    ULYSSES = "ulysses"                # DeepSpeed ALST UlyssesSPAttentionHF: all-to-all over heads (accelerate sp_size)


class Offload(Choice):
    NONE = "none"
    OPTIMIZER = "optimizer"   # optimizer state (and its step) on the host: ZeRO-Offload, FSDP CPUOffload
    PARAMS = "params"         # optimizer state and parameters on the host (ZeRO-3 offload_param)


class OffloadDevice(Choice):
    CPU = "cpu"
    NVME = "nvme"             # ZeRO-Infinity


@dataclass(frozen=True)
class ParallelSpec:
    gpus: int = 1                       # GPUs per node
    nodes: int = 1
    zero: int = 0                       # DeepSpeed ZeRO stage 0-3 (0: plain DDP when world > 1)
    fsdp: Fsdp = Fsdp.NONE
    offload: Offload = Offload.NONE
    offload_device: OffloadDevice = OffloadDevice.CPU
    tp: int = 1                         # tensor-parallel degree
    pp: int = 1                         # pipeline stages
    cp: int = 1                         # context/sequence-parallel degree: each rank holds 1/cp of every sequence
    cp_kind: CpKind = CpKind.TORCH      # the attention that exchanges K/V (or heads) between those ranks
    heads_k_stride: int = 1             # ring-flash-attn llama3: K/V heads all-gathered at a time
    fsdp_version: int = 2               # --fsdp full's step: 2 fully_shard, 1 FullyShardedDataParallel (memory/fsdp1.py)
    fsdp1_orig_params: bool = True      # FSDP1's step: use_orig_params (False: --fsdp-flat-params, memory/fsdp1.py)

    @property
    def world(self) -> int:
        return self.gpus * self.nodes

    @property
    def dp(self) -> int:
        """Data-parallel degree: the world divided among tensor and pipeline groups."""
        return self.world // (self.tp * self.pp)

    def as_dict(self) -> dict:
        """Plain values by field; the context-parallel ones only when set (older dicts stay as they were)."""
        return {k: getattr(v, "value", v) for k, v in self.__dict__.items()
                if k not in _CP_DEFAULTS or v != _CP_DEFAULTS[k]}

    @property
    def replicas(self) -> int:
        """Distinct micro-batches per step across the world: the data-parallel ranks, of which each group
        of `cp` shares one batch (the sharding group stays `dp`: accelerate's dp_shard_cp mesh, DeepSpeed's
        sequence-data-parallel group)."""
        return self.dp // self.cp

    @property
    def single_gpu(self) -> bool:
        return self == _SINGLE_GPU

    def validate(self, model: "ModelSpec | None" = None, optimizer: Optimizer | None = None) -> "ParallelSpec":
        """Returns self, or raises PlannerError naming the impossible combination and a way out.

        The engines' own limits: DeepSpeed offloads parameters only in ZeRO-3 and to NVMe only in
        ZeRO-3 (ZeRO-Infinity), and refuses ZeRO-2/3 with its pipeline engine
        [deepspeed/runtime/pipe/engine.py: "ZeRO-2 and ZeRO-3 are incompatible with pipeline
        parallelism"]; FSDP2 offloads parameters, gradients and optimizer state together
        (CPUOffloadPolicy) and only to CPU memory [torch/distributed/fsdp/_fully_shard/_fsdp_api.py].
        """
        if self == _SINGLE_GPU:    # the default: nothing to check (keeps the single-GPU estimate fast)
            return self
        for name, value in (("--gpus", self.gpus), ("--nodes", self.nodes), ("--tp", self.tp), ("--pp", self.pp)):
            if value < 1:
                raise PlannerError(f"{name} must be at least 1, got {value}")
        if self.zero not in (0, 1, 2, 3):
            raise PlannerError(f"--zero must be 0, 1, 2 or 3 (DeepSpeed ZeRO stages), got {self.zero}")
        if self.world % (self.tp * self.pp):
            raise PlannerError(f"{self.world} GPUs ({self.gpus} per node x {self.nodes} nodes) do not divide into "
                               f"--tp {self.tp} x --pp {self.pp} = {self.tp * self.pp}; choose counts whose product "
                               f"divides the GPU count")
        self._validate_cp()
        if self.tp > self.gpus and self.tp % self.gpus:
            raise PlannerError(f"--tp {self.tp} spans nodes unevenly ({self.gpus} GPUs per node); "
                               f"use a --tp that divides or is a multiple of --gpus")
        if self.zero and self.fsdp is not Fsdp.NONE:
            raise PlannerError("--zero (DeepSpeed) and --fsdp (PyTorch FSDP) are two engines; choose one of them")
        if self.fsdp is Fsdp.YAFSDP and (self.tp > 1 or self.pp > 1 or self.offload is not Offload.NONE):
            raise PlannerError("--fsdp yafsdp shards over the whole data-parallel world with no offload (its "
                               "accelerate patch: YaFSDP(zero_stage=3), no TP/PP group, no CPU offload); drop "
                               "--tp/--pp/--offload or use --fsdp full")
        if self.fsdp_version not in (1, 2):
            raise PlannerError(f"--fsdp-version must be 1 or 2, got {self.fsdp_version}")
        if self.fsdp_version == 1 and (self.fsdp is not Fsdp.FULL or self.tp > 1 or self.pp > 1 or self.cp > 1
                                       or self.offload is not Offload.NONE):
            raise PlannerError("--fsdp-version 1 plans FSDP1's FULL_SHARD step without offload, TP, PP or CP "
                               "(memory/fsdp1.py); use --fsdp full without them, or drop --fsdp-version 1")
        if self.fsdp is Fsdp.HYBRID and self.nodes == 1:
            raise PlannerError("--fsdp hybrid shards inside a node and replicates across nodes: it needs --nodes 2 "
                               "or more (on one node use --fsdp full)")
        if self.fsdp is Fsdp.HYBRID and self.gpus % (self.tp * self.pp):
            raise PlannerError(f"--fsdp hybrid needs --tp x --pp ({self.tp * self.pp}) to divide --gpus {self.gpus}")
        if self.zero >= 2 and self.pp > 1:
            raise PlannerError(f"DeepSpeed's pipeline engine supports ZeRO stage 0 or 1 only, not --zero {self.zero} "
                               "with --pp; use --zero 1 or --fsdp full")
        self._validate_offload(optimizer)
        if model is not None:
            self._validate_model(model)
        return self

    def _validate_cp(self) -> None:
        """Context parallelism's engine limits (the model's and the sequence's: techniques/context_parallel.py)."""
        if self.cp < 1:
            raise PlannerError(f"--context-parallel must be at least 1, got {self.cp}")
        if self.cp == 1:
            if self.cp_kind is not CpKind.TORCH or self.heads_k_stride != 1:
                raise PlannerError("--cp-kind / --heads-k-stride apply with --context-parallel 2 or more")
            return
        if self.dp < self.cp:
            raise PlannerError(f"--context-parallel {self.cp} splits each sequence over {self.cp} GPUs, but the job has "
                               f"{self.dp} data-parallel rank(s): add --gpus-per-node {self.cp} (or a multiple)")
        if self.dp % self.cp:
            raise PlannerError(f"--context-parallel {self.cp} does not divide the {self.dp} data-parallel ranks "
                               f"({self.world} GPUs / (--tp x --pp)); choose a degree that divides the GPU count")
        if self.tp > 1 or self.pp > 1:
            raise PlannerError("--context-parallel with --tp/--pp is not modelled yet; drop --tp/--pp")
        if self.heads_k_stride < 1:
            raise PlannerError(f"--heads-k-stride must be at least 1, got {self.heads_k_stride}")
        if self.heads_k_stride != 1 and self.cp_kind is not CpKind.LLAMA3:
            raise PlannerError("--heads-k-stride is ring-flash-attn's llama3 knob: use it with --cp-kind llama3")
        torch_cp = self.cp_kind in (CpKind.TORCH, CpKind.TORCH_ALLTOALL)
        if torch_cp and self.fsdp in (Fsdp.NONE, Fsdp.YAFSDP):
            raise PlannerError(f"--cp-kind {self.cp_kind.value}: accelerate runs torch's context_parallel with FSDP2 "
                               "only (ParallelismConfig cp_backend torch); add --fsdp full (or use --cp-kind ring-flash)")
        if self.cp_kind is CpKind.ULYSSES and not self.zero:
            raise PlannerError("--cp-kind ulysses is DeepSpeed's (ALST, accelerate sp_backend deepspeed): add --zero "
                               "1, 2 or 3")
        if self.fsdp is Fsdp.YAFSDP:
            raise PlannerError("--fsdp yafsdp with --context-parallel is not modelled; use --fsdp full")

    def _validate_offload(self, optimizer: Optimizer | None) -> None:
        if self.offload is Offload.NONE:
            if self.offload_device is not OffloadDevice.CPU:
                raise PlannerError("--offload-device applies to --offload optimizer or params")
            return
        if self.zero == 0 and self.fsdp is Fsdp.NONE:
            raise PlannerError(f"--offload {self.offload} needs a sharding engine: add --zero 1/2/3 "
                               "(DeepSpeed ZeRO-Offload) or --fsdp full (FSDP2 CPUOffloadPolicy)")
        if self.fsdp is not Fsdp.NONE:
            if self.offload is Offload.OPTIMIZER:
                raise PlannerError("FSDP2 offloads parameters, gradients and optimizer state together "
                                   "(CPUOffloadPolicy): use --offload params, or --zero 1/2/3 --offload optimizer")
            if self.offload_device is OffloadDevice.NVME:
                raise PlannerError("FSDP2 offloads to CPU memory only; NVMe offload is DeepSpeed ZeRO-3's "
                                   "(--zero 3 --offload-device nvme)")
        if self.offload is Offload.PARAMS and self.zero in (1, 2):
            raise PlannerError(f"DeepSpeed offloads parameters only in ZeRO-3; use --zero 3 --offload params "
                               f"or --zero {self.zero} --offload optimizer")
        if self.offload_device is OffloadDevice.NVME and self.zero != 3:
            raise PlannerError("NVMe offload (ZeRO-Infinity) needs --zero 3")
        if optimizer is not None and self.zero and optimizer not in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
            raise PlannerError(f"an offloaded ZeRO optimizer runs DeepSpeed's CPU Adam, not {optimizer}; "
                               "use --optimizer adamw or adamw-fused")

    def _validate_model(self, model: "ModelSpec") -> None:
        if self.fsdp is Fsdp.YAFSDP and model.tied_embeddings:
            raise PlannerError(f"--fsdp yafsdp: {model.name} ties lm_head to embed_tokens, which YaFSDP's patched "
                               "scripts wrap as two super tensors; a shared weight is not modelled (use --fsdp full)")
        if self.tp > model.n_heads:
            raise PlannerError(f"--tp {self.tp} is larger than {model.name}'s {model.n_heads} attention heads")
        if model.n_heads % self.tp or model.n_kv_heads % self.tp:
            raise PlannerError(f"--tp {self.tp} must divide {model.name}'s {model.n_heads} attention heads and "
                               f"{model.n_kv_heads} key/value heads; try --tp "
                               f"{max(t for t in (1, 2, 4, 8, 16) if not model.n_heads % t and not model.n_kv_heads % t)}")
        if self.cp > 1 and self.cp_kind is CpKind.ULYSSES:
            # UlyssesSPAttentionHF.__init__ raises both [deepspeed/runtime/sequence_parallel/ulysses_sp.py]
            if model.n_heads % self.cp:
                raise PlannerError(f"--cp-kind ulysses: {model.name}'s {model.n_heads} attention heads do not divide "
                                   f"by --context-parallel {self.cp} (DeepSpeed raises); choose a degree dividing them")
            if model.n_kv_heads % self.cp and self.cp % model.n_kv_heads:
                raise PlannerError(f"--cp-kind ulysses: {model.name}'s {model.n_kv_heads} key/value heads and "
                                   f"--context-parallel {self.cp} divide neither way (DeepSpeed raises)")
        if self.cp > 1 and self.cp_kind is CpKind.LLAMA3 and model.n_kv_heads % self.heads_k_stride:
            raise PlannerError(f"--heads-k-stride {self.heads_k_stride} must divide {model.name}'s {model.n_kv_heads} "
                               "key/value heads (llama3_flash_attn_varlen_forward asserts it)")
        if self.pp > model.n_layers:
            raise PlannerError(f"--pp {self.pp} is more pipeline stages than {model.name}'s {model.n_layers} layers")


_SINGLE_GPU = ParallelSpec()
_CP_DEFAULTS = {"cp": 1, "cp_kind": CpKind.TORCH, "heads_k_stride": 1, "fsdp_version": 2, "fsdp1_orig_params": True}
