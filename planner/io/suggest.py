""""Did you mean": the known names closest to what the user typed.

Ranked as people mistype names: a prefix first (`h10` -> h100-*), then shared tokens, the most alike first
(`4090` -> rtx-4090, `rtx-4091` -> rtx-4090), then edit distance (difflib) for typos (`lamma`). Separators
(`-`, `_`, `.`, spaces) and case are ignored throughout.
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9.]+", name.lower()) if t}


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to n of `choices`, best first."""
    choices = list(dict.fromkeys(choices))
    q = _squash(name)
    if not q:
        return []
    prefix = [c for c in choices if _squash(c).startswith(q)]
    qt = _tokens(name)
    def similarity(c: str) -> float:
        return difflib.SequenceMatcher(None, q, _squash(c)).ratio()

    shared = sorted((c for c in choices if c not in prefix and qt & _tokens(c)),
                    key=lambda c: (-len(qt & _tokens(c)), -similarity(c), len(c)))
    squashed = {_squash(c): c for c in choices}
    fuzzy = [squashed[s] for s in difflib.get_close_matches(q, list(squashed), n=n, cutoff=0.5)]
    out = list(dict.fromkeys(sorted(prefix, key=len) + shared + fuzzy))
    return out[:n]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"; did you mean: a, b?" or "" when nothing is close."""
    close = closest(name, choices)
    return f"; did you mean: {', '.join(close)}?" if close else ""
