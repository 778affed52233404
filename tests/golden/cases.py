"""The golden cases: `estimate --json`, `fit --json` and `recommend --json` over every preset, every
option value, and the whole product method x precision x optimizer x engine.

A change that moves a number must rewrite the golden file on purpose, in a commit that says why:

    python tests/golden/cases.py --write          # rewrite tests/golden/golden.jsonl
    python tests/golden/cases.py --diff           # what differs now, numbers first

tests/golden/test_golden.py holds every case to the file: numbers byte-identical, texts (notes,
assumptions, sources, reasons) compared apart.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.jsonl"
TEXTS = HERE / "golden_texts.json"     # long strings, stored once: rows hold "§<crc32>" in their place
LONG = 80
FIXTURES = HERE.parent / "planner" / "fixtures"

# keys whose values are prose or provenance: compared apart from the numbers
TEXT_KEYS = {"notes", "assumptions", "source", "why", "message", "description", "error", "as_of", "verified",
             "purchase_source", "ownership_assumptions"}

METHODS = ("full", "lora", "qlora")
PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed", "bf16-true", "fp16-true")
OPTIMIZERS = ("adamw", "adamw-fused", "adamw-8bit", "paged-adamw-8bit", "paged-adamw", "adafactor", "sgd", "lion")
ENGINES: dict[str, tuple[str, ...]] = {
    "single": (),
    "ddp": ("--gpus", "4"),
    "zero1": ("--gpus", "4", "--zero", "1"),
    "zero2": ("--gpus", "4", "--zero", "2"),
    "zero3": ("--gpus", "8", "--zero", "3"),
    "fsdp-full": ("--gpus", "8", "--fsdp", "full"),
    "fsdp-grad-op": ("--gpus", "4", "--fsdp", "grad-op"),
    "fsdp-hybrid": ("--gpus", "4", "--nodes", "2", "--fsdp", "hybrid"),
    "tp2": ("--gpus", "2", "--tp", "2"),
    "pp2": ("--gpus", "4", "--pp", "2", "--grad-accum", "4"),
    "tp2-fsdp": ("--gpus", "8", "--tp", "2", "--fsdp", "full"),
    "zero1-pp2": ("--gpus", "8", "--pp", "2", "--zero", "1", "--grad-accum", "2"),
    "zero2-offload-opt": ("--gpus", "4", "--zero", "2", "--offload", "optimizer"),
    "zero3-offload-params": ("--gpus", "8", "--zero", "3", "--offload", "params"),
    "zero3-nvme": ("--gpus", "8", "--zero", "3", "--offload", "params", "--offload-device", "nvme"),
    "fsdp-offload": ("--gpus", "8", "--fsdp", "full", "--offload", "params"),
}
# models the product rotates through (families: llama, qwen2 tied, gemma-2 eager, phi3 fused, gpt2,
# neox, olmo2 post-norm, qwen3 q/k norms, MoE)
ROTATION = ("llama-3.2-1b", "qwen-2.5-0.5b", "gemma-2-2b", "phi-3-mini-4k-instruct", "gpt-2-small", "pythia-160m",
            "olmo-2-7b", "qwen-3-0.6b", "qwen-3-30b-a3b", "smollm-2-135m")
GPUS_CHECKED = ("rtx-4090", "a100-80gb", "h100")


def _pick(items: tuple[str, ...], *key: str) -> str:
    """A deterministic choice of one item for this key (crc32, not hash(): stable across runs)."""
    return items[zlib.crc32("|".join(key).encode()) % len(items)]


def preset_names() -> list[str]:
    from gpuplan.planner.io.catalog import model_names

    return model_names()


def cases() -> Iterator[tuple[str, list[str]]]:
    """(case name, argv of `gpuplan`) for every golden case, in a fixed order."""
    # 1. every preset, once per method (small sizes: a preset's own numbers matter, not its size)
    for name in preset_names():
        for method in METHODS:
            yield (f"preset {name} {method}",
                   ["estimate", "-m", name, "--method", method, "-b", "2", "-s", "512", "--json",
                    *itertools.chain.from_iterable(("--gpu", g) for g in GPUS_CHECKED)])
    # 2. method x precision x optimizer x engine, the model drawn per combination
    for method, prec, opt, (eng, flags) in itertools.product(METHODS, PRECISIONS, OPTIMIZERS, ENGINES.items()):
        model = _pick(ROTATION, method, prec, opt, eng)
        yield (f"product {method} {prec} {opt} {eng} {model}",
               ["estimate", "-m", model, "--method", method, "--precision", prec, "--optimizer", opt,
                "-b", "2", "-s", "512", *flags, "--json"])
    # 3. every other option value at least once, on a few models
    option_sets = [
        ("--attn", "eager"), ("--attn", "flash"), ("--attn", "sdpa"), ("--loss", "chunked"), ("--loss", "hf"),
        ("--no-grad-ckpt",), ("--grad-ckpt",), ("--grad-accum", "4"), ("-b", "1", "-s", "8192"), ("-b", "16", "-s", "128"),
    ]
    lora_sets = [
        ("--lora-r", "64", "--lora-alpha", "128"), ("--lora-dropout", "0.1"), ("--lora-targets", "all-linear"),
        ("--lora-targets", "q_proj,k_proj,v_proj,o_proj"), ("--adapter-dtype", "bf16"), ("--adapter-dtype", "fp16"),
        ("--adapter-dtype", "fp32"), ("--base-dtype", "bf16"), ("--base-dtype", "fp16"), ("--base-dtype", "fp32"),
    ]
    qlora_sets = [("--quant-type", "fp4"), ("--quant-type", "int8"), ("--quant-type", "nf4"), ("--no-double-quant",),
                  ("--double-quant",)]
    models = ("llama-3.1-8b", "gemma-3-1b", "gpt-2-medium", "mixtral-8x7b")
    for model in models:
        for method in METHODS:
            for opts in option_sets:
                yield (f"option {model} {method} {' '.join(opts)}",
                       ["estimate", "-m", model, "--method", method, *opts, "--json"])
            if method == "full":
                continue
            for opts in lora_sets + (qlora_sets if method == "qlora" else []):
                yield (f"option {model} {method} {' '.join(opts)}",
                       ["estimate", "-m", model, "--method", method, "-b", "2", "-s", "1024", *opts, "--json"])
    # 4. the user's own configs
    for fixture in ("axolotl_qlora.yaml", "torchtune_lora.yaml", "trl_sft.json"):
        yield (f"from-config {fixture}", ["estimate", "--from-config", str(FIXTURES / fixture), "--json"])
    yield ("from-config axolotl qwen2-dpo.yaml",
           ["estimate", "--from-config", str(HERE.parent / "fixtures" / "configs" / "axolotl" / "qwen2-dpo.yaml"), "--json"])
    yield ("from-config axolotl gemma2-reward-model.yaml",
           ["estimate", "--from-config", str(HERE.parent / "fixtures" / "configs" / "axolotl" / "gemma2-reward-model.yaml"),
            "--json"])
    yield ("from-config hf alignment-handbook-accelerate-fsdp.yaml",
           ["estimate", "--from-config", str(HERE.parent / "fixtures" / "configs" / "hf" /
                                             "alignment-handbook-accelerate-fsdp.yaml"),
            "-m", "llama-3.1-8b", "--save-steps", "100", "--json"])
    yield ("from-config llamafactory accelerate_fsdp_config.yaml llama-3.1-8b",
           ["estimate", "--from-config", str(HERE.parent / "fixtures" / "configs" / "llamafactory" /
                                             "accelerate_fsdp_config.yaml"), "-m", "llama-3.1-8b", "--json"])
    yield ("from-config unsloth Gemma3_4B.py",
           ["estimate", "--from-config", str(HERE.parent / "fixtures" / "configs" / "unsloth" / "Gemma3_4B.py"), "--json"])
    # 5. fit: fitting and not fitting, every method, a multi-GPU one
    for model, gpu, extra in (("llama-3.1-8b", "rtx-4090", ("--method", "qlora")),
                              ("llama-3.1-8b", "rtx-4090", ()),
                              ("llama-3.1-8b", "a100-80gb", ("--method", "lora", "-s", "4096")),
                              ("qwen-2.5-7b", "l4", ("--method", "lora", "--no-grad-ckpt")),
                              ("gemma-2-9b", "rtx-3090", ("--method", "qlora", "-b", "4", "-s", "2048")),
                              ("llama-3.1-70b", "h100", ("--gpus", "8", "--fsdp", "full", "-b", "1", "-s", "2048")),
                              ("mistral-7b-v0.3", "a10g", ("--precision", "bf16-true")),
                              ("qwen-2.5-0.5b", "l4", ("--method", "lora", "--objective", "grpo", "--loss", "trl",
                                                      "-s", "1024", "--max-completion-length", "768", "-b", "8",
                                                      "--vllm-colocate", "0.3")),
                              ("llama-3.1-8b", "a100-40gb", ("--gpus-per-node", "8", "--fsdp", "full", "--method", "lora",
                                                            "--fsdp-version", "1"))):
        yield (f"fit {model} {gpu} {' '.join(extra)}", ["fit", "-m", model, "--gpu", gpu, *extra, "--json"])
    # 6. the accuracy matrices' setups: single GPU (profiler/matrix.py) and multi-GPU (benchmarks/)
    from gpuplan.profiler.matrix import MATRIX

    for case in MATRIX:
        yield (f"matrix {case.name}", ["api-estimate", case.model,
                                       json.dumps({**case.setup, "batch_size": case.batch_size,
                                                   "seq_len": case.seq_len}, sort_keys=True)])
    for c in _multi_gpu_cases():
        flags = ["--gpus", str(c.world), "--nodes", str(c.nodes), "--fsdp", c.fsdp, "--method", c.method,
                 "-b", str(c.batch), "-s", str(c.seq), "--precision", c.precision, "--grad-accum", str(c.grad_accum),
                 "--grad-ckpt" if c.ckpt else "--no-grad-ckpt"]
        if c.lora_targets:
            flags += ["--lora-targets", ",".join(c.lora_targets)]
        yield (f"matrix-multi {' '.join(c.label.split())}", ["estimate", "-m", c.model, *flags, "--json"])
    # 7. recommend: the README's two examples, a constrained one and one where nothing qualifies
    yield ("recommend qwen-2.5-7b 200M x2", ["recommend", "-m", "qwen-2.5-7b", "--dataset-tokens", "200M",
                                             "--epochs", "2", "--json"])
    yield ("recommend llama-3.1-8b buy", ["recommend", "-m", "llama-3.1-8b", "--dataset-tokens", "100M",
                                          "--gpus", "rtx-4090,rtx-3090,l40s,h100", "--buy", "--json"])
    yield ("recommend llama-3.1-70b 16 GPUs 48h", ["recommend", "-m", "llama-3.1-70b", "--dataset-tokens", "1B",
                                                   "--max-gpus", "16", "--deadline", "48h", "--methods", "full,lora",
                                                   "--json"])
    for objective in ("dpo", "rm"):
        yield (f"recommend qwen-2.5-0.5b 50M {objective}", ["recommend", "-m", "qwen-2.5-0.5b", "--dataset-tokens", "50M",
                                                          "--objective", objective, "--max-gpus", "4", "--json"])
    yield ("recommend llama-3.1-8b impossible", ["recommend", "-m", "llama-3.1-8b", "--dataset-tokens", "10B",
                                                 "--deadline", "1h", "--budget", "5", "--max-gpus", "2", "--json"])
    # 8. every other accuracy matrix (a technique's simulated rows), named by its matrix
    from gpuplan.profiler.matrix import MATRICES

    for name, matrix in MATRICES.items():
        if name == "core":
            continue
        for case in matrix:
            yield (f"matrix-{name} {case.name}", ["api-estimate", case.model,
                                                   json.dumps({**case.setup, "batch_size": case.batch_size,
                                                               "seq_len": case.seq_len}, sort_keys=True)])
    # 9. what no simulated matrix covers: the techniques modelled from source, the run's other phases
    for name, argv in _TECHNIQUES:
        yield (f"technique {name}", ["estimate", *argv, "--json"])


_TECHNIQUES = (
    *((f"activation-offload {v}", ["-m", "llama-3.2-1b", "--method", "lora", "-b", "8", "-s", "4096",
                                   "--activation-offload", v, "--gpu", "h100"])
      for v in ("trl", "trl-sync", "torchtune", "layer-inputs", "unsloth")),
    ("activation-offload trl no-ckpt", ["-m", "llama-3.2-1b", "--no-grad-ckpt", "--activation-offload", "trl"]),
    ("liger", ["-m", "llama-3.1-8b", "--liger", "-b", "4", "-s", "4096", "--precision", "bf16-true", "--no-grad-ckpt"]),
    ("liger rms_norm before load", ["-m", "qwen-3-0.6b", "--liger-kernels", "rms_norm", "--liger-before-load"]),
    ("liger cross_entropy", ["-m", "llama-3.2-1b", "--liger-kernels", "cross_entropy"]),
    ("cce", ["-m", "gemma-2-2b", "--loss", "cce", "-b", "4", "-s", "2048"]),
    ("cce qlora", ["-m", "llama-3.1-8b", "--method", "qlora", "--loss", "cce", "-b", "4", "-s", "4096"]),
    ("yafsdp", ["-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "yafsdp", "-b", "1", "-s", "4096"]),
    *((f"optimizer {o}", ["-m", "qwen-2.5-0.5b", "--optimizer", o])
      for o in ("torchao-adamw-8bit", "torchao-adamw-4bit", "adam-mini", "apollo-adamw")),
    *((f"stack {v}", ["-m", "llama-3.2-1b", "--stack-versions", v]) for v in ("trl-1.16", "transformers-5.24",
                                                                            "torchtune-0.6.1")),
    ("weights bf16", ["-m", "llama-3.2-1b", "--weights-dtype", "bf16"]),
    ("qlora no kbit prepare", ["-m", "llama-3.2-1b", "--method", "qlora", "--no-kbit-prepare"]),
    ("padding longest", ["-m", "llama-3.2-1b", "--method", "lora", "--padding", "longest"]),
    ("packing flattened flash", ["-m", "llama-3.2-1b", "--method", "lora", "--packing", "flattened", "--attn", "flash"]),
    ("sliding window mistral-v0.1", ["-m", "mistral-7b-v0.1", "--method", "qlora", "-b", "1", "-s", "4096"]),
    ("kto lora", ["-m", "llama-3.1-8b", "--method", "lora", "--objective", "kto", "--loss", "trl", "-b", "4"]),
    ("eval generate qlora", ["-m", "llama-3.1-8b", "--method", "qlora", "-b", "4", "--eval-batch-size", "16",
                             "--eval-seq-len", "512", "--eval-generate-tokens", "512"]),
    ("eval generate static", ["-m", "qwen-2.5-7b", "--method", "lora", "--eval-batch-size", "8",
                              "--eval-generate-tokens", "1024", "--eval-cache", "static"]),
    *((f"stack {v}", ["-m", "llama-3.1-8b", "--method", "qlora", "-b", "4", "-s", "4096", "--stack-versions", v])
      for v in ("trl-1.12", "trl-1.14")),
    ("chunked-nll completion-only", ["-m", "qwen-2.5-7b", "--method", "lora", "--loss", "chunked-nll",
                                     "--loss-tokens", "0.3", "-b", "2", "-s", "8192"]),
    ("compile inductor", ["-m", "qwen-2.5-0.5b", "--no-grad-ckpt", "--compile", "inductor"]),
    ("compile inductor lora", ["-m", "llama-3.2-1b", "--method", "lora", "--no-grad-ckpt", "--compile", "inductor"]),
    ("compile inductor bf16-true", ["-m", "llama-3.1-8b", "--precision", "bf16-true", "--no-grad-ckpt",
                                    "--compile", "inductor"]),
    ("orpo lora", ["-m", "qwen-2.5-0.5b", "--method", "lora", "--objective", "orpo"]),
    ("orpo qlora 8b", ["-m", "llama-3.1-8b", "--method", "qlora", "--objective", "orpo", "-b", "2", "-s", "2048"]),
    ("grpo lora", ["-m", "qwen-2.5-7b", "--method", "lora", "--objective", "grpo", "--loss", "trl", "-s", "1024",
                   "--max-completion-length", "768"]),
    ("grpo full beta", ["-m", "qwen-2.5-0.5b", "--objective", "grpo", "--loss", "trl", "-s", "1024",
                        "--max-completion-length", "768", "--kl-beta", "0.04", "--steps-per-generation", "4"]),
    ("grpo vllm colocate", ["-m", "qwen-2.5-7b", "--method", "lora", "--objective", "grpo", "--loss", "trl",
                            "-s", "1024", "--max-completion-length", "768", "--vllm-colocate", "0.3",
                            "--gpu", "h100"]),
    ("grpo lora generate time", ["-m", "qwen-2.5-0.5b", "--method", "lora", "--objective", "grpo", "--loss", "trl",
                                 "-s", "1024", "--max-completion-length", "768", "--kl-beta", "0.04", "--gpu", "l4"]),
    ("grpo fsdp generate time", ["-m", "qwen-2.5-7b", "--objective", "grpo", "--loss", "trl", "-b", "8", "-s", "1536",
                                 "--max-completion-length", "1024", "--gpus-per-node", "8", "--fsdp", "full",
                                 "--gpu", "rtx-4090"]),
    *((f"context-parallel {name}", ["-m", "llama-3.1-8b", "--method", "full", "-b", "1", "--seq-len", "65536",
                                    "--gpus-per-node", "8", "--loss", "chunked", *extra])
      for name, extra in (("fsdp torch", ("--fsdp", "full", "--context-parallel", "4")),
                          ("fsdp llama3", ("--fsdp", "full", "--context-parallel", "4", "--cp-kind", "llama3",
                                           "--attn", "flash")),
                          ("zero3 ulysses", ("--zero", "3", "--context-parallel", "4", "--cp-kind", "ulysses")))),
    ("context-parallel lora 8", ["-m", "llama-3.1-8b", "--method", "lora", "-b", "1", "--seq-len", "65536",
                                 "--gpus-per-node", "8", "--loss", "chunked", "--fsdp", "full",
                                 "--context-parallel", "8"]),
    ("tiled-mlp 64k", ["-m", "llama-3.2-1b", "-b", "1", "--seq-len", "65536", "--tiled-mlp"]),
    ("fp8 tensorwise all", ["-m", "qwen-2.5-0.5b", "--precision", "bf16-true", "--fp8", "tensorwise",
                            "--fp8-linears", "all", "--no-grad-ckpt", "-b", "1", "-s", "256"]),
    ("fp8 mixed 8b", ["-m", "llama-3.1-8b", "--fp8", "tensorwise", "-s", "4096"]),
    ("fp8 rowwise all 8b", ["-m", "llama-3.1-8b", "--precision", "bf16-true", "--fp8", "rowwise",
                            "--fp8-linears", "all", "-s", "4096"]),
    ("time compile inductor a100", ["-m", "llama-3.2-1b", "--no-grad-ckpt", "--compile", "inductor",
                                    "--gpu", "a100-80gb"]),
    ("time qlora kbit upcast a100", ["-m", "mistral-7b", "--method", "qlora", "--attn", "flash", "--gpu", "a100-80gb"]),
    ("time qlora no kbit prepare a100", ["-m", "mistral-7b", "--method", "qlora", "--attn", "flash",
                                         "--no-kbit-prepare", "--gpu", "a100-80gb"]),
    ("time moe qlora a100", ["-m", "mixtral-8x7b", "--method", "qlora", "--gpu", "a100-80gb"]),
    ("ranges qlora 4090 may not fit", ["-m", "llama-3.1-8b", "--method", "qlora", "-b", "1", "-s", "4096",
                                       "--gpu", "rtx-4090"]),
    ("ranges dora simulator-only", ["-m", "llama-3.2-1b", "--method", "lora", "--use-dora"]),
    ("ranges stack other", ["-m", "llama-3.2-1b", "--method", "lora", "--ranges-stack", "other", "--gpu", "l4"]),
    ("rm lora 8b 4090", ["-m", "llama-3.1-8b", "--objective", "rm", "--method", "lora", "--base-dtype", "bf16",
                         "-b", "2", "-s", "1024", "--gpu", "rtx-4090"]),
    ("rm full bf16-true save phases", ["-m", "llama-3.1-8b", "--objective", "rm", "-b", "1", "-s", "512",
                                       "--precision", "bf16-true", "--save-steps", "100", "--phases"]),
    ("rm lora packing refused", ["-m", "llama-3.2-1b", "--objective", "rm", "--method", "lora", "--packing", "rows"]),
    ("ppo refused", ["-m", "llama-3.2-1b", "--objective", "ppo"]),
    ("ppo lora phases", ["-m", "qwen-2.5-0.5b", "--objective", "ppo", "--precision", "bf16-true", "--method", "lora",
                         "-b", "2", "-s", "256", "--response-length", "64", "--phases"]),
    ("ppo full mini-batches", ["-m", "qwen-2.5-0.5b", "--objective", "ppo", "--precision", "bf16-true", "-b", "2",
                               "-s", "256", "--response-length", "64", "--grad-accum", "4", "--num-mini-batches", "2",
                               "--rollout-batch", "2"]),
    ("ppo separate value and reward", ["-m", "llama-3.2-1b", "--objective", "ppo", "--precision", "bf16-true",
                                       "--method", "lora", "--value-model", "qwen-2.5-0.5b",
                                       "--reward-model", "smollm-2-135m"]),
    ("ppo 2 gpus refused", ["-m", "qwen-2.5-0.5b", "--objective", "ppo", "--precision", "bf16-true",
                            "--gpus-per-node", "2"]),
    ("ppo trl-1.14 refused", ["-m", "qwen-2.5-0.5b", "--objective", "ppo", "--precision", "bf16-true",
                              "--stack-versions", "trl-1.14"]),
    # FSDP1's step (--fsdp-version 1): LoRA with peft's wrap policy, flat parameters, and QLoRA's FSDP2 fallback note
    *((f"fsdp1 {name}", ["-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full", "--fsdp-version", "1", *extra])
      for name, extra in (("lora", ("--method", "lora")),
                          ("lora flat params", ("--method", "lora", "--fsdp-flat-params")),
                          ("full flat params", ("--fsdp-flat-params",)),
                          ("qlora falls back", ("--method", "qlora")))),
    # TRL 1.9's DPOTrainer (axolotl 0.19's rl: dpo), and what it refuses
    ("dpo trl-1.9 lora", ["-m", "qwen-2.5-0.5b", "--objective", "dpo", "--stack-versions", "trl-1.12", "--method", "lora",
                          "-b", "2", "-s", "1024"]),
    ("dpo trl-1.9 full bf16 weights", ["-m", "qwen-2.5-0.5b", "--objective", "dpo", "--stack-versions", "trl-1.12",
                                       "--precision", "bf16-mixed", "--weights-dtype", "bf16", "-b", "2", "-s", "1024"]),
    ("kto trl-1.9 refused", ["-m", "qwen-2.5-0.5b", "--objective", "kto", "--stack-versions", "trl-1.12", "-b", "2"]),
    ("dpo trl-1.14 refused", ["-m", "qwen-2.5-0.5b", "--objective", "dpo", "--stack-versions", "trl-1.14"]),
    *((f"save fsdp {name}", ["-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full", "--save-steps", "100",
                             *extra])
      for name, extra in (("v1 full offloaded", ("--fsdp-version", "1")),
                          ("v1 full on gpu", ("--fsdp-version", "1", "--state-dict-on-gpu")),
                          ("v2 sharded", ("--fsdp-state-dict", "sharded")))),
    ("eval fsdp 8 accumulate logits", ["-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full",
                                       "--eval-batch-size", "8", "--eval-seq-len", "2048", "--eval-accumulate-logits",
                                       "--eval-batches", "4"]),
    ("eval zero3 8", ["-m", "llama-3.1-8b", "--gpus-per-node", "8", "--zero", "3", "--eval-batch-size", "8"]),
    *((f"dpo 8 gpus {name}", ["-m", "llama-3.1-8b", "--objective", "dpo", "--loss", "trl", "-b", "2", "-s", "1024",
                              "--gpus-per-node", "8", *extra])
      for name, extra in (("fsdp", ("--fsdp", "full")), ("zero2", ("--zero", "2")), ("zero3", ("--zero", "3")))),
    *((f"grpo 8 gpus {name}", ["-m", "qwen-2.5-7b", "--objective", "grpo", "--loss", "trl", "-b", "8", "-s", "1536",
                               "--max-completion-length", "1024", "--gpus-per-node", "8", *extra])
      for name, extra in (("zero3", ("--zero", "3")),
                          ("zero3 no gather", ("--zero", "3", "--no-ds3-gather-for-generation")),
                          ("fsdp vllm server", ("--fsdp", "full", "--vllm-server-gpus", "2", "--gpu", "h100",
                                                "--dataset-tokens", "100M")))),
    ("multimodal qwen2-vl lora all-linear", ["-m", "qwen2-vl-2b-instruct", "--method", "lora",
                                             "--lora-targets", "all-linear"]),
    ("multimodal gemma-3 qlora language-only", ["-m", "gemma-3-4b-it-multimodal", "--method", "qlora", "--lora-targets",
                                                "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                                                "--lora-language-only"]),
    ("multimodal qwen2-vl full bf16-true", ["-m", "qwen2-vl-2b-instruct", "--precision", "bf16-true", "--no-grad-ckpt"]),
    ("multimodal rm refused", ["-m", "qwen2-vl-2b-instruct", "--objective", "rm", "--method", "lora",
                               "--lora-targets", "q_proj,v_proj"]),
    ("multimodal llava qlora one image", ["-m", "llava-1.5-7b", "--method", "qlora", "--lora-targets", "q_proj,v_proj",
                                          "--lora-language-only", "--images-per-example", "1", "-b", "1", "-s", "1024",
                                          "--gpu", "rtx-4090"]),
    ("multimodal images on a text model refused", ["-m", "llama-3.2-1b", "--images-per-example", "1"]),
    ("lora-fa qlora", ["-m", "llama-3.1-8b", "--method", "qlora", "--optimizer", "lorafa", "--lora-targets", "all-linear",
                       "--gpu", "rtx-4090"]),
    ("lora-variant delta-lora", ["-m", "llama-3.2-1b", "--method", "lora", "--lora-variant", "delta-lora"]),
    ("lora-variant rosa refused", ["-m", "llama-3.2-1b", "--method", "lora", "--lora-variant", "rosa"]),
    ("eval generation fsdp 8", ["-m", "llama-3.1-8b", "--method", "lora", "--gpus-per-node", "8", "--fsdp", "full",
                                "--eval-batch-size", "8", "--eval-generate-tokens", "256"]),
    ("phases lora", ["-m", "llama-3.2-1b", "--method", "lora", "--phases"]),
    ("phases fsdp", ["-m", "llama-3.1-8b", "--gpus", "8", "--fsdp", "full", "--phases"]),
    ("phases fsdp cpu-ram-efficient", ["-m", "llama-3.1-8b", "--gpus", "8", "--fsdp", "full", "--phases",
                                       "--cpu-ram-efficient-loading"]),
    ("phases qlora fsdp 70b 4090", ["-m", "llama-3.1-70b", "--method", "qlora", "--gpus", "8", "--fsdp", "full",
                                    "-b", "1", "-s", "1024", "--gpu", "rtx-4090", "--phases"]),
)


def _multi_gpu_cases() -> list[Any]:
    import importlib.util

    path = HERE.parent.parent / "benchmarks" / "accuracy_multi_gpu.py"
    spec = importlib.util.spec_from_file_location("accuracy_multi_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy_multi_gpu"] = mod
    spec.loader.exec_module(mod)
    return list(mod.CASES)


def run(argv: list[str]) -> dict[str, Any]:
    """{"exit": code, "output": parsed JSON} or {"exit": code, "error": last line}, in-process."""
    from click.testing import CliRunner

    if argv[0] == "api-estimate":     # a setup the CLI flags cannot spell: through the Python API
        from gpuplan.planner import TrainingSetup, estimate
        from gpuplan.planner.io.catalog import resolve_model

        est = estimate(resolve_model(argv[1]), TrainingSetup.from_dict(json.loads(argv[2])))
        return {"exit": 0, "output": est.to_dict()}

    from gpuplan.app.cli import cli

    r = CliRunner().invoke(cli, argv, catch_exceptions=False)
    if r.exit_code == 0 or (argv[0] == "recommend" and r.exit_code == 1):
        try:
            return {"exit": r.exit_code, "output": json.loads(r.stdout)}
        except json.JSONDecodeError:
            pass
    lines = [ln for ln in (r.stderr if hasattr(r, "stderr") else r.output).splitlines() if ln.strip()]
    return {"exit": r.exit_code, "error": lines[-1] if lines else ""}


def split(value: Any, path: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(numbers, texts): every leaf by its path, numbers apart from prose and provenance."""
    numbers: dict[str, Any] = {}
    texts: dict[str, Any] = {}

    def walk(v: Any, p: str, text: bool) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{p}.{k}" if p else str(k), text or k in TEXT_KEYS)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{p}[{i}]", text)
            if not v:
                (texts if text else numbers)[p] = []
        elif text:
            texts[p] = v
        else:
            numbers[p] = v

    walk(value, path, False)
    return numbers, texts


