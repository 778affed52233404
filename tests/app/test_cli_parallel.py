"""gpuplan estimate / profile with --gpus, --nodes, --zero, --fsdp, --offload, --tp, --pp."""
import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli


TINY_LLAMA = {  # two layers, 107 k params: each simulated step runs in milliseconds
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return str(path)


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_fsdp_table_shows_per_gpu_host_and_communication():
    r = run("estimate", "-m", "llama-3.1-70b", "--gpus", "8", "--fsdp", "full", "-b", "1", "-s", "4096", "--gpu", "h100")
    assert r.exit_code == 0, r.output
    for text in ("engine fsdp-full", "8 GPUs", "CPU RAM for offload", "Communication per GPU", "all_gather",
                 "reduce_scatter", "intra-node"):
        assert text in r.output, text


def test_json_adds_keys_and_keeps_the_single_gpu_ones():
    single = json.loads(run("estimate", "-m", "llama-3.1-8b", "--json").stdout)
    r = run("estimate", "-m", "llama-3.1-70b", "--gpus", "8", "--nodes", "2", "--zero", "3", "--offload", "params",
            "-b", "1", "-s", "4096", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) >= set(single) | {"host_bytes_per_node", "nvme_bytes_per_node", "communication"}
    assert d["setup"]["engine"] == "zero-3" and d["setup"]["parallel"]["nodes"] == 2
    assert d["host_bytes_per_node"] > 500 * 2**30          # 18 bytes x 70.6 B params / 2 nodes
    assert d["communication"]["inter_node_bytes"] > 0 and d["communication"]["host_bytes"] > 0
    assert d["device_total_bytes"] < single["device_total_bytes"] * 3   # 70B sharded over 16 < 8B on one


def test_worked_example_fsdp_vs_zero3_offload_on_8_h100():
    """The README's example: 70B full fine-tune on 8x H100 fits only with offload."""
    def total(*flags):
        r = run("estimate", "-m", "llama-3.1-70b", "--gpus", "8", "-b", "1", "-s", "4096", "--gpu", "h100", "--json",
                *flags)
        assert r.exit_code == 0, r.output
        d = json.loads(r.stdout)
        return d["fits"][0]["fits"], d["device_total_bytes"]
    fits_fsdp, fsdp = total("--fsdp", "full")
    fits_z3, z3 = total("--zero", "3", "--offload", "optimizer")
    assert not fits_fsdp and fits_z3 and z3 < fsdp / 2


@pytest.mark.parametrize("flags,fragment", [
    (["--gpus", "8", "--tp", "3"], "do not divide into --tp 3"),
    (["--gpus", "8", "--zero", "3", "--fsdp", "full"], "choose one of them"),
    (["--gpus", "16", "--tp", "16"], "must divide"),
    (["--gpus", "8", "--fsdp", "full", "--offload", "optimizer"], "CPUOffloadPolicy"),
    (["--gpus", "8", "--offload", "params"], "needs a sharding engine"),
    (["--gpus", "0"], "--gpus must be at least 1"),
])
def test_impossible_combinations_exit_2_with_one_line(flags, fragment):
    r = run("estimate", "-m", "llama-3.1-8b", *flags)
    assert r.exit_code == 2
    assert fragment in r.output and "Traceback" not in r.output


def test_profile_simulates_fsdp_ranks(tiny_config):
    r = run("profile", "-m", tiny_config, "--gpus", "4", "--fsdp", "full", "-b", "2", "-s", "32", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["device"].startswith("simulate (FSDP2, 4 ranks)") and d["peak_allocated_bytes"] > 0


def test_profile_refuses_what_it_cannot_run(tiny_config):
    r = run("profile", "-m", tiny_config, "--gpus", "4", "--zero", "3")
    assert r.exit_code == 2 and "runs FSDP2" in r.output
