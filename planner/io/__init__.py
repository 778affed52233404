"""Level 1: everything the planner reads from files (data/ presets, GPU catalog, constants, records) and
the readers that turn a config.json into a ModelSpec. Imports only planner.specs."""
