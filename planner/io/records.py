"""The measurement record: one JSON file per real run in `data/measurements/`, one schema for all.

Written by the profiler's CUDA runs (kind "profile"), `gpuplan watch` (kind "watch") and GPU
validation (kind "gpu_validate"); read by the time model's calibration (planner/speed/throughput.py
`calibrated_mfu` reads `gpu`, `setup` and `timing.step_time_s`, so those three keys stay where
they are). The schema, field by field, is in data/measurements/README.md.

API: `environment(...)`, `make_record(kind, env, ...)`, `validate_record(d, where)`,
`write_record(path, d)` (atomic), `load_records(folder)`. Pure Python: no torch, no NVML; the
caller passes what it read from the device.
"""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from .catalog import resolve_gpu
from .files import write_json_atomic
from ..specs.enums import RunPhase
from ..specs.errors import PlannerError
from ..specs.setup import TrainingSetup

SCHEMA = "gpuplan.record/1"
SCHEMA_PREFIX = "gpuplan.record/"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes")
MEMORY_FIGURES = ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes")


class RecordKind(str, Enum):
    """Who wrote the record."""

    PROFILE = "profile"            # `gpuplan profile --device cuda`
    WATCH = "watch"                # `gpuplan watch`: a user's own run
    GPU_VALIDATE = "gpu_validate"  # the estimate-vs-GPU validation matrix


def _version(package: str) -> str | None:
    """The installed distribution's version, read from its metadata (the package is not imported)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(gpu_name: str, gpu_count: int = 1, driver: str | None = None, cuda: str | None = None,
                versions: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The record's `environment` object. `gpu_name` is the NVML name ("cpu" for a CPU run);
    library versions are read from installed metadata unless `versions` gives them (torch's own
    `torch.__version__` carries the build tag, "2.13.0+cpu", that metadata may lack)."""
    env: dict[str, Any] = {"gpu_name": gpu_name, "gpu_count": int(gpu_count), "driver": driver, "cuda": cuda}
    versions = versions or {}
    for lib in LIBRARIES:
        env[lib] = versions[lib] if lib in versions else _version(lib)
    env["python"] = platform.python_version()
    env["platform"] = platform.platform()
    return env


def catalog_gpu_name(nvml_name: str) -> str:
    """The gpuplan catalog name of a device (`NVIDIA H100 80GB HBM3` -> `h100-sxm-80gb`), or the
    NVML name itself where the catalog does not know it."""
    try:
        return resolve_gpu(nvml_name).name
    except PlannerError:
        return nvml_name


def _memory(d: Mapping[str, Any] | None) -> dict[str, int | None]:
    d = d or {}
    return {k: (None if d.get(k) is None else int(d[k])) for k in MEMORY_FIGURES}


