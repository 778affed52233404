"""measure(): one training-step profile of (model, setup) on a Device, the one entry point that the
CLI (`gpuplan profile`), the dashboard and the accuracy matrix share.

This module imports no torch: `gpuplan.profiler` re-exports measure() and the CLI builds its options
from Device, and neither may slow `gpuplan estimate`. The device's runner, and with it torch,
transformers and peft, is imported on the first call (`_runner`).
"""
from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Callable

from gpuplan.planner import Loss, ModelSpec, Objective, PlannerError, TrainingSetup, estimate

from .compare import compare
from .device import Device

if TYPE_CHECKING:
    from .measurement import Measurement

Progress = Callable[[float, str], None]   # (fraction done in [0, 1], what is happening)


def _runner(device: Device, multi_gpu: bool) -> Callable[..., Measurement]:
    """The profiler of `device`, called as f(model, setup, steps=..., per_module=...).

    Each import is lazy on purpose: torch, transformers and peft load on the first measurement only
    (never when `gpuplan estimate` or the dashboard starts), and only the chosen device's modules.
    """
    if multi_gpu:   # FSDP2/DDP ranks: simulated with a fake process group, or real with gloo on the CPU
        from .distributed import measure_distributed   # lazy: see the docstring

        return functools.partial(measure_distributed, device=device)
    if device is Device.SIMULATE:
        from .simulate import simulate   # lazy: see the docstring

        return simulate
    if device is Device.CPU:
        from .cpu import measure_cpu   # lazy: see the docstring

        return measure_cpu
    from .cuda import measure_cuda   # lazy: see the docstring

    return measure_cuda


def measure(model: ModelSpec, setup: TrainingSetup, device: Device = Device.SIMULATE, steps: int | None = None,
            per_module: bool = False, progress: Progress | None = None) -> Measurement:
    """The Measurement of `steps` training steps (default: the device's) of `setup` on `device`, peaks
    from the last; with `per_module`, the per-module table and timeline too.

    Raises PlannerError for a setup the device cannot run, or that the model's library refuses
    (transformers or peft raising ValueError, e.g. Gemma-2 with sdpa): one line, no traceback.
    """
    unsimulated = _not_runnable(setup)
    if setup.objective is Objective.PPO:   # TRL 1.12's PPO loop, simulated only [profiler/ppo_step.py]
        unsimulated = None if device is Device.SIMULATE else (
            "--objective ppo is simulated only (profiler/ppo_step.py runs TRL 1.12's loop under fake tensors): "
            "use --device simulate")
    if setup.trl_version.value == "1.9" and device is not Device.SIMULATE and not unsimulated:
        unsimulated = ("TRL 1.9's DPOTrainer is simulated only (profiler/trl19_dpo.py runs its _compute_loss under "
                       "fake tensors): use --device simulate")
    if unsimulated:
        raise PlannerError(unsimulated)
    steps = steps or device.default_steps
    say = progress or (lambda fraction, message: None)
    say(0.0, "importing torch, transformers and peft...")
    run = _runner(device, not setup.parallel.single_gpu)
    say(0.1, f"{device.verb}: {model.name}, {steps} steps...")
    start = time.perf_counter()
    try:
        result = run(model, setup, steps=steps, per_module=per_module)
    except PlannerError:
        raise
    except ValueError as e:
        raise PlannerError(f"{type(e).__name__} from the model's library: {str(e).splitlines()[0]}") from None
    say(1.0, f"{device.verb}: {model.name}, {steps} steps, done in {time.perf_counter() - start:.1f} s")
    return result


def _not_runnable(setup: TrainingSetup) -> str | None:
    """Why the profiler cannot run `setup` as its users do, or None. TRL's fused LM head and its
    DPOTrainer need TRL, whose tiles a Triton kernel folds on CUDA: the estimate models them from
    TRL's source, and a profile would measure a different step."""
    trl19_dpo = setup.objective is Objective.DPO and setup.trl_version.value == "1.9"   # profiler/trl19_dpo.py
    if setup.objective not in (Objective.SFT, Objective.ORPO, Objective.RM) and not trl19_dpo:   # ORPO, RM: TRL's own code (profiler/trl_steps.py)
        return (f"--objective {setup.objective.value} is modelled from TRL's source, not profiled: profile its "
                "SFT step (--objective sft --loss hf or chunked)")
    if setup.loss is Loss.TRL:
        return ("--loss trl (TRL's fused LM head) is modelled from TRL's source, not profiled: profile with "
                "--loss hf or --loss chunked")
    if setup.lora.variant.value != "none":   # no library implements them for the profiler to run
        return (f"--lora-variant {setup.lora.variant.value} is modelled from its paper, not profiled (peft does not "
                "implement it): profile plain LoRA at the same rank")
    if setup.parallel.fsdp.value == "yafsdp":
        return ("--fsdp yafsdp needs YaFSDP's patched accelerate/transformers/trl and CUDA streams: modelled from "
                "its source, not profiled; profile --fsdp full")
    if setup.parallel.cp > 1:
        return (f"--context-parallel {setup.parallel.cp} ({setup.parallel.cp_kind.value}) exchanges K/V over NCCL with "
                "CUDA flash kernels: modelled from source, not profiled; profile the shard (--seq-len / N) without it")
    if setup.loss is Loss.CCE:
        return ("--loss cce (Cut Cross-Entropy's Triton kernels) is modelled from its source, not profiled: "
                "profile with --loss hf or --loss chunked")
    if setup.liger.any():
        return ("Liger's RMSNorm/RoPE/SwiGLU/cross_entropy are Triton kernels, modelled from Liger's source, not profiled: "
                "profile without --liger (its fused linear cross-entropy alone: --loss chunked)")
    if setup.compile.value != "none":
        return ("--compile: the profiler runs eager kernels; the compiled saved set is counted by "
                "benchmarks/compile_saved.py (profiler/compiled.py), not profiled: profile without --compile")
    return None


def profile_json(model: ModelSpec, setup: TrainingSetup, measured: Measurement,
                 with_estimate: bool = True) -> dict[str, Any]:
    """What `gpuplan profile --json` prints: the Measurement's keys (those of `estimate --json`) and,
    `with_estimate`, the planner's estimate of the same setup compared figure by figure."""
    payload = measured.to_dict()
    if with_estimate:
        payload["comparison"] = compare(estimate(model, setup), measured).to_dict()
    return payload
