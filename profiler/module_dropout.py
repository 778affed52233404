"""LyCORIS module dropout under FakeTensorMode: the one host-side draw LoHa and LoKr make.

peft 0.21.2's LoHa and LoKr layers decide on the host whether an adapter runs this step
[peft/tuners/loha/layer.py Linear.forward l.241, peft/tuners/lokr/layer.py l.309]:

    if (not self.training) or (self.training and torch.rand(1) > module_dropout):

Under FakeTensorMode `torch.rand(1)` is a fake tensor and the comparison's `bool()` needs its value
(`aten._local_scalar_dense`), which a fake tensor cannot give. `module_dropout_draws()` answers that one
call, and only from those two modules, with the supremum of `torch.rand`'s range [0, 1): every adapter
runs unless `module_dropout == 1`. A real draw would skip some adapters at random in a step; the plan is
the step where none is skipped, the peak over steps, which is what a user must fit (with the default
`module_dropout = 0.0` it is every step). Every other `torch.rand` call is the real one.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch

CALLERS = ("peft.tuners.loha.layer", "peft.tuners.lokr.layer")
SUPREMUM = 1.0   # torch.rand draws from [0, 1): 1.0 > module_dropout for every module_dropout < 1


@contextlib.contextmanager
def module_dropout_draws() -> Iterator[None]:
    original = torch.rand

    def rand(*size, **kwargs):
        if size == (1,) and not kwargs and sys._getframe(1).f_globals.get("__name__") in CALLERS:
            return SUPREMUM
        return original(*size, **kwargs)

    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = original
