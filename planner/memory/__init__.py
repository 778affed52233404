"""gpuplan.planner.memory: what the device holds beyond live tensors (the CUDA caching allocator, cuBLAS, context)."""
