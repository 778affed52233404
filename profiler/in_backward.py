"""The optimizer step inside backward, as torchtune and transformers run it.

torchtune (training/_memory.py `OptimizerInBackwardWrapper`, `register_optim_in_bwd_hooks`; recipes
full_finetune_single_device.py `_setup_optimizer(optimizer_in_bwd=True)`): one optimizer per
parameter, `{p: config.instantiate(cfg_optimizer, [p]) for p in model.parameters()}`, and on each
parameter a post-accumulate-grad hook `optim_dict[param].step(); optim_dict[param].zero_grad()`.
transformers 5.24 (trainer_optimizer.py `_setup_low_rank_optimizer`, the `*_layerwise` optimizers):
the same, `optimizer_dict[param] = optimizer_cls([{"params": [param], ...}])` and a hook
`optimizer_dict[param].step(); optimizer_dict[param].zero_grad()`; Trainer's own optimizer is a
`LayerWiseDummyOptimizer` whose step() does nothing. zero_grad's default set_to_none=True frees
each gradient as soon as its parameter has stepped.
"""
from __future__ import annotations

from typing import Callable

import torch


class InBackward:
    """Per-parameter optimizers stepped by post-accumulate-grad hooks; step() and zero_grad() of the
    training loop do nothing (transformers' LayerWiseDummyOptimizer, torchtune's wrapper)."""

    def __init__(self, params: list[torch.nn.Parameter],
                 make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]) -> None:
        self.optimizers: dict[torch.nn.Parameter, torch.optim.Optimizer] = {p: make([p]) for p in params}
        self.param_groups = [g for opt in self.optimizers.values() for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.optimizers.values() for p, s in opt.state.items()}

    def hook(self, param: torch.nn.Parameter) -> None:
        if param.grad is not None:
            self.optimizers[param].step()
            self.optimizers[param].zero_grad()

    def register(self, params: list[torch.nn.Parameter]) -> list:
        """The hooks, registered after any other post-accumulate-grad hook (the tracker's sees the gradient first)."""
        return [p.register_post_accumulate_grad_hook(self.hook) for p in params]

    def step(self) -> None:
        """The training loop's step: every parameter stepped already, in backward."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Every gradient was freed by its hook."""
