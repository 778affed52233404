"""The terms every step layout combines: the setup resolved, its model states and activation
bytes (memoized per model object and size-free setup), and the per-GPU `Pieces` of one micro-batch."""
from __future__ import annotations

from dataclasses import dataclass, replace
from operator import attrgetter

from ..specs.engines import Engine, computes_without_autocast, gather_dtype
from ..specs.enums import Choice, Loss, NormKind, Precision
from ..specs.memo import MAX_ENTRIES, per_model
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import ParallelSpec
from ..specs.resolved import Resolved, resolve
from ..specs.setup import TrainingSetup
from ..techniques import checkpointing, context_parallel, liger, loss, tiled_mlp
from ..techniques import multimodal   # a multimodal wrapper's refusals
from .layers import ActivationBytes, activation_bytes
from .states import States, states

_TRUE = {Precision.BF16_MIXED: Precision.BF16_TRUE, Precision.FP16_MIXED: Precision.FP16_TRUE}
_TERMS: dict[tuple, tuple] = {}
_TERM_FIELDS = tuple(f for f in TrainingSetup.__dataclass_fields__ if f not in ("batch_size", "grad_accum"))
_term_key = attrgetter(*_TERM_FIELDS)     # one C call: estimate() builds this key on every call


def terms(model: ModelSpec, setup: TrainingSetup) -> tuple[Resolved, States, ActivationBytes]:
    """resolve(), states() and activation_bytes(), which do not depend on batch size or
    accumulation: memoized per model object and setup without them, so that sweeps (fit,
    recommend, the dashboard's curves) compute them once."""
    def make() -> tuple[Resolved, States, ActivationBytes]:
        rs = resolve(model, setup)
        multimodal.check(model, rs)
        return rs, states(model, rs), activation_bytes(model, rs)

    return per_model(_TERMS, (id(model), _term_key(setup)), model, make)


def resolved_states(model: ModelSpec, setup: TrainingSetup) -> States:
    return terms(model, setup)[1]


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
    embed_grad: int      # embedding backward's (vocab, hidden) gradient buffers (full fine-tuning)
    logit_grad16: int    # the logits' gradient in the compute dtype, what the lm_head's backward reads
    mlp_backward: int = 0   # inside a recomputed layer's MLP backward, beyond its recomputed tensors (mlp_backward)
    head_side: int = 0      # saved activations the head's and final norm's backward release before the layers'
    logit_grad_read: int = 0   # the logits' gradient the lm_head reads: logit_grad16 where the loss builds them
    layer_end: int = 0      # at the end of a recomputed layer's backward, in its first norm's (norm_backward)


_COMPUTE: dict[tuple, TrainingSetup] = {}


def compute_setup(setup: TrainingSetup, eng: Engine) -> TrainingSetup:
    """The setup whose activations the engine produces: `*-true` where 16-bit params replace autocast
    (memoized: a setup and an engine fix it, and estimate() asks for it several times per call)."""
    key = (setup, eng)
    hit = _COMPUTE.get(key)
    if hit is None:
        if len(_COMPUTE) > MAX_ENTRIES:
            _COMPUTE.clear()
        hit = _COMPUTE[key] = _compute_setup(setup, eng)
    return hit


def _compute_setup(setup: TrainingSetup, eng: Engine) -> TrainingSetup:
    local = replace(setup, parallel=ParallelSpec())
    if setup.peft and setup.parallel.fsdp_version == 1 and eng.fsdp:
        # FSDP1 under peft's wrap (memory/fsdp1_lora.py): MixedPrecision casts the frozen units to 16 bit while
        # accelerate's autocast stays on, and the adapters keep their dtype where peft reads it (their sharded
        # parameters, outside their own units): the activations of a 16-bit-loaded model under autocast
        if computes_without_autocast(setup.precision, eng):
            local = replace(local, base_dtype=setup.precision.compute_dtype)
        return local
    if computes_without_autocast(setup.precision, eng):
        local = replace(local, precision=_TRUE[setup.precision])
    if setup.peft and (eng.fsdp or eng.deepspeed):
        # the engine casts the adapters to the 16-bit dtype too, so peft casts no inputs up
        local = replace(local, lora=replace(local.lora, adapter_dtype=local.precision.compute_dtype))
    return local


def mlp_backward(m: ModelSpec, rs: Resolved, act: ActivationBytes, T: int) -> int:
    """Bytes live at the peak of a recomputed layer's MLP backward beyond its recomputed saved tensors, T
    tokens: the gradients at its MulBackward in the base linears' output dtype [layers.py mlp_backward_bytes];
    tiled, one tile recomputed with its workspace [techniques/tiled_mlp.py]. The one term of the one-GPU
    step's recompute point (step.py single_gpu_phases) and of the sharded layouts' (sharded.py, pipeline stages)."""
    if tiled_mlp.enabled(rs):
        return tiled_mlp.backward_bytes(m, rs, T, rs.setup.seq_len, rs.trainable.bytes)
    return int(T * act.mlp_backward)


