"""--from-config: selective checkpointing and activation offloading keys, as each library reads them."""
from __future__ import annotations

from pathlib import Path

from gpuplan.planner.fromconfig import read_config

FULL_8B = "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n"


def _yaml(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_torchtune_selective_ac_every_k_layers_from_k_minus_1(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: 2\n"))
    assert not c.refused
    assert (c.options["grad_ckpt"], c.options["ckpt_every"], c.options["ckpt_first"]) == (True, 2, 1)
    one = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: 1\n"))
    assert one.options["grad_ckpt"] is True and "ckpt_every" not in one.options
    none = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: none\n"))
    assert none.options["grad_ckpt"] is False


def test_torchtune_ac_mode_with_full_ac_on_wraps_nothing(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: true\nac_mode: selective\nac_option: 2\n"))
    assert c.options["grad_ckpt"] is False and any("no layer is checkpointed" in n for n in c.notes)


def test_torchtune_per_op_ac_is_refused(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nac_mode: selective\nac_option: op\n"))
    assert c.refused and c.refused[0].startswith("ac_option: op is not modelled yet")


def test_torchtune_activation_offloading(tmp_path):
    c = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: true\nenable_activation_offloading: true\n"))
    assert c.options["activation_offload"] == "torchtune" and not c.refused
    bad = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_checkpointing: false\nenable_activation_offloading: true\n"))
    assert bad.refused and "needs enable_activation_checkpointing" in bad.refused[0]
    off = read_config(_yaml(tmp_path, FULL_8B + "enable_activation_offloading: false\n"))
    assert "activation_offload" not in off.options
