"""OptimSpec: the knobs of the low-rank and block-quantized optimizers (GaLore, APOLLO, torchao's
low-bit AdamW), with the defaults HF Trainer gives them when `optim_args` leaves them alone, and
the setup-level checks of the optimizer and of the optimizer step inside backward."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .enums import Optimizer
from .errors import PlannerError



@dataclass(frozen=True)
class OptimSpec:
    """HF `optim_args` / `optim_target_modules` as the optimizers read them.

    rank, update_proj_gap: transformers 5.24 trainer_optimizer.py _get_galore_optimizer and
    _get_apollo_optimizer: `int(optim_args.pop("rank", 128))`, `int(optim_args.pop("update_proj_gap", 200))`.
    targets: `optim_target_modules`; () = every decoder-layer linear (the GaLore README's
    `[r".*.attn.*", r".*.mlp.*"]`); ("all-linear",) = every nn.Linear, the lm_head included
    (_setup_low_rank_optimizer matches all nn.Linear modules of model.named_modules()).
    block_size: torchao AdamW8bit/AdamW4bit's quantization block, `optim_args.get("block_size", 256)`
    in _get_torchao_optimizer (torchao's own default is 256 for 8-bit, 128 for 4-bit).
    """

    rank: int = 128
    update_proj_gap: int = 200
    targets: tuple[str, ...] = ()
    block_size: int = 256

    def validate(self, optimizer: Optimizer) -> None:
        for name, value in (("--galore-rank", self.rank), ("--galore-update-proj-gap", self.update_proj_gap),
                            ("--optim-block-size", self.block_size)):
            if value < 1:
                raise PlannerError(f"{name} must be at least 1, got {value}")
        low_rank_knobs = (self.rank, self.update_proj_gap, self.targets) != (128, 200, ())
        if low_rank_knobs and not optimizer.low_rank:
            raise PlannerError(f"--galore-rank / --galore-update-proj-gap / --optim-target-modules apply to the "
                               f"GaLore and APOLLO optimizers, not --optimizer {optimizer.value}")
        if self.block_size != 256 and not optimizer.torchao:
            raise PlannerError(f"--optim-block-size applies to torchao-adamw-8bit/4bit, not --optimizer {optimizer.value}")


_DEFAULT = OptimSpec()


def validate_optimizer(setup: Any) -> None:
    """The optimizer's knobs of a TrainingSetup, and what the optimizer step inside backward cannot do."""
    if setup.optim != _DEFAULT:
        setup.optim.validate(setup.optimizer)
    if setup.peft and setup.optimizer.full_only:
        raise PlannerError(f"--optimizer {setup.optimizer.value} is planned for full fine-tuning (GaLore projects full "
                           "weights' gradients; torchao's blocks and Adam-mini's second moments are counted per "
                           "full weight): use "
                           "--method full, or another optimizer for LoRA/QLoRA")
    if not setup.optimizer_in_backward:
        return
    if setup.grad_accum > 1:
        # torchtune recipes/full_finetune_single_device.py _setup_optimizer / __init__: "Gradient
        # accumulation is not supported with optimizer in bwd"; transformers _setup_low_rank_optimizer:
        # "Layerwise ... does not support gradient accumulation!"
        raise PlannerError(f"--optimizer-in-backward steps each parameter as its gradient is made, so it cannot "
                           f"accumulate gradients: use --grad-accum 1 (got {setup.grad_accum}) or drop the flag")
    if setup.peft:
        raise PlannerError("--optimizer-in-backward is what torchtune's full fine-tuning recipes and HF's layerwise "
                           "GaLore do: use --method full, or drop the flag for LoRA/QLoRA")
    if not setup.parallel.single_gpu:
        raise PlannerError("--optimizer-in-backward is planned for one GPU only (HF's layerwise optimizers refuse "
                           "DDP); drop the multi-GPU flags or the flag")


def optim_dict(setup: Any, d: dict[str, Any]) -> None:
    """Leaves the optimizer's extra fields in a setup's dict only where they are not the defaults."""
    if not setup.optimizer_in_backward:
        d.pop("optimizer_in_backward")
    if setup.optim == _DEFAULT:
        d.pop("optim")


# HF optim_args keys that set no byte of state or temporaries (learning-rate scale, projection
# scaling, schedule-free weighting, stochastic rounding, betas, eps) [transformers 5.24
# trainer_optimizer.py _get_galore_optimizer, _get_apollo_optimizer, _get_torchao_optimizer,
# _get_schedule_free_optimizer]
NO_EFFECT_OPTIM_ARGS = ("scale", "scale_type", "bf16_stochastic_round", "weight_lr_power", "r", "beta1", "beta2",
                        "eps", "weight_decay", "lr",
                        # torch SGD's (HF _get_sgd): gpuplan's SGD keeps its momentum buffer, the safe side
                        "momentum", "nesterov", "dampening")
_INT_ARGS = {"rank": "rank", "update_proj_gap": "update_proj_gap", "block_size": "block_size"}


def parse_optim_args(text: str) -> dict[str, int]:
    """HF's `optim_args` string (`_parse_optim_args`: spaces dropped, `k=v` pairs split on commas) ->
    the OptimSpec fields it sets; raises PlannerError on what changes memory and gpuplan does not model."""
    out: dict[str, int] = {}
    for pair in text.replace(" ", "").split(","):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise PlannerError(f"optim_args: {pair!r} is not key=value (HF reads e.g. rank=64,update_proj_gap=100)")
        if key in _INT_ARGS:
            try:
                out[_INT_ARGS[key]] = int(value)
            except ValueError:
                raise PlannerError(f"optim_args: {key}={value!r} is not an integer") from None
        elif key == "proj_type" and value != "std":
            raise PlannerError(f"optim_args: proj_type={value} changes which side GaLore projects (and 'full' keeps "
                               "two projectors); gpuplan models proj_type=std (the default)")
        elif key == "proj" and value != "random":
            raise PlannerError(f"optim_args: proj={value} changes APOLLO's projector (svd keeps GaLore's); gpuplan "
                               "models proj=random (HF's default)")
        elif key not in NO_EFFECT_OPTIM_ARGS + ("proj_type", "proj"):
            raise PlannerError(f"optim_args: {key} is unknown to gpuplan (it reads rank, update_proj_gap, block_size; "
                               f"{', '.join(NO_EFFECT_OPTIM_ARGS)} have no effect on memory)")
    return out


def optim_from_options(kw: dict[str, Any]) -> OptimSpec:
    """OptimSpec from --galore-rank / --galore-update-proj-gap / --optim-target-modules /
    --optim-block-size and --optim-args (a flag and an optim_args key that disagree are refused)."""
    fields = parse_optim_args(kw.get("optim_args") or "")
    for flag, name in (("galore_rank", "rank"), ("galore_update_proj_gap", "update_proj_gap"),
                       ("optim_block_size", "block_size")):
        value = kw.get(flag)
        if value is None:
            continue
        if name in fields and fields[name] != value:
            raise PlannerError(f"--{flag.replace('_', '-')} {value} and optim_args {name}={fields[name]} disagree; "
                               "give one of them")
        fields[name] = value
    targets = kw.get("optim_target_modules")
    if isinstance(targets, str):
        targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    if targets:
        fields["targets"] = ("all-linear",) if any(t.lower().replace("_", "-") == "all-linear" for t in targets) \
            else tuple(targets)
    return OptimSpec(**fields)
