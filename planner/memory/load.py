"""The load phase (RunPhase.LOAD) and the first step (RunPhase.FIRST_STEP): what a run allocates
before its steady-state step, per GPU, and the host RAM the load takes.

LOAD ends where training starts: from_pretrained, quantize-on-load, peft's wrapping and
prepare_model_for_kbit_training, FSDP2's fully_shard and full-state-dict broadcast, DDP's
initial broadcast. No activations, gradients or optimizer state are alive yet (DeepSpeed aside,
which is not modelled here), so the phase peaks when the weights are nearly all in place and one
tensor is being staged, cast or quantized. Versions read: transformers 5.24.0, bitsandbytes
0.50.2, peft 0.21.2, accelerate 1.15.0, torch 2.13.0.

from_pretrained [transformers/core_model_loading.py convert_and_load_state_dict_in_model]: the
model is built on `meta`; each checkpoint tensor (a safetensors mmap slice) is read
(`_materialize_copy`: `tensor[...]`, then `.to(device, dtype)`) and set as the parameter, one
target tensor at a time. Without a quantizer, GLOBAL_WORKERS = min(4, cpu_count) threads read
ahead; what they produce *is* the parameter, so the GPU holds nothing beyond the final weights.
A blocking host-to-GPU copy that also changes dtype converts on the host [aten/src/ATen/native/
cuda/Copy.cu copy_kernel_cuda: "For blocking transfers conversions are performed on CPU to avoid
allocating extra GPU memory"]: the cast copy is host RAM. `device_map=None` means {"": "cpu"}: the
whole model is host RAM until Trainer moves it (`Module._apply`, one parameter at a time).

Quantize on load (bitsandbytes, not pre-quantized): the thread pool is off ("to avoid worker threads
loading full-precision tensors to GPU faster than the main thread can quantize them"), and the
quantizer puts every weight on the GPU [quantizer_bnb_4bit.py update_device_map]. Per linear weight
of n elements, loaded in the torch dtype (ld bytes):
  4-bit [integrations/bitsandbytes.py Bnb4bitQuantize -> bnb/nn/modules.py Params4bit._quantize ->
  bnb/functional.py quantize_4bit]: the ld*n value stays referenced while quantize_4bit makes
  n/2 packed bytes and a fp32 absmax (n/16); double quantization subtracts the mean
  (`_absmax - offset`, n/16 more) and quantizes it (n/64 uint8) before `del _absmax`: the moment
  holds ld*n + n/8 beyond the tensor's final bytes (ld*n without double quantization).
  8-bit [Bnb8bitQuantize -> Int8Params._quantize]: the GPU value (ld*n) is copied to the host,
  brought back as fp16 (2n) and int8_vectorwise_quant makes CB (n) and SCB: ld*n + 2n beyond final.
prepare_model_for_kbit_training then upcasts every 16-bit non-quantized parameter to fp32 one at a
time (`param.data = param.data.to(torch.float32)`) [peft/utils/other.py]: the largest (the
embedding) is alive in both dtypes once.

FSDP2 through accelerate [accelerate/utils/fsdp_utils.py fsdp2_prepare_model]: trainable params
are upcast to fp32 under mixed precision first, and the state dict is taken after. Every rank
reads the whole checkpoint: transformers 5.24 keeps only the missing keys on `meta` off rank 0
(modeling_utils _move_missing_keys_from_meta_to_device, `not is_local_dist_rank_0()`) and reads
on rank 0 alone only under DeepSpeed ZeRO-3 (_load_pretrained_model), and `original_sd` stays
referenced on every rank through fsdp2_prepare_model. With cpu_ram_efficient_loading the model
goes to `meta` and fsdp2_load_full_state_dict moves each full tensor to the GPU (every rank
allocates the full size to receive the broadcast), distribute_tensor keeps the shard: the sharded
weights plus one full tensor. Without it, fully_shard moves each unit's parameters to the GPU
whole before sharding them [torch/distributed/fsdp/_fully_shard/
_fsdp_init.py _move_states_to_device]: the sharded weights plus one unit. A model with Params4bit
skips the RAM-efficient path (`not model_has_params4bit`) and transformers loads quantized models on
every rank: each GPU quantizes the whole model before fully_shard shards it.
DDP [torch/nn/parallel/distributed.py]: each rank holds the whole model; __init__ broadcasts it
from rank 0 in coalesced buckets of broadcast_bucket_size = 250 MiB (one flat copy at a time).

FIRST_STEP: torch's optimizers create their state in the first `step()` [torch/optim/adam.py
_init_group: `if len(state) == 0: ... state["exp_avg"] = torch.zeros_like(p)`, likewise
bitsandbytes' Optimizer8bit.init_state], while the gradients are alive, so step 1's optimizer
moment is step 2's, and step 1's forward and backward lack the state that step 2 carries through
them: step 1 never exceeds the steady step in allocated bytes. DeepSpeed allocates the state at
initialization with a zero-gradient step [deepspeed/runtime/zero/stage_1_and_2.py and stage3.py
initialize_optimizer_states; bf16_optimizer.py: "allocating optimizer state at the beginning of
training instead of after activations have been allocated"]: its first step is its steady step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..specs.engines import Engine, engine_of, shard_degree
from ..specs.enums import Choice, Component, Objective, Phase, QuantType, RunPhase
from ..specs.errors import NoClosedForm
from ..specs.model import ModelSpec
from ..specs.parallel import Offload
from ..specs.params import param_counts
from ..specs.setup import TrainingSetup
from ..techniques import quantization, reward
from . import rollouts
from .estimate import estimate, replayed
from .pieces import terms
from .ppo_step import rollout_phase

# transformers/core_model_loading.py: GLOBAL_WORKERS = min(4, os.cpu_count() or 4) reader threads
LOAD_WORKERS = 4
# torch/nn/parallel/distributed.py DistributedDataParallel.__init__: self.broadcast_bucket_size = 250 * 1024 * 1024
DDP_BROADCAST_BUCKET = 250 * 2**20
_CHECKPOINT_DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}
_FSDP = (Engine.FSDP_FULL, Engine.FSDP_GRAD_OP, Engine.FSDP_HYBRID)


class LoadDevice(Choice):
    """Where from_pretrained puts the weights (its device_map)."""

    CPU = "cpu"    # device_map=None ({"": "cpu"}): host first, then Trainer's model.to(device)
    GPU = "gpu"    # device_map="cuda"/"auto"/{"": rank}: straight to the GPU


@dataclass(frozen=True)
class LoadPlan:
    device: LoadDevice = LoadDevice.CPU       # transformers' default; bitsandbytes always loads on the GPU
    cpu_ram_efficient: bool = False           # FSDP: accelerate's fsdp_cpu_ram_efficient_loading


@dataclass(frozen=True)
class LoadEstimate:
    peak_allocated_bytes: int                 # per GPU (the most loaded rank: rank 0)
    host_bytes_per_rank: int                  # host RAM of the most loaded rank (safetensors' page cache aside)
    host_bytes_per_node: int
    moment: str                               # what is being loaded at the GPU peak
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"peak_allocated_bytes": self.peak_allocated_bytes, "host_bytes_per_rank": self.host_bytes_per_rank,
                "host_bytes_per_node": self.host_bytes_per_node, "moment": self.moment, "notes": list(self.notes)}


def checkpoint_dtype_bytes(model: ModelSpec) -> int:
    """Bytes per element of the checkpoint's tensors: config.json's dtype (fp32 when it names none,
    as from_pretrained assumes)."""
    name = model.hf_config.get("dtype") or model.hf_config.get("torch_dtype") or "float32"
    return _CHECKPOINT_DTYPES.get(str(name).replace("torch.", ""), 4)


def quantize_extra_bytes(n: int, load_bytes: float, quant_type: QuantType, double_quant: bool) -> float:
    """Bytes beyond one weight's final quantized bytes while bitsandbytes quantizes it on load."""
    if quant_type is QuantType.INT8:
        return load_bytes * n + 2 * n                          # the GPU value and its fp16 copy B
    return load_bytes * n + (n / 8 if double_quant else 0)    # the value; _absmax and _absmax - offset


