"""Level 3: the one step builder (single GPU as the one-stage case of DDP/ZeRO/FSDP/TP/PP), figures,
and `estimate()`, the front door. Imports specs, io, techniques."""
