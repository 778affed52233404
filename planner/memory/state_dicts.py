"""The FSDP save phase: what `state_dict()` and the optimizer's state dict gather on the GPU and in
host RAM, for FSDP1 (`FullyShardedDataParallel`, FlatParameter units) and FSDP2 (`fully_shard`,
DTensor parameters), with FULL_STATE_DICT or SHARDED_STATE_DICT, modelled from the torch 2.13 source.
FSDP1's full (rank 0 only and every rank) and sharded model state dicts and its full optimizer state dict,
without offload_to_cpu, are checked against the real hooks on two CPU processes with gloo
(profiler/state_dict_check.py, tests/profiler/test_fsdp1_state_dict.py); offload_to_cpu and FSDP2 are
modelled from source, not measured (on a CPU device every byte is host memory).

How HF Trainer saves under FSDP [transformers 5.24 trainer.py: `save_model` l.4105-4108 calls
`accelerator.get_state_dict` for FULL_STATE_DICT; `_save_optimizer_and_scheduler` l.3562-3569 calls
accelerate's `save_fsdp_model` and `save_fsdp_optimizer`]; accelerate's configs for them
[accelerate 1.15 utils/dataclasses.py `set_state_dict_type` l.2047-2067: FULL_STATE_DICT by default
for FSDP1, SHARDED_STATE_DICT for FSDP2; FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
ShardedStateDictConfig(offload_to_cpu=True); `get_state_dict` l.4093-4097 and `save_fsdp_model`
l.136-141 (utils/fsdp_utils.py) force offload_to_cpu=rank0_only=True on more than one process].

FSDP1 [torch/distributed/fsdp/_state_dict_utils.py, _unshard_param_utils.py, _flat_param.py]:
`model.state_dict()` runs each FSDP unit's pre-hook before its children and its post-hook after
them, so the root unit (embedding, final norm, lm_head: everything outside the wrapped decoder
layers) is unsharded first and resharded last. The pre-hook unshards the unit's FlatParameter in
full precision (`_force_full_precision` in SUMMON_FULL_PARAMS, _flat_param.py l.1332/l.1419: the
stored fp32 under mixed precision) [_unshard_fsdp_state_params l.198-202]; with rank0_only the other
ranks reshard at once (l.206-208); with offload_to_cpu the unsharded FlatParameter moves to host
memory and its GPU copy is freed (`to_cpu`, _flat_param.py l.1750-1751). The post-hook clones every
parameter (`_full_post_state_dict_hook` l.329-333), on the device the parameter is on, before the
unit reshards. So with offload_to_cpu the GPU holds one unit at a time and rank 0's host RAM the
whole state dict; without it the clones pile up on the GPU: the whole model in its stored dtype,
beside the root unit, which stays unsharded to the end (the classic "training fits, saving OOMs").
SHARDED_STATE_DICT unshards the same way, always on the GPU and on every rank
(`_sharded_pre_state_dict_hook` l.523-530), then keeps a chunk of each parameter
(`_create_chunk_sharded_tensor`, _shard_utils.py: `chunks[rank].clone()`), moved to CPU with
offload_to_cpu (l.563-564).
The optimizer state dict [torch/distributed/fsdp/_optim_utils.py]: with use_orig_params (HF
Trainer's default, transformers training_args.py l.2876-2877) `_allgather_orig_param_states`
all-gathers one state of one FlatParameter at a time into a buffer of the unit's padded unsharded
size in the state's dtype (l.1539-1541) from a `torch.cat` of the local shard, then copies each
parameter's state to CPU (cpu_offload, l.1505-1507) or clones it on the GPU (l.1501-1503); without
use_orig_params `_communicate_optim_state` gathers every state of the unit before unflattening
(l.209-234).

FSDP2 [torch/distributed/checkpoint/state_dict.py `_maybe_full_or_cpu_state_dict` l.475-488,
torch/distributed/_state_dict_utils.py `_iterate_state_dict` l.180]: a full state dict
`full_tensor()`s one DTensor at a time and copies it to rank 0's host memory (cpu_offload:
ranks_only=(0,)); a sharded one copies each rank's local shards to host memory
(`_offload_state_dict_to_cpu`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.engines import Engine, engine_of, shard_degree
from ..specs.enums import Choice, Optimizer
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import Offload, ParallelSpec
from ..specs.setup import TrainingSetup
from .pieces import terms


class StateDictType(Choice):
    """torch.distributed.fsdp.StateDictType as accelerate / HF `fsdp_state_dict_type` names it."""

    FULL = "full"         # FULL_STATE_DICT: the unsharded model (and optimizer) gathered for one file
    SHARDED = "sharded"   # SHARDED_STATE_DICT: each rank writes its shards (torch.distributed.checkpoint)


# state tensors per parameter, each shaped like it: torch.optim.AdamW's exp_avg and exp_avg_sq, SGD's
# momentum_buffer [torch/optim/adamw.py, sgd.py _init_group] (`step` is a 0-dim tensor: not gathered)
_PARAM_SHAPED_STATES = {Optimizer.ADAMW: 2, Optimizer.ADAMW_FUSED: 2, Optimizer.SGD: 1}


@dataclass(frozen=True)
class StateDictPlan:
    """How an FSDP run saves. The defaults are what the planner assumed before it modelled the choice:
    FSDP2 and a full state dict, gathered to rank 0's host memory (accelerate's configs)."""

    fsdp_version: int = 2
    kind: StateDictType = StateDictType.FULL
    offload_to_cpu: bool = True        # FullStateDictConfig / ShardedStateDictConfig.offload_to_cpu
    rank0_only: bool = True            # FullStateDictConfig.rank0_only
    use_orig_params: bool = True       # FSDP1's use_orig_params (HF Trainer's default true)
    # a sharded run whose last save_model gathers a full state dict (axolotl final_state_dict_type
    # FULL_STATE_DICT: set_state_dict_type, then trainer.save_model, axolotl train.py l.330-336)
    final_full: bool = False

    @property
    def is_default(self) -> bool:
        return self == StateDictPlan()

    def validate(self, setup: TrainingSetup) -> "StateDictPlan":
        eng = engine_of(setup.parallel)
        if self.fsdp_version not in (1, 2):
            raise PlannerError(f"--fsdp-version must be 1 or 2, got {self.fsdp_version}")
        if self.is_default:
            return self
        if not eng.fsdp or eng is Engine.YAFSDP:
            raise PlannerError("--fsdp-version / --fsdp-state-dict / --state-dict-on-gpu / --state-dict-all-ranks / "
                               "--fsdp-flat-params describe a PyTorch FSDP save: add --fsdp full, grad-op or hybrid")
        if self.fsdp_version == 2 and not (self.offload_to_cpu and self.rank0_only and self.use_orig_params):
            raise PlannerError("--state-dict-on-gpu / --state-dict-all-ranks / --fsdp-flat-params are FSDP1's "
                               "FullStateDictConfig and FlatParameter knobs: add --fsdp-version 1 (FSDP2's "
                               "get_model_state_dict offloads one tensor at a time)")
        if self.final_full and self.kind is not StateDictType.SHARDED:
            raise PlannerError("--final-full-state-dict is a full save after sharded checkpoints: add "
                               "--fsdp-state-dict sharded (the checkpoints are full already)")
        if self.kind is StateDictType.SHARDED and not self.rank0_only:
            raise PlannerError("--state-dict-all-ranks is FULL_STATE_DICT's rank0_only=False; a sharded state dict is "
                               "on every rank already: drop it or use --fsdp-state-dict full")
        return self


@dataclass(frozen=True)
class SaveMemory:
    """The save phase's bytes: GPU allocated per GPU (the largest rank, rank 0) and host RAM."""

    gpu_bytes: int
    host_bytes_rank0: int
    host_bytes_per_node: int
    notes: tuple[str, ...]