# torchao NF4Tensor.convert_to_norm_float_weight quantizes CHUNK_SIZE = 1024**2 elements at a time
# [torchao 0.18.0 quantization/quantize_/workflows/nf4/nf4_tensor.py]
TORCHAO_NF4_CHUNK = 2**20


def torchao_nf4_extra_bytes(n: int, load_bytes: float) -> float:
    """Bytes beyond the input while torchao's to_nf4 quantizes an n-element weight (torchtune's QLoRA:
    FrozenNF4Linear.__init__ calls to_nf4 on its weight, and NF4Tensor's copy_ calls it again on each
    loaded tensor [torchtune/modules/low_precision/nf4_linear.py; nf4_tensor.py copy_]). From
    NF4Tensor.from_tensor: double_quantize_scalers' block absmaxes and their int8 copy (3n/64), then
    convert_to_norm_float_weight's `blocks / scales` (n in the input dtype) and its unpacked uint8 indices
    (n), while each chunk's quantize_tensor_nearest holds `value - nf4` and its `.abs()` (16 values per
    element each, in the input dtype). Not yet on any estimate path: the planner's QLoRA is bitsandbytes'."""
    chunk = min(n, TORCHAO_NF4_CHUNK)
    return load_bytes * n + n + 3 * n / 64 + 2 * 16 * load_bytes * chunk


