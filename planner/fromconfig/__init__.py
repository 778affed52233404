"""Read a user's own training config into the setup flags gpuplan understands.

API: `read_config(path) -> ConfigSetup` (format detected from the content), with `.model` (a name,
path or hub id, or None), `.options` (setup option names of app/options.py, e.g. "batch_size",
"method", "grad_ckpt"), `.used` (config key -> what it set) and `.ignored` (keys that do not
change memory or time, or that gpuplan does not model), `.format`.

Formats (one module each): axolotl YAML (axolotl.py), HF `TrainingArguments` / TRL `SFTConfig`
JSON or YAML (hf.py), torchtune recipe YAML (torchtune.py). A value gpuplan cannot map (an
unknown optimizer, DeepSpeed's config file it cannot read) raises PlannerError naming the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..specs.errors import PlannerError


@dataclass(frozen=True)
class ConfigSetup:
    format: str
    model: str | None
    options: dict[str, Any]                              # app/options.py names -> values
    used: dict[str, str] = field(default_factory=dict)   # config key -> "sets --flag value"
    ignored: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "options": self.options, "used": self.used,
                "ignored": list(self.ignored)}


def _parse(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml   # lazily: `gpuplan estimate` without a config never imports it

            data = yaml.safe_load(text)
    except Exception as e:  # the parser's own message, first line, with the file
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PlannerError(f"{path} could not be parsed: {what}{where}") from None
    if not isinstance(data, dict):
        raise PlannerError(f"{path} must hold a mapping of settings (key: value), not {type(data).__name__}")
    return data


def detect(data: dict[str, Any]) -> str:
    """'axolotl', 'torchtune' or 'hf' from the keys each format alone uses."""
    if any(k in data for k in ("base_model", "micro_batch_size", "sequence_len", "adapter")):
        return "axolotl"
    if isinstance(data.get("model"), dict) and "_component_" in data["model"]:
        return "torchtune"
    if any(k in data for k in ("per_device_train_batch_size", "optim", "max_length", "max_seq_length",
                               "model_name_or_path", "output_dir", "gradient_accumulation_steps")):
        return "hf"
    raise PlannerError("cannot tell the config's format: expected axolotl (base_model, micro_batch_size), "
                       "torchtune (model: {_component_: ...}) or HF TrainingArguments/SFTConfig "
                       "(per_device_train_batch_size, optim) keys")


def read_config(path: str) -> ConfigSetup:
    """ConfigSetup from an axolotl, HF/TRL or torchtune config file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise PlannerError(f"config file {path} does not exist")
    data = _parse(p)
    fmt = detect(data)
    if fmt == "axolotl":
        from .axolotl import read
    elif fmt == "torchtune":
        from .torchtune import read
    else:
        from .hf import read
    return read(data, str(p))
