"""Level 4: FLOPs, communication time and step time. Imports specs, io, techniques, memory."""
