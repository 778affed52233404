"""estimate(): peak GPU memory of one training step, per phase and component, no torch needed.

Phases [DESIGN.md, "The peak is per phase, not a sum"]: the forward (peak inside the loss), the
backward (its start, the recompute of the last layer under checkpointing, and its end), and the
optimizer step. Optimizer state is live throughout: the steady state from the second step on.
"""
from __future__ import annotations

from dataclasses import dataclass

from .layers import ActivationBytes, activation_bytes, residual_dtype
from ..io.catalog import assumptions
from ..specs.gpu import GpuSpec
from ..specs.enums import Component as C
from ..specs.enums import Loss, Method, Phase, QuantType
from ..specs.memo import per_model
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from .result import Assumption, MemoryEstimate
from ..specs.setup import Checkpointing, TrainingSetup
from .states import States, states


def _logits(m: ModelSpec, setup: TrainingSetup, T: int) -> tuple[int, int, int]:
    """Bytes of the loss for T tokens: (forward peak, saved at forward end, backward temporaries).

    transformers ForCausalLMLoss: the 16-bit logits, `logits.float()` (a copy unless already fp32),
    log_softmax's fp32 output (saved); backward: the fp32 gradient of log_softmax's output and of
    its input [transformers/loss/loss_utils.py; aten log_softmax_backward_data].
    """
    V, e = m.vocab, setup.precision.compute_dtype.bytes
    if setup.loss is Loss.CHUNKED:
        return _fused_linear_cross_entropy(m, setup, T)
    upcast = 4 * V if e < 4 else 0
    softcap = 2 * e * V if m.final_logit_softcap else 0   # Gemma-2: tanh saved, div/mul transients
    fwd = e * V + upcast + 4 * V + softcap
    saved = 4 * V + (e * V if m.final_logit_softcap else 0)
    return int(T * fwd), int(T * saved), int(T * 8 * V)


