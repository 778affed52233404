"""What each key of a user's config means to gpuplan: a key table per format, and the report of a read.

Every reader has a module-level `TABLE: dict[str, KeyRule]` (config key -> rule), citing the
framework's own schema. A rule is one of three kinds:

- MODELLED: the key maps to a setup option (or is read to decide one); `note` says which.
- REFUSED: the key switches on something memory-relevant that gpuplan does not model yet; when its
  value switches it on, the read stops with one line naming the key and why (`note`). When the
  value leaves it off (`sample_packing: false`), the key is reported as used ("false: as gpuplan plans").
- NO_EFFECT: logging, data paths, schedule, seeds, saving: no effect on per-GPU memory or step
  time. Nothing memory-relevant may be here (tests/planner/test_fromconfig_corpus.py checks the
  corpus against a list of memory words).

A key a table does not know is neither: it goes to `unknown`, and the estimate says so.
Nested keys are dotted (`optimizer.lr`); a `prefix.*` entry covers every key under `prefix`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from enum import Enum


class Rule(str, Enum):
    MODELLED = "modelled"
    REFUSED = "refused"
    NO_EFFECT = "no_effect"


def on(value: Any) -> bool:
    """True for a value that switches a technique on: true, a non-empty value, a number but 0/1-off."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "none", "null", "0", "off")
    return bool(value)


@dataclass(frozen=True)
class KeyRule:
    rule: Rule
    note: str                                    # MODELLED: maps to; REFUSED: why; NO_EFFECT: what it is
    active: Callable[[Any], bool] = on           # REFUSED: which values switch the technique on
    fix: str = "remove it to plan the rest"      # REFUSED: how to get a plan anyway


def modelled(note: str) -> KeyRule:
    return KeyRule(Rule.MODELLED, note)


def refused(why: str, active: Callable[[Any], bool] = on, fix: str = "remove it to plan the rest") -> KeyRule:
    return KeyRule(Rule.REFUSED, why, active, fix)


def no_effect(note: str, keys: Iterable[str]) -> dict[str, KeyRule]:
    """{key: NO_EFFECT rule} for a group of keys sharing one reason."""
    return {k: KeyRule(Rule.NO_EFFECT, note) for k in keys}


def read_only_with(parent: str, keys: Iterable[str]) -> dict[str, KeyRule]:
    """{key: MODELLED rule} for settings of a technique that `parent` switches on (and that is refused)."""
    return {k: KeyRule(Rule.MODELLED, f"read only with {parent}, which is refused") for k in keys}


def lookup(table: Mapping[str, KeyRule], key: str) -> KeyRule | None:
    """The rule for `key`: its own entry, else the nearest `prefix.*` entry above it."""
    if key in table:
        return table[key]
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        rule = table.get(".".join(parts[:i]) + ".*")
        if rule is not None:
            return rule
    return None


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: true/false/null, lists and strings plain."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        items = [show(v) for v in value]
        return "[" + ", ".join(items[:3]) + (f", ... ({len(items)} items)]" if len(items) > 3 else "]")
    if isinstance(value, Mapping):
        items = [f"{k}: {show(v)}" for k, v in value.items()]
        return "{" + ", ".join(items[:3]) + (", ...}" if len(items) > 3 else "}")
    return str(value)


def flatten(d: Mapping[str, Any], prefix: str = "", depth: int | None = None) -> dict[str, Any]:
    """{dotted key: leaf value}; lists and (past `depth`) dicts stay whole."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and (depth is None or depth > 0):
            out.update(flatten(v, key + ".", None if depth is None else depth - 1))
        else:
            out[key] = v
    return out


@dataclass
class Report:
    """What a read made of every key: used (key -> the flags it set), no_effect, refused lines, unknown."""
    table_name: str                                     # "axolotl", for "unknown to gpuplan's axolotl table"
    used: dict[str, str] = field(default_factory=dict)
    no_effect: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    answerable: dict[str, str] = field(default_factory=dict)   # refusal line -> the option that answers it

    def classify(self, table: Mapping[str, KeyRule], keys: Mapping[str, Any],
                 norm: Callable[[str], str] | None = None) -> list[str]:
        """Sort every key into no_effect / refused / unknown (or off-as-planned); returns the MODELLED
        keys present, for the reader to map. `norm(key)` is the name the table knows it by."""
        todo = []
        for key, value in keys.items():
            rule = lookup(table, norm(key) if norm else key)
            if rule is None:
                self.unknown.append(key)
            elif rule.rule is Rule.NO_EFFECT:
                self.no_effect.append(key)
            elif rule.rule is Rule.REFUSED:
                if rule.active(value):
                    self.refuse(key, value, rule.note, rule.fix)
                else:
                    self.used[key] = f"{show(value)}: as gpuplan plans"
            else:
                todo.append(key)
        return todo

    def refuse(self, key: str, value: Any, why: str, fix: str = "remove it to plan the rest") -> None:
        self.refused.append(f"{key}: {show(value)} is not modelled yet ({why}); {fix}")

    def refuse_unless_given(self, key: str, value: Any, why: str, option: str) -> None:
        """A refusal the command line answers: with --OPTION given, the key is planned at its value."""
        line = f"{key}: {show(value)} is not modelled yet ({why}); give --{option.replace('_', '-')}"
        self.refused.append(line)
        self.answerable[line] = option

    def fallback(self, key: str, value: Any, note: str) -> None:
        """For a MODELLED key the reader read but that set no flag: null, false, or the table's note."""
        if key in self.used or any(r.startswith(f"{key}:") for r in self.refused):
            return
        self.set(key, "null: not set" if value is None else "false: off, as planned" if value is False else note)

    def set(self, key: str, flags: str) -> None:
        """Record that `key` set `flags` (appended when the key already set something)."""
        self.used[key] = f"{self.used[key]} {flags}" if key in self.used else flags


def markdown_table(table: Mapping[str, KeyRule]) -> str:
    """The key table as a markdown table: key | rule | what it maps to / why."""
    rows = ["| key | rule | maps to / why |", "|---|---|---|"]
    for key in sorted(table, key=lambda k: ({Rule.MODELLED: 0, Rule.REFUSED: 1, Rule.NO_EFFECT: 2}[table[k].rule], k)):
        r = table[key]
        rows.append(f"| `{key}` | {r.rule.value} | {r.note.replace('|', '/')} |")
    return "\n".join(rows)
