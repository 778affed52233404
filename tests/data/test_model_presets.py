"""Checks on data/models/*.json: schema (data/README.md, section `models/<name>.json`),
unique names and aliases, and that `params_total` is exactly what transformers builds
from each preset's `config` on the meta device.

Building a model on meta takes about half a second, so with 120+ presets the count is checked
here on a deterministic sample (the golden-count presets, one per model_type, and every preset
whose crc32 falls in the sample); `GPUPLAN_ALL_PRESETS=1` checks every preset, and
`python benchmarks/model_presets_params.py` prints the full table."""

import copy
import gc
import json
import os
import re
import zlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MODELS_DIR = Path(__file__).resolve().parents[2] / "data" / "models"
PRESET_FILES = sorted(MODELS_DIR.glob("*.json"))

NAME_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")   # lower case, dashes (dots in versions)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REQUIRED = {"name": str, "hf_id": str, "aliases": list, "source": str, "as_of": str,
            "params_total": int, "config": dict}
OPTIONAL = {"notes": str, "alias_sources": dict}
# where the config numbers were seen: the hub page, or a stored copy in a GitHub repository at a commit
SOURCE_RE = re.compile(r"^https://(huggingface\.co/[\w.-]+/[\w.-]+/|github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/)\S+")
SAMPLE_ONE_IN = 6

# Published parameter counts (tied lm_head counted once).
GOLDEN_PARAMS = {
    "llama-2-7b": 6_738_415_616,
    "llama-3-8b": 8_030_261_248,
    "gpt-2-small": 124_439_808,
}


def _load(path):
    with path.open() as f:
        return json.load(f)


PRESETS = {p.name: _load(p) for p in PRESET_FILES}


def _count_on_meta(config):
    """sum(p.numel()) of the model transformers builds from `config`, without allocating weights."""
    # transformers 5 rewrites rope dicts it is given (adds rope_theta etc.): pass a copy.
    config = copy.deepcopy(config)
    model_type = config["model_type"]
    cfg = transformers.AutoConfig.for_model(
        model_type, **{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        except ValueError:   # multimodal wrappers (llava, qwen2_vl) are image-text-to-text classes
            model = transformers.AutoModelForImageTextToText.from_config(cfg)
    try:
        return type(model).__name__, sum(p.numel() for p in model.parameters())
    finally:
        del model
        gc.collect()


def sampled(presets):
    """A fixed subset of the preset files: the golden-count presets, the first preset of each model_type,
    and one in SAMPLE_ONE_IN of the rest by crc32 (stable across runs); all with GPUPLAN_ALL_PRESETS=1."""
    if os.environ.get("GPUPLAN_ALL_PRESETS") == "1":
        return sorted(presets)
    keep, types = set(), set()
    for name in sorted(presets):
        stem, mt = Path(name).stem, presets[name]["config"]["model_type"]
        if stem in GOLDEN_PARAMS or mt not in types or zlib.crc32(stem.encode()) % SAMPLE_ONE_IN == 0:
            keep.add(name)
        types.add(mt)
    return sorted(keep)


def test_there_are_presets():
    assert len(PRESET_FILES) >= 50


@pytest.mark.parametrize("filename", sorted(PRESETS))
def test_schema(filename):
    preset = PRESETS[filename]
    assert set(preset) <= set(REQUIRED) | set(OPTIONAL), f"unknown keys {set(preset) - set(REQUIRED) - set(OPTIONAL)}"
    for key, typ in REQUIRED.items():
        assert key in preset, f"missing {key!r}"
        assert isinstance(preset[key], typ), f"{key!r} is not {typ.__name__}"
    for key, typ in OPTIONAL.items():
        if key in preset:
            assert isinstance(preset[key], typ) and (preset[key].strip() if isinstance(preset[key], str) else preset[key]), f"{key!r} must be a non-empty {typ.__name__}"

    name = preset["name"]
    assert name == Path(filename).stem
    assert NAME_RE.match(name), f"name {name!r} is not lower-case dashed"
    assert re.match(r"^[\w.-]+/[\w.-]+$", preset["hf_id"]), preset["hf_id"]
    assert SOURCE_RE.match(preset["source"]), preset["source"]
    assert ISO_DATE.match(preset["as_of"]), preset["as_of"]
    assert not isinstance(preset["params_total"], bool) and preset["params_total"] > 0

    aliases = preset["aliases"]
    assert aliases and all(isinstance(a, str) and a.strip() == a and a for a in aliases)
    assert preset["hf_id"] in aliases and preset["hf_id"].lower() in aliases

    config = preset["config"]
    assert isinstance(config.get("model_type"), str) and config["model_type"]
    archs = config.get("architectures")
    assert isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str)
    assert "auto_map" not in config, "auto_map would make transformers ask for remote code"

    # an alias that is another hub repo (an Instruct/chat variant) says where its config was seen equal
    for alias, source in preset.get("alias_sources", {}).items():
        assert alias in aliases, f"alias_sources names {alias!r}, which is not an alias"
        assert SOURCE_RE.match(source), source


@pytest.mark.parametrize("filename", sampled(PRESETS))
def test_params_total_matches_transformers_on_meta(filename):
    preset = PRESETS[filename]
    cls_name, n_params = _count_on_meta(preset["config"])
    assert cls_name == preset["config"]["architectures"][0]
    assert n_params == preset["params_total"], (
        f"{preset['name']}: transformers builds {n_params:,} parameters, preset says {preset['params_total']:,}")


def test_names_and_aliases_are_unique():
    names = {p["name"] for p in PRESETS.values()}
    assert len(names) == len(PRESETS)
    owner = {}
    for preset in PRESETS.values():
        for alias in {a.lower() for a in preset["aliases"]}:
            assert alias not in owner, f"alias {alias!r} is in both {owner[alias]} and {preset['name']}"
            owner[alias] = preset["name"]
            assert alias not in names or alias == preset["name"], (
                f"alias {alias!r} of {preset['name']} is the name of another preset")


@pytest.mark.parametrize("name,expected", sorted(GOLDEN_PARAMS.items()))
def test_golden_param_counts(name, expected):
    preset = PRESETS[f"{name}.json"]
    assert preset["params_total"] == expected
