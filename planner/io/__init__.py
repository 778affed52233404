"""gpuplan.planner.io: what the planner reads and writes in other tools' vocabulary (no torch)."""
