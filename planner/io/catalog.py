"""The only place the planner reads files: model presets, the GPU catalog, assumptions.

Names are forgiving: case, `_`/`.`/space versus `-`, and an org prefix (`meta-llama/...`) are
ignored when matching, and an unknown name gets the closest known names in its error.
"""
from __future__ import annotations

import json
import os
import re
from importlib.resources import files
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..specs.errors import PlannerError
from ..specs.gpu import GpuSpec
from ..specs.model import ModelSpec
from .architectures import model_from_config
from .files import load_yaml, read_text
from .suggest import did_you_mean
from .validate import validate_gpu_entry



@lru_cache(maxsize=1)
def data_dir() -> Path:
    """data/ of the source tree (editable install) or gpuplan/data (wheel)."""
    return Path(str(files("gpuplan.data")))


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


@lru_cache(maxsize=1)
def _model_index() -> dict[str, Path]:
    """Normalized name -> preset file, for every name, hub id and alias in data/models/*.json.

    A hub id also answers without its org (`Llama-3.2-1B-Instruct`) and under another org
    (`NousResearch/Meta-Llama-3-8B-Instruct`), but only when that bare name belongs to one
    preset; Instruct/chat variants resolve only where a preset lists them as aliases."""
    full: dict[str, Path] = {}
    bare: dict[str, set[Path]] = {}
    for path in sorted((data_dir() / "models").glob("*.json")):
        with open(path) as f:
            preset = json.load(f)
        for k in [preset["name"], preset.get("hf_id", ""), *preset.get("aliases", [])]:
            if k:
                full.setdefault(_key(k), path)
                bare.setdefault(_key(k.split("/")[-1]), set()).add(path)
    index = {k: next(iter(paths)) for k, paths in bare.items() if len(paths) == 1}
    index.update(full)   # an exact name or alias wins over a bare one
    return index


def model_names() -> list[str]:
    return sorted(p.stem for p in set(_model_index().values()))


def _suggest(name: str, choices: list[str]) -> str:
    return did_you_mean(name, choices)


def load_preset(name: str) -> dict[str, Any]:
    index = _model_index()
    path = index.get(_key(name)) or index.get(_key(name.split("/")[-1]))
    if path is None:
        raise KeyError(name)
    with open(path) as f:
        return json.load(f)


def _read_config_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise PlannerError(f"no config.json at {path}")
    try:
        return json.loads(read_text(path, "config.json"))
    except json.JSONDecodeError as e:
        raise PlannerError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None


def _from_hub(repo_id: str) -> dict[str, Any]:
    """config.json of a hub repo; never executes remote code."""
    try:
        from huggingface_hub import hf_hub_download   # lazily: an optional extra (gpuplan[hub])
    except ImportError:
        raise PlannerError(f"unknown model {repo_id!r}; to fetch it from the Hugging Face hub install "
                           "`pip install gpuplan[hub]`, or pass a local config.json") from None
    try:
        return _read_config_file(Path(hf_hub_download(repo_id, "config.json")))
    except PlannerError:
        raise
    except Exception as e:  # offline, gated, missing: one line, the cause's class name
        raise PlannerError(f"could not fetch config.json of {repo_id!r} from the hub ({type(e).__name__}); "
                           "offline? pass a local config.json or a preset (gpuplan models)") from None


def resolve_model(name_or_path: str) -> ModelSpec:
    """ModelSpec for a preset name, a local config.json (file or folder), or a hub repo id."""
    try:
        preset = load_preset(name_or_path)
        return model_from_config(preset["config"], name=preset["name"])
    except KeyError:
        pass
    path = Path(os.path.expanduser(name_or_path))
    if path.exists() or name_or_path.endswith(".json"):
        return model_from_config(_read_config_file(path), name=path.stem if path.is_file() else path.name)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) and os.environ.get("GPUPLAN_OFFLINE") != "1":
        return model_from_config(_from_hub(name_or_path), name=name_or_path)
    raise PlannerError(f"unknown model {name_or_path!r}{_suggest(name_or_path, model_names())} "
                       "(list them with `gpuplan models`, or pass a config.json path)")


# --- GPU catalog: data/gpus.json plus the user's own files -------------------------------------
GPU_CATALOG_ENV = "GPUPLAN_GPU_CATALOG"   # path(s), os.pathsep-separated, read after data/gpus.json
_user_gpu_files: list[str] = []           # added by add_gpu_catalog() (the CLI's --gpu-catalog)
_REQUIRED_NEW_GPU = ("memory_bytes", "peak_flops", "memory_bandwidth_bytes_per_s", "interconnect", "power_watts")


def add_gpu_catalog(path: str) -> None:
    """Overlay a user's GPU file (JSON or YAML, `{"gpus": [...]}` as data/gpus.json) on the catalog:
    an entry whose name or alias is known overrides the fields it gives (prices merge by
    provider); a new name adds a GPU. Raises PlannerError if the file cannot be read or used."""
    _read_user_gpus(path)
    _user_gpu_files.append(path)
    _gpu_catalog.cache_clear()
    _gpu_index.cache_clear()
    try:
        _gpu_catalog()      # fail now, naming the file, not at first use
    except PlannerError:
        _user_gpu_files.remove(path)
        _gpu_catalog.cache_clear()
        raise


