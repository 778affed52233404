"""generate's stop check answered on the host: without an EOS token and with min_new_tokens ==
max_new_tokens the only stopping criterion is the length, so `StopCheck.__call__` (which reads
`bool(unfinished_sequences.max() == 0)` from the device, transformers/generation/utils.py) is answered
from the length alone; used by profiler/generation.py and profiler/ppo_step.py (no simulator import,
so either may use it)."""
from __future__ import annotations

import contextlib
from typing import Iterator

from transformers.generation import utils as generation_utils


@contextlib.contextmanager
def length_only_stop(max_length: int) -> Iterator[None]:
    """StopCheck answering from the length alone (see the module docstring), inside the block only."""
    original = generation_utils.StopCheck.__call__

    def stop(self, unfinished_sequences, tokens, length: int) -> bool:   # noqa: ARG001  (StopCheck's signature)
        return length >= max_length

    generation_utils.StopCheck.__call__ = stop
    try:
        yield
    finally:
        generation_utils.StopCheck.__call__ = original
