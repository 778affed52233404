"""The one step builder: the live bytes of a steady-state training step per phase and component,
on the most loaded GPU, for every engine. One GPU is the one-stage case; DDP and tensor/pipeline
parallelism compose the same pieces; FSDP2 and ZeRO are the sharded layouts of memory/sharded.py.

Phases [DESIGN.md, "The peak is per phase, not a sum"]: the forward (peak inside the loss), the
backward (its start, the recompute of the last layer under checkpointing, and its end), and the
optimizer step. Optimizer state is live throughout: the steady state from the second step on.

- DDP: the single-GPU step plus its gradient buckets, a second copy of the gradients when
  gradient_as_bucket_view=False (the default) [torch/nn/parallel/distributed.py].
- TP/PP: the slice one GPU holds (memory/slices.py); 1F1B keeps min(pp, micro-batches)
  micro-batches of activations on the first stage [Narayanan et al. 2021, Sec. 2.2].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..specs.engines import Engine, engine_of
from ..specs.enums import Component as C
from ..specs.enums import Loss, Packing, Padding, Phase
from ..specs.model import ModelSpec
from ..specs.parallel import CpKind, ParallelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup
from ..techniques import activation_offload, attention, checkpointing, context_parallel, cut_ce, in_backward, liger, loss, masks, moe_lora, optimizers, preference, quantization, tiled_mlp
from ..techniques import precision   # the recipe note
from ..techniques import multimodal   # a multimodal wrapper's vision side
from ..techniques import images   # ... and its batches with images
from ..techniques import compile as compiled   # torch.compile's saved set
from ..techniques import fp8   # torchao float8 casts
from ..techniques import lora_variants   # LoRA variants from papers (DyLoRA, Delta-LoRA)
from .layers import ActivationBytes
from .pieces import Stage, compute_setup, held, in_flight, mlp_backward, pieces, terms
from .result import Assumption
from .sharded import fsdp_phases, zero_phases
from .fsdp1 import fsdp1_phases
from .figures import worst_phases
from .slices import local_model
from .states import States
from .yafsdp import yafsdp_phases
from . import preference_ranks   # DPO / KTO / ORPO / GRPO under FSDP2 and ZeRO

# NCCL's own device buffers, outside PyTorch's allocator: NCCL_BUFFSIZE (4 MiB default) per channel
# and peer [NCCL docs, Environment Variables: NCCL_BUFFSIZE]; with ~16-32 ring channels on NVLink
# systems a communicator holds a few hundred MiB. Assumption, not calibrated here.
NCCL_BUFFER_BYTES = 256 * 2**20

Phases = dict[Phase, dict[C, int]]


@dataclass(frozen=True)
class Step:
    """The step's live bytes on the most loaded GPU, and what the figures need besides them."""

    phases: Phases
    notes: tuple[str, ...]
    outside_allocator: int                 # bytes on the device the allocator does not count
    assumptions: tuple[Assumption, ...] = ()
    local: ModelSpec | None = None         # the TP/PP slice planned (None: the whole model, one GPU)
    trainable_params: int = 0              # of the one-GPU step's model
    activation_host_bytes: int = 0         # pinned host memory of activation offloading (one micro-batch)


