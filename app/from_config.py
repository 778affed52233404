"""--from-config / --accelerate-config: merge a user's training config (axolotl, HF/TRL, torchtune,
LLaMA-Factory, Unsloth script or notebook, accelerate launcher config) into the setup flags.

Flags typed on the command line win over the file; the file wins over the flags' defaults. What the
file set, what has no effect, and what gpuplan's table does not know is logged to stderr; a key
gpuplan refuses (memory-relevant, not modelled yet) stops with one line (PlannerError, exit 2).
The read is kept on the click context (`FROM_CONFIG_META`) for `estimate --json`.
"""
from __future__ import annotations

from typing import Any

import click

FROM_CONFIG_META = "gpuplan.from_config"
_LORA_ONLY = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "adapter_dtype", "base_dtype", "quant_type",
              "double_quant")


def merge_config(kw: dict[str, Any]) -> dict[str, Any]:
    """kw with the config file's values for every option not given explicitly; raises PlannerError."""
    path, acc = kw.get("from_config"), kw.get("accelerate_config")
    if not path and not acc:
        return kw
    from click.core import ParameterSource   # lazy: each command loads what it needs (fast start)

    from gpuplan.planner.fromconfig import read_config   # lazy: each command loads what it needs (fast start)

    ctx = click.get_current_context(silent=True)

    def explicit(name: str) -> bool:
        if ctx is None:
            return False
        if name == "gpus_per_node" and kw.get("gpus_legacy") is not None:   # the deprecated --gpus spelling
            return True
        src = ctx.get_parameter_source(name)
        return src in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    cfg = read_config(path, accelerate=acc) if path else read_config(acc)
    cfg = cfg.check(frozenset(o for _, o in cfg.answerable if explicit(o)))

    out = dict(kw)
    overridden = []
    for name, value in cfg.options.items():
        if explicit(name):
            overridden.append(name)
        else:
            out[name] = value
    if explicit("method") and kw.get("method") == "full":   # --method full drops the file's LoRA fields
        for k in _LORA_ONLY:
            if k in cfg.options:
                out[k] = kw.get(k)
    if cfg.model and not kw.get("model"):
        out["model"] = cfg.model
    elif cfg.model and kw.get("model"):
        overridden.append("model")
    if ctx is not None:
        ctx.meta[FROM_CONFIG_META] = cfg
    src = path or acc
    used = "; ".join(f"{k} -> {v}" for k, v in cfg.used.items())
    click.echo(f"--from-config {src} ({cfg.format}): used {used or 'nothing'}", err=True)
    if cfg.no_effect:
        click.echo(f"  no effect on memory or time: {', '.join(cfg.no_effect)}", err=True)
    if cfg.unknown:
        click.echo(f"  unknown to gpuplan's {cfg.format} table (not planned for: check that they do not change "
                   f"memory): {', '.join(cfg.unknown)}", err=True)
    for note in cfg.notes:
        if note.startswith("planned per GPU of") and explicit("gpus_per_node"):
            continue
        click.echo(f"  note: {note}", err=True)
    if overridden:
        click.echo(f"  overridden by command-line flags: {', '.join('--' + o.replace('_', '-') for o in overridden)}",
                   err=True)
    return out


def from_config_block(ctx: click.Context | None) -> dict[str, Any] | None:
    """The `from_config` block of `estimate --json`: {format, used, no_effect, refused, unknown, notes}."""
    cfg = ctx.meta.get(FROM_CONFIG_META) if ctx is not None else None
    if cfg is None:
        return None
    d = cfg.to_dict()
    return {k: d[k] for k in ("format", "used", "no_effect", "refused", "unknown", "notes")}
