"""--from-config: FP8 training keys of accelerate and axolotl (torchao float8)."""
from __future__ import annotations

from gpuplan.planner.fromconfig import read_config
from config_files import write as _yaml   # the folder's one config-file helper

ACCEL = "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n"
AXOLOTL = "base_model: Qwen/Qwen2.5-0.5B\nmicro_batch_size: 2\nsequence_len: 1024\nbf16: true\n"


def test_accelerate_fp8_ao_is_bf16_autocast_plus_tensorwise(tmp_path):
    for extra in ("", "fp8_config:\n  backend: AO\n  enable_fsdp_float8_all_gather: true\n  pad_inner_dim: true\n"):
        c = read_config(_yaml(tmp_path, ACCEL + "mixed_precision: fp8\n" + extra))
        assert not c.refused, c.refused
        assert c.options["precision"] == "bf16-mixed" and c.options["fp8"] == "tensorwise"
        assert c.used["mixed_precision"] == "--precision bf16-mixed --fp8 tensorwise"
        assert "fp8_linears" not in c.options   # accelerate's filter is the default


def test_accelerate_fp8_other_backends_refused(tmp_path):
    c = read_config(_yaml(tmp_path, ACCEL + "mixed_precision: fp8\nfp8_config:\n  backend: TE\n  fp8_format: HYBRID\n"))
    assert c.refused and any("TE backend" in r for r in c.refused) and "fp8" not in c.options
    assert any(r.startswith("fp8_config.fp8_format") for r in c.refused)


def test_axolotl_fp8(tmp_path):
    c = read_config(_yaml(tmp_path, AXOLOTL + "fp8: true\nfp8_enable_fsdp_float8_all_gather: true\n"))
    assert not c.refused, c.refused
    assert c.options["fp8"] == "tensorwise"
    off = read_config(_yaml(tmp_path, AXOLOTL + "fp8: false\n"))
    assert "fp8" not in off.options
