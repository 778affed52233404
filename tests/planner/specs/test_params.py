import json
from pathlib import Path

import pytest

from gpuplan.planner import model_from_config, param_counts
from gpuplan.planner.io.catalog import load_preset, model_names, resolve_model

PRESETS = sorted(Path(__file__).resolve().parents[3].joinpath("data", "models").glob("*.json"))


def test_golden_llama_counts():
    assert param_counts(resolve_model("llama-2-7b")).total == 6_738_415_616
    assert param_counts(resolve_model("llama-3-8b")).total == 8_030_261_248
    assert param_counts(resolve_model("gpt2")).total == 124_439_808


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_planner_count_matches_transformers_meta_count(path):
    """Two derivations agree: params_total is sum(p.numel()) on meta (tests/data checks that)."""
    preset = json.loads(path.read_text())
    assert param_counts(model_from_config(preset["config"], preset["name"])).total == preset["params_total"]


def test_names_are_forgiving():
    for name in ("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "Llama-3.1-8B", "LLAMA_3.1_8B"):
        assert resolve_model(name).name == "llama-3.1-8b"
    assert len(model_names()) >= 30
    assert load_preset("qwen2.5-7b")["name"] == "qwen-2.5-7b"


def test_gemma_config_without_tie_key_is_tied():
    cfg = dict(load_preset("gemma-2-2b")["config"])
    cfg.pop("tie_word_embeddings")
    assert param_counts(model_from_config(cfg)).total == 2_614_341_888
