"""estimate_parallel(): per-GPU memory of one training step under DDP, ZeRO, FSDP2, TP/PP and offload.

The live set is built per phase as in planner/estimate.py, from the same pieces (states of the
GPU's TP/PP slice, activations, logits), then sharded and joined by what each engine allocates:

- FSDP2 (`fully_shard` of each decoder layer and of the root, as accelerate wraps a transformers
  model): parameters, gradients and optimizer state as 1/n shards; the root unit (embedding,
  lm_head, final norm) holds its parameters from the start of forward to the end of backward (it
  wraps the whole forward, loss included, and backward re-gathers it first); a unit is all-gathered into a flat output and copied out into
  its parameters (both alive for a moment), and the last all-gather's output is kept until the next
  one [torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py: foreach_all_gather,
  foreach_all_gather_copy_out; _fsdp_param_group.py: AllGatherState]; backward reduce-scatters
  each layer's 16-bit unsharded gradients from an input cast to reduce_dtype [foreach_reduce].
  SHARD_GRAD_OP keeps every layer gathered from forward to its backward.
- DeepSpeed ZeRO: 16-bit parameters (full for stages 1-2, a 1/n partition plus the live modules
  for stage 3), fp32 master and Adam state partitions, 16-bit gradients (full for stage 1,
  partitioned plus the reduce bucket for 2-3), the fp32 gradient partition the step builds
  [deepspeed/runtime/zero/stage_1_and_2.py, stage3.py, partition_parameters.py]; bucket sizes are
  HF Trainer's "auto" values [transformers/integrations/deepspeed.py: trainer_config_finalize].
- DDP: the single-GPU step plus its gradient buckets, a second copy of the gradients when
  gradient_as_bucket_view=False (the default) [torch/nn/parallel/distributed.py].
- TP/PP: the slice one GPU holds (planner/slices.py); 1F1B keeps min(pp, micro-batches)
  micro-batches of activations on the first stage [Narayanan et al. 2021, Sec. 2.2].
- Offload moves the fp32 states (and, for params, the 16-bit partition) to host RAM or NVMe.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .layers import activation_bytes, residual_dtype
from ..specs.gpu import GpuSpec
from .comm import communication_bytes, model_bytes
from ..specs.engines import Engine, computes_without_autocast, engine_of, gather_dtype, reduce_dtype, shard_degree
from ..specs.enums import Component as C
from ..specs.enums import Choice, Method, Phase, Precision
from ..specs.model import ModelSpec
from .offload import host_bytes_per_node, nvme_bytes_per_node
from ..specs.params import param_counts
from ..specs.parallel import Offload, ParallelSpec
from .result import Assumption, MemoryEstimate
from ..specs.setup import Checkpointing, TrainingSetup
from .slices import local_model
from .states import states

# HF Trainer's DeepSpeed "auto" values: reduce_bucket_size = h*h, stage3_prefetch_bucket_size =
# 0.9*h*h (elements) [transformers/integrations/deepspeed.py: HfTrainerDeepSpeedConfig.trainer_config_finalize].
REDUCE_BUCKET_PER_H2 = 1.0
PREFETCH_BUCKET_PER_H2 = 0.9
# NCCL's own device buffers, outside PyTorch's allocator: NCCL_BUFFSIZE (4 MiB default) per channel
# and peer [NCCL docs, Environment Variables: NCCL_BUFFSIZE]; with ~16-32 ring channels on NVLink
# systems a communicator holds a few hundred MiB. Assumption, not calibrated here.
NCCL_BUFFER_BYTES = 256 * 2**20
_TRUE = {Precision.BF16_MIXED: Precision.BF16_TRUE, Precision.FP16_MIXED: Precision.FP16_TRUE}


class Stage(Choice):
    """Which pipeline stage a plan is for: the first holds the embedding and the most micro-batches
    in flight, the last the lm_head and the logits [Narayanan et al. 2021, Sec. 2.2]."""

    ALL = "all"        # no pipeline parallelism
    FIRST = "first"
    LAST = "last"


@dataclass(frozen=True)
class Pieces:
    """The per-GPU building blocks every engine combines, in bytes (T tokens per micro-batch)."""

    acts: int            # saved activations at the end of forward (checkpointed or not)
    fwd_extra: int       # autocast weight copies alive at the end of forward
    outside: int         # activations outside the layers (RoPE tables, final norm)
    recompute: int       # one layer's recompute under checkpointing (its full activations)
    layer_transient: int # backward workspace inside a layer
    logit_fwd: int
    logit_saved: int
    logit_bwd: int
    embed_grad: int      # embedding backward's (vocab, hidden) gradient buffers (FULL fine-tuning)
    logit_grad16: int    # the logits' gradient in the compute dtype, what the lm_head's backward reads


def _compute_setup(setup: TrainingSetup, eng: Engine) -> TrainingSetup:
    """The setup whose activations the engine produces: `*-true` where 16-bit params replace autocast."""
    local = replace(setup, parallel=ParallelSpec())
    if computes_without_autocast(setup.precision, eng):
        local = replace(local, precision=_TRUE[setup.precision])
    if setup.peft and (eng.fsdp or eng.deepspeed):
        # the engine casts the adapters to the 16-bit dtype too, so peft casts no inputs up
        local = replace(local, lora=replace(local.lora, adapter_dtype=local.precision.compute_dtype))
    return local


def _pieces(m: ModelSpec, setup: TrainingSetup, eng: Engine, stage: Stage = Stage.ALL) -> Pieces:
    cs = _compute_setup(setup, eng)
    act = activation_bytes(m, cs)
    T, L = setup.batch_size * setup.seq_len, m.n_layers
    ckpt = setup.checkpointing is Checkpointing.FULL
    e, r = cs.precision.compute_dtype.bytes, residual_dtype(cs).bytes
    acts = T * (L * (act.ckpt_per_layer if ckpt else act.per_layer) + act.outside)
    # autocast weight copies (only DDP/single computes under autocast; see planner/estimate.py)
    fwd_extra = act.layer_copies + act.head_copy if (setup.method is Method.FULL or not ckpt) else act.head_copy
    lf, ls, lb = _loss_bytes(m, cs, T) if stage is not Stage.FIRST else (0, 0, 0)
    embed = 0
    if setup.method is Method.FULL:
        # tied: the lm_head's gradient, the embedding's, and their sum (measured in the simulated
        # FSDP2 step, as estimate.py measured two on one GPU)
        w = gather_dtype(setup.precision, eng, setup.precision.weight_dtype).bytes if eng.fsdp or eng.deepspeed \
            else setup.precision.weight_dtype.bytes
        embed = (3 if m.tied_embeddings and stage is Stage.ALL else 1) * m.vocab * m.hidden * w
    if stage is Stage.LAST:
        embed = 0            # no embedding backward on the last stage
    return Pieces(int(acts), int(fwd_extra), int(T * act.outside), int(T * act.per_layer if ckpt else 0),
                  int(T * (2 * r * m.hidden + 2 * e * m.intermediate)), lf, ls, lb, int(embed),
                  0 if stage is Stage.FIRST else int(T * e * m.vocab))


def _loss_bytes(m: ModelSpec, cs: TrainingSetup, T: int) -> tuple[int, int, int]:
    """planner/estimate.py's loss bytes for T tokens: (forward peak, saved, backward temporaries)."""
    from .estimate import _logits

    return _logits(m, cs, T)