def _largest_linear(model: ModelSpec) -> int:
    """Elements of the largest nn.Linear weight: fused 3-D MoE experts are not nn.Linear, and
    replace_with_bnb_linear leaves them unquantized (techniques/quantization.py moe_fused_experts_note)."""
    return max(lin.weight_count for lin in model.dense_linears + model.moe_linears if lin.experts == 1)


def _largest_tensors(model: ModelSpec, k: int) -> int:
    """Elements of the k largest checkpoint tensors: the embedding (and an untied lm_head), then the
    layers' largest linears (each layer has its own)."""
    sizes = [model.vocab * model.hidden] + ([] if model.tied_embeddings else [model.head_rows * model.hidden])
    sizes += [_largest_linear(model)] * model.n_layers
    return sum(sorted(sizes, reverse=True)[:k])


def _largest_unit(model: ModelSpec) -> int:
    """Elements of the largest FSDP unit accelerate wraps: a decoder layer, or the embedding (its own
    unit, or with the final norm and lm_head in the tail group)."""
    pc = param_counts(model)
    layer = (pc.attention + pc.mlp + pc.norms) // model.n_layers
    return max(layer, model.vocab * model.hidden + model.hidden)


def _single(model: ModelSpec, setup: TrainingSetup, plan: LoadPlan) -> LoadEstimate:
    """One rank that holds the whole model (one GPU, DDP, and every rank of a quantized FSDP load)."""
    rs, st, _ = terms(model, setup)
    pc = param_counts(model)
    recipe = setup.for_model(model).recipe
    ld = recipe.weights.bytes if rs.quantized is not None or not rs.full else rs.trainable.bytes
    ckpt = checkpoint_dtype_bytes(model)
    embed = model.vocab * model.hidden
    notes = []
    if rs.quantized is not None:
        q = rs.quantized
        n = _largest_linear(model)
        linears, rows = quantization.linear_inventory(model)
        quantized = quantization.quantized_bytes(linears, rows, q)
        others = pc.total - linears
        moments = {"quantizing the largest linear on load": quantized + others * ld
                   + quantize_extra_bytes(n, ld, q.quant_type, q.double_quant)}
        if recipe.kbit_upcast:   # all upcast but the embedding, which is alive in both dtypes
            moments["prepare_model_for_kbit_training's fp32 upcast"] = quantized + others * 4 + embed * ld
        moments["peft's adapters added"] = st.weights
        moment, gpu = max(moments.items(), key=lambda kv: kv[1])
        # synchronous: one tensor read (ckpt bytes), its host cast (Copy.cu), and for 8-bit the value's host copy
        staged = max(n, embed)
        host = staged * (ckpt + (ld if ld != ckpt else 0) + (ld if q.quant_type is QuantType.INT8 else 0))
        notes.append("bitsandbytes quantizes each linear on the GPU as it loads (transformers' load thread pool off)")
    else:
        base = pc.total * (rs.trainable.bytes if rs.full else rs.frozen.bytes)
        gpu, moment = max(base, st.weights), "the weights in place"
        staged = max(embed, _largest_linear(model))
        if plan.device is LoadDevice.GPU:
            # each reader thread holds the tensor it reads and its host cast until .to() returns
            host = _largest_tensors(model, LOAD_WORKERS) * (ckpt + (ld if ld != ckpt else 0))
            notes.append(f"device_map on the GPU: up to {LOAD_WORKERS} reader threads stage tensors in host RAM")
        else:
            # the model in host RAM; a read is the parameter itself unless it is cast (then both, one tensor)
            host = base + (staged * ckpt if ld != ckpt else 0)
            notes.append("device_map=None loads the model into host RAM first (transformers' default); "
                         "--load-on-gpu models device_map on the GPU")
    if rs.engine is Engine.DDP:   # the whole wrapped model is broadcast, one flat bucket (or one tensor) at a time
        bucket = max(min(DDP_BROADCAST_BUCKET, st.weights), staged * ld)
        if st.weights + bucket > gpu:
            gpu, moment = st.weights + bucket, "DDP's initial broadcast (one coalesced 250 MiB bucket)"
    per_node = host * setup.parallel.gpus
    return LoadEstimate(int(gpu), int(host), int(per_node), moment, tuple(notes))