def make_record(kind: RecordKind | str, env: Mapping[str, Any], *, model: str | None = None,
                setup: Mapping[str, Any] | None = None, memory: Mapping[str, Any] | None = None,
                run_phases: Mapping[RunPhase | str, Mapping[str, Any]] | None = None,
                timing: Mapping[str, Any] | None = None, device: Mapping[str, Any] | None = None,
                files: Mapping[str, str] | None = None, notes: Iterable[str] = (),
                recorded_at: datetime | None = None) -> dict[str, Any]:
    """A validated record dict. `setup` is `TrainingSetup.to_dict(spec)`; `model` (the preset,
    hub id or config path as the user gave it) is also copied into `setup["model"]`, where the
    time model's calibration looks for it. `gpu` is the catalog name of `env["gpu_name"]`."""
    kind = RecordKind(kind)
    when = (recorded_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    setup_d = None if setup is None else {**setup, **({"model": model} if model is not None else {})}
    dev = dict(device or {})
    record = {
        "schema": SCHEMA,
        "kind": kind.value,
        "recorded_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "gpu": catalog_gpu_name(env["gpu_name"]),
        "environment": dict(env),
        "model": model,
        "setup": setup_d,
        "memory": _memory(memory),
        "run_phases": {RunPhase(p).value: _memory(m) for p, m in (run_phases or {}).items()},
        "timing": None if timing is None else {
            "step_time_s": float(timing["step_time_s"]),
            "tokens_per_s": None if timing.get("tokens_per_s") is None else float(timing["tokens_per_s"]),
            "steps_timed": int(timing["steps_timed"])},
        "device": {"cuda_context_bytes": dev.get("cuda_context_bytes"),
                   "cublas_workspace_bytes": dev.get("cublas_workspace_bytes"),
                   # PYTORCH_CUDA_ALLOC_CONF as the run saw it ("" when unset)
                   "alloc_conf": str(dev.get("alloc_conf") or "")},
        "files": {str(k): str(v) for k, v in (files or {}).items()},
        "notes": [str(n) for n in notes],
    }
    validate_record(record, f"<new {kind.value} record>")
    return record


# --- validation ------------------------------------------------------------------------------------
_NULL = type(None)
_ENVIRONMENT = {"gpu_name": (str,), "gpu_count": (int,), "driver": (str, _NULL), "cuda": (str, _NULL),
                "torch": (str, _NULL), "transformers": (str, _NULL), "peft": (str, _NULL),
                "bitsandbytes": (str, _NULL), "python": (str,), "platform": (str,)}
_FIGURES = {k: (int, _NULL) for k in MEMORY_FIGURES}
_TIMING = {"step_time_s": (int, float), "tokens_per_s": (int, float, _NULL), "steps_timed": (int,)}
_DEVICE = {"cuda_context_bytes": (int, _NULL), "cublas_workspace_bytes": (int, _NULL), "alloc_conf": (str,)}
_TOP = ("schema", "kind", "recorded_at", "gpu", "environment", "model", "setup", "memory", "run_phases",
        "timing", "device", "files", "notes")


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is _NULL else t.__name__ for t in types)


