"""The context/sequence-parallel keys of axolotl and accelerate configs -> --context-parallel / --cp-kind
(planner/techniques/context_parallel.py)."""
from __future__ import annotations

from gpuplan.planner.fromconfig import read_config


def _read(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return read_config(str(p))


AX = "base_model: meta-llama/Llama-3.1-8B\nattn_implementation: flash_attention_2\nmicro_batch_size: 1\n"


def test_axolotl_context_parallel_size_runs_batch_ring_without_packing(tmp_path):
    c = _read(tmp_path, "ax.yaml", AX + "context_parallel_size: 4\nheads_k_stride: 2\n")
    assert c.options["context_parallel"] == 4 and c.options["cp_kind"] == "ring-flash"
    assert "heads_k_stride" not in c.options and "batch_ring does not read it" in c.used["heads_k_stride"]
    assert not c.refused


def test_axolotl_packing_picks_varlen_llama3_and_its_stride(tmp_path):
    c = _read(tmp_path, "ax.yaml", AX + "sample_packing: true\ncontext_parallel_size: 4\nheads_k_stride: 2\n")
    assert (c.options["cp_kind"], c.options["heads_k_stride"]) == ("llama3", 2)
    c = _read(tmp_path, "ax.yaml", AX + "context_parallel_size: 2\nring_attn_func: varlen_llama3\n")
    assert c.options["cp_kind"] == "llama3"


def test_axolotl_deprecated_sequence_parallel_degree(tmp_path):
    c = _read(tmp_path, "ax.yaml", AX + "sequence_parallel_degree: 2\n")
    assert c.options["context_parallel"] == 2 and not c.refused
    c = _read(tmp_path, "ax.yaml", AX + "sequence_parallel_degree: 2\ncontext_parallel_size: 4\n")
    assert c.options["context_parallel"] == 4
    assert c.used["sequence_parallel_degree"] == "overridden by context_parallel_size"
    c = _read(tmp_path, "ax.yaml", AX + "context_parallel_size: 1\nheads_k_stride: 1\n")
    assert "context_parallel" not in c.options and not c.refused


def test_axolotl_unknown_ring_attn_func_is_refused(tmp_path):
    c = _read(tmp_path, "ax.yaml", AX + "context_parallel_size: 2\nring_attn_func: batch_zigzag\n")
    assert c.refused and "batch_zigzag" in c.refused[0]


ACC = "distributed_type: FSDP\nnum_processes: 8\nmixed_precision: bf16\nfsdp_config:\n  fsdp_version: 2\n"


def test_accelerate_cp_size_is_torch_context_parallel(tmp_path):
    c = _read(tmp_path, "acc.yaml", ACC + "parallelism_config:\n  parallelism_config_dp_shard_size: 2\n"
              "  parallelism_config_cp_size: 4\n  parallelism_config_cp_comm_strategy: alltoall\n")
    assert (c.options["context_parallel"], c.options["cp_kind"], c.options["gpus_per_node"]) == (4, "torch-alltoall", 8)
    assert not c.refused
    c = _read(tmp_path, "acc.yaml", ACC + "parallelism_config:\n  parallelism_config_cp_size: 8\n")
    assert c.options["cp_kind"] == "torch"


def test_accelerate_sp_size_is_ulysses(tmp_path):
    c = _read(tmp_path, "acc.yaml", "distributed_type: DEEPSPEED\nnum_processes: 4\ndeepspeed_config:\n  zero_stage: 3\n"
              "parallelism_config:\n  parallelism_config_sp_size: 4\n  parallelism_config_sp_backend: deepspeed\n"
              "  parallelism_config_sp_attn_implementation: flash_attention_2\n")
    assert (c.options["context_parallel"], c.options["cp_kind"], c.options["attn"], c.options["zero"]) == \
        (4, "ulysses", "flash", 3)
    assert not c.refused


def test_accelerate_refuses_what_parallelism_config_raises(tmp_path):
    c = _read(tmp_path, "acc.yaml", ACC + "parallelism_config:\n  parallelism_config_cp_size: 2\n"
              "  parallelism_config_sp_size: 2\n")
    assert c.refused and "mutually exclusive" in c.refused[0]
    c = _read(tmp_path, "acc.yaml", ACC + "parallelism_config:\n  parallelism_config_dp_shard_size: 4\n"
              "  parallelism_config_cp_size: 4\n")
    assert c.refused and "num_processes 8" in c.refused[0]
    c = _read(tmp_path, "acc.yaml", ACC + "parallelism_config:\n  parallelism_config_tp_size: 2\n")
    assert c.refused   # tensor parallel through accelerate: still refused


def test_axolotl_config_estimates_end_to_end(tmp_path):
    from click.testing import CliRunner

    from gpuplan.app.cli import cli

    p = tmp_path / "ax.yaml"
    p.write_text(AX + "adapter: lora\nsequence_len: 32768\ncontext_parallel_size: 4\ngradient_checkpointing: true\n"
                 "bf16: true\n")
    out = CliRunner().invoke(cli, ["estimate", "--from-config", str(p), "--gpus-per-node", "8", "--json"])
    assert out.exit_code == 0, out.output
    import json

    d = json.loads(out.stdout)
    assert d["setup"]["parallel"]["cp"] == 4 and d["setup"]["parallel"]["cp_kind"] == "ring-flash"
    assert any("context parallel ring-flash over 4 GPUs" in n for n in d["notes"])
    out = CliRunner().invoke(cli, ["estimate", "--from-config", str(p)])
    assert out.exit_code == 2 and "add --gpus-per-node 4" in out.output


def test_axolotl_tiled_mlp(tmp_path):
    c = _read(tmp_path, "ax.yaml", AX + "tiled_mlp: true\ntiled_mlp_num_shards: 4\ntiled_mlp_use_original_mlp: false\n")
    assert (c.options["tiled_mlp"], c.options["tiled_mlp_shards"]) == (True, 4) and not c.refused
    c = _read(tmp_path, "ax.yaml", AX + "tiled_mlp: false\ntiled_mlp_num_shards: 4\n")
    assert "tiled_mlp" not in c.options and not c.refused
