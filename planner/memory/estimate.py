"""estimate(): peak GPU memory of one training step, per phase and component, no torch needed.

The front door of planner/memory: it validates the setup, has memory/step.py build the step of
the most loaded GPU, and turns its live bytes into the three figures (memory/figures.py).
"""
from __future__ import annotations

from dataclasses import replace
from operator import attrgetter

from ..specs.engines import engine_of
from ..specs.gpu import GpuSpec
from ..specs.memo import per_model
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import ParallelSpec
from ..specs.resolved import virtual_tokens
from ..specs.setup import TrainingSetup
from ..techniques import masks, reward
from ..techniques import multimodal   # a multimodal wrapper's refusals
from .comm import communication_bytes
from .figures import peak_figures
from .offload import host_bytes_per_node, nvme_bytes_per_node
from .pieces import terms
from .reserved import NOT_REPLAYED, fragmentation_risk, reserved_for
from .result import MemoryEstimate
from .step import parallel_step, single_gpu_step
from .ppo_step import ppo_step   # PPO (TRL 1.12): policy, value, reference and reward models
from ..specs.enums import Objective

_SIZES = ("batch_size", "seq_len", "grad_accum")
_DICTS: dict[tuple, tuple] = {}
_DICT_FIELDS = tuple(f for f in TrainingSetup.__dataclass_fields__ if f not in _SIZES)
_dict_key = attrgetter(*_DICT_FIELDS)


def _setup_dict(model: ModelSpec, setup: TrainingSetup) -> dict:
    """setup.to_dict(model) with the model's name, memoized without the sizes (it depends on none)."""
    def make() -> dict:
        d = setup.to_dict(model)
        d["model"] = model.name
        return d

    cached = per_model(_DICTS, (id(model), _dict_key(setup)), model, make)
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cached.items()}
    for size in _SIZES:
        out[size] = getattr(setup, size)
    return out


def estimate(model: ModelSpec, setup: TrainingSetup, gpus: tuple[GpuSpec, ...] = (), replay: bool = True) -> MemoryEstimate:
    """MemoryEstimate in bytes for one steady-state training step of `model` under `setup`: per GPU
    (the most loaded one) for multi-GPU and offloaded setups.

    replay=False: the caching allocator is not replayed and reserved is taken as allocated, a lower
    bound of every figure (the replay's reserved is never below allocated: memory/reserved.py
    reserved_for); replayed() of it gives the estimate itself. The fit and recommend searches
    rule out what does not fit even then before they pay for a replay."""
    setup.validate()
    model = reward.model_for(model, setup)   # reward modelling trains the sequence-classification model
    multimodal.check_setup(model, setup)
    requested, setup = setup, setup.for_model(model)
    prompt = virtual_tokens(setup)
    if prompt:   # prompt tuning: the frozen model runs on s + n positions (techniques/prompt.py)
        setup = replace(setup, seq_len=setup.seq_len + prompt)
    shaped = setup
    setup = masks.run_setup(setup)   # padding-free: the micro-batch is one row (techniques/masks.py)
    if setup.parallel.single_gpu:
        step = _one_gpu_step(model, requested, setup)
        setup_dict = _setup_dict(model, setup)
        trainable = step.trainable_params
    else:
        step = parallel_step(model, setup)
        setup_dict = setup.to_dict(model)
        setup_dict["model"] = model.name
        setup_dict["engine"] = engine_of(setup.parallel).value
        trainable = terms(model, setup.with_(parallel=ParallelSpec()))[1].trainable_params
    if setup is not shaped:
        setup_dict["batch_size"], setup_dict["seq_len"] = shaped.batch_size, shaped.seq_len
        step = replace(step, notes=step.notes + (f"padding-free: the {shaped.batch_size} samples of a micro-batch are "
                                                 f"one row of {setup.seq_len} tokens",))
    if prompt:
        setup_dict["seq_len"] = requested.seq_len
        step = replace(step, notes=step.notes + (f"prompt tuning: {prompt} virtual tokens make every sequence "
                                                 f"{requested.seq_len} + {prompt} positions long",))
    extra = {}
    if not setup.parallel.single_gpu:
        extra = dict(host_bytes_per_node=host_bytes_per_node(model, setup),
                     nvme_bytes_per_node=nvme_bytes_per_node(model, setup),
                     communication=communication_bytes(model, setup))
    local = step.local or model
    phases_at = lambda at: _phases_at(model, requested, at)  # noqa: E731
    # replayed: its figures straight away, the same as replayed() of the estimate without the replay
    alloc = reserved_for(local, setup, step.phases, phases_at)[0] if replay else NOT_REPLAYED
    fig = peak_figures(step.phases, outside_allocator=step.outside_allocator, allocator=alloc)
    est = MemoryEstimate(
        peak_allocated_bytes=fig.allocated, peak_reserved_bytes=fig.reserved, device_total_bytes=fig.device_total,
        peak_phase=fig.peak_phase, components=fig.components, phases=fig.totals, phase_components=step.phases,
        params=param_counts(model), trainable_params=trainable, setup=setup_dict,
        assumptions=fig.assumptions + step.assumptions, notes=step.notes, **extra,
        activation_host_bytes=step.activation_host_bytes,
        allocator=alloc if replay else None,
        pending=None if replay else (local, setup, step.outside_allocator, phases_at),
    )
    return est


