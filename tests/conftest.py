"""Tiny models shared by the tests (profiler, app): each step runs in milliseconds on a CPU."""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import warnings

import pytest

from gpuplan.planner import ModelSpec, model_from_config

# A two-layer Llama with grouped-query attention: every piece of the real architecture, 107 k params.
TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}


@pytest.fixture
def meta_causal_lm():
    """A context manager: a config dict's causal LM as transformers builds it, on the meta device, freed
    on exit (skips without torch/transformers)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    @contextlib.contextmanager
    def build(config: dict):
        config = copy.deepcopy(config)
        cfg = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        try:
            yield model
        finally:
            del model
            gc.collect()

    return build


@pytest.fixture(scope="session")
def tiny() -> ModelSpec:
    return model_from_config(TINY_LLAMA, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> str:
    """Path of the tiny model's config.json, for `--model`."""
    path = tmp_path_factory.mktemp("tiny-llama") / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return str(path)


@pytest.fixture(scope="session")
def tiny_hf():
    """A factory of fresh transformers models of the tiny config (real weights, on the CPU)."""
    def make():
        import transformers

        return transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**TINY_LLAMA))
    return make


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
