"""FSDP1's training step per GPU for LoRA (FULL_SHARD), as HF Trainer wraps a peft model, modelled from the
torch 2.13 source and checked against real FSDP1 over gloo (profiler/fsdp1_step.py, benchmarks/fsdp1_gloo.py).

The wrapping: HF Trainer replaces the FSDP1 plugin's policy for a peft model with peft's
`fsdp_auto_wrap_policy` [transformers 5.24 distributed/fsdp.py update_fsdp_plugin_peft, called from
Trainer._inner_training_loop], which wraps every leaf module whose weight is trainable as its own unit
besides the decoder layers [peft 0.21 utils/other.py fsdp_auto_wrap_policy: lambda_policy_fn OR
transformer_auto_wrap_policy]. So each LoRA A and B is a FlatParameter of its own, and the decoder layers' and
the root's FlatParameters hold only frozen weights (`requires_grad=False` [_flat_param.py
_validate_tensors_to_flatten: any trainable tensor makes the FlatParameter trainable]): they have no gradient
at all, flat or not. What differs from full fine-tuning (memory/fsdp1.py):

- the frozen units get no post-backward hook on an AccumulateGrad; a multi-grad hook on the unit's inputs
  reshards them once their gradients exist [_runtime_utils.py _register_post_backward_reshard_only_hook], so
  a decoder layer stays gathered to the end of its backward, and the root (whose input, the token ids, needs
  no gradient) until the end-of-backward callback;
- BACKWARD_PRE prefetches the unit before the current one in post-forward order [_exec_order_utils.py
  get_handle_to_backward_prefetch]: nested LoRA units finish their forward before their layer's, so the layer's
  own pre-backward prefetches its last LoRA unit (a few KiB), and only the layer's first LoRA unit in forward
  order (q_proj's A where q_proj is a target) prefetches the layer below. Inside a layer's backward one layer
  is gathered through its recompute and MLP; two only from its attention inputs' backward to its end;
- every LoRA unit all-gathers, computes and reduce-scatters its own gradient: a few KiB each.
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.engines import Engine, gather_dtype, reduce_dtype
from ..specs.enums import Component as C
from ..specs.enums import LoraVariant, MlpKind
from ..specs.errors import PlannerError
from ..specs.model import LinearRole, ModelSpec
from ..specs.resolved import AdapterKind, resolve
from ..specs.setup import TrainingSetup
from ..techniques import ADAPTERS, quantization
from .figures import worst_phases
from .pieces import Stage, compute_setup, terms
from .sharded import ShardedStates, padded


def adapters_unmodelled(m: ModelSpec, setup: TrainingSetup) -> str | None:
    """What of an adapter setup FSDP1's LoRA step does not model (a phrase), or None for plain LoRA on dense
    layers."""
    rs = resolve(m, setup)
    a = rs.adapters
    if rs.quantized is not None:
        return "QLoRA (bitsandbytes 4-bit FlatParameters)"
    if a is None or a.kind is not AdapterKind.LORA:
        return f"--method {setup.method.value}"
    if setup.lora.variant is not LoraVariant.NONE:
        return f"--lora-variant {setup.lora.variant.value}"
    for what, on in (("DoRA", a.use_dora), ("LoRA outside the decoder layers or modules_to_save",
                                            a.embedding_lora or a.saved_copies),
                     ("MoE layers", a.expert_ranks or a.router or m.moe_layers)):
        if on:
            return what
    return None


def check(m: ModelSpec, setup: TrainingSetup) -> None:
    """Refuses, in one line, the adapter setups FSDP1's LoRA step does not model."""
    gap = adapters_unmodelled(m, setup)
    if gap:
        raise PlannerError(f"--fsdp-version 1's step models full fine-tuning and plain LoRA (peft's FSDP wrap: each "
                           f"LoRA A/B its own unit), not {gap}: drop --fsdp-version 1 to plan FSDP2's step")


def attention_input_backward(m: ModelSpec, sh: ShardedStates, T: int) -> int:
    """Bytes live besides the saved activations when the layer below is prefetched: at the pre-backward of the
    layer's first LoRA unit in forward order, the adapter of its first adapted attention input projection (q_proj
    of q/k/v). Autograd runs the later-created k/v branches first, so by then their backward is done: left are the
    layer input the first norm saved (fp32), what that projection's adapter saved (its input, A's output), the
    gradient of that projection's output, the input gradient k/v accumulated into the norm output's, and the layer
    output's gradient on the residual stream [transformers 5.24 modeling_llama.py LlamaDecoderLayer.forward,
    LlamaAttention.forward; torch autograd's ready queue orders nodes by sequence number, latest first]. Where no
    q/k/v is adapted the first LoRA unit is o_proj's or the MLP's, whose backward comes earlier: then the layer's
    whole recompute and MLP backward, a bound (not measured)."""
    rs = sh.rs
    e, r = rs.compute.bytes, rs.residual.bytes
    ins = [lin for lin in m.dense_linears if lin.block == "attn" and lin.role is LinearRole.INPUT
           and lin.name in rs.adapters.targets]
    if not ins:
        return sh.pz.recompute + sh.pz.layer_transient
    first = ins[0]
    only = replace(rs, adapters=replace(rs.adapters, targets=(first.name,)))
    saved = ADAPTERS[rs.adapters.kind].saved_bytes_per_layer(m, only)
    return int(T * (4 * m.hidden + saved + first.out_features * e + e * m.hidden + r * m.hidden))