def _one_gpu_step(model: ModelSpec, requested: TrainingSetup, setup: TrainingSetup):
    """The one-GPU step; PPO's training phase is its own (memory/ppo_step.py: four models, TRL 1.12's loop)."""
    if setup.objective is Objective.PPO:
        return ppo_step(model, requested, setup)
    return single_gpu_step(model, requested, setup)


def replayed(est: MemoryEstimate) -> MemoryEstimate:
    """The estimate of estimate(replay=False) with its reserved memory from the caching allocator's
    replay (memory/reserved.py); an estimate already replayed as it is."""
    if est.pending is None:
        return est
    local, setup, outside, phases_at = est.pending
    alloc, _ = reserved_for(local, setup, est.phase_components, phases_at)
    fig = peak_figures(est.phase_components, outside_allocator=outside, allocator=alloc)
    return replace(est, peak_reserved_bytes=fig.reserved, device_total_bytes=fig.device_total, components=fig.components,
                   assumptions=fig.assumptions + est.assumptions[len(fig.assumptions):], allocator=alloc, pending=None)


def _phases_at(model: ModelSpec, requested: TrainingSetup, setup: TrainingSetup) -> tuple[ModelSpec, dict]:
    """(the slice planned, the phases) of the step of `setup` (as it runs) at another size."""
    if setup.parallel.single_gpu:
        return model, _one_gpu_step(model, requested.with_(batch_size=setup.batch_size, seq_len=setup.seq_len),
                                    setup).phases
    step = parallel_step(model, setup)
    return step.local or model, step.phases


def fits(est: MemoryEstimate, gpu: GpuSpec) -> dict[str, object]:
    """Fit verdict for one GPU: headroom in bytes (negative: short by that much)."""
    headroom = gpu.memory_bytes - est.device_total_bytes
    row = {"gpu": gpu.name, "memory_bytes": gpu.memory_bytes, "fits": headroom >= 0, "headroom_bytes": headroom}
    outside = est.device_total_bytes - est.peak_reserved_bytes
    if est.allocator is not None and headroom < 0 <= gpu.memory_bytes - outside - est.peak_allocated_bytes:
        # the tensors fit, what the allocator caches does not: it frees its cache and retries, and
        # either gets by or fails for want of one free piece large enough (fragmentation)
        note = fragmentation_risk(est.allocator, est.peak_allocated_bytes, gpu.memory_bytes - outside)
        if note:
            row["allocator_note"] = note
    return row
