"""FSDP1's training step per GPU (`FullyShardedDataParallel`, FULL_SHARD), as accelerate's FSDP1 plugin and
Answer.AI's fsdp_qlora wrap a transformers model, modelled from the torch 2.13 source:

- one FlatParameter per unit (TRANSFORMER_BASED_WRAP: each decoder layer, and the root holding the
  embedding, final norm and lm_head); with use_orig_params the parameters are views into it and it is
  padded to a multiple of the world size when built [fsdp/_flat_param.py _init_flat_param_and_metadata
  l.759-762], then sharded [FlatParamHandle._get_shard];
- a unit's all-gather lands in the unsharded FlatParameter itself (`_full_param_padded`, param_dtype under
  MixedPrecision), which the parameters view: no copy-out, and nothing kept after the unit reshards
  [_flat_param.py unshard / _use_unsharded_views, _free_unsharded_flat_param]; under MixedPrecision the
  shard is first cast into `_mp_shard` (1/n, freed after the all-gather) [_use_low_precision_shard];
- the root is not resharded after forward (it is used again at once by backward) [_runtime_utils.py
  _post_forward_reshard]; a decoder layer is; `limit_all_gathers=True` bounds in-flight all-gathers to two
  by blocking the CPU [_limiter_utils.py _FreeEventQueue], which changes no allocated byte in program order;
- backward with BACKWARD_PRE: a unit's pre-backward hook unshards it (if not prefetched) and prefetches the
  next unit in backward order before its gradients are computed [_pre_backward_hook, _prefetch_handle],
  so inside a layer's backward two layers are gathered; the root's pre-backward hook (at the loss) prefetches
  the last layer;
- the gradient: autograd builds each parameter's gradient of the views, then the split's backward
  concatenates them into the unsharded flat gradient (param_dtype): for a moment both; the post-backward
  hook (on the FlatParameter's AccumulateGrad) reshards the unit, casts the flat gradient to reduce_dtype
  if it differs (the 16-bit one stays referenced to the hook's end), allocates the 1/n output (no padded
  copy: the gradient spans the padded FlatParameter), reduce-scatters, and keeps it as `_saved_grad_shard`
  cast to the parameter's dtype
  (`keep_low_precision_grads=False`) [_post_backward_hook, _reduce_grad, _get_reduce_scatter_tensors,
  _accumulate_sharded_grad]; everything unsharded is freed when the hook returns (FSDP2 instead keeps the
  last reduce-scatter input alive until the next one);
- between steps the sharded gradients outlive `zero_grad(set_to_none=True)` (it clears the parameters'
  views only) until the root's next pre-forward frees the FlatParameter's `.grad` [_runtime_utils.py
  _root_pre_forward l.594].

Checked against real FSDP1 on CPU processes with gloo (profiler/fsdp1_step.py,
data/measurements/fsdp1_step_gloo.json, tests/planner/memory/test_fsdp1.py).
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.engines import Engine, gather_dtype, reduce_dtype, shard_degree
from ..specs.enums import Component as C
from ..specs.model import ModelSpec
from ..specs.parallel import Fsdp, Offload
from ..specs.setup import TrainingSetup
from .figures import worst_phases
from .pieces import Stage
from .fsdp1_lora import adapters_unmodelled, lora_phases
from .sharded import padded, sharded_states


def hook_bytes(grad_numel: int, n: int, rs_e: int, cast: bool) -> int:
    """What a unit's post-backward hook allocates besides the unsharded flat gradient: its reduce_dtype copy
    (where the dtype differs), the copy padded to n chunks where its numel does not divide (only without
    use_orig_params, whose FlatParameters are padded when built), and the 1/n output [_runtime_utils.py
    _post_backward_hook, _get_reduce_scatter_tensors]."""
    pad = padded(grad_numel, n)
    return grad_numel * rs_e * cast + pad * rs_e * (pad != grad_numel) + pad // n * rs_e


def fsdp1_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    n = shard_degree(setup.parallel)
    sh = sharded_states(m, setup, eng, stage)
    if not sh.rs.full:   # peft's wrap: frozen layer units, each LoRA A/B a unit of its own
        notes = [f"FSDP1 {eng.value}: peft's wrap policy (HF Trainer): frozen FlatParameters per decoder layer and "
                 f"for the root, each LoRA A/B its own unit, sharded over {n} GPUs; limit_all_gathers, BACKWARD_PRE "
                 "prefetch, " + ("use_orig_params" if setup.parallel.fsdp1_orig_params else "use_orig_params=False")]
        return lora_phases(m, setup, eng, sh, stage), notes
    rs, st, pc, k, pz, mb = sh.rs, sh.st, sh.pc, sh.k, sh.pz, sh.mb
    frac, root_params, head, offload = sh.frac, sh.root_params, sh.head, sh.offload
    W, O, G, G_layers, g_live, all_root = sh.W, sh.O, sh.G, sh.G_layers, sh.g_live, sh.all_root
    full = rs.full
    g_e = gather_dtype(setup.precision, eng, setup.precision.weight_dtype if full else setup.adapter_dtype).bytes
    root_numel = mb.root_gathered * root_params // all_root // g_e
    layer_numel = (mb.gathered - mb.root_gathered) // m.n_layers // g_e
    R = padded(root_numel, n) * g_e                        # the root's unsharded FlatParameter
    U = padded(layer_numel, n) * g_e                       # one decoder layer's
    mp_cast = g_e != setup.precision.weight_dtype.bytes    # MixedPrecision: the shard cast into _mp_shard first
    U_mp = U // n if mp_cast else 0
    layer_trainable = (pc.attention + pc.mlp + pc.norms - m.norm_params if full else st.trainable_params) // m.n_layers
    rs_e = reduce_dtype(setup.precision, eng, setup.precision.weight_dtype if full else setup.adapter_dtype).bytes
    cast = rs_e != g_e
    # use_orig_params pads the FlatParameter to a multiple of n when it is built "to avoid a copy for the
    # post-backward reduce-scatter" [_flat_param.py _init_flat_param_and_metadata l.759-762], so its
    # gradient spans the padding and the hook makes no padded copy: the reduce_dtype copy (if the dtype
    # differs) and the 1/n output, the param_dtype flat gradient referenced until the hook returns
    orig = setup.parallel.fsdp1_orig_params
    grad_numel = padded(layer_trainable, n) if orig else layer_trainable
    U_grad = grad_numel * g_e                              # the layer's unsharded flat gradient in param_dtype
    U_hook = hook_bytes(grad_numel, n, rs_e, cast)
    head_grad = head * g_e if full else 0
    norm_grad = m.norm_params * g_e if full else 0        # the final norm's gradient waits for the root's split too
    acts = pz.acts * k
    G_one = G_layers // max(m.n_layers, 1)
    L = m.n_layers

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + c.pop("w", 0), C.OPTIMIZER_STATE: O, **c}

    # the step starts with last step's sharded gradients: zero_grad(set_to_none) clears the parameters'
    # views, the FlatParameter's .grad goes at the root's pre-forward [_runtime_utils.py _root_pre_forward
    # l.594, _flat_param.py _reset_flat_param_grad_info_if_needed]
    # (use_orig_params=False: the optimizer holds the FlatParameters, and zero_grad frees their gradients)
    fwd = [phase(g=G if orig else 0, a=0, l=0, t=0),
           phase(w=R, g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0),
           # a layer's all-gather out of its low-precision shard
           phase(w=R + U + U_mp, g=g_live, a=0, l=0, t=0)]
    # backward starts with the root gathered and the last layer prefetched by the root's pre-backward hook
    bwd = [phase(w=R + U, g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(w=R + U, g=g_live, a=acts, l=0, t=head_grad + pz.logit_grad_read)]
    root_w = head_grad + norm_grad   # the root's gradients so far, waiting for the embedding's
    # layer i's backward (i = L-1 first): it and the one prefetched gathered (i > 0), the layers above it
    # reduced, the saved activations of layers 0..i; inside it its parameters' gradients accumulate, at the
    # split's backward the flat gradient is concatenated beside them, then its post-backward hook reshards
    # it and reduce-scatters. The worst i is the last layer (most activations), the second (most gradients
    # reduced with two layers gathered) or the first (nothing left to prefetch).
    for i in sorted({L - 1, min(1, L - 1), 0}, reverse=True):
        two = 2 * U if i > 0 else U
        g_i = max(g_live, (L - 1 - i) * G_one)
        a_i = (acts - pz.outside) * (i + 1) // L + pz.outside
        bwd.append(phase(w=R + two, g=g_i, a=a_i, l=0, t=pz.recompute + pz.layer_transient + root_w + U_grad))
        bwd.append(phase(w=R + two, g=g_i, a=a_i, l=0, t=root_w + 2 * U_grad))
        bwd.append(phase(w=R + two - U, g=g_i, a=a_i, l=0, t=root_w + U_grad + U_hook))
    # the embedding's backward, then the root's split: every root gradient beside the concatenated one
    root_numel_grad = (padded(root_params, n) if orig else root_params) if full else 0
    root_grad = root_numel_grad * g_e
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=pz.outside, l=0,
                     t=pz.layer_transient + pz.embed_grad + root_w))
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=0, l=0, t=2 * root_grad))
    root_hook = hook_bytes(root_numel_grad, n, rs_e, cast)
    bwd.append(phase(g=max(g_live, G_layers), a=0, l=0, t=root_grad + root_hook))
    opt = phase(g=G, a=0, l=0, t=0 if offload else int(st.optimizer_step_temporaries * frac) // n)
    notes = [f"FSDP1 {eng.value}: one FlatParameter per decoder layer and one for the root (embedding, lm_head, "
             f"final norm), sharded over {n} GPUs; limit_all_gathers, BACKWARD_PRE prefetch, "
             + ("use_orig_params" if setup.parallel.fsdp1_orig_params else "use_orig_params=False")]
    if setup.grad_accum > 1:
        notes.append("FSDP1 with gradient accumulation: every micro-batch reduce-scatters into the sharded gradient "
                     "(_saved_grad_shard); under no_sync the unsharded gradients would stay instead (not modelled)")
    return worst_phases(fwd, bwd, opt), notes


def step_setup(m: ModelSpec, setup: TrainingSetup, fsdp_version: int | None, orig_params: bool = True,
               forward_prefetch: bool = False) -> tuple[TrainingSetup, str | None]:
    """(`setup` with FSDP1's step, None) where FSDP version 1 asks for it and the step is modelled (FULL_SHARD
    without offload, TP, PP or CP; full fine-tuning or plain LoRA; `orig_params`: use_orig_params; no
    `forward_prefetch`); otherwise
    (`setup` unchanged, the note saying its step is planned as FSDP2's and what FSDP1's step lacks for it, or
    None where no FSDP1 was asked for). The save phase is FSDP1's either way."""
    p = setup.parallel
    if fsdp_version != 1 or p.fsdp in (Fsdp.NONE, Fsdp.YAFSDP):
        return setup, None
    gap = ", ".join(x for x in [unmodelled(m, setup), "forward_prefetch (the next layer gathered during forward)"
                                if forward_prefetch else None] if x)
    if gap:
        return setup, (f"FSDP version 1: FSDP1's step is not modelled for {gap}; the step is planned as FSDP2's "
                       "(fully_shard)")
    return replace(setup, parallel=replace(p, fsdp_version=1, fsdp1_orig_params=orig_params)), None


def unmodelled(m: ModelSpec, setup: TrainingSetup) -> str | None:
    """What of `setup` FSDP1's step does not model (a phrase), or None."""
    p = setup.parallel
    missing = [what for what, on in (
        (f"--fsdp {p.fsdp.value} (SHARD_GRAD_OP / HYBRID_SHARD)", p.fsdp is not Fsdp.FULL),
        ("CPU offload", p.offload is not Offload.NONE),
        ("tensor, pipeline or context parallelism", p.tp > 1 or p.pp > 1 or p.cp > 1)) if on]
    if setup.peft:
        missing += [x for x in [adapters_unmodelled(m, setup)] if x]
    return ", ".join(missing) or None
