"""Checkpoints: the bytes each save writes, the disk a run keeps, the time a save takes, and the
GPU memory the save phase needs (RunPhase.SAVE), as HF Trainer writes them.

HF Trainer `_save_checkpoint` [transformers/trainer.py]: the model through `save_pretrained`
(safetensors: every parameter once, tied weights once, in the dtype it is stored in: fp32 under
`*-mixed`), or for a peft model only the adapter (`adapter_model.safetensors`, the trainable
tensors in their dtype) [peft/peft_model.py save_pretrained]; `optimizer.pt` (`torch.save` of
`optimizer.state_dict()`, every state tensor; skipped with `save_only_model=True`); scheduler, RNG
state and trainer state, a few KiB, not counted. `save_total_limit` keeps the newest K.

A safetensors file is an 8-byte header length, a JSON header (one entry per tensor, about 100
bytes: estimated here, read exactly by the tests) and the tensors' bytes [safetensors docs,
"Format"]. `torch.save` adds a zip container and a pickle of the state's structure to the
tensors' bytes [torch/serialization.py]: about a kilobyte per parameter's state, estimated likewise.

Under DeepSpeed ZeRO every rank writes its optimizer partition (fp32 master and Adam moments,
`*_optim_states.pt`) and the model states file holds the 16-bit weights [deepspeed/runtime/engine.py
save_checkpoint, _save_zero_checkpoint]; FSDP2 with SHARDED_STATE_DICT writes each rank's shards
through torch.distributed.checkpoint (`.distcp` files): parameters as stored (fp32) and the
optimizer state [torch/distributed/checkpoint/state_dict.py].
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..specs.engines import Engine, engine_of, shard_degree
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import ParallelSpec
from ..specs.setup import TrainingSetup
from .pieces import terms
from . import yafsdp
from .state_dicts import StateDictPlan, StateDictType, fsdp_save_memory

SAFETENSORS_ENTRY_BYTES = 100     # JSON header bytes per tensor: name, dtype, shape, offsets (estimate)
# torch.save of an AdamW state_dict: per parameter the zip records of exp_avg, exp_avg_sq and step
# (64-byte aligned) and their pickle, ~950 bytes measured for a tiny model (tests bound it)
TORCH_SAVE_TENSOR_BYTES = 1000
# Sequential write bandwidth assumed when none is given: a datacenter NVMe SSD writes ~2-3 GB/s
# sustained (e.g. Samsung PM9A3 datasheet: 3.0 GB/s sequential write, 3.84 TB model); network file
# systems on cloud GPU nodes are often slower. Override with --disk-bandwidth.
DEFAULT_DISK_BYTES_PER_S = 2.0e9


@dataclass(frozen=True)
class SavePlan:
    """How a run saves: every `save_steps` optimizer steps, keeping `save_total_limit` (None: all)."""

    save_steps: int
    save_total_limit: int | None = None
    total_steps: int | None = None          # None: one checkpoint is planned
    disk_bytes_per_s: float = DEFAULT_DISK_BYTES_PER_S
    save_only_model: bool = False
    state_dict: StateDictPlan = StateDictPlan()   # FSDP: version and state-dict type (memory/state_dicts.py)

    def validate(self) -> "SavePlan":
        if self.save_steps < 1:
            raise PlannerError(f"--save-steps must be at least 1, got {self.save_steps}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise PlannerError(f"--save-total-limit must be at least 1, got {self.save_total_limit}")
        if self.disk_bytes_per_s <= 0:
            raise PlannerError("--disk-bandwidth must be positive")
        return self


@dataclass(frozen=True)
class CheckpointEstimate:
    files: dict[str, int]                   # file -> bytes, summed over the ranks that write it
    bytes_per_checkpoint: int
    checkpoints: int                        # saved over the run
    kept: int                               # on disk at the end (save_total_limit)
    bytes_on_disk_total: int
    save_seconds: float                     # writing one checkpoint at disk_bytes_per_s (synchronous: GPU idle)
    save_peak_bytes: int                    # GPU bytes allocated while saving (RunPhase.SAVE), per GPU
    notes: tuple[str, ...] = field(default=())
    # FSDP with a state-dict plan given: the plan, and the host RAM the save takes (None: not modelled)
    state_dict: dict | None = None
    save_host_bytes_rank0: int | None = None
    save_host_bytes_per_node: int | None = None

    def to_dict(self) -> dict:
        out = {"files": dict(self.files), "bytes_per_checkpoint": self.bytes_per_checkpoint,
               "checkpoints": self.checkpoints, "kept": self.kept, "bytes_on_disk_total": self.bytes_on_disk_total,
               "save_seconds": self.save_seconds, "save_peak_bytes": self.save_peak_bytes, "notes": list(self.notes)}
        if self.state_dict is not None:   # shown only when planned (older dicts stay as they were)
            out.update(state_dict=self.state_dict, save_host_bytes_rank0=self.save_host_bytes_rank0,
                       save_host_bytes_per_node=self.save_host_bytes_per_node)
        return out


def _tensor_count(model: ModelSpec) -> int:
    """Parameter tensors of the model (weights and biases of every linear, norms, embeddings)."""
    per_layer = sum(1 + lin.bias for lin in model.dense_linears)
    moe = sum(1 + lin.bias for lin in model.moe_linears)
    norm = 2 if model.norm_params > model.hidden else 1
    layers = model.dense_layers * per_layer + model.moe_layers * (moe + (1 if model.n_experts else 0))
    norms = (model.n_layers * model.norms_per_layer + 1) * norm + (model.n_layers * 2 if model.qk_norm_size else 0)
    return layers + norms + 1 + (0 if model.tied_embeddings else 1) + (1 if model.learned_positions else 0)


def safetensors_bytes(data_bytes: int, tensors: int) -> int:
    """A safetensors file's size: 8-byte length, JSON header, data."""
    return 8 + tensors * SAFETENSORS_ENTRY_BYTES + data_bytes


