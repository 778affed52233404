"""Level 0: the vocabulary every other planner package speaks (enums, errors, ModelSpec, TrainingSetup,
ParallelSpec and engines, GpuSpec, parameter counts). Imports nothing else from the planner."""
