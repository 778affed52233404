"""FSDP1's training step per GPU (`FullyShardedDataParallel`, FULL_SHARD), as accelerate's FSDP1 plugin and
Answer.AI's fsdp_qlora wrap a transformers model, modelled from the torch 2.13 source:

- one FlatParameter per unit (TRANSFORMER_BASED_WRAP: each decoder layer, and the root holding the
  embedding, final norm and lm_head), its numel padded to a multiple of the world size and sharded
  [fsdp/_flat_param.py FlatParamHandle._get_shard]; with use_orig_params the parameters are views into it;
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
  if it differs (the 16-bit one stays referenced to the hook's end), pads it to n equal chunks, allocates
  the 1/n output, reduce-scatters, and keeps it as `_saved_grad_shard` cast to the parameter's dtype
  (`keep_low_precision_grads=False`) [_post_backward_hook, _reduce_grad, _get_reduce_scatter_tensors,
  _accumulate_sharded_grad]; everything unsharded is freed when the hook returns (FSDP2 instead keeps the
  last reduce-scatter input alive until the next one).

Checked against real FSDP1 on CPU processes with gloo (profiler/fsdp1_step.py,
data/measurements/fsdp1_step_gloo.json, tests/planner/memory/test_fsdp1.py).
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.engines import Engine, gather_dtype, reduce_dtype, shard_degree
from ..specs.enums import Component as C
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import Fsdp, Offload, ParallelSpec
from ..specs.setup import TrainingSetup
from .comm import model_bytes
from .figures import worst_phases
from .pieces import Stage, in_flight, pieces, terms
from .pieces import held as stage_share


def padded(numel: int, n: int) -> int:
    """A FlatParameter's numel padded to n equal shards [_flat_param.py FlatParamHandle._get_shard]."""
    return -(-numel // n) * n


def fsdp1_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                 stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    p, n = setup.parallel, shard_degree(setup.parallel)
    rs, st, _ = terms(m, setup)
    if not rs.full:
        raise PlannerError("--fsdp-version 1's step is modelled for full fine-tuning: with LoRA/QLoRA FSDP1's "
                           "FlatParameter gradient spans the frozen weights too; drop --fsdp-version 1 or --method")
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
    G_layers = G - G_root
    g_live = G if setup.grad_accum > 1 else 0
    all_root = pc.embedding + pc.lm_head + m.norm_params
    full = rs.full
    g_e = gather_dtype(setup.precision, eng, setup.precision.weight_dtype if full else setup.adapter_dtype).bytes
    root_numel = mb.root_gathered * root_params // all_root // g_e
    layer_numel = (mb.gathered - mb.root_gathered) // m.n_layers // g_e
    R = padded(root_numel, n) * g_e                        # the root's unsharded FlatParameter
    U = padded(layer_numel, n) * g_e                       # one decoder layer's
    mp_cast = g_e != setup.precision.weight_dtype.bytes    # MixedPrecision: the shard cast into _mp_shard first
    U_mp = U // n if mp_cast else 0
    layer_trainable = (pc.attention + pc.mlp + pc.norms - m.norm_params if full else st.trainable_params) // m.n_layers
    U_grad = layer_trainable * g_e                         # the layer's unsharded gradient in param_dtype
    rs_e = reduce_dtype(setup.precision, eng, setup.precision.weight_dtype if full else setup.adapter_dtype).bytes
    cast = rs_e != g_e
    # the post-backward hook: the reduce_dtype copy (if the dtype differs), the padded input (if the numel
    # does not divide), the 1/n output; the flat gradient in param_dtype stays referenced until it returns
    pad = padded(layer_trainable, n) != layer_trainable
    U_hook = layer_trainable * rs_e * cast + padded(layer_trainable, n) * rs_e * pad + padded(layer_trainable, n) // n * rs_e
    head_grad = head * g_e if full else 0
    norm_grad = m.norm_params * g_e if full else 0        # the final norm's gradient waits for the root's split too
    acts = pz.acts * k
    G_one = G_layers // max(m.n_layers, 1)

    def phase(**c: int) -> dict:
        return {C.WEIGHTS: W + c.pop("w", 0), C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(w=R, g=g_live, a=acts + pz.fwd_extra, l=pz.logit_fwd, t=0),
           # a layer's all-gather out of its low-precision shard
           phase(w=R + U + U_mp, g=g_live, a=0, l=0, t=0)]
    # backward starts with the root gathered and the last layer prefetched by the root's pre-backward hook
    bwd = [phase(w=R + U, g=g_live, a=acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(w=R + U, g=g_live, a=acts, l=0, t=head_grad + pz.logit_grad16)]
    # inside the last layer's backward: it and the next one gathered, its parameters' gradients accumulating;
    # at the split's backward the flat gradient is concatenated beside them
    inside = pz.recompute + pz.layer_transient + head_grad + norm_grad
    bwd.append(phase(w=R + 2 * U, g=g_live, a=acts, l=0, t=inside + U_grad))
    bwd.append(phase(w=R + 2 * U, g=g_live, a=acts, l=0, t=head_grad + norm_grad + 2 * U_grad))
    # its post-backward hook: resharded, the flat gradient with the reduce-scatter's buffers
    bwd.append(phase(w=R + U, g=g_live, a=acts, l=0, t=head_grad + norm_grad + U_grad + U_hook))
    # the first layer (backward's last): nothing left to prefetch, one layer's gradients still to reduce
    last_acts = pz.acts * k // max(m.n_layers, 1)
    bwd.append(phase(w=R + U, g=max(g_live, G_layers - G_one), a=last_acts, l=0,
                     t=pz.recompute + pz.layer_transient + head_grad + norm_grad + 2 * U_grad))
    # the embedding's backward, then the root's split: every root gradient beside the concatenated one
    root_trainable = root_params if full else 0
    root_grad = root_trainable * g_e
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=pz.outside, l=0,
                     t=pz.layer_transient + pz.embed_grad + head_grad + norm_grad))
    bwd.append(phase(w=R, g=max(g_live, G_layers), a=0, l=0, t=2 * root_grad))
    root_hook = (root_trainable * rs_e * cast + padded(root_trainable, n) * rs_e * (padded(root_trainable, n) != root_trainable)
                 + padded(root_trainable, n) // n * rs_e)
    bwd.append(phase(g=max(g_live, G_layers), a=0, l=0, t=root_grad + root_hook))
    opt = phase(g=G, a=0, l=0, t=0 if offload else int(st.optimizer_step_temporaries * frac) // n)
    notes = [f"FSDP1 {eng.value}: one FlatParameter per decoder layer and one for the root (embedding, lm_head, "
             f"final norm), sharded over {n} GPUs; limit_all_gathers, BACKWARD_PRE prefetch, use_orig_params"]
    return worst_phases(fwd, bwd, opt), notes


def step_setup(setup: TrainingSetup, fsdp_version: int | None) -> TrainingSetup:
    """`setup` with FSDP1's step where `--fsdp-version 1` asks for it and it is modelled (full fine-tuning,
    FULL_SHARD without offload, TP, PP or CP); otherwise unchanged (FSDP1's save is then still planned, its
    step as FSDP2's)."""
    p = setup.parallel
    if fsdp_version != 1 or p.fsdp is not Fsdp.FULL or p.offload is not Offload.NONE or p.tp > 1 or p.pp > 1 \
            or p.cp > 1 or setup.peft:   # peft: the FlatParameter's gradient covers its frozen part (not modelled)
        return setup
    return replace(setup, parallel=replace(p, fsdp_version=1))