def checkpoint_estimate(model: ModelSpec, setup: TrainingSetup, plan: SavePlan) -> CheckpointEstimate:
    """What each save of `setup` writes, and what the run keeps on disk."""
    plan.validate()
    plan.state_dict.validate(setup)
    p = setup.parallel
    eng = engine_of(p)
    rs, st, _ = terms(model, setup.with_(parallel=ParallelSpec()))
    pc = param_counts(model)
    files: dict[str, int] = {}
    notes = []
    if rs.full:
        weight_dtype = rs.trainable
        if eng.deepspeed:   # the module is 16 bit under DeepSpeed bf16/fp16
            weight_dtype = rs.compute
        files["model.safetensors"] = safetensors_bytes(pc.total * weight_dtype.bytes, _tensor_count(model))
    else:
        adapters = st.trainable_params
        tensors = 2 * len(rs.adapters.targets) * model.n_layers
        files["adapter_model.safetensors"] = safetensors_bytes(adapters * rs.adapters.dtype.bytes, tensors)
        notes.append("peft saves the adapter only; the frozen base is not in the checkpoint")
    if not plan.save_only_model:
        trainable_tensors = _tensor_count(model) if rs.full else 2 * len(rs.adapters.targets) * model.n_layers
        opt = st.optimizer_state + st.optimizer_paged
        if eng.deepspeed or eng.fsdp:
            # sharded engines save fp32 master weights (DeepSpeed) or fp32 stored shards (FSDP)
            # with the optimizer state, summed over the ranks that write them
            n = shard_degree(p)
            master = 4 * st.trainable_params if (eng.deepspeed and rs.compute.bytes < 4) else 0
            name = "zero_optim_states.pt (all ranks)" if eng.deepspeed else "optimizer .distcp shards (all ranks)"
            files[name] = opt + master + n * TORCH_SAVE_TENSOR_BYTES * trainable_tensors
        else:
            files["optimizer.pt"] = opt + TORCH_SAVE_TENSOR_BYTES * trainable_tensors
    per = sum(files.values())
    count = max(1, plan.total_steps // plan.save_steps) if plan.total_steps else 1
    kept = min(count, plan.save_total_limit) if plan.save_total_limit else count
    if eng is Engine.ZERO3:
        notes.append("ZeRO-3: model.safetensors holds the 16-bit weights only with "
                     "stage3_gather_16bit_weights_on_model_save=true")
    notes.append("scheduler, RNG and trainer state files (a few KiB) are not counted; safetensors headers "
                 "and torch.save containers are estimated (about 100 bytes per tensor and 1,000 per parameter's state)")
    sd = plan.state_dict
    if sd.is_default or not eng.fsdp:
        return CheckpointEstimate(files, per, count, kept, per * kept, per / plan.disk_bytes_per_s,
                                  save_peak_bytes(model, setup), tuple(notes))
    mem = fsdp_save_memory(model, setup, sd, with_optimizer=not plan.save_only_model)
    full2 = sd.fsdp_version == 2 and (sd.kind is StateDictType.FULL or sd.final_full)
    # FSDP2's full state dict: one tensor at a time, as save_peak_bytes plans it
    gpu = max(mem.gpu_bytes, save_peak_bytes(model, setup)) if full2 else mem.gpu_bytes
    shown = {"fsdp_version": sd.fsdp_version, "type": sd.kind.value, "offload_to_cpu": sd.offload_to_cpu,
             "rank0_only": sd.rank0_only, "use_orig_params": sd.use_orig_params, "final_full": sd.final_full}
    return CheckpointEstimate(files, per, count, kept, per * kept, per / plan.disk_bytes_per_s, gpu,
                              tuple(notes) + mem.notes, shown, mem.host_bytes_rank0, mem.host_bytes_per_node)


def save_peak_bytes(model: ModelSpec, setup: TrainingSetup) -> int:
    """GPU bytes allocated during a save, per GPU: what lives between steps (weights and optimizer
    state; `zero_grad(set_to_none=True)` has freed the gradients, DDP's buckets stay) plus what the
    save gathers. safetensors and torch.save copy one CUDA tensor at a time to host memory
    [safetensors/torch.py _tobytes; torch/serialization.py], so a one-GPU save adds nothing;
    FSDP2's full state dict gathers one parameter at a time (`full_tensor`, then offload to CPU)
    [torch/distributed/checkpoint/state_dict.py _get_fqns / cpu_offload]; ZeRO-3's 16-bit gather on
    save holds one module's parameters at a time [deepspeed/runtime/engine.py
    _zero3_consolidated_16bit_state_dict]."""
    p = setup.parallel
    eng = engine_of(p)
    rs, st, _ = terms(model, setup.with_(parallel=ParallelSpec()))
    if p.single_gpu or eng in (Engine.SINGLE, Engine.DDP):
        resident = st.weights + st.optimizer_state + (st.gradients if eng is Engine.DDP else 0)
        return int(resident)
    if eng is Engine.YAFSDP:   # state_dict() gathers each super tensor into its own weight buffer (collect_module)
        return sum(yafsdp.static_bytes(model, setup))
    n = shard_degree(p)
    resident = (st.weights + st.optimizer_state) // n
    largest = max([model.vocab * model.hidden] + [lin.weight_count for lin in model.dense_linears + model.moe_linears])
    return int(resident + largest * (rs.compute.bytes if eng.deepspeed else rs.trainable.bytes))
