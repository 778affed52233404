"""--from-config: merge a user's training config (axolotl, HF/TRL, torchtune) into the setup flags.

Flags typed on the command line win over the file; the file wins over the flags' defaults. What the
file set and what it ignored is logged to stderr.
"""
from __future__ import annotations

from typing import Any

import click


def merge_config(kw: dict[str, Any]) -> dict[str, Any]:
    """kw with the config file's values for every option not given explicitly; raises PlannerError."""
    path = kw.get("from_config")
    if not path:
        return kw
    from click.core import ParameterSource

    from gpuplan.planner.fromconfig import read_config

    cfg = read_config(path)
    ctx = click.get_current_context(silent=True)

    def explicit(name: str) -> bool:
        if ctx is None:
            return False
        src = ctx.get_parameter_source(name)
        return src in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    out = dict(kw)
    overridden = []
    for name, value in cfg.options.items():
        if explicit(name):
            overridden.append(name)
        else:
            out[name] = value
    if explicit("method") and kw.get("method") == "full":   # --method full drops the file's LoRA fields
        for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "base_dtype", "quant_type", "double_quant"):
            if k in cfg.options:
                out[k] = kw.get(k)
    if cfg.model and not kw.get("model"):
        out["model"] = cfg.model
    elif cfg.model and kw.get("model"):
        overridden.append("model")
    used = "; ".join(f"{k} -> {v}" for k, v in cfg.used.items())
    click.echo(f"--from-config {path} ({cfg.format}): used {used or 'nothing'}", err=True)
    if cfg.ignored:
        click.echo(f"  ignored (no effect on memory/time, or not modelled): {', '.join(cfg.ignored)}", err=True)
    if overridden:
        click.echo(f"  overridden by command-line flags: {', '.join('--' + o.replace('_', '-') for o in overridden)}",
                   err=True)
    return out
