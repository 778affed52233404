"""gpuplan.profiler: the real training step, measured on a GPU or CPU, or simulated under FakeTensorMode.

    from gpuplan.profiler import Device, measure
    result = measure(model, setup, Device.SIMULATE)   # a Measurement (profiler/measurement.py)

Importing the package imports no torch (profiler/run.py); the measuring code loads on the first run.
profiler/kernels/ holds the stand-ins for CUDA-only kernels that simulate() runs in their place.
"""
import logging

from .device import Device
from .run import measure, profile_json

# bitsandbytes' CPU backend warns at import that it cannot fetch an optional kernel from the hub
# (`kernels` package; no network here, and the profiler never needs it): not the user's concern.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = ["Device", "measure", "profile_json"]
