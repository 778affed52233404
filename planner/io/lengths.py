"""--length-histogram: a user's sample lengths (tokens) and how many samples have each.

Formats (one line each on error, PlannerError):
- JSON object {"512": 1200, "1024": 300, ...} (length -> count), or a JSON list of
  {"length": 512, "count": 1200} objects (or of bare lengths, one per sample);
- CSV lines `length,count` (a header line `length,count` is allowed; `#` starts a comment).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..specs.errors import PlannerError
from .files import read_text

WHAT = "--length-histogram file"


def _int(v: object, where: str) -> int:
    try:
        n = int(str(v).strip())
    except ValueError:
        raise PlannerError(f"{WHAT}: {where}: {v!r} is not a whole number") from None
    if n < 0 or (where.startswith("length") and n < 1):
        raise PlannerError(f"{WHAT}: {where}: {n} must be positive")
    return n


def parse_length_histogram(text: str, json_file: bool) -> dict[int, int]:
    """{length: count} from the file's text; raises PlannerError naming the bad entry."""
    out: dict[int, int] = {}

    def add(length: object, count: object) -> None:
        n = _int(length, f"length {length!r}")
        out[n] = out.get(n, 0) + _int(count, f"count of length {n}")

    if json_file:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlannerError(f"{WHAT}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        if isinstance(data, dict):
            for k, v in data.items():
                add(k, v)
        elif isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and "length" in item:
                    add(item["length"], item.get("count", 1))
                else:
                    add(item, 1)
        else:
            raise PlannerError(f"{WHAT}: expected a JSON object {{length: count}} or a list, got {type(data).__name__}")
    else:
        for i, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line or (i == 1 and line.replace(" ", "").lower() == "length,count"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2:
                raise PlannerError(f"{WHAT}: line {i}: expected `length,count`, got {line!r}")
            add(*parts)
    out = {n: c for n, c in out.items() if c > 0}
    if not out:
        raise PlannerError(f"{WHAT}: no sample lengths found (expected `length,count` lines or a JSON object)")
    return out


def read_length_histogram(path: str) -> dict[int, int]:
    return parse_length_histogram(read_text(path, WHAT), Path(path).suffix.lower() == ".json")
