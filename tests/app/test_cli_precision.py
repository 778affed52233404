"""The precision-recipe flags (--weights-dtype, --autocast/--no-autocast, --kbit-prepare/--no-kbit-prepare)
and --stack-versions, through the CLI."""
import json

import pytest
from click.testing import CliRunner

from gpuplan.app import stack_options
from gpuplan.app.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", *args])


def _json(*args) -> dict:
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_bf16_weights_under_autocast_are_planned_and_named():
    d = _json("--weights-dtype", "bf16")
    assert d["setup"]["precision"] == "bf16-mixed" and d["setup"]["weights"] == "bf16"
    assert "precision recipe: bf16 weights (and their gradients and optimizer states), bf16 autocast" in d["notes"]
    assert d["peak_allocated_bytes"] < _json()["peak_allocated_bytes"]
    assert "weights" not in _json()["setup"] and "stack" not in _json()


def test_qlora_without_prepare_model_for_kbit_training():
    d = _json("--method", "qlora", "--no-kbit-prepare")
    assert d["setup"]["kbit_upcast"] is False and d["setup"]["base_dtype"] == "bf16"
    assert d["components"]["weights"] < _json("--method", "qlora")["components"]["weights"]


@pytest.mark.parametrize("args, words", [
    (("--no-autocast",), "compute in fp32"),
    (("--no-kbit-prepare",), "apply to --method qlora"),
    (("--precision", "fp32", "--autocast"), "autocast computes in 16 bit"),
])
def test_impossible_recipes_exit_2_with_one_line(args, words):
    r = run(*args)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output


def test_a_stack_fills_the_knobs_left_alone_and_is_named():
    d = _json("--stack-versions", "trl-1.16")
    assert d["setup"]["loss"] == "trl" and d["stack"]["name"] == "trl-1.16"
    assert d["stack"]["libraries"]["trl"].startswith("1.15-1.16")
    assert _json("--stack-versions", "trl-1.16", "--loss", "hf")["setup"]["loss"] == "hf"   # the flag wins
    plain = _json("--stack-versions", "transformers-5.24")
    assert (plain["setup"]["precision"], plain["setup"]["checkpointing"]) == ("bf16-true", "none")
    assert _json("--stack-versions", "trl-1.6")["peak_allocated_bytes"] == _json()["peak_allocated_bytes"]


def test_trl_1_12_plans_its_own_fp32_projection():
    old = _json("--stack-versions", "trl-1.12", "--method", "lora", "--weights-dtype", "bf16")
    assert old["setup"]["loss"] == "chunked-nll-fp32" and old["stack"]["libraries"]["trl"].startswith("1.8-1.12")
    new = _json("--stack-versions", "trl-1.14", "--method", "lora", "--weights-dtype", "bf16")
    assert old["phases"]["forward"] > new["phases"]["forward"]   # the fp32 copy of the bf16 lm_head, per chunk
    assert _json("--stack-versions", "trl-1.12", "--loss", "hf")["setup"]["loss"] == "hf"   # the flag wins


def test_trl_1_14_plans_its_default_chunked_nll_below_the_full_logits():
    d = _json("--stack-versions", "trl-1.14")
    assert d["setup"]["loss"] == "chunked-nll" and d["stack"]["libraries"]["trl"].startswith("1.13-1.14")
    assert d["peak_allocated_bytes"] < _json("--stack-versions", "trl-1.6")["peak_allocated_bytes"]
    assert any("chunked_nll" in n for n in d["notes"])


def test_installed_reads_the_versions_only_when_asked(monkeypatch):
    monkeypatch.setattr(stack_options, "installed_versions", lambda: {"trl": "1.16.0", "transformers": "5.24.0"})
    d = _json("--stack-versions", "installed")
    assert d["stack"]["name"] == "trl-1.16" and d["stack"]["installed"]["trl"] == "1.16.0"
    r = run("--stack-versions", "installed")
    assert "library versions described (--stack-versions trl-1.16)" in r.output and "installed: trl 1.16.0" in r.output


_TORCHTUNE = ("model:\n  _component_: torchtune.models.llama3_2.lora_llama3_2_1b\n  lora_attn_modules: [q_proj, v_proj]\n"
              "  lora_rank: 8\n  lora_alpha: 16\ntokenizer:\n  max_seq_len: 512\ndtype: bf16\nbatch_size: 2\n")


def test_a_torchtune_config_takes_torchtune_s_defaults_and_names_them(tmp_path):
    f = tmp_path / "tt.yaml"

    def estimate(*args) -> dict:
        r = CliRunner().invoke(cli, ["estimate", "--from-config", str(f), *args, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    f.write_text(_TORCHTUNE)      # no enable_activation_checkpointing: off in torchtune 0.6.1's recipes
    d = estimate()
    assert "torchtune 0.6.1 recipe semantics" in d["from_config"]["used"]["model._component_"]
    assert (d["setup"]["checkpointing"], d["setup"]["precision"]) == ("none", "bf16-true")
    named = estimate("--stack-versions", "torchtune-0.6.1")
    assert named["stack"]["libraries"] == {"torchtune": "0.6.1", "torch": "2.13"}
    assert named["setup"]["checkpointing"] == "none"
    f.write_text(_TORCHTUNE + "enable_activation_checkpointing: true\n")
    assert estimate()["setup"]["checkpointing"] == "full"
    hf = estimate("--stack-versions", "trl-1.6")
    assert hf["stack"]["name"] == "trl-1.6" and hf["setup"]["checkpointing"] == "full"   # the config's key stays