def _check_object(obj: Any, keys: Mapping[str, tuple[type, ...]], field: str, fail) -> None:
    if not isinstance(obj, dict):
        fail(field, f"must be an object, not {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        fail(f"{field}.{missing[0]}", "is missing")
    extra = sorted(set(obj) - set(keys))
    if extra:
        fail(f"{field}.{extra[0]}", f"is not a field of {SCHEMA} (known: {', '.join(keys)})")
    for k, types in keys.items():
        v = obj[k]
        if isinstance(v, bool) or not isinstance(v, types):   # bool is an int to Python, not to the schema
            fail(f"{field}.{k}", f"must be {_type_name(types)}, not {type(v).__name__}")


def validate_record(d: Any, where: str) -> None:
    """Raises PlannerError, one line naming `where` (the file) and the field, if `d` is not a valid
    `gpuplan.record/1` record."""
    def fail(field: str, problem: str):
        raise PlannerError(f"{where}: {field} {problem}")

    if not isinstance(d, dict):
        fail("record", f"must be a JSON object, not {type(d).__name__}")
    if d.get("schema") != SCHEMA:
        fail("schema", f"is {d.get('schema')!r}; this gpuplan reads {SCHEMA!r}")
    missing = [k for k in _TOP if k not in d]
    if missing:
        fail(missing[0], "is missing")
    extra = sorted(set(d) - set(_TOP))
    if extra:
        fail(extra[0], f"is not a field of {SCHEMA} (known: {', '.join(_TOP)})")
    if d["kind"] not in [k.value for k in RecordKind]:
        fail("kind", f"is {d['kind']!r}; one of {', '.join(k.value for k in RecordKind)}")
    try:
        stamp = datetime.fromisoformat(str(d["recorded_at"]).replace("Z", "+00:00"))
    except ValueError:
        fail("recorded_at", f"is {d['recorded_at']!r}, not an ISO-8601 time")
    if stamp.utcoffset() is None or stamp.utcoffset().total_seconds() != 0:
        fail("recorded_at", f"is {d['recorded_at']!r}: it must be UTC (end in Z or +00:00)")
    if not isinstance(d["gpu"], str) or not d["gpu"]:
        fail("gpu", "must be a non-empty string (the catalog name, or the NVML name)")
    _check_object(d["environment"], _ENVIRONMENT, "environment", fail)
    if not isinstance(d["model"], (str, _NULL)):
        fail("model", f"must be string or null, not {type(d['model']).__name__}")
    if d["setup"] is not None:
        _check_setup(d["setup"], d["model"], fail)
    _check_object(d["memory"], _FIGURES, "memory", fail)
    if not isinstance(d["run_phases"], dict):
        fail("run_phases", "must be an object")
    for phase, figures in d["run_phases"].items():
        if phase not in RunPhase.values():
            fail(f"run_phases.{phase}", f"is not a run phase ({', '.join(RunPhase.values())})")
        _check_object(figures, _FIGURES, f"run_phases.{phase}", fail)
    if d["timing"] is not None:
        _check_object(d["timing"], _TIMING, "timing", fail)
        if not d["timing"]["step_time_s"] > 0:
            fail("timing.step_time_s", f"must be positive, not {d['timing']['step_time_s']}")
        _check_calibratable(d, fail)
    _check_object(d["device"], _DEVICE, "device", fail)
    if not isinstance(d["files"], dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in d["files"].items()):
        fail("files", "must be an object of strings")
    if not isinstance(d["notes"], list) or not all(isinstance(n, str) for n in d["notes"]):
        fail("notes", "must be a list of strings")


def _check_setup(setup: Any, model: str | None, fail) -> None:
    """`setup` must be what TrainingSetup.to_dict() writes (TrainingSetup.from_dict reads it back)."""
    if not isinstance(setup, dict):
        fail("setup", f"must be an object or null, not {type(setup).__name__}")
    if model is not None and setup.get("model") != model:
        fail("setup.model", f"is {setup.get('model')!r}; it must repeat the record's model {model!r}")
    try:
        TrainingSetup.from_dict(setup).validate()
    except PlannerError as e:
        fail("setup", f"is not a gpuplan setup: {e}")
    except TypeError as e:
        fail("setup", f"is not a gpuplan setup: {e}")


def _check_calibratable(d: Mapping[str, Any], fail) -> None:
    """A record with `timing` calibrates the time model's MFU (planner/speed/throughput.py calibrated_mfu),
    which resolves `gpu` in the catalog and `setup.model` as a model: both must be there."""
    try:
        name = resolve_gpu(d["gpu"]).name
    except PlannerError:
        name = None
    if name != d["gpu"]:
        fail("timing", f"needs a catalog GPU name in gpu (the time model calibrates per catalog GPU), "
                       f"not {d['gpu']!r}; set timing to null for an uncatalogued device")
    if d["setup"] is None or not isinstance(d["setup"].get("model"), str):
        fail("timing", "needs setup.model (the time model recomputes the step's FLOPs from the model and setup)")


# --- files -----------------------------------------------------------------------------------------
def write_record(path: str | os.PathLike, d: Mapping[str, Any]) -> Path:
    """Validates `d` and writes it to `path` via a temporary file and os.replace (never half a file)."""
    path = Path(path)
    validate_record(d, str(path))
    write_json_atomic(path, d)
    return path


def load_records(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every `gpuplan.record/*` file in `folder` (*.json, sorted by name), validated. Files without a
    `schema` key are other data (data/measurements/accuracy_simulate.json) and are skipped; a record
    of another version, or an invalid one, raises PlannerError naming the file and field."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            with open(path) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise PlannerError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
        schema = d.get("schema") if isinstance(d, dict) else None
        if schema is None or not str(schema).startswith(SCHEMA_PREFIX):
            continue
        validate_record(d, str(path))
        out.append(d)
    return out