def single_gpu_phases(model: ModelSpec, setup: TrainingSetup, rs: Resolved, st: States,
                      act: ActivationBytes) -> Phases:
    """The live set of each phase of one GPU's step of `setup` (its sizes; the rest resolved in `rs`)."""
    T = setup.batch_size * setup.seq_len
    L = model.n_layers
    ckpt = checkpointing.enabled(rs)
    e, r = rs.compute.bytes, rs.residual.bytes
    W, G, O = st.weights, st.gradients, st.optimizer_state
    g_live = G if setup.grad_accum > 1 else 0          # accumulated gradients during later micro-batches
    logit_fwd, logit_saved, logit_bwd = loss.loss_bytes(model, rs, T, setup.batch_size)
    if compiled.active(rs):   # the compiled loss: 16-bit logits and two reductions per row
        logit_fwd, logit_saved, logit_bwd = compiled.loss_bytes(model, rs, T, setup.seq_len)

    saved_per_layer = act.ckpt_per_layer if ckpt else act.per_layer
    acts = T * (L * saved_per_layer + act.outside)
    head_copy = act.head_copy
    all_copies = act.layer_copies + head_copy
    adapters = act.adapter_copies          # cached by autocast through the forward, whatever checkpointing
    # autocast caches copies of trainable weights until it exits; copies of frozen weights are
    # only kept when a matmul saves them, which checkpointing prevents (the lm_head's excepted)
    fwd_copies = all_copies if (rs.full or not ckpt) else head_copy
    part = checkpointing.selective(rs)     # every k-th layer: the others keep what they save
    if part:
        n_ckpt, n_kept, above = checkpointing.layer_split(model, rs)
        acts = T * (n_ckpt * act.ckpt_per_layer + n_kept * act.per_layer + act.outside)
        kept_copies = (act.layer_copies + adapters) * n_kept // L
        fwd_copies = all_copies if rs.full else head_copy + act.layer_copies * n_kept // L
    # tiled MLP: the MLP's matmuls run under no_grad, so no frozen weight's copy is saved [techniques/tiled_mlp.py]
    dropped = tiled_mlp.dropped_copies(model, rs)
    if not (rs.full or ckpt):
        fwd_copies -= dropped
    fwd_acts = acts + fwd_copies + adapters
    off = activation_offload.offloaded(model, rs, act, T, logit_saved)   # saved tensors moved to host memory
    fwd_acts -= off.forward

    phases: Phases = {}
    phases[Phase.FORWARD] = {C.WEIGHTS: W, C.GRADIENTS: g_live, C.OPTIMIZER_STATE: O,
                             C.ACTIVATIONS: fwd_acts, C.LOGITS: logit_fwd, C.TEMPORARIES: 0}
    if fp8.active(setup):   # a converted linear's casts, above everything the forward saved [techniques/fp8.py]
        cast = max(fp8.head_forward_peak(model, rs, T), fp8.layer_forward_peak(model, rs, T))
        if cast > logit_fwd:
            phases[Phase.FORWARD].update({C.LOGITS: 0, C.TEMPORARIES: cast})

    # backward: (1) its start, (2) under checkpointing the recompute of the last layer, (3) its end
    layer_transient = T * (2 * r * model.hidden + 2 * e * model.intermediate)
    # inside a layer's MLP backward; tiled: a tile recomputed with its workspace [techniques/tiled_mlp.py]
    mlp_bwd = mlp_backward(model, rs, act, T)   # the gradients at its peak, in the base linears' output dtype
    # released by then, their backward having run: the head's and the final norm's saved inputs, the lm_head's
    # saved 16-bit copy, down_proj's autocast copy (layers.py ActivationBytes.head_side, mlp_out_copy)
    head_side = int(T * act.head_side)
    saved_head = act.head_copy_saved
    bwd_copies = saved_head if ckpt else act.layer_copies - dropped + saved_head + adapters
    if part:
        bwd_copies = saved_head + kept_copies
    start = {C.GRADIENTS: g_live, C.ACTIVATIONS: acts + bwd_copies - off.backward, C.LOGITS: logit_saved,
             C.TEMPORARIES: logit_bwd}
    candidates = [start]
    if off.in_flight:   # offloaded without checkpointing: the layers' tensors come back as autograd needs them
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: acts + bwd_copies - off.backward + off.in_flight,
                           C.LOGITS: 0, C.TEMPORARIES: layer_transient})
    if part:   # the highest checkpointed layer's recompute, once the kept layers above it are done
        below = acts - T * above * act.per_layer - head_side + kept_copies * (n_kept - above) // max(n_kept, 1)
        layer_copy = (act.layer_copies + adapters) // max(L, 1) - act.mlp_out_copy
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: below - off.recompute, C.LOGITS: 0,
                           C.TEMPORARIES: T * act.per_layer + layer_copy + mlp_bwd})
    elif ckpt:
        layer_copy = (act.layer_copies - dropped + adapters) // max(L, 1) - act.mlp_out_copy
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: acts - head_side - off.recompute,
                           C.LOGITS: 0, C.TEMPORARIES: T * act.per_layer + layer_copy + mlp_bwd})
    elif tiled_mlp.enabled(rs):   # the last layer's MLP backward, every layer's saved tensors still held
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: acts + bwd_copies - off.backward, C.LOGITS: 0,
                           C.TEMPORARIES: mlp_bwd})
    if act.expert_backward and not part:   # peft's merged expert weights (techniques/moe_lora.py)
        candidates += moe_lora.backward_candidates(model, rs, act, T, ckpt, acts + bwd_copies, saved_head, layer_transient)
    # the embedding's backward ends it: embedding_dense_backward builds a (vocab, hidden) gradient;
    # tied to the lm_head it is then added into the lm_head's, with a second such buffer
    # (measured in the simulated step; aten/src/ATen/native/Embedding.cpp)
    embed_grad = 0
    if rs.full:
        embed_grad = (2 if model.tied_embeddings else 1) * model.vocab * model.hidden * rs.trainable.bytes
    candidates.append({C.GRADIENTS: G - (0 if model.tied_embeddings else embed_grad), C.ACTIVATIONS: T * act.outside,
                       C.LOGITS: 0, C.TEMPORARIES: layer_transient + embed_grad})
    if fp8.active(setup):   # the converted lm_head's backward casts; the largest linear's in the first layer
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: acts + bwd_copies - off.backward, C.LOGITS: 0,
                           C.TEMPORARIES: fp8.head_backward_peak(model, rs, T)})
        candidates.append({C.GRADIENTS: G - (0 if model.tied_embeddings else embed_grad),
                           C.ACTIVATIONS: T * (act.outside + act.per_layer), C.LOGITS: 0,
                           C.TEMPORARIES: fp8.layer_backward_peak(model, rs, T)})
    if setup.optimizer_in_backward:   # no full gradient set is live [techniques/in_backward.py]
        candidates = in_backward.backward_candidates(model, rs, candidates, st.largest_trainable, T * act.outside,
                                                      saved_head, T)
    worst = max(candidates, key=lambda c: sum(c.values()))
    phases[Phase.BACKWARD] = {C.WEIGHTS: W, C.OPTIMIZER_STATE: O, **worst}
    phases[Phase.OPTIMIZER] = {C.WEIGHTS: W, C.GRADIENTS: G, C.OPTIMIZER_STATE: O, C.ACTIVATIONS: 0,
                               C.LOGITS: 0, C.TEMPORARIES: st.optimizer_step_temporaries}
    if off.resident:   # the offloader's own GPU buffers, never freed
        for comps in phases.values():
            comps[C.ACTIVATIONS] += off.resident
    if setup.optimizer_in_backward:
        phases[Phase.OPTIMIZER] = in_backward.optimizer_phase(phases[Phase.OPTIMIZER])
    return {p: {c: int(comps.get(c, 0)) for c in C.tensor_components()} for p, comps in phases.items()}


