"""The optimizers beyond HF's AdamW family, built as HF Trainer builds them (transformers 5.24
trainer_optimizer.py), each from its own library: galore_torch, torchao.optim, schedulefree,
adam_mini. Imported lazily: each library is needed only when its optimizer is asked for."""
from __future__ import annotations

import re

import torch
from torch import nn

from gpuplan.planner import Optimizer, TrainingSetup

# TrainingArguments defaults (learning_rate, adam_beta1/2, adam_epsilon, weight_decay), as the
# other builders use them [profiler/kernels/bnb_optim.py _ADAM]
_ADAM = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
_DECODER_LINEAR = (r".*.attn.*", r".*.mlp.*")   # the GaLore README's optim_target_modules


def low_rank_targets(lm: nn.Module, setup: TrainingSetup) -> set[str]:
    """Parameter names transformers' _setup_low_rank_optimizer targets: the weights of nn.Linear
    modules matching optim_target_modules (check_target_module_exists), or every nn.Linear for
    "all-linear". gpuplan's default (no targets given) is the GaLore README's attn/mlp regexes."""
    from transformers.trainer_utils import check_target_module_exists   # lazy: each library is loaded for its optimizer only

    targets = setup.optim.targets
    all_linear = targets == ("all-linear",)
    out = set()
    for name, module in lm.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if all_linear:
            hit = True
        elif targets:
            hit = bool(check_target_module_exists(list(targets), name))
        else:
            hit = any(re.fullmatch(r, name) for r in _DECODER_LINEAR)
        if hit:
            out.add(name + ".weight")
    return out


def _low_rank_groups(params: list[nn.Parameter], lm: nn.Module, setup: TrainingSetup, extra: dict) -> list[dict]:
    names = {id(p): n for n, p in lm.named_parameters()}   # a tied weight has its first name (embed_tokens)
    targets = low_rank_targets(lm, setup)
    target = [p for p in params if names.get(id(p)) in targets]
    rest = [p for p in params if names.get(id(p)) not in targets]
    groups = [{"params": rest}] if rest else []
    if target:
        groups.append({"params": target, **extra})
    return groups


class Combined:
    """Two optimizers stepped one after the other as one (Muon and the AdamW of the other parameters)."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.optimizers = dict(enumerate(parts))   # step.py _host_steps looks inside
        self.param_groups = [g for o in parts for g in o.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for o in self.optimizers.values() for p, s in o.state.items()}

    def step(self) -> None:
        for o in self.optimizers.values():
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=set_to_none)


def extra_optimizer(params: list[nn.Parameter], setup: TrainingSetup, lm: nn.Module) -> torch.optim.Optimizer:
    kind = setup.optimizer
    if kind is Optimizer.GALORE_ADAMW:
        from galore_torch import GaLoreAdamW   # lazy: each library is loaded for its optimizer only

        # _get_galore_optimizer: rank, update_proj_gap, scale (0.25), proj_type ("std") on the target group
        extra = {"rank": setup.optim.rank, "update_proj_gap": setup.optim.update_proj_gap, "scale": 0.25,
                 "proj_type": "std"}
        return GaLoreAdamW(_low_rank_groups(params, lm, setup, extra), **_ADAM)
    if kind is Optimizer.APOLLO_ADAMW:
        from apollo_torch import APOLLOAdamW   # lazy: each library is loaded for its optimizer only

        # _get_apollo_optimizer: rank, proj "random", scale_type "channel", update_proj_gap, scale 1.0,
        # proj_type "std" on the target group
        extra = {"rank": setup.optim.rank, "proj": "random", "scale_type": "channel",
                 "update_proj_gap": setup.optim.update_proj_gap, "scale": 1.0, "proj_type": "std"}
        return APOLLOAdamW(_low_rank_groups(params, lm, setup, extra), **_ADAM)
    if kind in (Optimizer.TORCHAO_ADAMW_8BIT, Optimizer.TORCHAO_ADAMW_4BIT):
        from torchao.optim import AdamW4bit, AdamW8bit   # lazy: each library is loaded for its optimizer only

        cls = AdamW8bit if kind is Optimizer.TORCHAO_ADAMW_8BIT else AdamW4bit
        # _get_torchao_optimizer: block_size (256), bf16_stochastic_round False, adam kwargs
        return cls(params, block_size=setup.optim.block_size, bf16_stochastic_round=False, **_ADAM)
    if kind is Optimizer.SCHEDULE_FREE_ADAMW:
        from schedulefree import AdamWScheduleFree   # lazy: each library is loaded for its optimizer only

        # _get_schedule_free_optimizer: adam kwargs, weight_decay, warmup_steps, weight_lr_power 2, r 0
        opt = AdamWScheduleFree(params, lr=_ADAM["lr"], betas=_ADAM["betas"], eps=_ADAM["eps"], weight_decay=0.0,
                                warmup_steps=0, weight_lr_power=2.0, r=0.0)
        opt.train()   # Trainer calls optimizer.train() before the training loop (trainer.py _inner_training_loop)
        return opt
    if kind is Optimizer.MUON:
        # torch 2.13 Muon docstring: Muon on p.ndim == 2, AdamW on the rest
        matrices = [p for p in params if p.ndim == 2]
        rest = [p for p in params if p.ndim != 2]
        parts = []
        if matrices:
            parts.append(torch.optim.Muon(matrices, lr=0.02, momentum=0.95))
        if rest:
            parts.append(torch.optim.AdamW(rest, lr=3e-4, weight_decay=0.01))
        return Combined(parts)
    if kind is Optimizer.ADAM_MINI:
        from adam_mini import Adam_mini   # lazy: each library is loaded for its optimizer only

        # as LLaMA-Factory builds it (train/trainer_utils.py _create_adam_mini_optimizer): the model's
        # named parameters and its hidden size and head counts
        ids = {id(p) for p in params}
        cfg = lm.config
        return Adam_mini(named_parameters=[(n, p) for n, p in lm.named_parameters() if id(p) in ids],
                         lr=_ADAM["lr"], betas=_ADAM["betas"], eps=_ADAM["eps"], weight_decay=0.0,
                         dim=cfg.hidden_size, n_heads=cfg.num_attention_heads,
                         n_kv_heads=getattr(cfg, "num_key_value_heads", None), verbose=False)
    raise ValueError(f"{kind.value} has no simulator builder")
