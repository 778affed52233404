"""Property-based fuzzing of the CLI: random flag values for estimate and fit, random mutations of a
config.json (types, signs, missing keys), random bytes as the files gpuplan reads, random GPU catalog
entries. Whatever the input: exit 0 or 2 (3 for a failed `estimate --check`), never a traceback,
never a negative or NaN byte count (headroom excepted), and the figures add up: the components at the
peak sum to peak_allocated_bytes, plus allocator_slack to peak_reserved_bytes, plus cuda_context to
device_total_bytes.

Bounded to about 20 s: modest max_examples, derandomized so that CI is repeatable.
GPUPLAN_FUZZ_EXAMPLES=500 runs more examples with a fresh random seed each time (to hunt).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpuplan.app.cli import cli

HUNT = int(os.environ.get("GPUPLAN_FUZZ_EXAMPLES", "0"))


def budget(n: int):
    return settings(max_examples=HUNT or n, deadline=None, derandomize=not HUNT, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


TINY = json.loads((Path(__file__).parent / "fixtures" / "tiny-llama-config.json").read_text())
MODELS = ("llama-3.2-1b", "qwen-2.5-0.5b", "gpt-2-small", "smollm-2-135m", "gemma-2-2b", "pythia-160m",
          "qwen-3-30b-a3b", "phi-3-mini-4k-instruct")
OK_EXITS = {0, 2}


def invoke(argv: list[str], ok: set[int] = OK_EXITS):
    r = CliRunner().invoke(cli, argv)
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"gpuplan {' '.join(argv)} raised {type(r.exception).__name__}: {r.exception}")
    assert r.exit_code in ok, f"gpuplan {' '.join(argv)}: exit {r.exit_code}\n{r.output[-800:]}"
    assert "Traceback" not in r.output
    event(f"exit {r.exit_code}")
    if r.exit_code == 2:
        assert "Error:" in r.stderr, r.output[-400:]
    return r


def _walk_numbers(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _walk_numbers(x, f"{path}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _walk_numbers(x, f"{path}[{i}]")
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        yield path, v


def check_estimate_json(out: dict) -> None:
    for path, v in _walk_numbers(out):
        assert not (isinstance(v, float) and math.isnan(v)), f"{path} is NaN"
        if path.endswith("_bytes") and "headroom" not in path:
            assert v >= 0, f"{path} = {v}"
    for phase, comps in out["phase_components"].items():
        assert all(v >= 0 for v in comps.values()), (phase, comps)
    c = out["components"]
    tensors = sum(v for k, v in c.items() if k not in ("allocator_slack", "cuda_context"))
    assert all(v >= 0 for v in c.values()), c
    assert tensors == out["peak_allocated_bytes"]
    assert out["peak_allocated_bytes"] + c["allocator_slack"] == out["peak_reserved_bytes"]
    assert out["peak_reserved_bytes"] + c["cuda_context"] == out["device_total_bytes"]
    assert out["params"]["total"] > 0 and out["params"]["trainable"] >= 0


small_int = st.one_of(st.integers(-3, 8), st.sampled_from([16, 64, 1000]))
flag_values = {
    "--method": st.sampled_from(["full", "lora", "qlora"]),
    "--precision": st.sampled_from(["fp32", "bf16-mixed", "fp16-mixed", "bf16-true", "fp16-true"]),
    "--optimizer": st.sampled_from(["adamw", "adamw-fused", "adamw-8bit", "paged-adamw-8bit", "adafactor", "sgd",
                                    "lion"]),
    "--batch-size": small_int,
    "--seq-len": st.one_of(st.integers(-2, 4096), st.sampled_from([8192, 40000, 200000, 10**9])),
    "--grad-accum": small_int,
    "--attn": st.sampled_from(["sdpa", "eager", "flash"]),
    "--loss": st.sampled_from(["hf", "chunked"]),
    "--lora-r": small_int,
    "--lora-dropout": st.floats(-0.5, 1.5, allow_nan=False),
    "--lora-targets": st.sampled_from(["q_proj", "all-linear", "nope", "q_proj,v_proj", ","]),
    "--quant-type": st.sampled_from(["nf4", "fp4", "int8"]),
    "--gpus-per-node": st.sampled_from([0, 1, 2, 3, 8]),
    "--nodes": st.sampled_from([0, 1, 2]),
    "--zero": st.integers(0, 3),
    "--fsdp": st.sampled_from(["none", "full", "grad-op", "hybrid"]),
    "--offload": st.sampled_from(["none", "optimizer", "params"]),
    "--offload-device": st.sampled_from(["cpu", "nvme"]),
    "--tp": st.sampled_from([0, 1, 2, 3]),
    "--pp": st.sampled_from([0, 1, 2]),
}
flags = st.dictionaries(st.sampled_from(sorted(flag_values)), st.none(), max_size=7).flatmap(
    lambda keys: st.fixed_dictionaries({k: flag_values[k] for k in keys}))


def argv_of(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += [k, str(v)]
    return out


@budget(150)
@given(model=st.sampled_from(MODELS), f=flags, ckpt=st.booleans(), gpu=st.sampled_from(["h100", "rtx-4090", "t4"]))
def test_estimate_random_flags(model, f, ckpt, gpu):
    argv = ["estimate", "-m", model, *argv_of(f), "--grad-ckpt" if ckpt else "--no-grad-ckpt", "--gpu", gpu]
    r = invoke([*argv, "--json"])
    if r.exit_code == 0:
        out = json.loads(r.stdout)
        check_estimate_json(out)
        (row,) = out["fits"]
        assert row["fits"] == (row["headroom_bytes"] >= 0)
    r = invoke([*argv, "--check"], ok={0, 2, 3})      # the human output too, and --check's status
    assert r.exit_code == 0 or r.exit_code == 2 or "Does not fit" in r.output


@budget(25)
@given(model=st.sampled_from(MODELS[:4]), f=flags, gpu=st.sampled_from(["h100", "rtx-4090", "t4"]))
def test_fit_random_flags(model, f, gpu):
    r = invoke(["fit", "-m", model, *argv_of(f), "--gpu", gpu, "--json"])
    if r.exit_code == 0:
        out = json.loads(r.stdout)
        assert out["device_total_bytes"] > 0 and out["max_batch_size"] >= 0 and out["max_seq_len"] >= 0
        for k in out["knobs"]:
            assert 0 < k["device_total_bytes"] <= out["memory_bytes"] and k["batch_size"] >= 1


junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, -1, 2**31, 2**64]),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.lists(st.integers(-2, 5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
CONFIG_KEYS = sorted({*TINY, "head_dim", "num_local_experts", "num_experts_per_tok", "rope_scaling", "sliding_window",
                      "attention_dropout", "text_config", "auto_map", "final_logit_softcapping", "mlp_only_layers",
                      "decoder_sparse_step", "n_positions"})
BASES = {"llama": TINY,
         "gpt2": {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 128, "n_positions": 256},
         "gpt_neox": {"model_type": "gpt_neox", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                      "intermediate_size": 256, "vocab_size": 128, "max_position_embeddings": 256},
         "mixtral": {**TINY, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2}}


@st.composite
def mutated_config(draw):
    cfg = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(CONFIG_KEYS + ["model_type"]))
        action = draw(st.sampled_from(["set", "set", "drop", "negate"]))
        if action == "drop":
            cfg.pop(key, None)
        elif action == "negate" and isinstance(cfg.get(key), int):
            cfg[key] = -cfg[key]
        else:
            cfg[key] = draw(junk)
    return cfg


@budget(150)
@given(cfg=mutated_config(), seq=st.sampled_from(["64", "512"]), method=st.sampled_from(["full", "lora", "qlora"]))
def test_mutated_config_json(tmp_path_factory, cfg, seq, method):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(cfg))
    r = invoke(["estimate", "-m", str(path), "-s", seq, "-b", "1", "--method", method, "--json"])
    if r.exit_code == 0:
        check_estimate_json(json.loads(r.stdout))


@budget(60)
@given(data=st.one_of(st.binary(max_size=64), st.text(max_size=64).map(lambda t: t.encode("utf-8", "replace"))),
       where=st.sampled_from(["model", "from-config-yaml", "from-config-json", "catalog-yaml", "catalog-json"]))
def test_random_bytes_as_files(tmp_path_factory, data, where):
    d = tmp_path_factory.mktemp("bytes")
    if where == "model":
        p = d / "config.json"
        argv = ["estimate", "-m", str(p)]
    elif where.startswith("from-config"):
        p = d / ("train.yaml" if where.endswith("yaml") else "train.json")
        argv = ["estimate", "--from-config", str(p), "-m", "llama-3.2-1b"]
    else:
        p = d / ("gpus.yaml" if where.endswith("yaml") else "gpus.json")
        argv = ["gpus", "--gpu-catalog", str(p)]
    p.write_bytes(data)
    invoke(argv)


GOOD_GPU = {"name": "my-card", "memory_bytes": 25757220864, "peak_flops": {"bf16": 1.65e14, "fp32": 8e13},
            "memory_bandwidth_bytes_per_s": 1.0e12, "interconnect": {"kind": "pcie4", "bytes_per_s": 3.2e10},
            "power_watts": 450, "purchase_usd": 1600, "prices": [{"provider": "lab", "usd_per_hour": 0.3}]}
GPU_KEYS = sorted(GOOD_GPU) + ["aliases", "host_link", "display_name"]


@st.composite
def mutated_gpu(draw):
    entry = dict(GOOD_GPU) if draw(st.booleans()) else {"name": draw(st.sampled_from(["h100", "rtx-4090", "t4"]))}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(GPU_KEYS))
        if draw(st.booleans()):
            entry.pop(key, None)
        else:
            entry[key] = draw(st.one_of(junk, st.just([{"provider": "x", "usd_per_hour": "1"}]),
                                        st.just({"bf16": "1e15"}), st.just([{"provider": None}])))
    return entry


@budget(60)
@given(entry=mutated_gpu(), command=st.sampled_from(["gpus", "fit", "estimate", "recommend"]))
def test_mutated_gpu_catalog(tmp_path_factory, entry, command):
    p = tmp_path_factory.mktemp("cat") / "mine.json"
    p.write_text(json.dumps({"gpus": [entry]}))
    gpu = entry.get("name") if isinstance(entry.get("name"), str) and entry.get("name") else "h100"
    argv = {"gpus": ["gpus"],
            "fit": ["fit", "-m", "smollm-2-135m", "--gpu", gpu],
            "estimate": ["estimate", "-m", "smollm-2-135m", "--gpu", gpu],
            "recommend": ["recommend", "-m", "smollm-2-135m", "--dataset-tokens", "1M", "--max-gpus", "1",
                          "--methods", "lora"]}[command]
    invoke([*argv, "--gpu-catalog", str(p)], ok={0, 1, 2} if command == "recommend" else OK_EXITS)


TRAIN_FIXTURES = Path(__file__).parents[1] / "planner" / "fixtures"


def _load_fixture(name: str) -> dict:
    import yaml

    text = (TRAIN_FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


TRAIN_BASES = {name: _load_fixture(name) for name in ("axolotl_qlora.yaml", "trl_sft.json", "torchtune_lora.yaml")}


@st.composite
def mutated_training_config(draw):
    name = draw(st.sampled_from(sorted(TRAIN_BASES)))
    cfg = json.loads(json.dumps(TRAIN_BASES[name]))
    for _ in range(draw(st.integers(1, 3))):
        node = cfg
        if isinstance(cfg.get("model"), dict) and draw(st.booleans()):
            node = cfg["model"]
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.integers(0, 3)) == 0:
            node.pop(key)
        else:
            node[key] = draw(st.one_of(junk, st.sampled_from(["auto", "all-linear", "adamw_8bit", "lora"])))
    return name, cfg


@budget(60)
@given(case=mutated_training_config())
def test_mutated_from_config(tmp_path_factory, case):
    import yaml

    name, cfg = case
    p = tmp_path_factory.mktemp("train") / name
    p.write_text(json.dumps(cfg) if name.endswith(".json") else yaml.safe_dump(cfg))
    r = invoke(["estimate", "--from-config", str(p), "-m", "qwen-2.5-0.5b", "-s", "512", "--json"])
    if r.exit_code == 0:
        check_estimate_json(json.loads(r.stdout))