def _units(model: ModelSpec, setup: TrainingSetup) -> tuple[int, int, int, int]:
    """(root unit bytes, one decoder-layer unit's bytes, root numel, layer numel) in the stored dtypes:
    what FSDP1's FlatParameters hold unsharded (TRANSFORMER_BASED_WRAP: one unit per decoder layer,
    the root takes the embedding, final norm and lm_head)."""
    rs, st, _ = terms(model, setup.with_(parallel=ParallelSpec()))
    pc = param_counts(model)
    root_numel = pc.embedding + pc.lm_head + model.norm_params
    root = root_numel * setup.base_weight_dtype.bytes    # never quantized
    layer = (st.weights - root) // model.n_layers
    # a FlatParameter has one dtype: a 4-bit layer's is its quant storage (bnb_4bit_quant_storage, the
    # base weights' dtype for FSDP-QLoRA), so its elements are its bytes over that dtype's size
    layer_numel = layer // (rs.trainable.bytes if rs.full else setup.base_weight_dtype.bytes)
    return root, layer, root_numel, layer_numel


def fsdp_save_memory(model: ModelSpec, setup: TrainingSetup, plan: StateDictPlan,
                     with_optimizer: bool = True) -> SaveMemory:
    """GPU and host bytes of an FSDP save of `setup` (model state dict, then the optimizer's)."""
    p = setup.parallel
    n = shard_degree(p)
    rs, st, _ = terms(model, setup.with_(parallel=ParallelSpec()))
    offload = p.offload is not Offload.NONE           # FSDP CPUOffload: the shards live in host memory
    W = 0 if offload else st.weights // n
    O = 0 if offload else st.optimizer_state // n
    resident = W + O                                  # zero_grad(set_to_none=True) freed the gradients
    F = st.weights                                    # the whole state dict in the stored dtypes
    per_node = min(p.gpus, p.world)
    if plan.fsdp_version == 2:
        m = _fsdp2(model, setup, plan, resident, F, n, per_node, with_optimizer)
        final = _final_full(model, setup, plan)
        if final is None:
            return m
        return SaveMemory(m.gpu_bytes, max(m.host_bytes_rank0, final[1]), max(m.host_bytes_per_node, final[1]),
                          m.notes + ("the final save_model gathers a full state dict, one tensor at a time "
                                     "(final_state_dict_type FULL_STATE_DICT)",))
    R, U, R_numel, U_numel = _units(model, setup)
    # under CPUOffload the unit's shard is copied to the GPU before its all-gather (pre_unshard,
    # _flat_param.py l.1335-1337)
    big = max(R, U)
    unit = big + (big // n if offload else 0)
    notes = ["FSDP1 save phase modelled from torch's state_dict hooks (_state_dict_utils.py), not simulated"]
    final = _final_full(model, setup, plan)
    if plan.kind is StateDictType.FULL:
        if plan.offload_to_cpu:
            gpu = resident + unit                     # one unit unsharded at a time, moved to host
            host0 = F + big                           # the clones, beside the unit's host FlatParameter
            notes.append(f"FULL_STATE_DICT offload_to_cpu: rank 0's host RAM holds the whole state dict "
                         f"({F / 2**30:,.2f} GiB)")
        else:
            gpu = resident + F + unit                 # the clones stay on the GPU, the root unit to the end
            host0 = 0
            notes.append(f"FULL_STATE_DICT without offload_to_cpu: the whole state dict ({F / 2**30:,.2f} GiB) is "
                         f"cloned on the GPU of {'rank 0' if plan.rank0_only else 'every rank'}")
        host_node = host0 * (1 if plan.rank0_only else per_node)
    else:
        # every rank unshards the root for the whole traversal and one layer at a time, on the GPU; the
        # kept chunks (without offload_to_cpu) peak at the end, the root's added while it is unsharded
        kept = max(U + (F - R) // n, F // n) if not plan.offload_to_cpu else U
        gpu = resident + R + kept + ((R + U) // n if offload else 0)
        host0 = F // n if plan.offload_to_cpu else 0
        host_node = host0 * per_node
        notes.append("SHARDED_STATE_DICT (FSDP1): each unit is unsharded on the GPU of every rank, the root "
                     "through the whole traversal, and re-chunked into this rank's shards")
    if with_optimizer:
        if rs.full:   # the root (embedding first), the layers; the root's FlatParameter holds the lm_head too
            units = (R_numel, max(R_numel, U_numel), U_numel)
        else:         # peft: each adapter matrix its own unit (see _adapter_unit_numel)
            a = _adapter_unit_numel(model, setup, U_numel)
            units = (a, a, a)
        ogpu, ohost = _fsdp1_optimizer(setup, plan, st.optimizer_state, st.trainable_params, resident, units, n)
        gpu, host0 = max(gpu, ogpu), max(host0, ohost)   # saved one after the other
        host_node = max(host_node, ohost * (1 if plan.kind is StateDictType.FULL and plan.rank0_only else per_node))
    if final is not None:   # the final save_model: the model alone, gathered for rank 0
        gpu, host0, host_node = max(gpu, final[0]), max(host0, final[1]), max(host_node, final[1])
        notes.append("the final save_model gathers a full state dict (final_state_dict_type FULL_STATE_DICT)")
    return SaveMemory(int(gpu), int(host0), int(host_node), tuple(notes))


def _final_full(model: ModelSpec, setup: TrainingSetup, plan: StateDictPlan) -> tuple[int, int] | None:
    """(GPU bytes, rank 0's host bytes) of a sharded run's final full save_model (model only, through
    accelerate's get_state_dict: offload_to_cpu and rank0_only); None without one. FSDP2's GPU bytes are
    checkpoints.save_peak_bytes' (0 here)."""
    if not plan.final_full:
        return None
    full = StateDictPlan(plan.fsdp_version, StateDictType.FULL, use_orig_params=plan.use_orig_params)
    m = fsdp_save_memory(model, setup, full, with_optimizer=False)
    return m.gpu_bytes, m.host_bytes_rank0


def _adapter_unit_numel(model: ModelSpec, setup: TrainingSetup, layer_numel: int) -> int:
    """Elements of the largest FlatParameter that has optimizer state under peft: HF Trainer wraps each
    trainable leaf module (LoRA's lora_A and lora_B) as its own FSDP unit (peft fsdp_auto_wrap_policy,
    set by transformers/distributed/fsdp.py update_fsdp_plugin_peft l.278-279), so the largest is one
    adapter matrix, r x the wider side of its linear; a peft method other than LoRA: its whole layer."""
    if setup.adapter is not None:
        return layer_numel
    dims = {lin.name: max(lin.in_features, lin.out_features) for lin in model.dense_linears + model.moe_linears}
    dims.update({name: model.vocab for name in ("embed_tokens", "wte", "embed_in", "lm_head", "embed_out")})
    return setup.lora.r * max(dims.get(t, 0) for t in setup.lora_targets(model))


def _fsdp1_optimizer(setup: TrainingSetup, plan: StateDictPlan, O_full: int, trainable: int, resident: int,
                     units: tuple[int, int, int], n: int) -> tuple[int, int]:
    """(GPU bytes, rank 0's host bytes) of FSDP.optim_state_dict under FSDP1; `units`: the elements of the
    first, the largest and the last FlatParameter with optimizer state, in the order the optimizer holds
    them (model.parameters(): the root's embedding first, then the layers).

    Per FlatParameter, with use_orig_params, one gathered buffer of its padded size in the state's dtype
    serves every state (`_allgather_orig_param_states` allocates it before its loop over the states), next to
    the cat of the local shard; without offload_to_cpu each state is cloned out of it on the GPU and kept
    (l.1501-1503), so the peak is the first unit's clones beside its buffer, or the whole kept dict beside
    the last unit's. Without use_orig_params every state of the unit is gathered before unflattening."""
    states = _PARAM_SHAPED_STATES.get(setup.optimizer)
    if states is None:
        raise PlannerError(f"FSDP1's optimizer state dict gathers states shaped like the parameters; "
                           f"{setup.optimizer.value}'s are not modelled there: use --optimizer adamw, adamw-fused or "
                           "sgd, --save-only-model, or --fsdp-version 2")
    if not O_full:
        return resident, 0
    e = O_full // (states * trainable)                # bytes per state element (the trainable dtype)
    first, largest, last = units

    def buffers(numel: int) -> int:
        if plan.use_orig_params:
            return numel * e + numel * e // n         # the gathered buffer and the cat of the local shard
        return states * numel * e                     # every state of the unit gathered together

    full_dict = plan.kind is StateDictType.FULL
    whole = O_full if full_dict else O_full // n      # what rank 0 keeps
    host = whole if plan.offload_to_cpu else 0
    if plan.offload_to_cpu:                           # each state copied to host memory as it is made
        return resident + buffers(largest), host
    share = 1 if full_dict else n                     # a sharded dict keeps this rank's chunk of each state

    def clones(numel: int) -> int:
        return states * numel * e // share

    return resident + max(clones(first) + buffers(first), whole + buffers(last)), host


def _fsdp2(model: ModelSpec, setup: TrainingSetup, plan: StateDictPlan, resident: int, F: int, n: int,
           per_node: int, with_optimizer: bool) -> SaveMemory:
    """FSDP2: nothing gathered (sharded); a full state dict's GPU bytes are checkpoints.save_peak_bytes'
    (one DTensor full_tensor()'d at a time), its host bytes the whole state dict on rank 0."""
    _, st, _ = terms(model, setup.with_(parallel=ParallelSpec()))
    largest_dict = max(F, st.optimizer_state if with_optimizer else 0)   # model, then optimizer
    if plan.kind is StateDictType.SHARDED:
        host = largest_dict // n
        return SaveMemory(int(resident), int(host), int(host * per_node),
                          ("FSDP2 SHARDED_STATE_DICT: each rank copies its local shards to host memory for "
                           "torch.distributed.checkpoint; nothing is gathered on the GPU",))
    return SaveMemory(0, int(largest_dict), int(largest_dict),
                      ("FSDP2 full state dict: one parameter full_tensor()'d at a time, copied to rank 0's host "
                       "memory (ranks_only=(0,))",))
