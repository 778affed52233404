"""Read a user's own training config into the setup flags gpuplan understands.

API: `read_config(path, accelerate=None) -> ConfigSetup` (format detected from the content), with
`.model` (a name, path or hub id, or None), `.options` (setup option names of app/options.py, e.g.
"batch_size", "method", "grad_ckpt", "zero", "fsdp"), and what became of every key: `.used` (key ->
the flags it set), `.no_effect` (keys with no effect on memory or time), `.refused` (one line per
memory-relevant key gpuplan does not model yet: `.check()` raises them), `.unknown` (keys the
format's table does not know), `.notes`.

Formats (one module each, each with a key table citing the framework's schema; rules.py):
axolotl YAML (axolotl.py), HF `TrainingArguments` / TRL `SFTConfig` JSON or YAML (hf.py), torchtune
recipe YAML (torchtune.py), LLaMA-Factory YAML (llamafactory.py), Unsloth scripts and notebooks
(unsloth.py, read with `ast`, never run), accelerate launcher configs (accelerate.py), with the
DeepSpeed and FSDP blocks any of them carries (common.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..specs.errors import PlannerError

if TYPE_CHECKING:
    from .common import Options
    from .rules import Report


class Format(str, Enum):
    AXOLOTL = "axolotl"
    HF = "hf"
    TORCHTUNE = "torchtune"
    LLAMAFACTORY = "llamafactory"
    UNSLOTH = "unsloth"
    ACCELERATE = "accelerate"


# With a DeepSpeed or FSDP block but no GPU count anywhere, the plan is per GPU of one 8-GPU node:
# the launcher configs the examples ship say num_processes: 8 (alignment-handbook
# recipes/accelerate_configs/zero3.yaml and fsdp.yaml; trl examples/accelerate_configs/*.yaml).
DEFAULT_SHARDED_GPUS = 8


@dataclass(frozen=True)
class ConfigSetup:
    format: str
    model: str | None
    options: dict[str, Any]                              # app/options.py names -> values
    used: dict[str, str] = field(default_factory=dict)   # config key -> the flags it set
    no_effect: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    path: str = ""
    answerable: tuple[tuple[str, str], ...] = ()         # (refusal line, the option that answers it)

    @classmethod
    def of(cls, fmt: str, model: str | None, o: "Options", rep: "Report", implied_gpus: int | None = None,
           notes: tuple[str, ...] = ()) -> "ConfigSetup":
        opts = dict(o)
        notes = list(notes)
        sharded = opts.get("zero", 0) or opts.get("fsdp", "none") != "none"
        if sharded and "gpus_per_node" not in opts:
            n = implied_gpus or DEFAULT_SHARDED_GPUS
            opts["gpus_per_node"] = n
            why = ("DeepSpeed's train_batch_size / (micro-batch x accumulation)" if implied_gpus else
                   "the file names no GPU count")
            notes.append(f"planned per GPU of {n} ({why}); give --gpus N (and --nodes) or --accelerate-config "
                         "for your launcher's count")
        if opts.get("fsdp") == "hybrid" and "nodes" not in opts:
            opts["nodes"] = 2
            notes.append("FSDP hybrid shards within a node and replicates across nodes: planned on 2 nodes; "
                         "give --nodes N")
        return cls(fmt, model, opts, dict(rep.used), tuple(rep.no_effect), tuple(rep.refused),
                   tuple(rep.unknown), tuple(notes), answerable=tuple(rep.answerable.items()))

    def check(self, given: frozenset[str] = frozenset()) -> "ConfigSetup":
        """self without the refusals the options in `given` (set on the command line) answer, or
        PlannerError with the refused keys on one line."""
        answers = dict(self.answerable)
        answered = [r for r in self.refused if answers.get(r) in given]
        refused = tuple(r for r in self.refused if r not in answered)
        if refused:
            raise PlannerError(f"{self.path}: " + " | ".join(refused))
        if not answered:
            return self
        used = {**self.used, **{r.split(":")[0]: f"--{answers[r].replace('_', '-')} from the command line"
                                for r in answered}}
        return replace(self, refused=refused, used=used)

    def to_dict(self) -> dict[str, Any]:
        """The `from_config` block of `estimate --json`."""
        return {"format": self.format, "model": self.model, "options": self.options, "used": self.used,
                "no_effect": list(self.no_effect), "refused": list(self.refused), "unknown": list(self.unknown),
                "notes": list(self.notes)}


def _parse(path: Path) -> Any:
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


def detect(data: dict[str, Any]) -> Format:
    """The format, from the keys each format alone uses."""
    if any(k in data for k in ("finetuning_type", "cutoff_len", "peft_config", "dist_config")):
        return Format.LLAMAFACTORY
    if any(k in data for k in ("base_model", "micro_batch_size", "sequence_len", "adapter")):
        return Format.AXOLOTL
    if isinstance(data.get("model"), dict) and "_component_" in data["model"]:
        return Format.TORCHTUNE
    if "distributed_type" in data or "compute_environment" in data:
        return Format.ACCELERATE
    if any(k in data for k in ("stage", "template")) and "model_name_or_path" in data:
        return Format.LLAMAFACTORY
    if any(k in data for k in ("per_device_train_batch_size", "optim", "max_length", "max_seq_length",
                               "model_name_or_path", "output_dir", "gradient_accumulation_steps")):
        return Format.HF
    raise PlannerError("cannot tell the config's format: expected axolotl (base_model, micro_batch_size), "
                       "torchtune (model: {_component_: ...}), HF TrainingArguments/SFTConfig "
                       "(per_device_train_batch_size, optim), LLaMA-Factory (finetuning_type, cutoff_len) or "
                       "accelerate (distributed_type) keys, or an Unsloth .py/.ipynb")


def _read_one(p: Path) -> ConfigSetup:
    if p.suffix in (".py", ".ipynb"):
        from .unsloth import read_file

        return read_file(p)
    data = _parse(p)
    fmt = detect(data)
    if fmt is Format.AXOLOTL:
        from .axolotl import read
    elif fmt is Format.TORCHTUNE:
        from .torchtune import read
    elif fmt is Format.ACCELERATE:
        from .accelerate import read
    elif fmt is Format.LLAMAFACTORY:
        from .llamafactory import read
    else:
        from .hf import read
    return read(data, str(p))


def _file(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise PlannerError(f"config file {path} does not exist")
    return p


def read_config(path: str, accelerate: str | None = None) -> ConfigSetup:
    """ConfigSetup from a training config file, with an accelerate launcher config's GPU count,
    DeepSpeed or FSDP settings under it (the training config wins where both set an option)."""
    cfg = _read_one(_file(path))
    cfg = ConfigSetup(**{**cfg.__dict__, "path": str(path)})
    if accelerate is None:
        return cfg
    from .accelerate import read as read_accelerate

    acc_path = _file(accelerate)
    data = _parse(acc_path)
    if detect(data) is not Format.ACCELERATE:
        raise PlannerError(f"--accelerate-config {accelerate} is not an accelerate config (no distributed_type)")
    acc = read_accelerate(data, str(acc_path))
    opts = {**acc.options, **cfg.options}
    if "gpus_per_node" in acc.options:   # the launcher's count beats the default the training file implied
        opts["gpus_per_node"] = acc.options["gpus_per_node"]
    notes = tuple(n for n in cfg.notes if not n.startswith("planned per GPU of") or "gpus_per_node" not in acc.options)
    notes += tuple(f"{k}: the training config's {cfg.options[k]} over the accelerate config's {v} (HF Trainer "
                   "reads its own arguments first)" for k, v in acc.options.items()
                   if k in cfg.options and cfg.options[k] != v and k != "gpus_per_node")
    pre = "accelerate:"
    return ConfigSetup(cfg.format, cfg.model, opts, {**cfg.used, **{pre + k: v for k, v in acc.used.items()}},
                       cfg.no_effect + tuple(pre + k for k in acc.no_effect),
                       cfg.refused + tuple(pre + k for k in acc.refused),
                       cfg.unknown + tuple(pre + k for k in acc.unknown), notes + acc.notes, str(path),
                       cfg.answerable)
