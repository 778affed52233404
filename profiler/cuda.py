"""measure_cuda(): the training step with real tensors on a GPU, measured three ways at once.

- the caching allocator's own statistics (`max_memory_allocated`, `max_memory_reserved`), per phase;
- NVML (or cudaMemGetInfo), sampled in a background thread, for what `nvidia-smi` shows;
- the StorageTracker alongside, for the breakdown by component (it cannot see kernel workspaces
  allocated inside C++ kernels, so its total may sit a little below the allocator's).

Running out of memory is an answer, not a crash: the result says `fits=False`.
"""
from __future__ import annotations

import gc
from typing import Callable

import torch

from gpuplan.planner import Component, ModelSpec, Phase, PlannerError, TrainingSetup

from .build import build
from .hooks import attributed
from .measurement import Measurement, from_tracker
from .nvml import DeviceMemorySampler
from .step import run_steps, timed_steps
from .tracker import StorageTracker

MAX_BATCH_LIMIT = 4096   # find_max_batch stops doubling here


def require_cuda(device: int = 0) -> torch.device:
    """The torch device `cuda:<device>`; raises PlannerError naming the alternatives when there is none."""
    if not torch.cuda.is_available():
        raise PlannerError(
            f"no CUDA GPU is visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}); "
            "use --device simulate (any model size, no GPU) or --device cpu (small models, real tensors)")
    count = torch.cuda.device_count()
    if not 0 <= device < count:
        raise PlannerError(f"GPU index {device} does not exist: this machine has {count} "
                           f"(0..{count - 1}); or use --device simulate")
    return torch.device("cuda", device)


class CudaTracker(StorageTracker):
    """The StorageTracker, counting only storages on `device`, that also reads the allocator's
    peaks at every phase mark (and resets them), so that each phase gets its own measured peak."""

    def __init__(self, device: torch.device, sampler: DeviceMemorySampler | None = None) -> None:
        super().__init__()
        self.device = device
        self.sampler = sampler
        self.allocated: dict[Phase, int] = {}
        self.reserved: dict[Phase, int] = {}

    def _add(self, storage: torch.UntypedStorage, component: Component) -> None:
        if storage.device == self.device:   # optimizer step counters etc. stay on the CPU
            super()._add(storage, component)

    def _read_allocator(self) -> None:
        phase = self.phase
        self.allocated[phase] = max(self.allocated.get(phase, 0), torch.cuda.max_memory_allocated(self.device))
        self.reserved[phase] = max(self.reserved.get(phase, 0), torch.cuda.max_memory_reserved(self.device))
        torch.cuda.reset_peak_memory_stats(self.device)
        if self.sampler is not None:
            self.sampler.sample()

    def mark(self, phase: Phase, component: Component) -> None:
        self._read_allocator()   # closes the phase that is ending
        super().mark(phase, component)

    def reset_peaks(self) -> None:
        super().reset_peaks()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.allocated, self.reserved = {}, {}
        if self.sampler is not None:
            self.sampler.reset()


def device_label(device: torch.device) -> str:
    """`cuda:0 (NVIDIA H100 80GB HBM3)`."""
    return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"


