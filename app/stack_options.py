"""`--stack-versions`: the library versions an estimate describes, and the defaults they give the knobs
left alone (planner/specs/stack.py). The installed versions are read only for `--stack-versions
installed`, from the distributions' metadata (importlib.metadata: nothing is imported), so that an
estimate never changes with what happens to be installed."""
from __future__ import annotations

from typing import Any

import click

from gpuplan.planner.specs.stack import Stack, describe, stack_for_versions, stack_options

STACK_META = "gpuplan.stack"
# the distributions a stack row names, read for `installed`
_DISTRIBUTIONS = ("trl", "transformers", "peft", "bitsandbytes", "torch")
# the options a stack gives a default (app/options.py names)
_KNOBS = ("loss", "precision", "grad_ckpt")


def installed_versions() -> dict[str, str]:
    """{distribution: version} of the stack's libraries installed here (absent ones left out)."""
    from importlib import metadata   # lazy: only `--stack-versions installed` reads the environment

    out = {}
    for name in _DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def apply_stack(kw: dict[str, Any], model) -> dict[str, Any]:
    """kw with the chosen stack's defaults for each knob neither the command line nor the --from-config
    file set; the stack is kept on the click context for the output (`installed`: PlannerError for
    installed versions no row describes)."""
    from .from_config import FROM_CONFIG_META   # lazy: each command loads what it needs (fast start)

    name = kw.get("stack_versions")
    if not name:
        return kw
    stack, versions = Stack(name), None
    if stack is Stack.INSTALLED:
        versions = installed_versions()
        stack = stack_for_versions(versions)
    if kw.get("objective") == "ppo":   # TRL 1.12's PPOTrainer, gone from 1.13 on [planner/techniques/ppo.py]
        from gpuplan.planner.techniques.ppo import check_stack   # lazy: PPO only

        check_stack(stack.value, (versions or {}).get("trl"))
    ctx = click.get_current_context(silent=True)
    cfg = ctx.meta.get(FROM_CONFIG_META) if ctx is not None else None

    def given(opt: str) -> bool:
        if cfg is not None and opt in cfg.options:
            return True
        if ctx is None:
            return False
        return _on_command_line(ctx, opt)

    out = dict(kw)
    # a stack row's defaults are its SFTTrainer's: PPOTrainer's loss is its own and it never autocasts
    defaults = {} if kw.get("objective") == "ppo" else stack_options(stack, model)
    if kw.get("objective") in ("dpo", "kto", "grpo"):   # the row's own preference trainer [techniques/dpo19.py]
        from gpuplan.planner.specs.enums import Loss, Objective, TrlVersion   # lazy: preference objectives only
        from gpuplan.planner.techniques.dpo19 import for_stack   # lazy: preference objectives only

        version = for_stack(stack, Objective(kw["objective"]))
        # TRL 1.16's trainers: its fused LM head; TRL 1.9's DPOTrainer: the model's full logits
        defaults["loss"] = (Loss.TRL if version is TrlVersion.TRL_1_16 else Loss.HF).value
        if version is not TrlVersion.TRL_1_16:
            out["trl_version"] = version.value
    for opt, value in defaults.items():
        if given(opt):
            continue
        out[opt] = value
    if ctx is not None and _on_command_line(ctx, "stack_versions"):
        # named in the output when asked for; a stack a config reader names (torchtune's) applies its
        # defaults, and the reader's own report names its semantics (golden outputs stay as they were)
        ctx.meta[STACK_META] = describe(stack, versions)
    return out


def objective_loss(kw: dict[str, Any]) -> dict[str, Any]:
    """kw with the loss the objective's trainer computes (planner/plans/recommend.py OBJECTIVE_LOSS: TRL's fused LM
    head for DPO/KTO/GRPO) when neither the command line, the --from-config file nor the stack chose a loss; a
    loss that was chosen is kept (and refused by the setup where the trainer has no such loss)."""
    from gpuplan.planner.plans.recommend import OBJECTIVE_LOSS   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.specs.enums import Objective   # lazy: each command loads what it needs (fast start)

    from .from_config import FROM_CONFIG_META   # lazy: each command loads what it needs (fast start)

    obj = Objective(kw["objective"]) if kw.get("objective") in Objective.values() else None
    ctx = click.get_current_context(silent=True)
    if obj not in OBJECTIVE_LOSS or ctx is None:
        return kw
    cfg = ctx.meta.get(FROM_CONFIG_META)
    if _on_command_line(ctx, "loss") or (cfg is not None and "loss" in cfg.options) or kw.get("stack_versions"):
        return kw
    return {**kw, "loss": OBJECTIVE_LOSS[obj].value}


def _on_command_line(ctx: click.Context, opt: str) -> bool:
    from click.core import ParameterSource   # lazy: each command loads what it needs (fast start)

    return ctx.get_parameter_source(opt) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def stack_block(ctx: click.Context | None) -> dict[str, Any] | None:
    """The `stack` block of `estimate --json` (None without --stack-versions)."""
    return ctx.meta.get(STACK_META) if ctx is not None else None


def stack_notes(ctx: click.Context | None) -> list[str]:
    """One note line naming the library versions the estimate describes (none without --stack-versions)."""
    block = stack_block(ctx)
    if block is None:
        return []
    libs = ", ".join(f"{k} {v}" for k, v in block["libraries"].items())
    seen = ""
    if "installed" in block:
        seen = " (installed: " + (", ".join(f"{k} {v}" for k, v in block["installed"].items()) or "none") + ")"
    return [f"library versions described (--stack-versions {block['name']}): {libs}{seen}"]
