"""Device: where the profiler runs a training step (imports no torch: the CLI's options are built from it)."""
from __future__ import annotations

from gpuplan.planner import Choice


class Device(Choice):
    SIMULATE = "simulate"   # FakeTensorMode on the CPU: any model size, no memory, no GPU
    CPU = "cpu"             # real tensors on the CPU: small models
    CUDA = "cuda"           # real tensors on GPU 0: allocator statistics and NVML

    @property
    def default_steps(self) -> int:
        """Optimizer steps a run takes unless told otherwise: the first allocates the optimizer state
        lazily, the last is measured [profiler/step.py]; on a GPU 3, measure_cuda's default."""
        return 3 if self is Device.CUDA else 2

    @property
    def verb(self) -> str:
        """What a progress line says the run is doing."""
        return {Device.SIMULATE: "simulating", Device.CPU: "running on the CPU",
                Device.CUDA: "running on the GPU"}[self]
