"""The eval phase of an FSDP2 job, rank 0 of `world` simulated on one CPU (profiler/distributed.py's fake
process group and FakeTensorMode): the model sharded as accelerate shards it, then `plan.eval_batches`
eval steps as transformers' evaluation_loop runs them, `model(**inputs)` under no_grad (prediction_step),
and with compute_metrics each step's logits all-gathered across the ranks (gather_for_metrics ->
accelerate utils/operations.py _gpu_gather_one: an output of num_processes x the rank's logits) and
kept by EvalLoopContainer. The optimizer is built without state (it is lazy): compare without it."""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from transformers.trainer_pt_utils import EvalLoopContainer

from gpuplan.planner import Component, ModelSpec, Phase, TrainingSetup, computes_without_autocast

from .build import autocast_for, build_model
from .distributed import ShardAwareTracker, check_supported, fake_world, follow_resizes, mesh_shape, shard


def simulate_distributed_eval(model: ModelSpec, setup: TrainingSetup, batch_size: int, seq_len: int,
                              eval_batches: int = 1, accumulate_logits: bool = False) -> tuple[int, int]:
    """(rank 0's bytes before the first eval step, its peak allocated bytes over the eval steps)."""
    setup.validate()
    p = setup.parallel
    p.validate(model)
    eng = check_supported(setup)
    with fake_world(p.world, *mesh_shape(p)) as mesh:
        lm, _ = build_model(model, setup, torch.device("meta"), simulated=True)
        shard(lm, setup, mesh)
        device = torch.device("cpu")
        autocast = autocast_for(setup, device)
        if computes_without_autocast(setup.precision, eng):
            autocast = contextlib.nullcontext   # MixedPrecisionPolicy computes in 16 bit instead
        with FakeTensorMode(allow_non_fake_inputs=True):
            lm.to_empty(device=device)
            lm.eval()
            tracker = ShardAwareTracker(lm)
            with tracker, follow_resizes(tracker):
                tracker.track(list(lm.parameters()) + list(lm.buffers()), Component.WEIGHTS)
                start = tracker.current
                preds = EvalLoopContainer(do_nested_concat=True, padding_index=-100)
                world = dist.get_world_size()
                for _ in range(eval_batches):
                    tracker.mark(Phase.FORWARD, Component.ACTIVATIONS)
                    ids = torch.randint(0, lm.config.vocab_size, (batch_size, seq_len))
                    with torch.no_grad(), autocast():
                        out = lm(input_ids=ids, labels=ids)
                    logits = out.logits
                    del out
                    if accumulate_logits:
                        gathered = torch.empty(world * logits.numel(), dtype=logits.dtype, device=logits.device)
                        dist.all_gather_into_tensor(gathered, logits)
                        logits = gathered.view(-1, *logits.shape[1:])
                        del gathered
                        preds.add(logits)
                    del logits
                return start, tracker.peaks[Phase.FORWARD].total



def simulate_reference_forward(model: ModelSpec, setup: TrainingSetup, batch_size: int, seq_len: int) -> tuple[int, int]:
    """(rank 0's reference bytes before its forward, its peak allocated bytes over one no-grad forward) of a
    frozen reference prepared as TRL 1.14.0's `prepare_fsdp` prepares it under FSDP2 [trl/models/utils.py
    l.304-332]: `fully_shard` of the whole model with the policy's MixedPrecisionPolicy, one unit, then eval().
    With a short batch the peak is the all-gather: the flat output and the unsharded copy of the whole model."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard   # lazy: only this simulation wraps with FSDP2

    from gpuplan.planner import Engine, engine_of   # lazy: kept beside the one function that needs it
    from .dtypes import TORCH_DTYPES   # lazy: kept beside the one function that needs it

    setup.validate()
    p = setup.parallel
    eng = engine_of(p)
    with fake_world(p.world, *mesh_shape(p)) as mesh:
        lm, _ = build_model(model, setup, torch.device("meta"), simulated=True)
        policy = MixedPrecisionPolicy()
        if computes_without_autocast(setup.precision, eng):
            policy = MixedPrecisionPolicy(param_dtype=TORCH_DTYPES[setup.precision.compute_dtype],
                                          reduce_dtype=torch.float32)
        fully_shard(lm, mesh=mesh, mp_policy=policy, reshard_after_forward=eng is not Engine.FSDP_GRAD_OP)
        with FakeTensorMode(allow_non_fake_inputs=True):
            lm.to_empty(device=torch.device("cpu"))
            lm.eval()
            tracker = ShardAwareTracker(lm)
            with tracker, follow_resizes(tracker):
                tracker.track(list(lm.parameters()) + list(lm.buffers()), Component.WEIGHTS)
                start = tracker.current
                tracker.mark(Phase.FORWARD, Component.ACTIVATIONS)
                ids = torch.randint(0, lm.config.vocab_size, (batch_size, seq_len))
                with torch.no_grad():
                    lm(input_ids=ids)
                return start, tracker.peaks[Phase.FORWARD].total