def _fsdp(model: ModelSpec, setup: TrainingSetup, plan: LoadPlan) -> LoadEstimate:
    """accelerate's FSDP2 path for a model that is not quantized."""
    rs, st, _ = terms(model, setup)
    n = shard_degree(setup.parallel)
    ckpt = checkpoint_dtype_bytes(model)
    stored = rs.trainable.bytes if rs.full else rs.frozen.bytes    # after accelerate's fp32 upcast of trainables
    # CPUOffloadPolicy: FSDPParam._init_sharded_param moves each shard to the host (`.cpu()`), as
    # fsdp2_load_full_state_dict does with cpu_offload: the GPU keeps nothing between tensors
    sharded = 0 if setup.parallel.offload is not Offload.NONE else st.weights / n
    embed = model.vocab * model.hidden
    full_host = st.weights + max(embed, _largest_linear(model)) * ckpt   # one tensor being cast or upcast
    # every rank reads the whole checkpoint into host RAM: transformers 5 reads on rank 0 only under
    # DeepSpeed ZeRO-3 (modeling_utils _load_pretrained_model), and fsdp2_prepare_model holds
    # `original_sd = model.state_dict()` on every rank until it returns
    host, per_node = full_host, full_host * setup.parallel.gpus
    if plan.cpu_ram_efficient:
        gpu = sharded + max(embed, _largest_linear(model)) * stored
        moment = "broadcasting the largest full tensor from rank 0 (fsdp2_load_full_state_dict)"
    else:
        gpu = sharded + _largest_unit(model) * stored
        moment = "fully_shard moving its largest unit to the GPU whole"
    notes = (f"every rank reads the whole checkpoint into host RAM ({setup.parallel.gpus} per node): transformers 5 "
             "has no rank-0-only read for FSDP, and the safetensors pages are mmap'ed (page cache, which a container's "
             "memory limit counts)",)
    return LoadEstimate(int(gpu), int(host), int(per_node), moment, notes)


def load_estimate(model: ModelSpec, setup: TrainingSetup, plan: LoadPlan = LoadPlan()) -> LoadEstimate | None:
    """LoadEstimate of `setup`, or None for the engines whose load is not modelled (DeepSpeed ZeRO,
    YaFSDP, tensor and pipeline parallel) and setups without a closed form."""
    p = setup.parallel
    try:
        rs, _, _ = terms(model, setup)
    except NoClosedForm:
        return None
    if p.tp > 1 or p.pp > 1 or not (rs.engine in (Engine.SINGLE, Engine.DDP) or rs.engine in _FSDP):
        return None
    out = _fsdp(model, setup, plan) if rs.engine in _FSDP and rs.quantized is None else _single(model, setup, plan)
    notes = list(out.notes)
    if any(lin.experts > 1 for lin in model.moe_linears):
        notes.append("fused MoE experts: the conversion that stacks each expert's checkpoint tensors into one "
                     "parameter (core_model_loading MergeModulelist) is not modelled")
    if rs.engine in _FSDP and rs.quantized is not None:   # Params4bit: no RAM-efficient path
        notes.append("FSDP with bitsandbytes weights: every GPU loads and quantizes the whole model before fully_shard "
                     "shards it (accelerate skips cpu_ram_efficient_loading for Params4bit)")
    return LoadEstimate(out.peak_allocated_bytes, out.host_bytes_per_rank, out.host_bytes_per_node, out.moment,
                        tuple(notes))


