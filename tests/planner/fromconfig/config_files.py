"""The config files the reader tests write: one helper for every test module of this folder
(pytest puts the folder on sys.path, so `from config_files import write` finds it)."""
from __future__ import annotations

from pathlib import Path


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    """Writes `text` as `name` under tmp_path and returns the path a reader takes."""
    f = tmp_path / name
    f.write_text(text)
    return str(f)
