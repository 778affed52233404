"""The Liger switches of each config format (planner/fromconfig/liger.py) -> --liger / --liger-kernels."""
from __future__ import annotations

import json

from gpuplan.planner.fromconfig import read_config


def _read(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return read_config(str(p))


def test_hf_use_liger_kernel_is_the_family_defaults(tmp_path):
    c = _read(tmp_path, "sft.json", json.dumps({"model_name_or_path": "meta-llama/Llama-3.2-1B",
                                                 "use_liger_kernel": True}))
    assert c.options["liger"] is True and "liger_kernels" not in c.options and not c.refused


def test_hf_liger_kernel_config_overrides_the_defaults(tmp_path):
    cfg = {"model_name_or_path": "meta-llama/Llama-3.2-1B", "use_liger_kernel": True,
           "liger_kernel_config": {"rope": False, "swiglu": False}}
    c = _read(tmp_path, "sft.json", json.dumps(cfg))
    assert c.options["liger_kernels"] == "rms_norm,geglu,flce" and not c.refused


def test_hf_liger_cross_entropy_replaces_the_fused_loss(tmp_path):
    cfg = {"model_name_or_path": "meta-llama/Llama-3.2-1B", "use_liger_kernel": True,
           "liger_kernel_config": {"cross_entropy": True, "fused_linear_cross_entropy": False}}
    c = _read(tmp_path, "sft.json", json.dumps(cfg))
    assert c.options["liger_kernels"] == "rope,rms_norm,swiglu,geglu,cross_entropy" and not c.refused


def test_axolotl_plugin_keys_patch_before_load(tmp_path):
    c = _read(tmp_path, "ax.yaml", "base_model: meta-llama/Llama-3.2-1B\nplugins:\n"
              "  - axolotl.integrations.liger.LigerPlugin\nliger_rms_norm: true\nliger_glu_activation: true\n")
    assert c.options["liger_kernels"] == "rms_norm,swiglu,geglu" and c.options["liger_before_load"] is True


def test_axolotl_fused_loss_alone_is_the_chunked_loss(tmp_path):
    c = _read(tmp_path, "ax.yaml", "base_model: meta-llama/Llama-3.2-1B\nliger_fused_linear_cross_entropy: true\n")
    assert c.options["liger_kernels"] == "flce" and "liger_before_load" not in c.options


def test_llamafactory_enable_liger_kernel(tmp_path):
    c = _read(tmp_path, "lf.yaml", "model_name_or_path: meta-llama/Llama-3.2-1B\nstage: sft\ndo_train: true\n"
              "finetuning_type: lora\nenable_liger_kernel: true\n")
    assert c.options["liger"] is True and c.options["liger_before_load"] is True


def test_axolotl_liger_config_estimates_end_to_end(tmp_path):
    from click.testing import CliRunner

    from gpuplan.app.cli import cli

    p = tmp_path / "ax.yaml"
    p.write_text("base_model: meta-llama/Llama-3.2-1B\nplugins:\n  - axolotl.integrations.liger.LigerPlugin\n"
                 "liger_rope: true\nliger_rms_norm: true\nliger_glu_activation: true\n"
                 "liger_fused_linear_cross_entropy: true\nmicro_batch_size: 2\nsequence_len: 2048\n")
    r = CliRunner().invoke(cli, ["estimate", "--from-config", str(p), "--json"])
    assert r.exit_code == 0, r.output
    setup = json.loads(r.stdout)["setup"]
    assert setup["loss"] == "chunked"
    assert setup["liger"] == {"rms_norm": True, "rope": True, "swiglu": True, "before_load": True,
                             "cross_entropy": False}