def first_step_allocated(est, setup: TrainingSetup) -> int:
    """Allocated bytes at the peak of the first optimizer step: the steady step's phases without the
    optimizer state before optimizer.step() creates it (DeepSpeed: the steady step's own peak)."""
    if engine_of(setup.parallel).deepspeed or setup.optimizer_in_backward:
        # DeepSpeed: state made at init; optimizer-in-backward steps (and so creates state) inside backward
        return est.peak_allocated_bytes
    out = 0
    for phase, total in est.phases.items():
        state = est.phase_components[phase].get(Component.OPTIMIZER_STATE, 0) if phase is not Phase.OPTIMIZER else 0
        out = max(out, total - state)
    return int(out)


def device_total(est, allocated: int) -> int:
    """Device bytes of a phase that allocates `allocated`: the step's reserved/allocated ratio and its
    context and workspaces added, as for the eval and save phases (app/run_options.py)."""
    ratio = est.peak_reserved_bytes / est.peak_allocated_bytes if est.peak_allocated_bytes else 1.0
    return int(allocated * ratio) + est.device_total_bytes - est.peak_reserved_bytes


def _phase_allocated(model: ModelSpec, setup: TrainingSetup, est, plan: LoadPlan) -> dict[str, int]:
    """Allocated bytes of the phases besides the step (RunPhase values), in run_phase_totals' order."""
    model = reward.model_for(model, setup)   # reward modelling loads the sequence-classification model
    out = {RunPhase.FIRST_STEP.value: first_step_allocated(est, setup)}
    load = load_estimate(model, setup, plan)
    if load is not None:
        out = {RunPhase.LOAD.value: load.peak_allocated_bytes, **out}
    if setup.objective is Objective.GRPO:   # its rollouts, a phase of their own [memory/rollouts.py]
        out[RunPhase.GENERATE.value] = rollouts.generation_phase(model, setup).peak_allocated_bytes
    if setup.objective is Objective.PPO:    # its rollout, a phase of its own [memory/ppo_step.py]
        out[RunPhase.GENERATE.value] = rollout_phase(model, setup).peak_allocated_bytes
    return out


def _totals(est, allocated: dict[str, int]) -> dict[str, int]:
    out = {k: device_total(est, a) for k, a in allocated.items()}
    out[RunPhase.STEP.value] = est.device_total_bytes
    order = [RunPhase.LOAD.value, RunPhase.FIRST_STEP.value, RunPhase.STEP.value, RunPhase.GENERATE.value]
    return {k: out[k] for k in order if k in out}


def run_phase_totals(model: ModelSpec, setup: TrainingSetup, est=None, plan: LoadPlan = LoadPlan()) -> dict[str, int]:
    """Device bytes per GPU of the load, first-step and step phases (RunPhase values), and GRPO's
    generation phase; load is absent where it is not modelled."""
    est = est if est is not None else estimate(model, setup)
    return _totals(est, _phase_allocated(model, setup, est, plan))


def run_device_total(model: ModelSpec, setup: TrainingSetup, plan: LoadPlan = LoadPlan()) -> int:
    """Device bytes per GPU of the run's largest phase among load, first step and step: the figure
    fit() and recommend() hold to the GPU's memory."""
    return max(run_phase_totals(model, setup, plan=plan).values())


def run_device_bounds(model: ModelSpec, setup: TrainingSetup,
                      plan: LoadPlan = LoadPlan()) -> tuple[int, Callable[[], int]]:
    """(a lower bound of run_device_total, a function that gives run_device_total itself): the bound
    takes every phase's reserved memory as its allocated bytes (estimate(replay=False)), which the
    caching allocator's replay never goes below; the function replays it (memory/reserved.py).
    fit() and recommend() settle "does not fit" on the bound and replay only what may fit."""
    est = estimate(model, setup, replay=False)
    allocated = _phase_allocated(model, setup, est, plan)
    low = max(_totals(est, allocated).values())
    return low, lambda: max(_totals(replayed(est), allocated).values())
