"""gpuplan.profiler.watch: `gpuplan watch`, a real training run sampled live from outside its process
(NVML, /proc), joined by the per-step figures its hook or Trainer callback writes, against the estimate.

Modules: schema (the JSON lines), nvml and procs (the samplers), hook (in the training process),
analysis (OOM warning, leak, summary: pure), expect (the estimate for the run), session (the loop),
view (the rich terminal view), record (the gpuplan.record/1 file a finished watch writes).
Nothing here imports torch except where the training process already has it (hook).
"""