def technique_notes(model: ModelSpec, requested: TrainingSetup, rs: Resolved, st: States) -> list[str]:
    """What the active techniques say about how they were modelled."""
    notes = []
    if st.optimizer_paged:
        notes.append("paged optimizer state lives in CUDA unified memory: outside the allocator's figures, "
                     "counted in device total (it can be evicted to host RAM under pressure)")
    notes += loss.notes(rs)
    notes += precision.notes(rs)
    notes += liger.notes(model, rs.setup.liger)
    notes += compiled.notes(rs)
    notes += tiled_mlp.notes(model, rs, rs.setup.seq_len)
    notes += fp8.notes(rs)
    notes += in_backward.notes(rs)
    notes += optimizers.notes(rs.setup.optimizer)
    notes += lora_variants.notes(rs)
    notes += attention.notes(model, requested.attention, rs)
    notes += masks.notes(model, rs, rs.setup.seq_len)
    if model.moe_layers:
        notes.append("MoE routed-expert activations are approximate (top-k tokens per expert)")
    notes += moe_lora.notes(model, rs)
    notes += multimodal.notes(model, rs)
    moe_qlora = quantization.moe_fused_experts_note(model, rs)
    if moe_qlora:
        notes.append(moe_qlora)
    return notes


def single_gpu_step(model: ModelSpec, requested: TrainingSetup, setup: TrainingSetup) -> Step:
    """The one-GPU step (`setup` already as it runs on `model`)."""
    rs, st, act = terms(model, setup)
    k = preference.sequences_per_example(rs)
    batch = setup.with_(batch_size=k * setup.batch_size) if k > 1 else setup
    phases = single_gpu_phases(model, batch, rs, st, act)
    phases = images.with_images(model, rs, phases)   # a multimodal wrapper's image batch [techniques/images.py]
    ref_weights = preference.reference_weight_bytes(model, rs)
    if ref_weights or k > 1 or setup.objective.has_reference:
        phases = _with_reference(model, batch, rs, phases, ref_weights)
    notes = technique_notes(model, requested, rs, st) + preference.notes(rs)
    off = activation_offload.offloaded(model, rs, act, k * setup.batch_size * setup.seq_len,
                                       loss.loss_bytes(model, rs, k * setup.batch_size * setup.seq_len, k * setup.batch_size)[1])
    notes += activation_offload.notes(rs, off)
    return Step(phases, tuple(notes), st.optimizer_paged, trainable_params=st.trainable_params,
                activation_host_bytes=off.host)


