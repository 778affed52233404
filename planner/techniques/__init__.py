"""Level 2: one module per training technique, each owning its parameter counts, saved bytes, state
bytes and FLOPs. Imports planner.specs and planner.io."""