def _in_flight(setup: TrainingSetup, stage: Stage = Stage.ALL) -> int:
    """Micro-batches whose activations a pipeline stage holds under 1F1B: min(pp, micro-batches) on the first."""
    return min(setup.parallel.pp, setup.grad_accum) if stage is Stage.FIRST else 1


def _held(m: ModelSpec, stage: Stage) -> tuple[float, int, int]:
    """(fraction of the slice's parameters this stage holds, its root-unit parameters, its lm_head's).

    The first stage holds the embedding, the last the lm_head and final norm (a tied embedding is
    copied to the last stage, as Megatron's shared embedding) [megatron/core/models/common/
    language_module/language_module.py: setup_embeddings_and_output_layer].
    """
    pc = param_counts(m)
    head = m.vocab * m.hidden
    if stage is Stage.FIRST:
        return (pc.total - pc.lm_head) / pc.total, pc.embedding, 0
    if stage is Stage.LAST:
        held = pc.total - pc.embedding + (head if m.tied_embeddings else 0)
        return held / pc.total, head + m.norm_params, head
    return 1.0, pc.embedding + pc.lm_head + m.norm_params, 0 if m.tied_embeddings else head


def _phases_fsdp(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    p, n = setup.parallel, shard_degree(setup.parallel)
    st = states(m, setup)
    pc = param_counts(m)
    k = _in_flight(setup, stage)
    pz = _pieces(m, setup, eng, stage)
    mb = model_bytes(m, replace(setup, parallel=ParallelSpec(fsdp=p.fsdp, gpus=p.gpus, nodes=p.nodes)))
    frac, root_params, head = _held(m, stage)
    offload = p.offload is not Offload.NONE
    W = 0 if offload else int(st.weights * frac) // n
    O = 0 if offload else int(st.optimizer_state * frac) // n
    G = 0 if offload else int(st.gradients * frac) // n
    G_root = int(G * (root_params / pc.total)) if setup.method is Method.FULL else 0
    G_layers = G - G_root
    g_live = G if setup.grad_accum > 1 else 0
    all_root = pc.embedding + pc.lm_head + m.norm_params
    R = mb.root_gathered * root_params // all_root         # root unit gathered, forward start to backward end
    U = (mb.gathered - mb.root_gathered) // m.n_layers     # one decoder layer's unit, gathered
    grad_e = gather_dtype(setup.precision, eng, setup.precision.weight_dtype if setup.method is Method.FULL
                          else setup.adapter_dtype).bytes
    full = setup.method is Method.FULL
    layer_trainable = (pc.attention + pc.mlp if full else st.trainable_params) // m.n_layers
    U_grad = layer_trainable * grad_e                      # unsharded 16-bit gradients of one layer
    # reduce-scatter input in reduce_dtype; FSDP2 keeps the last one alive until the next reduce-scatter
    # [_fsdp_param_group.py: ReduceScatterState]
    rs_e = reduce_dtype(setup.precision, eng, setup.precision.weight_dtype if
                        setup.method is Method.FULL else setup.adapter_dtype).bytes
    U_rs = layer_trainable * rs_e
    head_grad = head * grad_e if setup.method is Method.FULL else 0
    held = m.n_layers * U if eng is Engine.FSDP_GRAD_OP else 0   # SHARD_GRAD_OP: gathered fwd -> bwd
    acts = pz.acts * k

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + c.pop("w", 0), C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(w=R + held + U, g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0),
           # the first layer's all-gather and copy-out while the root's all-gather output is kept
           phase(w=2 * R + 2 * U, g=g_live, a=0, l=0, t=0)]
    bwd = [phase(w=R + held + U, g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           # the lm_head's backward: its unsharded gradient next to the 16-bit gradient of the logits
           phase(w=R + held + U, g=g_live, a=acts, l=0, t=head_grad + pz.logit_grad16)]
    # inside a layer's backward: that layer and the next one prefetched gathered, its unsharded
    # gradients and the reduce-scatter input kept from the layer before; first the last layer
    # (every layer still held under SHARD_GRAD_OP, no gradient reduced yet), then the first
    inside = pz.recompute + pz.layer_transient + head_grad + U_grad
    G_one = G_layers // max(m.n_layers, 1)
    bwd.append(phase(w=R + max(held, 2 * U), g=g_live, a=acts, l=0, t=inside))
    # the next layer: the last one resharded (SHARD_GRAD_OP frees it after its backward), its
    # reduce-scatter input kept
    bwd.append(phase(w=R + max(held - U, 2 * U), g=max(g_live, G_one), a=acts, l=0, t=inside + U_rs))
    # the last two layers of backward: layer 1 with layer 0 prefetched, then layer 0 alone (nothing
    # left to prefetch, the root is gathered), each with one layer's gradients fewer reduced
    last_acts = pz.acts * k // max(m.n_layers, 1)
    bwd.append(phase(w=R + 2 * U, g=max(g_live, G_layers - G_one), a=2 * last_acts, l=0, t=inside + U_rs))
    bwd.append(phase(w=R + U, g=max(g_live, G_layers), a=last_acts, l=0, t=inside + U_rs))
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=pz.outside,
                     l=0, t=pz.layer_transient + pz.embed_grad + head_grad + U_rs))
    # the root unit last: resharded, its 16-bit gradients cast into the fp32 reduce-scatter input
    root_trainable = root_params if setup.method is Method.FULL else 0   # this stage's part of it
    bwd.append(phase(g=max(g_live, G_layers), a=pz.outside, l=0, t=root_trainable * (grad_e + rs_e)))
    opt = phase(g=G, a=0, l=0, t=0 if offload else int(st.optimizer_step_temporaries * frac) // n)
    notes = [f"FSDP2 {eng.value}: parameters, gradients and optimizer state sharded over {n} GPUs; "
             "each decoder layer and the root (embedding, lm_head, final norm) are FSDP units"]
    return _finish(fwd, bwd, opt), notes


def _phases_zero(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    p, n = setup.parallel, shard_degree(setup.parallel)
    st = states(m, setup)
    pc = param_counts(m)
    pz = _pieces(m, setup, eng, stage)
    k = _in_flight(setup, stage)
    frac, _, head = _held(m, stage)
    e16 = setup.precision.compute_dtype.bytes
    mixed = e16 < 4
    trainable = int(st.trainable_params * frac) if setup.method is Method.FULL else st.trainable_params
    # the whole module is cast to 16 bit (frozen base and adapters too); 4-bit QLoRA weights stay as stored
    full16 = int((st.weights if setup.method is Method.QLORA else e16 * pc.total) * frac)
    h2 = m.hidden * m.hidden
    master = 4 * trainable // n if mixed else 0
    opt_all = (states(m, replace(setup, precision=Precision.FP32)).optimizer_state
               if setup.method is not Method.QLORA else st.optimizer_state)
    opt_state = int(opt_all * frac) // n
    off_opt = p.offload is not Offload.NONE
    off_par = p.offload is Offload.PARAMS
    if off_opt:
        master = opt_state = 0
    largest = max(m.vocab * m.hidden, max((lin.weight_count for lin in m.dense_linears + m.moe_linears), default=0))
    if eng is Engine.ZERO3:
        # live: the module being run (the largest is the embedding / lm_head) plus the prefetch bucket
        live = e16 * (largest + int(PREFETCH_BUCKET_PER_H2 * h2))
        W = (0 if off_par else full16 // n) + live
    else:
        W = full16
    grad16 = trainable * e16
    bucket = int(REDUCE_BUCKET_PER_H2 * h2) * e16
    G = grad16 if eng is Engine.ZERO1 else grad16 // n + bucket
    if off_opt and eng is not Engine.ZERO1:
        G = bucket     # reduced partitions go straight to the host's fp32 buffer (ZeRO-Offload)
    step_fp32 = 0 if off_opt else (4 * trainable // n if mixed else 0)   # fp32 grad partition at the step
    acts = pz.acts * k
    # between steps: ZeRO-3's gradient partition is one flat buffer allocated at start-up
    # [stage3.py: grad_partitions_flat_buffer]; ZeRO-1/2 free theirs after the step, ZeRO-2 keeps
    # its reduce bucket [stage_1_and_2.py: averaged_gradients, ipg_buffer]
    between = {Engine.ZERO1: 0, Engine.ZERO2: bucket, Engine.ZERO3: G}[eng]
    g_live = G if setup.grad_accum > 1 else between

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + master, C.OPTIMIZER_STATE: opt_state, **c}

    fwd = [phase(g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0)]
    head_grad = (m.vocab * m.hidden if stage is Stage.ALL else head) * e16 if setup.method is Method.FULL else 0
    bwd = [phase(g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(g=g_live, a=acts, l=0, t=pz.logit_grad16 + head_grad)]   # the lm_head's backward
    if pz.recompute:
        bwd.append(phase(g=G, a=acts, l=0, t=pz.recompute + pz.layer_transient))
    bwd.append(phase(g=G, a=pz.outside, l=0, t=pz.layer_transient + pz.embed_grad))
    opt = phase(g=G + step_fp32, a=0, l=0, t=0)
    notes = [f"DeepSpeed {eng.value}: 16-bit module, fp32 master and Adam state partitioned over {n} GPUs; "
             "buckets at HF Trainer's 'auto' sizes (reduce h*h, prefetch 0.9*h*h)"]
    if setup.precision in (Precision.BF16_TRUE, Precision.FP16_TRUE):
        notes.append("DeepSpeed keeps an fp32 master copy whenever bf16/fp16 is enabled, so *-true is planned as *-mixed")
    return _finish(fwd, bwd, opt), notes


def _phases_replicated(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                       stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    """DDP or a single replica of a TP slice: the one-GPU estimate, plus DDP's gradient buckets;
    a pipeline stage: the same pieces, composed for the parameters and micro-batches it holds."""
    from .estimate import estimate

    st = states(m, setup)
    if stage is Stage.ALL:
        est = estimate(m, replace(setup, parallel=ParallelSpec()))
        out = {ph: dict(comps) for ph, comps in est.phase_components.items()}
    else:
        out = _stage_phases(m, setup, eng, stage, st)
    bucket = st.gradients if eng is Engine.DDP else 0
    if bucket:
        frac = _held(m, stage)[0] if setup.method is Method.FULL else 1.0
        for comps in out.values():
            comps[C.GRADIENTS] += int(bucket * frac)
    notes = []
    if eng is Engine.DDP:
        notes.append("DDP: gradient buckets hold a second copy of the gradients (gradient_as_bucket_view=False, "
                     "the default)")
    return out, notes


def _stage_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine, stage: Stage, st) -> dict:
    """One pipeline stage of a replicated (non-sharded) model, as planner/estimate.py composes a step."""
    pz = _pieces(m, setup, eng, stage)
    frac = _held(m, stage)[0]
    k = _in_flight(setup, stage)
    W, O = int(st.weights * frac), int(st.optimizer_state * frac)
    G = int(st.gradients * frac) if setup.method is Method.FULL else st.gradients
    g_live = G if setup.grad_accum > 1 else 0
    acts = pz.acts * k

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W, C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0)]
    bwd = [phase(g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd)]
    if pz.recompute:
        bwd.append(phase(g=g_live, a=acts, l=0, t=pz.recompute + pz.layer_transient))
    bwd.append(phase(g=G, a=pz.outside, l=0, t=pz.layer_transient + pz.embed_grad))
    opt = phase(g=G, a=0, l=0, t=int(st.optimizer_step_temporaries * frac))
    return _finish(fwd, bwd, opt)


def _finish(fwd: list[dict], bwd: list[dict], opt: dict) -> dict:
    names = {"w": C.WEIGHTS, "g": C.GRADIENTS, "a": C.ACTIVATIONS, "l": C.LOGITS, "t": C.TEMPORARIES}

    def norm(d: dict) -> dict:
        out = {c: 0 for c in C.tensor_components()}
        for key, v in d.items():
            out[names.get(key, key)] = out.get(names.get(key, key), 0) + int(v)
        return out

    worst = lambda cands: max((norm(c) for c in cands), key=lambda c: sum(c.values()))  # noqa: E731
    return {Phase.FORWARD: worst(fwd), Phase.BACKWARD: worst(bwd), Phase.OPTIMIZER: norm(opt)}


def estimate_parallel(model: ModelSpec, setup: TrainingSetup, gpus: tuple[GpuSpec, ...] = ()) -> MemoryEstimate:
    """MemoryEstimate per GPU (the most loaded one) of a multi-GPU / offloaded step, in bytes."""
    p = setup.parallel
    p.validate(model, setup.optimizer)
    eng = engine_of(p)
    m = local_model(model, p)
    engine_phases = _phases_fsdp if eng.fsdp else _phases_zero if eng.deepspeed else _phases_replicated
    if p.pp == 1:
        phases, notes = engine_phases(m, setup, eng)
    else:   # the more loaded of the first stage (embedding, micro-batches in flight) and the last (logits)
        by_stage = {stage: engine_phases(m, setup, eng, stage) for stage in (Stage.FIRST, Stage.LAST)}
        stage = max(by_stage, key=lambda s: max(sum(c.values()) for c in by_stage[s][0].values()))
        phases, notes = by_stage[stage]
        notes = notes + [f"pipeline: the {stage.value} stage is the more loaded; figures are for it"]
    from .estimate import peak_figures

    nccl = NCCL_BUFFER_BYTES if p.world > 1 else 0
    fig = peak_figures(phases, outside_allocator=nccl + states(m, setup).optimizer_paged)
    if p.tp > 1 or p.pp > 1:
        notes.append(f"tensor/pipeline parallel: this GPU holds {m.n_layers} of {model.n_layers} layers and "
                     f"1/{p.tp} of each layer's heads and MLP width (Megatron layout, no sequence parallelism)")
    if p.pp > 1:
        notes.append(f"1F1B: the first stage holds {_in_flight(setup, Stage.FIRST)} micro-batches of activations "
                     "and the embedding, the last one micro-batch, the lm_head and the logits")
    used = fig.assumptions + (
        Assumption("nccl_buffer_bytes", nccl, "bytes", "Assumption, not calibrated: NCCL_BUFFSIZE 4 MiB per "
                   "channel and peer [NCCL environment variables docs], a few hundred MiB per communicator"),
    )
    setup_dict = setup.to_dict(model)
    setup_dict["model"] = model.name
    setup_dict["engine"] = eng.value
    return MemoryEstimate(
        peak_allocated_bytes=fig.allocated, peak_reserved_bytes=fig.reserved, device_total_bytes=fig.device_total,
        peak_phase=fig.peak_phase, components=fig.components, phases=fig.totals, phase_components=phases,
        params=param_counts(model), trainable_params=states(model, replace(setup, parallel=ParallelSpec())).trainable_params,
        setup=setup_dict, assumptions=used, notes=tuple(notes),
        host_bytes_per_node=host_bytes_per_node(model, setup),
        nvme_bytes_per_node=nvme_bytes_per_node(model, setup),
        communication=communication_bytes(model, setup),
    )