def norm_backward(m: ModelSpec, rs: Resolved, T: int, workspace: int) -> int:
    """Bytes live at the end of a recomputed layer's backward beyond its gradients, T tokens: inside its first
    norm's. LlamaRMSNorm upcasts, `hidden_states.to(torch.float32)`, `variance = hidden_states.pow(2).mean(-1,
    keepdim=True)`, `hidden_states * torch.rsqrt(variance + eps)` [transformers 5.24 modeling_llama.py
    LlamaRMSNorm.forward]: at its PowBackward the saved fp32 input and five fp32 hidden-sized tensors (the input's
    gradient through the product, the mean's expanded gradient, pow's `2 * x` and its product), beside the
    residual stream's gradient, as the simulated FSDP2 step holds them. Elsewhere (LayerNorm, post-norm, Liger's
    kernel, an fp32 stream whose `.to` is a no-op) the layer's `workspace`."""
    r, h = rs.residual.bytes, m.hidden
    if m.norm_kind is not NormKind.RMS or m.post_norm or liger.patched(rs, "rms_norm") or r >= 4:
        return workspace
    return T * (6 * 4 * h + r * h)


def pieces(m: ModelSpec, setup: TrainingSetup, eng: Engine, stage: Stage = Stage.ALL) -> Pieces:
    cs = compute_setup(setup, eng)
    rs, _, act = terms(m, cs)
    T, L = setup.batch_size * setup.seq_len, m.n_layers
    ckpt = checkpointing.enabled(rs)
    e, r = rs.compute.bytes, rs.residual.bytes
    acts = T * (L * (act.ckpt_per_layer if ckpt else act.per_layer) + act.outside)
    # autocast weight copies (only DDP/single computes under autocast; see planner/memory/step.py)
    fwd_extra = act.layer_copies + act.head_copy if (rs.full or not ckpt) else act.head_copy
    recompute = T * act.per_layer if ckpt else 0
    if checkpointing.selective(rs):   # every k-th layer checkpointed (see planner/memory/step.py)
        n_ckpt, n_kept, above = checkpointing.layer_split(m, rs)
        acts = T * (n_ckpt * act.ckpt_per_layer + n_kept * act.per_layer + act.outside)
        if not rs.full:
            fwd_extra = act.head_copy + act.layer_copies * n_kept // L
        # the highest checkpointed layer's recompute, less the kept layers above it already done
        recompute = max(T * act.per_layer * (1 - above), 0)
    lf, ls, lb = loss.loss_bytes(m, rs, T, setup.batch_size) if stage is not Stage.FIRST else (0, 0, 0)
    embed = 0
    if rs.full:
        # tied: the lm_head's gradient, the embedding's, and their sum (measured in the simulated
        # FSDP2 step, as the single-GPU step measured two)
        w = gather_dtype(setup.precision, eng, setup.precision.weight_dtype).bytes if eng.fsdp or eng.deepspeed \
            else setup.precision.weight_dtype.bytes
        embed = (3 if m.tied_embeddings and stage is Stage.ALL else 1) * m.vocab * m.hidden * w
    if stage is Stage.LAST:
        embed = 0            # no embedding backward on the last stage
    transient = T * (2 * r * m.hidden + 2 * e * m.intermediate)   # the MLP's backward
    # the recompute point's: what the recomputed layer's MLP backward holds, as on one GPU; the head's and the
    # final norm's saved inputs (on the stage that holds them) released by then [layers.py ActivationBytes.head_side]
    mlp_bwd = mlp_backward(m, rs, act, T) if ckpt else 0
    head_side = int(T * act.head_side) if stage is not Stage.FIRST else 0
    if context_parallel.enabled(setup.parallel):
        # a layer's backward peaks in its MLP or in its attention with the exchange buffers, one after the
        # other; Ulysses saves more per layer (techniques/context_parallel.py)
        ex = context_parallel.exchange(m, rs, setup.parallel, T, context_parallel.o_proj_saved(rs))
        transient = max(transient, ex.backward)
        mlp_bwd = max(mlp_bwd, ex.backward) if ckpt else 0
        n_ckpt, n_kept, _ = checkpointing.layer_split(m, rs)
        acts += ex.saved_per_layer * n_kept
        recompute += ex.saved_per_layer if n_ckpt else 0
    logit_grad16 = 0 if stage is Stage.FIRST or setup.loss in (Loss.TRL, Loss.CCE) else int(T * e * m.vocab)
    # the layouts' lm_head backward: no (T, V) logits, so no gradient of them to read, under Liger's fused linear
    # cross-entropy (gradients computed chunk by chunk in the forward) and TRL's chunked_nll (each 256-row chunk
    # checkpointed, its logits' gradient rebuilt and read chunk by chunk [techniques/chunked_nll.py]); the
    # allocator replay (reserved.py) keeps `logit_grad16`
    chunked = setup.loss is Loss.CHUNKED or setup.loss.trl_chunked
    return Pieces(int(acts), int(fwd_extra), int(T * act.outside), int(recompute),
                  int(transient), lf, ls, lb, int(embed), logit_grad16,
                  int(mlp_bwd), head_side, 0 if chunked else logit_grad16,
                  norm_backward(m, rs, T, int(transient)) if ckpt else 0)


def in_flight(setup: TrainingSetup, stage: Stage = Stage.ALL) -> int:
    """Micro-batches whose activations a pipeline stage holds under 1F1B: min(pp, micro-batches) on the first."""
    return min(setup.parallel.pp, setup.grad_accum) if stage is Stage.FIRST else 1


def held(m: ModelSpec, stage: Stage) -> tuple[float, int, int]:
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
        held_params = pc.total - pc.embedding + (head if m.tied_embeddings else 0)
        return held_params / pc.total, head + m.norm_params, head
    return 1.0, pc.embedding + pc.lm_head + m.norm_params, 0 if m.tied_embeddings else head
