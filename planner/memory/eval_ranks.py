"""What one rank holds through an evaluation of a data-parallel run (DDP, FSDP2, DeepSpeed ZeRO), beside the
eval batch's own tensors: the model states between steps and the parameters a no-grad forward gathers.

Every rank evaluates its own eval batch (the eval DataLoader is sharded like the training one,
`accelerator.prepare(dataloader)` in transformers/trainer.py get_eval_dataloader), so activations and
logits are the single-GPU eval's at per_device_eval_batch_size, in the dtype the engine computes in
(planner/memory/pieces.py compute_setup: FSDP2's and DeepSpeed's 16-bit parameters replace autocast).

- DDP: the whole model and optimizer state, and the reducer's gradient buckets, allocated once at
  construction and kept (gradient_as_bucket_view=False, HF Trainer's default) [torch/nn/parallel/
  distributed.py, reducer.cpp initialize_buckets]; a forward under no_grad prepares no reduction.
- FSDP2: the 1/n shards; inside the forward the root unit (gathered by the root's pre-forward), the
  decoder layer running, and the last all-gather's flat output beside its copy-out
  [_fsdp_collectives.py foreach_all_gather, foreach_all_gather_copy_out; _fsdp_param_group.py
  wait_for_unshard keeps it as AllGatherState until the next all-gather]; every unit reshards in its
  post-forward (accelerate passes reshard_after_forward to the root too), and the root's frees the
  last all-gather output [_fsdp_state.py _post_forward]; under SHARD_GRAD_OP (reshard_after_forward
  False) the units stay gathered, since only a backward would reshard them. Checked against the
  simulated FSDP2 eval (profiler/distributed_eval.py).
- ZeRO-1/2: the 16-bit module whole, the fp32 master and Adam partitions, ZeRO-2's reduce bucket;
  ZeRO-3: the 16-bit partition, the module being run and the prefetch bucket, its flat gradient
  partition buffer (the same terms as planner/memory/sharded.py zero_phases' forward).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..specs.engines import Engine, engine_of, shard_degree
from ..specs.enums import Precision
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import Offload, ParallelSpec
from ..specs.setup import TrainingSetup
from .comm import model_bytes
from .pieces import resolved_states, terms
from .sharded import PREFETCH_BUCKET_PER_H2, REDUCE_BUCKET_PER_H2


@dataclass(frozen=True)
class RankStates:
    """Bytes one rank holds during evaluation outside the eval batch's tensors."""

    weights: int           # resident parameters (shards, or the whole module)
    optimizer: int         # optimizer state (and DeepSpeed's fp32 master partition with the weights)
    gradients: int         # DDP buckets, ZeRO buffers kept between steps
    root: int              # FSDP2: the root unit, gathered from the start of the forward on
    layer: int             # FSDP2: one decoder layer's unit gathered; ZeRO-3: the live module + prefetch
    held_layers: bool      # FSDP2 SHARD_GRAD_OP: every layer stays gathered once its forward ran
    replicas: int          # ranks whose eval logits gather_for_metrics concatenates on every rank
    note: str


def check_eval_parallel(p: ParallelSpec) -> None:
    """PlannerError for parallel layouts whose eval phase is not modelled."""
    if p.tp > 1 or p.pp > 1 or p.cp > 1:
        raise PlannerError("the eval phase with --tp / --pp / --context-parallel is not modelled (its forward "
                           "splits the batch or the layers across ranks); plan it without them")


def rank_states(model: ModelSpec, setup: TrainingSetup) -> RankStates:
    """RankStates of `setup`'s engine; the single-GPU case is `ParallelSpec()`."""
    p = setup.parallel
    check_eval_parallel(p)
    eng = engine_of(p)
    rs, st, _ = terms(model, replace(setup, parallel=ParallelSpec()))
    if eng in (Engine.SINGLE, Engine.DDP):
        buckets = st.gradients if eng is Engine.DDP else 0
        return RankStates(st.weights, st.optimizer_state, buckets, 0, 0, False, p.replicas,
                          "DDP: every rank holds the model, its optimizer state and the gradient buckets (modelled "
                          "from source, not simulated: DDP cannot run on fake tensors)"
                          if eng is Engine.DDP else "")
    if eng is Engine.YAFSDP:
        raise PlannerError("the eval phase under --fsdp yafsdp is not modelled (its forward gathers into reused "
                           "super-tensor buffers); plan it with --fsdp full")
    n = shard_degree(p)
    if eng.fsdp:
        return _fsdp(model, setup, eng, n, st)
    return _zero(model, setup, eng, n)


def _fsdp(model: ModelSpec, setup: TrainingSetup, eng: Engine, n: int, st) -> RankStates:
    p = setup.parallel
    offload = p.offload is not Offload.NONE   # CPUOffloadPolicy: the shards live in host memory
    mb = model_bytes(model, replace(setup, parallel=ParallelSpec(fsdp=p.fsdp, gpus=p.gpus, nodes=p.nodes)))
    R = mb.root_gathered
    U = (mb.gathered - mb.root_gathered) // model.n_layers
    W = 0 if offload else st.weights // n
    O = 0 if offload else st.optimizer_state // n
    return RankStates(W, O, 0, R, U, eng is Engine.FSDP_GRAD_OP, p.replicas,
                      f"FSDP2 {eng.value}: each rank evaluates its own batch on its 1/{n} shards, gathering the root "
                      "and one decoder layer at a time" + (" (SHARD_GRAD_OP keeps every layer gathered: no backward "
                                                         "reshards them)" if eng is Engine.FSDP_GRAD_OP else ""))


def _zero(model: ModelSpec, setup: TrainingSetup, eng: Engine, n: int) -> RankStates:
    """zero_phases' forward terms (planner/memory/sharded.py) between steps, grad_accum 1."""
    p = setup.parallel
    rs, st, _ = terms(model, setup)
    pc = param_counts(model)
    e16 = setup.precision.compute_dtype.bytes
    mixed = e16 < 4
    trainable = st.trainable_params
    full16 = st.weights if rs.quantized is not None else e16 * pc.total
    h2 = model.hidden * model.hidden
    master = 4 * trainable // n if mixed else 0
    opt_all = (resolved_states(model, replace(setup, precision=Precision.FP32)).optimizer_state
               if rs.quantized is None else st.optimizer_state)
    opt_state = opt_all // n
    if p.offload is not Offload.NONE:
        master = opt_state = 0
    largest = max(model.vocab * model.hidden, max((lin.weight_count for lin in model.dense_linears + model.moe_linears),
                                                  default=0))
    live = e16 * (largest + int(PREFETCH_BUCKET_PER_H2 * h2)) if eng is Engine.ZERO3 else 0
    W = ((0 if p.offload is Offload.PARAMS else full16 // n) if eng is Engine.ZERO3 else full16)
    bucket = int(REDUCE_BUCKET_PER_H2 * h2) * e16
    grad16 = trainable * e16
    G3 = grad16 // n + bucket if p.offload is Offload.NONE else bucket
    between = {Engine.ZERO1: 0, Engine.ZERO2: bucket, Engine.ZERO3: G3}[eng]
    return RankStates(W + master, opt_state, between, 0, live, False, p.replicas,
                      f"DeepSpeed {eng.value}: each rank evaluates its own batch on the 16-bit module"
                      + (f" partitioned over {n} GPUs, the module being run gathered" if eng is Engine.ZERO3 else "")
                      + " (modelled from source, not simulated)")
