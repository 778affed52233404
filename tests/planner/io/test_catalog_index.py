"""Hub ids and their recorded Instruct/chat variants resolve to bundled presets before any network
call (GPUPLAN_OFFLINE=1 refuses the hub); names nobody recorded still get the one-line error."""

import pytest

from gpuplan.planner import PlannerError, resolve_model
from gpuplan.planner.io.catalog import load_preset


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("GPUPLAN_OFFLINE", "1")


@pytest.mark.parametrize("hub_id,preset", [
    ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),        # a recorded Instruct variant
    ("NousResearch/Meta-Llama-3-8B-Instruct", "llama-3-8b"),     # another org's copy of a recorded variant
    ("mistralai/Mistral-7B-v0.1", "mistral-7b-v0.1"),            # its own preset (vocab, rope, window differ from v0.3)
    ("META-LLAMA/LLAMA-3.2-1B-INSTRUCT", "llama-3.2-1b"),         # case-insensitive
    ("Llama-3.2-1B-Instruct", "llama-3.2-1b"),                   # without the org
])
def test_hub_ids_resolve_offline(hub_id, preset):
    assert load_preset(hub_id)["name"] == preset
    assert resolve_model(hub_id).name == preset


def test_variant_with_other_numbers_is_its_own_preset():
    assert load_preset("mistralai/Mixtral-8x22B-Instruct-v0.1")["name"] == "mixtral-8x22b-instruct"
    assert load_preset("mistralai/Mixtral-8x22B-v0.1")["name"] == "mixtral-8x22b"


def test_unrecorded_variant_is_not_guessed():
    # no -Instruct/-it suffix stripping: only recorded aliases resolve
    with pytest.raises(PlannerError, match=r"unknown model 'someorg/Llama-3.2-1B-Instruct-Unrecorded'.*gpuplan models"):
        resolve_model("someorg/Llama-3.2-1B-Instruct-Unrecorded")


def test_unknown_hub_id_offline_gets_the_clear_message():
    with pytest.raises(PlannerError) as e:
        resolve_model("nobody/no-such-model-7b")
    assert "unknown model 'nobody/no-such-model-7b'" in str(e.value)
    assert "gpuplan models" in str(e.value) and "\n" not in str(e.value)
