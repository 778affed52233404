"""gpuplan.planner.io: the file formats gpuplan reads and writes (measurement records)."""
