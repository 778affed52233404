"""Readers of stored facts that are not model presets or the GPU catalog: published real-GPU runs."""
