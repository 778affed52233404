"""The sharded layouts of the step: FSDP2 and DeepSpeed ZeRO, per GPU, per phase.

- FSDP2 (`fully_shard` of each decoder layer and of the root, as accelerate wraps a transformers
  model): parameters, gradients and optimizer state as 1/n shards; the root unit (embedding,
  lm_head, final norm) holds its parameters from the start of forward to the end of backward (it
  wraps the whole forward, loss included, and backward re-gathers it first); a unit is all-gathered
  into a flat output and copied out into its parameters (both alive for a moment), and the last
  all-gather's output is kept until the next one [torch/distributed/fsdp/_fully_shard/
  _fsdp_collectives.py: foreach_all_gather, foreach_all_gather_copy_out; _fsdp_param_group.py:
  AllGatherState]; backward reduce-scatters each layer's 16-bit unsharded gradients from an input
  cast to reduce_dtype [foreach_reduce]. SHARD_GRAD_OP keeps every layer gathered from forward to
  its backward.
- DeepSpeed ZeRO: 16-bit parameters (full for stages 1-2, a 1/n partition plus the live modules
  for stage 3), fp32 master and Adam state partitions, 16-bit gradients (full for stage 1,
  partitioned plus the reduce bucket for 2-3), the fp32 gradient partition the step builds
  [deepspeed/runtime/zero/stage_1_and_2.py, stage3.py, partition_parameters.py]; bucket sizes are
  HF Trainer's "auto" values [transformers/integrations/deepspeed.py: trainer_config_finalize].
- Offload moves the fp32 states (and, for params, the 16-bit partition) to host RAM or NVMe.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..specs.engines import Engine, gather_dtype, reduce_dtype, shard_degree
from ..specs.enums import Component as C
from ..specs.enums import Precision
from ..specs.model import LinearRole, ModelSpec
from ..specs.resolved import AdapterKind
from ..specs.params import param_counts
from ..specs.parallel import Offload, ParallelSpec
from ..specs.setup import TrainingSetup
from .comm import model_bytes
from .figures import worst_phases
from .pieces import Stage, in_flight, pieces, resolved_states, terms
from .pieces import held as stage_share


def padded(numel: int, n: int) -> int:
    """An FSDP1 FlatParameter's numel padded to n equal shards [_flat_param.py FlatParamHandle._get_shard]."""
    return -(-numel // n) * n


# HF Trainer's DeepSpeed "auto" values: reduce_bucket_size = h*h, stage3_prefetch_bucket_size =
# 0.9*h*h (elements) [transformers/integrations/deepspeed.py: HfTrainerDeepSpeedConfig.trainer_config_finalize].
REDUCE_BUCKET_PER_H2 = 1.0
PREFETCH_BUCKET_PER_H2 = 0.9


@dataclass(frozen=True)
class ShardedStates:
    """What every FSDP layout (FSDP2 here, FSDP1 in memory/fsdp1.py) starts from: one rank's share of the
    model states and the step's pieces (bytes; `n` the shard degree, `k` the micro-batches in flight)."""

    p: ParallelSpec
    n: int
    rs: Any
    st: Any
    pc: Any
    k: int
    pz: Any
    mb: Any
    frac: float
    root_params: int
    head: int
    offload: bool
    W: int                # sharded weights
    O: int                # sharded optimizer state
    G: int                # sharded gradients
    G_root: int           # the root unit's share of G
    G_layers: int
    g_live: int           # gradients alive through the step (accumulation)
    all_root: int         # the root's parameters: embedding, lm_head, final norm


def sharded_states(m: ModelSpec, setup: TrainingSetup, eng: Engine, stage: Stage = Stage.ALL) -> ShardedStates:
    p, n = setup.parallel, shard_degree(setup.parallel)
    rs, st, _ = terms(m, setup)
    pc = param_counts(m)
    k = in_flight(setup, stage)
    pz = pieces(m, setup, eng, stage)
    mb = model_bytes(m, replace(setup, parallel=ParallelSpec(fsdp=p.fsdp, gpus=p.gpus, nodes=p.nodes)))
    frac, root_params, head = stage_share(m, stage)
    offload = p.offload is not Offload.NONE
    W = 0 if offload else int(st.weights * frac) // n
    O = 0 if offload else int(st.optimizer_state * frac) // n
    G = 0 if offload else int(st.gradients * frac) // n
    G_root = int(G * (root_params / pc.total)) if rs.full else 0
    return ShardedStates(p, n, rs, st, pc, k, pz, mb, frac, root_params, head, offload, W, O, G, G_root, G - G_root,
                         G if setup.grad_accum > 1 else 0, pc.embedding + pc.lm_head + m.norm_params)


def out_proj_trainable(m: ModelSpec, rs: Any, layer_trainable: int) -> int:
    """Trainable parameters of one layer whose gradients exist when its MLP's backward peaks (MulBackward,
    planner/memory/layers.py mlp_backward_bytes): the MLP output projection's (down_proj's weight, full
    fine-tuning; its LoRA A and B where adapted), its backward having run first. Other adapters and MLP kinds:
    the whole layer's `layer_trainable` (no tighter count)."""
    outs = [lin for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.OUTPUT]
    if rs.full:
        return sum(lin.param_count for lin in outs) if outs and not m.moe_layers else layer_trainable
    a = rs.adapters
    if a is not None and a.kind is AdapterKind.LORA and not a.use_dora and not m.moe_layers:
        return sum(a.r * (lin.in_features + lin.out_features) for lin in outs if lin.name in a.targets)
    return layer_trainable


def fsdp_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    sh = sharded_states(m, setup, eng, stage)
    n, rs, st, pc, k, pz, mb = sh.n, sh.rs, sh.st, sh.pc, sh.k, sh.pz, sh.mb
    frac, root_params, head, offload = sh.frac, sh.root_params, sh.head, sh.offload
    W, O, G, G_layers, g_live, all_root = sh.W, sh.O, sh.G, sh.G_layers, sh.g_live, sh.all_root
    R = mb.root_gathered * root_params // all_root         # root unit gathered, forward start to backward end
    U = (mb.gathered - mb.root_gathered) // m.n_layers     # one decoder layer's unit, gathered
    grad_e = gather_dtype(setup.precision, eng, setup.precision.weight_dtype if rs.full
                          else setup.adapter_dtype).bytes
    full = rs.full
    layer_trainable = (pc.attention + pc.mlp if full else st.trainable_params) // m.n_layers
    U_grad = layer_trainable * grad_e                      # unsharded 16-bit gradients of one layer
    # at its MLP's MulBackward only the output projection's backward has run: its unsharded gradients alone
    U_out = out_proj_trainable(m, rs, layer_trainable) * grad_e
    # reduce-scatter input in reduce_dtype; FSDP2 keeps the last one alive until the next reduce-scatter
    # [_fsdp_param_group.py: ReduceScatterState]
    rs_e = reduce_dtype(setup.precision, eng, setup.precision.weight_dtype if
                        rs.full else setup.adapter_dtype).bytes
    U_rs = layer_trainable * rs_e
    head_grad = head * grad_e if rs.full else 0
    held = m.n_layers * U if eng is Engine.FSDP_GRAD_OP else 0   # SHARD_GRAD_OP: gathered fwd -> bwd
    acts = pz.acts * k

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + c.pop("w", 0), C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(w=R + held + U, g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0),
           # the first layer's all-gather and copy-out while the root's all-gather output is kept
           phase(w=2 * R + 2 * U, g=g_live, a=0, l=0, t=0)]
    bwd = [phase(w=R + held + U, g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           # the lm_head's backward: its unsharded gradient next to the 16-bit gradient of the logits
           phase(w=R + held + U, g=g_live, a=acts, l=0, t=head_grad + pz.logit_grad_read)]
    # inside a layer's backward: that layer and the next one prefetched gathered, its unsharded
    # gradients and the reduce-scatter input kept from the layer before; first the last layer
    # (every layer still held under SHARD_GRAD_OP, no gradient reduced yet), then the first
    L = max(m.n_layers, 1)
    G_one = G_layers // L
    last_acts = pz.acts * k // L
    inside = pz.recompute + pz.layer_transient + head_grad + U_grad
    # the saved tensors inside layers L - 1, L - 2, 1 and 0
    a_last, a_next, a_one, a_zero = acts, acts, 2 * last_acts, last_acts
    if pz.recompute:   # checkpointed: each layer's backward peaks in its recomputed MLP's MulBackward
        inside = pz.recompute + pz.mlp_backward + head_grad + U_out
        # layers 0..i's checkpoints and the tensors outside the layers, less the head's (released by its backward)
        a_last, a_next, a_one, a_zero = ((pz.acts - pz.outside) * (i + 1) // L + pz.outside - pz.head_side
                                         + pz.acts * (k - 1) for i in (L - 1, L - 2, 1, 0))
    bwd.append(phase(w=R + max(held, 2 * U), g=g_live, a=a_last, l=0, t=inside))
    # the next layer: the last one resharded (SHARD_GRAD_OP frees it after its backward), its
    # reduce-scatter input kept
    bwd.append(phase(w=R + max(held - U, 2 * U), g=max(g_live, G_one), a=a_next, l=0, t=inside + U_rs))
    # the last two layers of backward: layer 1 with layer 0 prefetched, then layer 0 alone (nothing
    # left to prefetch, the root is gathered), the layers above each reduced (L - 2, then L - 1: the
    # simulated step's sharded gradients)
    bwd.append(phase(w=R + 2 * U, g=max(g_live, G_layers - 2 * G_one), a=a_one, l=0, t=inside + U_rs))
    bwd.append(phase(w=R + U, g=max(g_live, G_layers - G_one), a=a_zero, l=0, t=inside + U_rs))
    if pz.recompute:   # the same four layers at their backward's end, in the first norm's: all their gradients
        end = head_grad + U_grad + pz.layer_end
        bwd += [phase(w=R + max(held, 2 * U), g=g_live, a=a_last, l=0, t=end),
                phase(w=R + max(held - U, 2 * U), g=max(g_live, G_one), a=a_next, l=0, t=end + U_rs),
                phase(w=R + 2 * U, g=max(g_live, G_layers - 2 * G_one), a=a_one, l=0, t=end + U_rs),
                phase(w=R + U, g=max(g_live, G_layers - G_one), a=a_zero, l=0, t=end + U_rs)]
    # the embedding's backward: every layer's done, none of their workspace left, nor the head's saved inputs
    # (the simulated FSDP2 step)
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=pz.outside - pz.head_side,
                     l=0, t=pz.embed_grad + head_grad + U_rs))
    # the root unit last: resharded, its 16-bit gradients cast into the fp32 reduce-scatter input
    root_trainable = root_params if rs.full else 0   # this stage's part of it
    bwd.append(phase(g=max(g_live, G_layers), a=pz.outside, l=0, t=root_trainable * (grad_e + rs_e)))
    opt = phase(g=G, a=0, l=0, t=0 if offload else int(st.optimizer_step_temporaries * frac) // n)
    notes = [f"FSDP2 {eng.value}: parameters, gradients and optimizer state sharded over {n} GPUs; "
             "each decoder layer and the root (embedding, lm_head, final norm) are FSDP units"]
    return worst_phases(fwd, bwd, opt), notes


def zero_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    p, n = setup.parallel, shard_degree(setup.parallel)
    rs, st, _ = terms(m, setup)
    pc = param_counts(m)
    pz = pieces(m, setup, eng, stage)
    k = in_flight(setup, stage)
    frac, _, head = stage_share(m, stage)
    e16 = setup.precision.compute_dtype.bytes
    mixed = e16 < 4
    trainable = int(st.trainable_params * frac) if rs.full else st.trainable_params
    # the whole module is cast to 16 bit (frozen base and adapters too); 4-bit QLoRA weights stay as stored
    full16 = int((st.weights if rs.quantized is not None else e16 * pc.total) * frac)
    h2 = m.hidden * m.hidden
    master = 4 * trainable // n if mixed else 0
    opt_all = (resolved_states(m, replace(setup, precision=Precision.FP32)).optimizer_state
               if rs.quantized is None else st.optimizer_state)
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
    head_grad = (m.vocab * m.hidden if stage is Stage.ALL else head) * e16 if rs.full else 0
    bwd = [phase(g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(g=g_live, a=acts, l=0, t=pz.logit_grad_read + head_grad)]   # the lm_head's backward
    if pz.recompute:   # the recomputed layer's MLP backward, as on one GPU (modelled, not simulated: no DeepSpeed here)
        bwd.append(phase(g=G, a=acts - pz.head_side, l=0, t=pz.recompute + pz.mlp_backward))
    bwd.append(phase(g=G, a=pz.outside, l=0, t=pz.layer_transient + pz.embed_grad))
    opt = phase(g=G + step_fp32, a=0, l=0, t=0)
    notes = [f"DeepSpeed {eng.value}: 16-bit module, fp32 master and Adam state partitioned over {n} GPUs; "
             "buckets at HF Trainer's 'auto' sizes (reduce h*h, prefetch 0.9*h*h)"]
    if setup.precision in (Precision.BF16_TRUE, Precision.FP16_TRUE):
        notes.append("DeepSpeed keeps an fp32 master copy whenever bf16/fp16 is enabled, so *-true is planned as *-mixed")
    return worst_phases(fwd, bwd, opt), notes