def _intern(v: Any, table: dict[str, str]) -> Any:
    """v with every string longer than LONG replaced by its key in `table`."""
    if isinstance(v, dict):
        return {k: _intern(x, table) for k, x in v.items()}
    if isinstance(v, list):
        return [_intern(x, table) for x in v]
    if isinstance(v, str) and len(v) > LONG:
        key = f"§{zlib.crc32(v.encode()):08x}"
        table[key] = v
        return key
    return v


def _expand(v: Any, table: dict[str, str]) -> Any:
    if isinstance(v, dict):
        return {k: _expand(x, table) for k, x in v.items()}
    if isinstance(v, list):
        return [_expand(x, table) for x in v]
    return table.get(v, v) if isinstance(v, str) and v.startswith("§") else v


def load() -> dict[str, dict[str, Any]]:
    table = json.loads(TEXTS.read_text())
    with open(GOLDEN) as f:
        rows = [_expand(json.loads(line), table) for line in f if line.strip()]
    return {r["case"]: r for r in rows}


def write(rows: dict[str, dict[str, Any]]) -> None:
    table: dict[str, str] = {}
    with open(GOLDEN, "w") as f:
        for row in rows.values():
            f.write(json.dumps(_intern(row, table), sort_keys=True, separators=(",", ":")) + "\n")
    TEXTS.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")


