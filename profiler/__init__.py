"""gpuplan.profiler: the real training step, measured on a GPU or CPU, or simulated under FakeTensorMode."""
import logging

# bitsandbytes' CPU backend warns at import that it cannot fetch an optional kernel from the hub
# (`kernels` package; no network here, and the profiler never needs it): not the user's concern.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