def _with_reference(model: ModelSpec, batch: TrainingSetup, rs: Resolved, phases: Phases, ref_weights: int) -> Phases:
    """DPO: the reference weights in every phase, and the reference forward after the policy's,
    while the policy's saved graph and its loss's saved tensors are alive."""
    T = batch.batch_size * batch.seq_len
    _, logit_saved, _ = loss.loss_bytes(model, rs, T, batch.batch_size)
    out = {p: {**c, C.WEIGHTS: c[C.WEIGHTS] + ref_weights} for p, c in phases.items()}
    fwd = out[Phase.FORWARD]
    ref = {**fwd, C.LOGITS: logit_saved, C.TEMPORARIES: preference.reference_forward_bytes(model, rs, T, batch.batch_size)}
    if sum(ref.values()) > sum(fwd.values()):
        out[Phase.FORWARD] = ref
    return out


def _replicated_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                       stage: Stage = Stage.ALL) -> tuple[Phases, list[str]]:
    """DDP or a single replica of a TP slice: the one-GPU step, plus DDP's gradient buckets;
    a pipeline stage: the same pieces, composed for the parameters and micro-batches it holds."""
    rs, st, _ = terms(m, setup)
    if stage is Stage.ALL:
        one = replace(setup, parallel=ParallelSpec()).for_model(m)
        out = {ph: dict(comps) for ph, comps in single_gpu_step(m, one, one).phases.items()}
    else:
        out = _stage_phases(m, setup, eng, stage, st, rs)
    bucket = st.gradients if eng is Engine.DDP else 0
    if bucket:
        frac = held(m, stage)[0] if rs.full else 1.0
        for comps in out.values():
            comps[C.GRADIENTS] += int(bucket * frac)
    notes = []
    if eng is Engine.DDP:
        notes.append("DDP: gradient buckets hold a second copy of the gradients (gradient_as_bucket_view=False, "
                     "the default)")
    return out, notes


def _stage_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine, stage: Stage, st: States,
                  rs: Resolved) -> Phases:
    """One pipeline stage of a replicated (non-sharded) model, composed as the one-GPU step is."""
    pz = pieces(m, setup, eng, stage)
    frac = held(m, stage)[0]
    k = in_flight(setup, stage)
    W, O = int(st.weights * frac), int(st.optimizer_state * frac)
    G = int(st.gradients * frac) if rs.full else st.gradients
    g_live = G if setup.grad_accum > 1 else 0
    acts = pz.acts * k

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W, C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0)]
    bwd = [phase(g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd)]
    if pz.recompute:   # the recomputed layer's MLP backward, as on one GPU (modelled: no pipeline is simulated)
        bwd.append(phase(g=g_live, a=acts - pz.head_side, l=0, t=pz.recompute + pz.mlp_backward))
    bwd.append(phase(g=G, a=pz.outside, l=0, t=pz.layer_transient + pz.embed_grad))
    opt = phase(g=G, a=0, l=0, t=int(st.optimizer_step_temporaries * frac))
    return worst_phases(fwd, bwd, opt)


def _with_exchange(m: ModelSpec, setup: TrainingSetup, eng: Engine, phases: Phases,
                   seq_len: int) -> tuple[Phases, list[str]]:
    """The phases of a context-parallel rank's shard (`setup` at the local sequence length) with its
    attention's exchange buffers. The sharded layouts take them from `pieces` (a layer's backward
    transient is its MLP's or its attention's, whichever is larger; Ulysses' extra saved bytes); the
    one-GPU phases of DDP, whose weights and optimizer state are the same in every phase, get the same
    terms here. The forward gains a point inside the last layer's attention: the saved activations,
    no logits yet, the exchange buffers (where the forward's worst point holds activations)."""
    p = setup.parallel
    rs, _, act = terms(m, compute_setup(setup, eng))
    T = setup.batch_size * setup.seq_len
    ex = context_parallel.exchange(m, rs, p, T, context_parallel.o_proj_saved(rs))
    out = {ph: dict(c) for ph, c in phases.items()}
    fwd, bwd = out[Phase.FORWARD], out[Phase.BACKWARD]
    if not (eng.fsdp or eng.deepspeed):
        pz = pieces(m, setup, eng)
        n_ckpt, n_kept, _ = checkpointing.layer_split(m, rs)
        extra = ex.saved_per_layer * n_kept
        before = bwd[C.ACTIVATIONS]
        fwd[C.ACTIVATIONS] += extra
        if before + extra >= pz.acts:   # a backward point that holds every layer's saved tensors
            bwd[C.ACTIVATIONS] += extra
        # as single_gpu_phases' recompute point: one layer's autocast copies beside its recomputed tensors, less
        # what the head's backward and down_proj's released; its MLP's backward or its attention's, the larger
        layer_copy = (act.layer_copies + act.adapter_copies) // m.n_layers - act.mlp_out_copy if n_ckpt else 0
        inner = max(int(T * act.mlp_backward), ex.backward) if n_ckpt else pz.layer_transient
        head_side = int(T * act.head_side) if n_ckpt else 0
        inside = {**bwd, C.GRADIENTS: fwd[C.GRADIENTS], C.ACTIVATIONS: pz.acts - head_side, C.LOGITS: 0,
                  C.TEMPORARIES: pz.recompute + layer_copy + inner}
        if sum(inside.values()) > sum(bwd.values()):
            out[Phase.BACKWARD] = inside
    if fwd[C.ACTIVATIONS]:
        attn = {**fwd, C.LOGITS: 0, C.TEMPORARIES: ex.forward}
        if sum(attn.values()) > sum(fwd.values()):
            out[Phase.FORWARD] = attn
    return out, context_parallel.notes(m, p, seq_len, ex)