def _fused_linear_cross_entropy(m: ModelSpec, setup: TrainingSetup, T: int) -> tuple[int, int, int]:
    """Liger's fused linear cross-entropy [liger_kernel/ops/fused_linear_cross_entropy.py; simulated
    by profiler/chunked_loss.py]: gradients computed in the forward, chunk by chunk of
    `rows` ~ T*h/V tokens (a power of two), so the (T, V) logits never exist.

    Forward: the input gradient (T, h) and, when the lm_head trains, its weight gradient (V, h),
    both kept for backward; per chunk the 16-bit logits (rows, V) and, where `@` casts (autocast,
    mixed dtypes), two (rows, h) temporaries and a transient 16-bit copy of a frozen fp32 lm_head.
    """
    h, V, e = m.hidden, m.vocab, setup.precision.compute_dtype.bytes
    x = residual_dtype(setup).bytes           # the final norm's output: the residual stream's dtype
    w = setup.base_weight_dtype.bytes          # the lm_head's
    inc = -(-V // h)
    rows = min(1 << (max(-(-T // inc), 1) - 1).bit_length(), T)
    autocast = setup.precision.autocast
    mm_out = x == w and (not autocast or x == e)
    grad_x, loss_1d = T * h * x, 4 * T
    grad_w = V * h * w if setup.method is Method.FULL else 0
    chunk = rows * V * (x if mm_out else e)
    temps = 0 if mm_out else 2 * rows * h * e
    cast = V * h * e if (autocast and w > e and setup.method is not Method.FULL) else 0   # not cached: frozen
    return grad_x + loss_1d + grad_w + chunk + temps + cast, grad_x + grad_w, 0


_SIZES = ("batch_size", "seq_len", "grad_accum")
_TERMS: dict[tuple, tuple] = {}
_TERM_FIELDS = tuple(f for f in TrainingSetup.__dataclass_fields__ if f not in ("batch_size", "grad_accum"))
_DICTS: dict[tuple, tuple] = {}
_DICT_FIELDS = tuple(f for f in TrainingSetup.__dataclass_fields__ if f not in _SIZES)


def _per_token_terms(model: ModelSpec, setup: TrainingSetup) -> tuple[States, ActivationBytes, dict]:
    """states() and activation_bytes(), which do not depend on batch size or accumulation, and
    the resolved setup dict, which depends on no size: memoized per model object and setup
    without them, so that sweeps (fit, recommend, the dashboard's curves) compute them once."""
    st, act = per_model(_TERMS, (id(model),) + tuple(getattr(setup, f) for f in _TERM_FIELDS), model,
                    lambda: (states(model, setup), activation_bytes(model, setup)))

    def make_dict() -> dict:
        d = setup.to_dict(model)
        d["model"] = model.name
        return d

    cached = per_model(_DICTS, (id(model),) + tuple(getattr(setup, f) for f in _DICT_FIELDS), model, make_dict)
    setup_dict = {k: dict(v) if isinstance(v, dict) else v for k, v in cached.items()}
    for size in _SIZES:
        setup_dict[size] = getattr(setup, size)
    return st, act, setup_dict


@dataclass(frozen=True)
class Figures:
    peak_phase: Phase
    totals: dict[Phase, int]           # allocated bytes at each phase's peak
    allocated: int
    reserved: int
    device_total: int
    components: dict[C, int]           # at the peak, with allocator slack and CUDA context
    assumptions: tuple[Assumption, ...]


def peak_figures(phases: dict[Phase, dict[C, int]], outside_allocator: int = 0) -> Figures:
    """The three figures from tensor bytes per phase and component: allocated at the largest
    phase; reserved adds the allocator's slack; the device total adds the CUDA context and
    `outside_allocator` (paged optimizer state, NCCL buffers), both assumptions in data/."""
    totals = {p: sum(comps.values()) for p, comps in phases.items()}
    peak_phase = max(totals, key=lambda p: totals[p])
    allocated = totals[peak_phase]
    a = assumptions()
    slack = int(allocated * a["allocator_slack_fraction"]["value"])
    context = int(a["cuda_context_bytes"]["value"])
    components = dict(phases[peak_phase])
    components[C.ALLOCATOR_SLACK] = slack
    components[C.CUDA_CONTEXT] = context + outside_allocator
    used = (
        Assumption("cuda_context_bytes", context, "bytes", a["cuda_context_bytes"]["source"]),
        Assumption("allocator_slack_fraction", a["allocator_slack_fraction"]["value"], "fraction",
                   a["allocator_slack_fraction"]["source"]),
    )
    return Figures(peak_phase, totals, allocated, allocated + slack, allocated + slack + context + outside_allocator,
                   components, used)


def estimate(model: ModelSpec, setup: TrainingSetup, gpus: tuple[GpuSpec, ...] = ()) -> MemoryEstimate:
    """MemoryEstimate in bytes for one steady-state training step of `model` under `setup`."""
    setup.validate()
    requested, setup = setup, setup.for_model(model)
    if not setup.parallel.single_gpu:   # per-GPU plans of multi-GPU and offloaded steps
        from .sharding import estimate_parallel

        return estimate_parallel(model, setup, gpus)
    st, act, setup_dict = _per_token_terms(model, setup)
    T = setup.batch_size * setup.seq_len
    L = model.n_layers
    ckpt = setup.checkpointing is Checkpointing.FULL
    e = setup.precision.compute_dtype.bytes
    r = residual_dtype(setup).bytes
    W, G, O = st.weights, st.gradients, st.optimizer_state
    g_live = G if setup.grad_accum > 1 else 0          # accumulated gradients during later micro-batches
    logit_fwd, logit_saved, logit_bwd = _logits(model, setup, T)

    saved_per_layer = act.ckpt_per_layer if ckpt else act.per_layer
    acts = T * (L * saved_per_layer + act.outside)
    head_copy = act.head_copy
    all_copies = act.layer_copies + head_copy
    adapters = act.adapter_copies          # cached by autocast through the forward, whatever checkpointing
    # autocast caches copies of trainable weights until it exits; copies of frozen weights are
    # only kept when a matmul saves them, which checkpointing prevents (the lm_head's excepted)
    fwd_copies = all_copies if (setup.method is Method.FULL or not ckpt) else head_copy
    fwd_acts = acts + fwd_copies + adapters

    phases: dict[Phase, dict[C, int]] = {}
    phases[Phase.FORWARD] = {C.WEIGHTS: W, C.GRADIENTS: g_live, C.OPTIMIZER_STATE: O,
                             C.ACTIVATIONS: fwd_acts, C.LOGITS: logit_fwd, C.TEMPORARIES: 0}

    # backward: (1) its start, (2) under checkpointing the recompute of the last layer, (3) its end
    layer_transient = T * (2 * r * model.hidden + 2 * e * model.intermediate)
    saved_head = act.head_copy_saved
    bwd_copies = saved_head if ckpt else act.layer_copies + saved_head + adapters
    start = {C.GRADIENTS: g_live, C.ACTIVATIONS: acts + bwd_copies, C.LOGITS: logit_saved,
             C.TEMPORARIES: logit_bwd}
    candidates = [start]
    if ckpt:
        layer_copy = (act.layer_copies + adapters) // max(L, 1)
        candidates.append({C.GRADIENTS: g_live, C.ACTIVATIONS: acts + saved_head,
                           C.LOGITS: 0, C.TEMPORARIES: T * act.per_layer + layer_copy + layer_transient})
    # the embedding's backward ends it: embedding_dense_backward builds a (vocab, hidden) gradient;
    # tied to the lm_head it is then added into the lm_head's, with a second such buffer
    # (measured in the simulated step; aten/src/ATen/native/Embedding.cpp)
    embed_grad = 0
    if setup.method is Method.FULL:
        embed_grad = (2 if model.tied_embeddings else 1) * model.vocab * model.hidden * setup.precision.weight_dtype.bytes
    candidates.append({C.GRADIENTS: G - (0 if model.tied_embeddings else embed_grad), C.ACTIVATIONS: T * act.outside,
                       C.LOGITS: 0, C.TEMPORARIES: layer_transient + embed_grad})
    worst = max(candidates, key=lambda c: sum(c.values()))
    phases[Phase.BACKWARD] = {C.WEIGHTS: W, C.OPTIMIZER_STATE: O, **worst}
    phases[Phase.OPTIMIZER] = {C.WEIGHTS: W, C.GRADIENTS: G, C.OPTIMIZER_STATE: O, C.ACTIVATIONS: 0,
                               C.LOGITS: 0, C.TEMPORARIES: st.optimizer_step_temporaries}
    phases = {p: {c: int(comps.get(c, 0)) for c in C.tensor_components()} for p, comps in phases.items()}
    fig = peak_figures(phases, outside_allocator=st.optimizer_paged)
    notes = []
    if st.optimizer_paged:
        notes.append("paged optimizer state lives in CUDA unified memory: outside the allocator's figures, "
                     "counted in device total (it can be evicted to host RAM under pressure)")
    if setup.loss is Loss.CHUNKED:
        notes.append("chunked loss modelled after Liger's fused linear cross-entropy (not simulated)")
    if setup.attention is not requested.attention:
        notes.append(f"{model.name}: transformers has no SDPA attention for {model.model_type}; "
                     f"the estimate uses the eager attention it runs instead")
    if model.moe_layers:
        notes.append("MoE routed-expert activations are approximate (top-k tokens per expert)")
    if model.moe_layers and setup.method is Method.QLORA:
        # transformers 5 stores each MoE layer's experts as fused 3-D parameters, which
        # replace_with_bnb_linear (nn.Linear only) leaves unquantized [transformers/integrations/
        # bitsandbytes.py]; prepare_model_for_kbit_training then upcasts them with the rest
        experts = model.moe_layers * sum(lin.weight_count for lin in model.moe_linears if lin.experts > 1)
        extra = experts * (setup.frozen_dtype.bytes - (1 if setup.quant.quant_type is QuantType.INT8 else 0.5))
        notes.append(f"QLoRA of an MoE model: this assumes quantized experts (transformers 4.x layout); "
                     f"transformers 5 keeps its fused experts unquantized in {setup.frozen_dtype.value}, "
                     f"{extra / 2**30:,.1f} GiB more weights")
    return MemoryEstimate(
        peak_allocated_bytes=fig.allocated, peak_reserved_bytes=fig.reserved, device_total_bytes=fig.device_total,
        peak_phase=fig.peak_phase, components=fig.components, phases=fig.totals, phase_components=phases,
        params=param_counts(model), trainable_params=st.trainable_params, setup=setup_dict,
        assumptions=fig.assumptions, notes=tuple(notes),
    )


def fits(est: MemoryEstimate, gpu: GpuSpec) -> dict[str, object]:
    """Fit verdict for one GPU: headroom in bytes (negative: short by that much)."""
    headroom = gpu.memory_bytes - est.device_total_bytes
    return {"gpu": gpu.name, "memory_bytes": gpu.memory_bytes, "fits": headroom >= 0,
            "headroom_bytes": headroom}