def compute(progress: bool = False) -> dict[str, dict[str, Any]]:
    out = {}
    all_cases = list(cases())
    for i, (name, argv) in enumerate(all_cases):
        out[name] = {"case": name, "argv": argv, **run(argv)}
        if progress and (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(all_cases)} cases", file=sys.stderr)
    return out


def diff(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(number differences, text differences), one line each."""
    nums, texts = [], []
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            nums.append(f"{name}: {'new case' if name in new else 'case gone'}")
            continue
        on, ot = split({k: v for k, v in old[name].items() if k not in ("case", "argv")})
        nn, nt = split({k: v for k, v in new[name].items() if k not in ("case", "argv")})
        for p in sorted(set(on) | set(nn)):
            if on.get(p, "<absent>") != nn.get(p, "<absent>"):
                nums.append(f"{name}: {p}: {on.get(p, '<absent>')!r} -> {nn.get(p, '<absent>')!r}")
        for p in sorted(set(ot) | set(nt)):
            if ot.get(p, "<absent>") != nt.get(p, "<absent>"):
                texts.append(f"{name}: {p}: {ot.get(p, '<absent>')!r} -> {nt.get(p, '<absent>')!r}")
    return nums, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the golden file from the code as it is")
    ap.add_argument("--diff", action="store_true", help="print what differs from the golden file")
    args = ap.parse_args()
    new = compute(progress=True)
    if args.write:
        write(new)
        print(f"wrote {len(new)} cases to {GOLDEN}")
        return
    nums, texts = diff(load(), new)
    for line in nums[:200]:
        print("NUMBER", line)
    for line in texts[:200]:
        print("TEXT  ", line)
    print(f"{len(new)} cases: {len(nums)} number differences, {len(texts)} text differences")
    sys.exit(1 if nums or texts else 0)


if __name__ == "__main__":
    main()