def parallel_step(model: ModelSpec, setup: TrainingSetup) -> Step:
    """The step of the most loaded GPU of a multi-GPU or offloaded job (`setup` validated, as it
    runs on `model`)."""
    p = setup.parallel
    p.validate(model, setup.optimizer)
    cp_seq = setup.seq_len
    if context_parallel.enabled(p):   # every rank plans its shard of each sequence [techniques/context_parallel.py]
        context_parallel.check(model, p, setup.seq_len, setup.batch_size, setup.attention,
                               setup.padding is not Padding.NONE or (setup.packing is not Packing.NONE
                                                                      and p.cp_kind is not CpKind.LLAMA3))
        setup = setup.with_(seq_len=context_parallel.local_seq_len(p, setup.seq_len))
    eng = engine_of(p)
    m = local_model(model, p)
    layout = yafsdp_phases if eng is Engine.YAFSDP else fsdp_phases if eng.fsdp else \
        zero_phases if eng.deepspeed else _replicated_phases
    if eng is Engine.FSDP_FULL and p.fsdp_version == 1:   # FullyShardedDataParallel's FlatParameters
        layout = fsdp1_phases
    layout = preference_ranks.for_objective(setup, eng, layout)   # DPO/KTO/ORPO/GRPO: their batch, the reference
    if p.pp == 1:
        phases, notes = layout(m, setup, eng)
    else:   # the more loaded of the first stage (embedding, micro-batches in flight) and the last (logits)
        by_stage = {stage: layout(m, setup, eng, stage) for stage in (Stage.FIRST, Stage.LAST)}
        stage = max(by_stage, key=lambda s: max(sum(c.values()) for c in by_stage[s][0].values()))
        phases, notes = by_stage[stage]
        notes = notes + [f"pipeline: the {stage.value} stage is the more loaded; figures are for it"]
    notes = list(notes) + liger.notes(model, setup.liger)
    if context_parallel.enabled(p):
        phases, cp_notes = _with_exchange(m, setup, eng, phases, cp_seq)
        notes += cp_notes
    if setup.loss is Loss.CCE:   # the tag of a loss modelled from source (the other losses' notes are single-GPU's)
        notes += cut_ce.notes(terms(m, setup)[0])
    if p.tp > 1 or p.pp > 1:
        notes.append(f"tensor/pipeline parallel: this GPU holds {m.n_layers} of {model.n_layers} layers and "
                     f"1/{p.tp} of each layer's heads and MLP width (Megatron layout, no sequence parallelism)")
    if p.pp > 1:
        notes.append(f"1F1B: the first stage holds {in_flight(setup, Stage.FIRST)} micro-batches of activations "
                     "and the embedding, the last one micro-batch, the lm_head and the logits")
    nccl = NCCL_BUFFER_BYTES if p.world > 1 else 0
    nccl_assumption = Assumption("nccl_buffer_bytes", nccl, "bytes", "Assumption, not calibrated: NCCL_BUFFSIZE 4 MiB "
                                 "per channel and peer [NCCL environment variables docs], a few hundred MiB per communicator")
    return Step(phases, tuple(notes), nccl + terms(m, setup)[1].optimizer_paged, (nccl_assumption,), m)