def _release(device: torch.device) -> None:
    """Frees what a run left behind, so that the next one starts from an empty allocator."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def _run(model: ModelSpec, setup: TrainingSetup, tracker: CudaTracker, steps: int,
         per_module: bool) -> tuple[list[str], dict | None, dict[str, float]]:
    """Builds and runs the steps: (notes, per-module table, step timing); everything it allocates
    is garbage once it returns."""
    built = build(model, setup, tracker.device)   # initialized; QLoRA quantized by bitsandbytes
    with tracker, attributed(built.model, tracker, per_module) as attribution:
        run_steps(built, setup, tracker, steps)
    torch.cuda.synchronize(tracker.device)
    timing = timed_steps(built, setup)   # after the peaks were read: time the plain step
    return built.notes, attribution.to_dict() if attribution else None, timing


def _oom_result(model: ModelSpec, setup: TrainingSetup, tracker: CudaTracker, label: str,
                message: str) -> Measurement:
    """What was measured up to the failing allocation, with fits=False."""
    allocated = max([torch.cuda.max_memory_allocated(tracker.device), *tracker.allocated.values()])
    reserved = max([torch.cuda.max_memory_reserved(tracker.device), *tracker.reserved.values()])
    top = tracker.peak
    return Measurement(
        device=label, peak_allocated_bytes=allocated, peak_reserved_bytes=reserved,
        device_total_bytes=tracker.sampler.peak if tracker.sampler else None,
        components=dict(top.components),
        phases={p: pk.total for p, pk in tracker.peaks.items()},
        phase_components={p: dict(pk.components) for p, pk in tracker.peaks.items()},
        setup=setup.to_dict(model), fits=False,
        notes=[f"does not fit: {message}",
               "figures are what was allocated before the failing allocation, not the step's need"],
    )


def _result(model: ModelSpec, setup: TrainingSetup, tracker: CudaTracker, label: str,
            notes: list[str], timing: dict[str, float]) -> Measurement:
    """The Measurement of a run that fit: allocator figures, NVML total, tracker breakdown."""
    result = from_tracker(tracker, model, setup, device=label, notes=notes)
    tracked = result.peak_allocated_bytes
    result.phases = dict(tracker.allocated)
    result.peak_allocated_bytes = max(tracker.allocated.values())
    result.peak_reserved_bytes = max(tracker.reserved.values())
    result.device_total_bytes = tracker.sampler.peak if tracker.sampler else None
    result.components[Component.ALLOCATOR_SLACK] = result.peak_reserved_bytes - result.peak_allocated_bytes
    if result.device_total_bytes is not None:
        result.components[Component.CUDA_CONTEXT] = result.device_total_bytes - result.peak_reserved_bytes
    result.fits = True
    result.gpu = torch.cuda.get_device_name(tracker.device)
    result.timing = timing
    result.notes.append(f"tensors the tracker saw at its peak: {tracked / 2**20:,.1f} MiB; the allocator's peak: "
                        f"{result.peak_allocated_bytes / 2**20:,.1f} MiB (the difference: kernel workspaces, "
                        "e.g. cuBLAS and attention, allocated inside C++ kernels)")
    if tracker.sampler and tracker.sampler.note:
        result.notes.append(tracker.sampler.note)
    return result


def measure_cuda(model: ModelSpec, setup: TrainingSetup, steps: int = 3, device: int = 0,
                 per_module: bool = False) -> Measurement:
    """Measured bytes of a steady-state step on GPU `device`: allocated and reserved peaks from the
    caching allocator, the device total from NVML; `fits=False` (never an exception) on OOM."""
    setup.validate()
    dev = require_cuda(device)
    label = device_label(dev)
    _release(dev)
    sampler = DeviceMemorySampler(dev)
    tracker = CudaTracker(dev, sampler)
    message = None
    try:
        with sampler:
            notes, table, timing = _run(model, setup, tracker, steps, per_module)
    except torch.cuda.OutOfMemoryError as e:   # the run's frames and tensors die with `e`
        message = str(e).splitlines()[0]
    try:
        if message is not None:
            return _oom_result(model, setup, tracker, label, message)
        result = _result(model, setup, tracker, label, notes, timing)
        result.per_module = table
        return result
    finally:
        _release(dev)


def largest_fitting(fits: Callable[[int], bool], limit: int = MAX_BATCH_LIMIT) -> int:
    """Largest n in [1, limit] with fits(n), by doubling then bisection; 0 if fits(1) is False.

    Assumes fits is monotone (true up to some n, false beyond), which memory use makes it.
    """
    lo, n = 0, 1             # lo: largest n known to fit
    while n <= limit and fits(n):
        lo, n = n, n * 2
    hi = min(n, limit + 1)   # smallest n known not to fit (or past the limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def find_max_batch(model: ModelSpec, setup: TrainingSetup, device: int = 0, steps: int = 2,
                   limit: int = MAX_BATCH_LIMIT,
                   on_trial: Callable[[int, Measurement], None] | None = None) -> int:
    """Largest micro-batch (sequences) whose steady-state step fits GPU `device`; 0 if none does.

    Every trial builds the model afresh and empties the allocator's cache afterwards.
    """
    require_cuda(device)

    def fits(batch: int) -> bool:
        result = measure_cuda(model, setup.with_(batch_size=batch), steps=steps, device=device)
        if on_trial is not None:
            on_trial(batch, result)
        return bool(result.fits)

    return largest_fitting(fits, limit)