def remove_gpu_catalog(path: str) -> None:
    """Undo add_gpu_catalog(path): the catalog as before that file (a no-op if it was not added)."""
    if path in _user_gpu_files:
        _user_gpu_files.remove(path)
        _gpu_catalog.cache_clear()
        _gpu_index.cache_clear()


def _read_user_gpus(path: str) -> list[dict[str, Any]]:
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise PlannerError(f"GPU catalog file {path} does not exist")
    text = read_text(p, "GPU catalog file")
    try:
        if p.suffix in (".yaml", ".yml"):
            data = load_yaml(text)
        else:
            data = json.loads(text)
    except Exception as e:  # JSON or YAML syntax: one line with the parser's message
        raise PlannerError(f"GPU catalog file {path} could not be parsed: {str(e).splitlines()[0]}") from None
    gpus = data.get("gpus") if isinstance(data, dict) else data
    if not isinstance(gpus, list) or not all(isinstance(g, dict) and g.get("name") for g in gpus):
        raise PlannerError(f"GPU catalog file {path} must hold {{\"gpus\": [{{\"name\": ..., ...}}]}} "
                           "(fields as in data/README.md)")
    for g in gpus:
        validate_gpu_entry(g, path)
    return gpus


def _overlay(base: list[dict[str, Any]], extra: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    gpus = [dict(g) for g in base]
    for entry in extra:
        keys = {_key(k) for k in [entry["name"], *entry.get("aliases", [])]}
        known = next((g for g in gpus if keys & {_key(k) for k in [g["name"], *g.get("aliases", [])]}), None)
        if known is None:
            missing = [k for k in _REQUIRED_NEW_GPU if k not in entry]
            if missing:
                raise PlannerError(f"GPU {entry['name']!r} in {path} is new and lacks {', '.join(missing)} "
                                   "(or name a catalog GPU to override it: gpuplan gpus)")
            entry = {"aliases": [], "vendor": "unknown", "architecture": "unknown", "prices": [],
                     "purchase_usd": None, "source": f"user file {path}", "as_of": "", **entry}
            gpus.append(entry)
            continue
        merged = {**known, **{k: v for k, v in entry.items() if k not in ("name", "prices")}}
        if "peak_flops" in entry:
            merged["peak_flops"] = {**known["peak_flops"], **entry["peak_flops"]}
        prices = {p["provider"]: p for p in known.get("prices", [])}
        for p in entry.get("prices", []):
            prices[p["provider"]] = {"spot_usd_per_hour": None, "source": f"user file {path}",
                                     "as_of": "", **prices.get(p["provider"], {}), **p}
        merged["prices"] = list(prices.values())
        merged["user_file"] = path
        gpus[gpus.index(known)] = merged
    return gpus


def user_gpu_files() -> list[str]:
    env = [p for p in os.environ.get(GPU_CATALOG_ENV, "").split(os.pathsep) if p]
    return env + _user_gpu_files


@lru_cache(maxsize=1)
def _gpu_catalog() -> dict[str, Any]:
    with open(data_dir() / "gpus.json") as f:
        catalog = json.load(f)
    for path in user_gpu_files():
        catalog["gpus"] = _overlay(catalog["gpus"], _read_user_gpus(path), path)
    return catalog


@lru_cache(maxsize=1)
def _gpu_index() -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for gpu in _gpu_catalog()["gpus"]:
        for k in [gpu["name"], *gpu.get("aliases", [])]:
            index[_key(k)] = gpu
    return index


def gpu_names() -> list[str]:
    return [g["name"] for g in _gpu_catalog()["gpus"]]


def resolve_gpu(name: str) -> GpuSpec:
    gpu = _gpu_index().get(_key(name)) or _gpu_index().get(_key(name).replace("nvidia-", ""))
    if gpu is None:
        raise PlannerError(f"unknown GPU {name!r}{_suggest(name, gpu_names())} (list them with `gpuplan gpus`)")
    return GpuSpec(gpu["name"], int(gpu["memory_bytes"]), gpu)


def all_gpus() -> list[GpuSpec]:
    """Every catalog GPU (user files included), in catalog order."""
    return [GpuSpec(g["name"], int(g["memory_bytes"]), g) for g in _gpu_catalog()["gpus"]]


@lru_cache(maxsize=1)
def matmul_measurements() -> dict[str, Any]:
    """data/matmul.json: measured dense matmul FLOP/s per catalog GPU, each with its source and quote."""
    with open(data_dir() / "matmul.json", encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=1)
def mfu_constants() -> dict[str, Any]:
    """data/mfu.json: the time model's utilisation constants, each with its source."""
    with open(data_dir() / "mfu.json") as f:
        return json.load(f)


def measurements_dir() -> Path:
    return data_dir() / "measurements"


def measurement_records() -> list[tuple[str, dict[str, Any]]]:
    """(file name, record) of every recorded run in data/measurements/, by file name."""
    out = []
    for path in sorted(measurements_dir().glob("*.json")):
        with open(path) as f:
            out.append((path.name, json.load(f)))
    return out


@lru_cache(maxsize=1)
def assumptions() -> dict[str, dict[str, Any]]:
    with open(data_dir() / "assumptions.json") as f:
        return json.load(f)["assumptions"]
