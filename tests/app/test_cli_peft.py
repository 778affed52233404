"""`gpuplan estimate` with peft methods: --peft-config, --use-dora, --method dora, --modules-to-save."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli

SMALL = str(Path(__file__).parents[1] / "profiler" / "fixtures" / "small-qwen2-config.json")
TINY = str(Path(__file__).parent / "fixtures" / "tiny-llama-config.json")


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["estimate", *args])
    return r.exit_code, r.output


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, d: dict) -> str:
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps(d))
    return str(path)


def test_method_dora_is_use_dora_and_not_plain_lora():
    code, dora = run("-m", SMALL, "--method", "dora", "--json")
    code2, flag = run("-m", SMALL, "--method", "lora", "--use-dora", "--json")
    _, plain = run("-m", SMALL, "--method", "lora", "--json")
    assert code == code2 == 0
    assert json.loads(dora) == json.loads(flag)
    assert json.loads(dora)["params"]["trainable"] > json.loads(plain)["params"]["trainable"]
    assert json.loads(dora)["setup"]["lora"]["use_dora"] is True


def test_lora_adapter_config_is_answered_by_the_closed_form(tmp_path):
    cfg = write(tmp_path, {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
                           "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["embed_tokens", "lm_head"],
                           "use_dora": False, "bias": "none", "base_model_name_or_path": None})
    code, out = run("-m", SMALL, "--peft-config", cfg)
    assert code == 0 and "answered by: closed-form" in out
    code, out = run("-m", SMALL, "--peft-config", cfg, "--json")
    assert code == 0 and json.loads(out)["source"] == "closed-form"


def test_other_peft_types_are_simulated(tmp_path):
    pytest.importorskip("peft")
    cfg = write(tmp_path, {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 8,
                           "prefix_projection": False, "peft_version": "0.21.2"})
    code, out = run("-m", TINY, "--peft-config", cfg, "-b", "2", "-s", "64", "--no-grad-ckpt", "--json")
    assert code == 0, out
    d = json.loads(out)
    assert d["source"] == "simulated" and d["params"]["trainable"] == 8 * 2 * 2 * 32
    assert "PREFIX_TUNING" in d["notes"][0]


@pytest.mark.parametrize("args,words", [
    (("--method", "full", "--use-dora"), "LoRA options"),
    (("--method", "lora", "--lora-targets", "q_proj,nothing_here"), "nothing_here"),
])
def test_bad_flags_one_line(args, words):
    code, out = run("-m", SMALL, *args)
    assert code == 2 and words in out and "Traceback" not in out


@pytest.mark.parametrize("cfg,words", [
    ({"peft_type": "NOT_A_METHOD"}, "not supported by the installed peft"),
    ({"peft_type": "LORA", "target_modules": ["nothing_here"]}, "nothing_here"),
    ({"peft_type": "LORA", "not_a_field": 1}, "not_a_field"),
    ({"r": 8}, "no peft_type"),
])
def test_bad_adapter_config_one_line(tmp_path, cfg, words):
    pytest.importorskip("peft")
    code, out = run("-m", SMALL, "--peft-config", write(tmp_path, cfg))
    assert code == 2 and words in out and "Traceback" not in out, out


def test_ia3_adapter_config_is_closed_form(tmp_path):
    cfg = write(tmp_path, {"peft_type": "IA3", "target_modules": ["q_proj", "v_proj", "down_proj"],
                           "feedforward_modules": ["down_proj"], "init_ia3_weights": True})
    code, out = run("-m", SMALL, "--peft-config", cfg, "--json")
    assert code == 0 and json.loads(out)["source"] == "closed-form"
    assert json.loads(out)["params"]["trainable"] == 4 * (256 + 128 + 1024)


def test_peft_config_with_lora_flags_is_refused(tmp_path):
    cfg = write(tmp_path, {"peft_type": "LORA", "r": 8})
    code, out = run("-m", SMALL, "--peft-config", cfg, "--use-dora")
    assert code == 2 and "--peft-config gives the adapter's own fields" in out


def test_a_method_the_simulator_cannot_run_is_one_line(tmp_path):
    pytest.importorskip("peft")
    cfg = write(tmp_path, {"peft_type": "SHIRA", "r": 8, "target_modules": ["q_proj", "v_proj"]})
    code, out = run("-m", TINY, "--peft-config", cfg, "-b", "2", "-s", "64")
    assert code == 2 and "SHIRA has no closed form" in out and "the simulator cannot run it" in out
    assert "nonzero" in out and "Traceback" not in out


def test_loha_is_answered_by_the_simulator(tmp_path):
    """LoHa's host-side module-dropout draw is answered under FakeTensorMode (profiler/module_dropout.py)."""
    pytest.importorskip("peft")
    cfg = write(tmp_path, {"peft_type": "LOHA", "r": 8, "target_modules": ["q_proj", "v_proj"]})
    code, out = run("-m", TINY, "--peft-config", cfg, "-b", "2", "-s", "64", "--json")
    assert code == 0 and json.loads(out)["source"] == "simulated"
