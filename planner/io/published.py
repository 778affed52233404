"""Published real-GPU runs (data/published/*.json, schema in data/published/README.md), validated.

API: `load_published() -> tuple[PublishedRun, ...]`, `held_out_sources() -> frozenset[str]`,
`recorded_errors() -> dict`. Every file is checked against the schema when read; a bad file
raises one PlannerError naming the file, the run and the field.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..specs.errors import PlannerError
from ..specs.setup import TrainingSetup
from .catalog import data_dir

SPLIT_FILE = "split.json"
ERRORS_FILE = "errors_recorded.json"
RANGES_FILE = "ranges_recorded.json"     # planner/plans/ranges.py, written with ERRORS_FILE
_NOT_SOURCES = {SPLIT_FILE, ERRORS_FILE, RANGES_FILE}
_HEX40 = re.compile(r"[0-9a-f]{40}")


class FigureKind(str, Enum):
    """What a published figure measured. Memory kinds say which gpuplan figure they compare with."""

    MAX_MEMORY_ALLOCATED = "max_memory_allocated"        # torch.cuda.max_memory_allocated()
    MAX_MEMORY_RESERVED = "max_memory_reserved"          # torch.cuda.max_memory_reserved()
    NVIDIA_SMI = "nvidia_smi"                            # memory.used: reserved + CUDA context + libraries
    TORCHTUNE_ACTIVE = "torchtune_active"                # memory_stats()['active_bytes.all.peak'] == allocated
    PEAK_MEMORY_UNSPECIFIED = "peak_memory_unspecified"  # "peak memory" without saying which
    TOKENS_PER_S = "tokens_per_s"
    STEP_TIME_S = "step_time_s"
    TRAIN_TIME_S = "train_time_s"
    TOKENS = "tokens"

    @property
    def memory(self) -> bool:
        return self in _COMPARED_WITH

    @property
    def compared_with(self) -> str:
        """The MemoryEstimate attribute this memory figure is compared with."""
        return _COMPARED_WITH[self]


# a figure whose kind is not stated is compared with reserved: what a caching-allocator run holds
_COMPARED_WITH = {
    FigureKind.MAX_MEMORY_ALLOCATED: "peak_allocated_bytes",
    FigureKind.TORCHTUNE_ACTIVE: "peak_allocated_bytes",
    FigureKind.MAX_MEMORY_RESERVED: "peak_reserved_bytes",
    FigureKind.PEAK_MEMORY_UNSPECIFIED: "peak_reserved_bytes",
    FigureKind.NVIDIA_SMI: "device_total_bytes",
}
_UNITS = ("bytes", "MiB", "GiB", "GB")
_SCOPES = ("per_gpu", "global")


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str
    path: str
    url: str


@dataclass(frozen=True)
class Figure:
    """One published figure. Memory: `bytes` (int, converted from `published` in `unit`).
    Throughput and time: `value` (tokens/s, seconds or a token count); `scope` says whether a
    tokens/s is per GPU or over all GPUs."""

    kind: FigureKind
    published: str
    bytes: int | None = None
    value: float | None = None
    unit: str | None = None
    conversion: str | None = None
    derivation: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class PublishedRun:
    id: str
    file: str                        # the source file's name (data/published/<file>)
    source: Source
    stack: str
    quote: str
    gpu: str                         # as published
    gpu_catalog: str | None          # gpuplan catalog name; None where the catalog lacks it
    gpu_count: int
    versions: dict[str, str | None]
    setup_text: str                  # the published setup in its own words
    measured: tuple[Figure, ...]
    mapping: dict[str, Any] | None   # {"model": preset, **TrainingSetup.from_dict keys}
    mapping_null_reason: str | None
    mapping_notes: tuple[str, ...]
    unmodelled: tuple[str, ...]
    time_overrides: dict[str, Any] | None

    @property
    def model(self) -> str | None:
        return self.mapping["model"] if self.mapping else None

    def setup(self) -> TrainingSetup:
        """The gpuplan setup this run maps to; raises PlannerError for an unmapped run."""
        if self.mapping is None:
            raise PlannerError(f"published run {self.id} has no gpuplan mapping: {self.mapping_null_reason}")
        return TrainingSetup.from_dict(self.mapping)

    def time_setup(self) -> TrainingSetup:
        """The setup for throughput: the mapping with `time_overrides` (e.g. the mean sample length) applied."""
        return TrainingSetup.from_dict({**(self.mapping or {}), **(self.time_overrides or {})}) if self.mapping else self.setup()

    def figures(self, kind: FigureKind) -> tuple[Figure, ...]:
        return tuple(f for f in self.measured if f.kind is kind)

    @property
    def memory_figures(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.measured if f.kind.memory)

    def figure(self, kind: FigureKind) -> Figure | None:
        found = self.figures(kind)
        return found[0] if found else None


def published_dir() -> Path:
    """data/published of the source tree (editable install) or gpuplan/data/published (wheel)."""
    return data_dir() / "published"


class _Check:
    """Field access that raises one PlannerError line naming file, run and field."""

    def __init__(self, file: str, run: str | None = None):
        self.file, self.run = file, run

    def fail(self, field: str, why: str) -> None:
        where = f"data/published/{self.file}" + (f", run {self.run}" if self.run else "")
        raise PlannerError(f"{where}: field {field!r} {why}")

    def get(self, d: Any, key: str, kind: type | tuple[type, ...], prefix: str = "", optional: bool = False) -> Any:
        name = prefix + key
        if not isinstance(d, dict):
            self.fail(prefix.rstrip(".") or key, "must be an object")
        if key not in d or d[key] is None:
            if optional:
                return None
            self.fail(name, "is missing")
        value = d[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(name, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            self.fail(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip() and not optional:
            self.fail(name, "is empty")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}.get(k, k.__name__)
                       for k in kinds)


def _figure(c: _Check, d: Any, i: int) -> Figure:
    p = f"measured[{i}]."
    kind_s = c.get(d, "kind", str, p)
    try:
        kind = FigureKind(kind_s)
    except ValueError:
        c.fail(p + "kind", f"is {kind_s!r}, not one of {', '.join(k.value for k in FigureKind)}")
    published = c.get(d, "published", str, p)
    if kind.memory:
        nbytes = c.get(d, "bytes", int, p)
        unit = c.get(d, "unit", str, p)
        if unit not in _UNITS:
            c.fail(p + "unit", f"is {unit!r}, not one of {', '.join(_UNITS)}")
        if nbytes <= 0:
            c.fail(p + "bytes", f"must be positive, got {nbytes}")
        return Figure(kind, published, bytes=nbytes, unit=unit, conversion=c.get(d, "conversion", str, p),
                      derivation=c.get(d, "derivation", str, p, optional=True))
    value = float(c.get(d, "value", (int, float), p))
    if value <= 0:
        c.fail(p + "value", f"must be positive, got {value}")
    scope = c.get(d, "scope", str, p, optional=True)
    if kind is FigureKind.TOKENS_PER_S and scope not in _SCOPES:
        c.fail(p + "scope", f"must be one of {', '.join(_SCOPES)} for tokens_per_s, got {scope!r}")
    return Figure(kind, published, value=value, derivation=c.get(d, "derivation", str, p, optional=True), scope=scope)


def _run(file: str, source: Source, stack: str, d: Any, i: int) -> PublishedRun:
    c = _Check(file, f"#{i}")
    rid = c.get(d, "id", str)
    c.run = rid
    hw = c.get(d, "hardware", dict)
    count = c.get(hw, "count", int, "hardware.")
    if count < 1:
        c.fail("hardware.count", f"must be at least 1, got {count}")
    versions = c.get(d, "versions", dict)
    for k, v in versions.items():
        if v is not None and not isinstance(v, str):
            c.fail(f"versions.{k}", f"must be a string or null, got {type(v).__name__}")
    measured = c.get(d, "measured", list)
    if not measured:
        c.fail("measured", "is empty: a run records at least one published figure")
    mapping = d.get("mapping")
    reason = c.get(d, "mapping_null_reason", str, optional=True)
    if mapping is None:
        if not reason:
            c.fail("mapping_null_reason", "is missing: a run without a mapping says why")
    else:
        if not isinstance(mapping, dict):
            c.fail("mapping", f"must be an object or null, got {type(mapping).__name__}")
        c.get(mapping, "model", str, "mapping.")
    notes = c.get(d, "mapping_notes", list)
    unmodelled = c.get(d, "unmodelled", list)
    for field, items in (("mapping_notes", notes), ("unmodelled", unmodelled)):
        for j, s in enumerate(items):
            if not isinstance(s, str) or not s.strip():
                c.fail(f"{field}[{j}]", "must be a non-empty string")
    time_overrides = c.get(d, "time_overrides", dict, optional=True)
    unknown = set(d) - {"id", "quote", "hardware", "versions", "setup", "measured", "mapping", "mapping_null_reason",
                        "mapping_notes", "unmodelled", "time_overrides"}
    if unknown:
        c.fail(sorted(unknown)[0], "is not a run field (data/published/README.md lists them)")
    return PublishedRun(
        id=rid, file=file, source=source, stack=stack, quote=c.get(d, "quote", str),
        gpu=c.get(hw, "gpu", str, "hardware."), gpu_catalog=c.get(hw, "catalog", str, "hardware.", optional=True),
        gpu_count=count, versions=dict(versions), setup_text=c.get(d, "setup", str),
        measured=tuple(_figure(c, f, j) for j, f in enumerate(measured)), mapping=mapping, mapping_null_reason=reason,
        mapping_notes=tuple(notes), unmodelled=tuple(unmodelled), time_overrides=time_overrides)


def _read(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PlannerError(f"data/published/{path.name} is not valid JSON (line {e.lineno}: {e.msg})") from None


def load_file(path: Path) -> tuple[PublishedRun, ...]:
    """The runs of one source file, validated."""
    data = _read(path)
    c = _Check(path.name)
    src = c.get(data, "source", dict)
    commit = c.get(src, "commit", str, "source.")
    if not _HEX40.fullmatch(commit):
        c.fail("source.commit", f"must be 40 lower-case hex digits, got {commit!r}")
    repo = c.get(src, "repo", str, "source.")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        c.fail("source.repo", f"must be owner/name, got {repo!r}")
    source = Source(repo, commit, c.get(src, "path", str, "source."), c.get(src, "url", str, "source."))
    stack = c.get(data, "stack", str)
    runs = c.get(data, "runs", list)
    out = tuple(_run(path.name, source, stack, r, i) for i, r in enumerate(runs))
    seen: set[str] = set()
    for r in out:
        if r.id in seen:
            _Check(path.name, r.id).fail("id", "is used twice in this file")
        seen.add(r.id)
    return out


@lru_cache(maxsize=1)
def load_published() -> tuple[PublishedRun, ...]:
    """Every published run in data/published/*.json, in file then run order; ids are unique."""
    runs: list[PublishedRun] = []
    for path in sorted(published_dir().glob("*.json")):
        if path.name not in _NOT_SOURCES:
            runs.extend(load_file(path))
    ids: dict[str, str] = {}
    for r in runs:
        if r.id in ids:
            _Check(r.file, r.id).fail("id", f"is also used in {ids[r.id]}")
        ids[r.id] = r.file
    return tuple(runs)


@lru_cache(maxsize=1)
def held_out_sources() -> frozenset[str]:
    """Source file names (e.g. 'litgpt.json') held out from any fitting (data/published/split.json)."""
    data = _read(published_dir() / SPLIT_FILE)
    c = _Check(SPLIT_FILE)
    held = c.get(data, "held_out", list)
    c.get(data, "reason", str)
    known = {p.name for p in published_dir().glob("*.json")} - _NOT_SOURCES
    for name in held:
        if name not in known:
            c.fail("held_out", f"names {name!r}, which is not a source file here")
    return frozenset(held)


def recorded_errors() -> dict[str, Any]:
    """data/published/errors_recorded.json as written by `benchmarks/published.py --record`; {} if absent."""
    path = published_dir() / ERRORS_FILE
    return _read(path) if path.exists() else {}


def errors_path() -> Path:
    return published_dir() / ERRORS_FILE
