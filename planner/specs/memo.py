"""Per-model memo caches for the planner's hot path (fit, recommend and sweeps call estimate()
thousands of times with one model object)."""
from __future__ import annotations

from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 4096   # a bound, not a tuning: a cache that grows past it starts again


def per_model(cache: dict, key: Hashable, model: Any, make: Callable[[], T]) -> T:
    """cache[key] computed for this very model object, else make(). Keys are or start with id(model);
    the entry keeps the model alive, so its id cannot be reused by another object meanwhile."""
    hit = cache.get(key)
    if hit is None or hit[0] is not model:
        if len(cache) > MAX_ENTRIES:
            cache.clear()
        hit = cache[key] = (model, make())
    return hit[1]
