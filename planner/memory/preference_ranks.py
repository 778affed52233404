"""Preference and RL objectives (DPO, KTO, ORPO, GRPO) under FSDP2 and DeepSpeed ZeRO: the policy's step
is the sharded layout's on the objective's batch (DPO's and ORPO's chosen and rejected concatenated),
and a frozen reference is prepared the way TRL 1.14.0 prepares it [trl/trainer/dpo_trainer.py l.957-963,
kto_trainer.py l.967-972, grpo_trainer.py l.1134-1139: `prepare_deepspeed` under DeepSpeed,
`prepare_fsdp` under FSDP, else `accelerator.prepare_model(ref, evaluation_mode=True)`]. Modelled from
source; the FSDP2 reference's gather is checked against a simulated one-unit reference forward
(profiler/distributed_eval.py simulate_reference_forward), the step around it is not simulated.

- FSDP2 (`prepare_fsdp`, trl/models/utils.py l.304-329): `fully_shard(model, ...)` of the whole reference,
  one unit, with the policy's MixedPrecisionPolicy and no upcast: its 1/n shard in the dtype it was
  loaded in (the policy's) on every rank, and in its no-grad forward the whole reference gathered in the
  param dtype, twice: the unsharded parameters and the all-gather's flat output, which the forward keeps
  until the unit's post-forward [torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py
  wait_for_unshard: AllGatherState; _fsdp_state.py _post_forward frees it].
- DeepSpeed (`prepare_deepspeed`, l.237-281): ZeRO-3 shards the reference with ZeRO-3 (its 16-bit 1/n
  partition; the module running is gathered as the policy's is), any other stage initializes it with
  stage 0: the whole 16-bit module on every rank (DeepSpeedEngine casts the module to bf16/fp16,
  deepspeed/runtime/engine.py _configure_distributed_model).
- DDP runs the one-GPU step (memory/step.py _replicated_phases): `prepare_model(evaluation_mode=True)`
  replicates the reference unwrapped.
"""
from __future__ import annotations

from ..specs.engines import Engine, gather_dtype, shard_degree
from ..specs.enums import Component as C
from ..specs.enums import Objective, Phase
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import Fsdp
from ..specs.setup import TrainingSetup
from ..techniques import loss, preference
from .pieces import compute_setup, terms


def check(setup: TrainingSetup) -> None:
    """PlannerError for the preference / RL layouts not modelled on several GPUs."""
    p = setup.parallel
    if setup.objective is Objective.SFT or p.single_gpu:
        return
    if p.tp > 1 or p.pp > 1 or p.cp > 1:
        raise PlannerError(f"--objective {setup.objective.value} with --tp / --pp / --context-parallel is not modelled "
                           "(TRL's trainers run data parallel); drop them")
    if p.fsdp is Fsdp.YAFSDP:
        raise PlannerError(f"--objective {setup.objective.value} with --fsdp yafsdp is not modelled (TRL prepares a "
                           "reference with FSDP or DeepSpeed only); use --fsdp full")


def for_objective(setup: TrainingSetup, eng: Engine, layout):
    """The step's layout for `setup`'s objective: a sharded layout wrapped by `sharded_phases` for a preference
    or RL objective; DDP's and one replica's layout already run the one-GPU step (memory/step.py)."""
    check(setup)
    if setup.objective is Objective.SFT or not (eng.fsdp or eng.deepspeed):
        return layout
    return lambda model, s, e: sharded_phases(model, s, e, layout)


def reference_on_rank(model: ModelSpec, setup: TrainingSetup, eng: Engine) -> tuple[int, int]:
    """(the frozen reference's bytes resident on each rank, the bytes its no-grad forward gathers beyond
    them); (0, 0) without a frozen reference copy (peft disables the adapters; precomputed log-probs)."""
    rs = terms(model, setup)[0]
    whole = preference.reference_weight_bytes(model, rs)   # in the policy's stored dtype
    if not whole:
        return 0, 0
    n, total = shard_degree(setup.parallel), param_counts(model).total
    if eng.deepspeed:
        full16 = total * setup.precision.compute_dtype.bytes
        return (full16 // n, 0) if eng is Engine.ZERO3 else (full16, 0)
    gathered = total * gather_dtype(setup.precision, eng, rs.trainable).bytes
    return whole // n, 2 * gathered


def sharded_phases(model: ModelSpec, setup: TrainingSetup, eng: Engine, layout) -> tuple[dict, list[str]]:
    """`layout`'s phases (memory/sharded.py fsdp_phases / zero_phases) for a preference / RL objective: on
    the objective's batch, with the reference resident in every phase and its forward after the policy's,
    while the policy's saved graph and its loss's saved tensors are alive (as step.py's one-GPU
    _with_reference)."""
    check(setup)
    rs = terms(model, setup)[0]
    k = preference.sequences_per_example(rs)
    batch = setup.with_(batch_size=k * setup.batch_size) if k > 1 else setup
    phases, notes = layout(model, batch, eng)
    resident, gathered = reference_on_rank(model, setup, eng)
    out = {p: {**c, C.WEIGHTS: c[C.WEIGHTS] + resident} for p, c in phases.items()}
    if setup.objective.has_reference and not setup.precompute_ref_log_probs:
        crs = terms(model, compute_setup(batch, eng))[0]
        T = batch.batch_size * batch.seq_len
        _, logit_saved, _ = loss.loss_bytes(model, crs, T, batch.batch_size)
        fwd = out[Phase.FORWARD]
        ref = {**fwd, C.WEIGHTS: fwd[C.WEIGHTS] + gathered, C.LOGITS: logit_saved,
               C.TEMPORARIES: preference.reference_forward_bytes(model, crs, T, batch.batch_size)}
        if sum(ref.values()) > sum(fwd.values()):
            out[Phase.FORWARD] = ref
    notes = list(notes) + preference.notes(rs)
    if resident:
        where = ("sharded like the policy (ZeRO-3)" if eng is Engine.ZERO3 else
                 "whole and 16-bit on every rank (prepare_deepspeed: ZeRO stage 0)" if eng.deepspeed else
                 "one FSDP2 unit (prepare_fsdp: fully_shard of the whole model), gathered whole in its forward")
        notes.append(f"the frozen reference is {where}; modelled from TRL 1.14.0's source, not simulated")
    return out, notes