def mlp_forward(m: ModelSpec, sh: ShardedStates, T: int) -> int:
    """Bytes live inside a layer's MLP forward beyond its saved activations. Checkpointed (non-reentrant: no
    tensor is kept): the gated MLP's `act_fn(gate_proj(x)) * up_proj(x)` holds the activation, up's output and
    the product, or, where up_proj is a LoRA target, at peft's `result + lora_B(...) * scaling` the activation,
    the base output, the scaled adapter output and their sum (a plain MLP: fc1's output and the activation, or
    fc1's sum), beside the MLP's input (the second norm's output) and the residual. Not checkpointed: every
    such tensor is saved, except the product a frozen down_proj does not save (no weight gradient), alive
    with down_proj's output [transformers 5.24 modeling_llama.py LlamaMLP.forward, LlamaDecoderLayer.forward;
    peft 0.21 tuners/lora/layer.py Linear.forward]."""
    rs = sh.rs
    r, o = rs.residual.bytes, quantization.base_linear_out_bytes(rs)
    targets = set(rs.adapters.targets)
    if not sh.pz.recompute:
        outs = {lin.name for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.OUTPUT}
        return int(T * (o * m.intermediate * (not targets & outs) + r * m.hidden))
    if m.mlp_kind is MlpKind.GATED:   # up_proj (or Phi-3's fused gate_up_proj) adapted: one more at its sum
        live = 3 + bool(targets & {"up_proj", "gate_up_proj"})
    else:                             # fc1's output and the activation's; fc1 adapted: its sum instead
        live = 2 + any(lin.name in targets for lin in m.dense_linears if lin.block == "mlp"
                       and lin.role is LinearRole.INPUT)
    return int(T * (o * m.intermediate * live + 2 * r * m.hidden))


def lora_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine, sh: ShardedStates,
                stage: Stage = Stage.ALL) -> dict:
    check(m, setup)
    rs, st, pc, k, pz, n = sh.rs, sh.st, sh.pc, sh.k, sh.pz, sh.n
    W, O, G, g_live = sh.W, sh.O, sh.G, sh.g_live
    L = m.n_layers
    base = rs.frozen
    g_b = gather_dtype(setup.precision, eng, base).bytes       # MixedPrecision's param_dtype, or as stored
    R = padded(sh.root_params, n) * g_b                         # the root's unsharded FlatParameter (frozen)
    layer_numel = (pc.attention + pc.mlp + pc.norms - m.norm_params) // L
    U = padded(layer_numel, n) * g_b                            # one decoder layer's (frozen base and norms)
    U_mp = U // n if g_b != base.bytes else 0                   # the shard cast into _mp_shard first
    # the largest LoRA unit (A: in x r, B: r x out) gathered, its flat gradient, reduce_dtype copy and shard
    a = rs.adapters
    unit = max((a.r * max(lin.in_features, lin.out_features) for lin in m.dense_linears if lin.name in a.targets),
               default=0)
    g_a = gather_dtype(setup.precision, eng, a.dtype).bytes
    rs_a = reduce_dtype(setup.precision, eng, a.dtype).bytes
    lora_w = padded(unit, n) * g_a
    lora_hook = padded(unit, n) * (g_a + rs_a * (rs_a != g_a) + rs_a // n)
    acts = pz.acts * k
    T = setup.batch_size * setup.seq_len
    # inside the layers the final norm's saved tensors do not exist yet (forward) or are released (backward)
    # [layers.py ActivationBytes.head_side, as step.py takes it off]
    head_side = int(T * terms(m, compute_setup(setup, eng))[2].head_side)
    attn_in = attention_input_backward(m, sh, T)
    G_one = G // max(L, 1)

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + c.pop("w", 0), C.OPTIMIZER_STATE: O, **c}

    # last step's sharded adapter gradients go at the root's pre-forward, as under full fine-tuning (at
    # zero_grad without use_orig_params)
    fwd = [phase(g=G if setup.parallel.fsdp1_orig_params else 0, a=0, l=0, t=0),
           phase(w=R, g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0),
           phase(w=R + U + U_mp + lora_w, g=g_live, a=0, l=0, t=0),
           # inside the last layer's MLP forward (no logits yet)
           phase(w=R + U + lora_w, g=g_live, a=acts - head_side, l=0, t=mlp_forward(m, sh, T))]
    # the root's pre-backward prefetches the last layer
    bwd = [phase(w=R + U, g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(w=R + U, g=g_live, a=acts, l=0, t=pz.logit_grad16)]
    for i in sorted({L - 1, min(1, L - 1), 0}, reverse=True):
        g_i = max(g_live, (L - 1 - i) * G_one)
        a_i = (acts - pz.outside) * (i + 1) // L + pz.outside - head_side
        # its recompute and MLP backward with itself gathered (and a LoRA unit's gradient hook)
        bwd.append(phase(w=R + U + lora_w, g=g_i, a=a_i, l=0, t=pz.recompute + pz.layer_transient + lora_hook))
        if i > 0:   # its attention inputs' backward with the layer below prefetched: of its own activations
            # only what attn_in counts is left (not checkpointed: the others are freed by their backward)
            a_b = a_i if pz.recompute else (acts - pz.outside) * i // L + pz.outside - head_side
            # (its all-gather out of the 16-bit shard: that _mp_shard lives to the all-gather's end)
            bwd.append(phase(w=R + 2 * U + U_mp + lora_w, g=g_i, a=a_b, l=0, t=attn_in + lora_hook))
    bwd.append(phase(w=R, g=max(g_live, G), a=pz.outside, l=0, t=0))
    opt = phase(g=G, a=0, l=0, t=0 if sh.offload else int(st.optimizer_step_temporaries * sh.frac) // n)
    return worst_phases(fwd, bwd, opt)
