"""Unsloth training scripts (.py) and notebooks (.ipynb) -> setup options, read with `ast` (never
imported or run).

Read: the literal keyword arguments of the first `FastLanguageModel.from_pretrained(...)` /
`FastModel.from_pretrained(...)`, of `FastLanguageModel.get_peft_model(...)`, of `SFTTrainer(...)`
and of the `SFTConfig(...)` / `TrainingArguments(...)` call. A name bound once, at top level, to a
literal (`max_seq_length = 2048`) counts as that literal; any other expression
(`bf16 = is_bfloat16_supported()`) is reported as non-literal in `unknown` and not read. Code under
`if False:` (the notebooks' optional inference and saving cells) is skipped.

Defaults and semantics: Unsloth 2026.8.19 (unslothai/unsloth commit 015bdef0):
`FastLanguageModel.from_pretrained` [unsloth/models/loader.py] defaults to max_seq_length=2048,
dtype=None (bf16 where the GPU has it), load_in_4bit=True, use_gradient_checkpointing="unsloth";
`get_peft_model` [unsloth/models/llama.py] to r=16, lora_alpha=16, lora_dropout=0, the seven
projections of a Llama layer, use_gradient_checkpointing="unsloth". Unsloth computes the loss with
its fused linear cross-entropy (--loss chunked). SFTConfig / TrainingArguments keys follow hf.py's table.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ..specs.errors import PlannerError

from . import ConfigSetup
from . import hf
from .common import Options, targets
from .rules import KeyRule, Report, modelled, no_effect, on, refused

VERSION = "2026.8.19"
_OBJECTS = ["model", "tokenizer", "processing_class", "train_dataset", "eval_dataset", "data_collator",
            "formatting_func", "callbacks", "compute_metrics", "peft_config"]

FROM_PRETRAINED: dict[str, KeyRule] = {
    "model_name": modelled("--model"),
    "max_seq_length": modelled("--seq-len (unless the trainer sets its own)"),
    "dtype": modelled("None: bf16 (Unsloth's default where the GPU has it); torch.float16/bfloat16"),
    "load_in_4bit": modelled("true (the default): --method qlora"),
    "load_in_8bit": modelled("true: --method qlora --quant-type int8"),
    "load_in_16bit": modelled("true: --method lora --base-dtype bf16"),
    "full_finetuning": modelled("true: --method full"),
    "use_gradient_checkpointing": modelled("True: --grad-ckpt; False: --no-grad-ckpt; \"unsloth\" (the default): "
                                           "--grad-ckpt --activation-offload unsloth"),
    "rope_scaling": refused("RoPE scaling changes the context planned"),
    "resize_model_vocab": refused("resizing the vocabulary changes the embedding rows"),
    "offload_embedding": refused("embeddings offloaded to host memory"),
    "float32_mixed_precision": refused("fp32 mixed precision forced"),
    "fast_inference": refused("a vLLM engine beside the training model"),
    "gpu_memory_utilization": modelled("the vLLM engine's share: read only with fast_inference (refused)"),
    "float8_kv_cache": refused("a vLLM engine's fp8 KV cache"),
    "max_lora_rank": modelled("the vLLM engine's LoRA rank: read only with fast_inference (refused)"),
    "qat_scheme": refused("quantization-aware training"),
    "load_in_fp8": refused("FP8 LoRA"),
    "unsloth_tiled_mlp": refused("tiled MLP computes the MLP in sequence shards"),
    "device_map": refused("a device map (model split across GPUs / CPU)",
                          lambda v: v not in (None, "sequential", "auto", "cuda", 0)),
    "quantization_config": refused("a custom quantization config"),
    **no_effect("hub access and tokenizer fixes", ["token", "fix_tokenizer", "trust_remote_code", "revision",
                                                   "use_exact_model_name", "random_state", "disable_log_stats",
                                                   "text_only"]),
}
GET_PEFT_MODEL: dict[str, KeyRule] = {
    "r": modelled("--lora-r"),
    "lora_alpha": modelled("--lora-alpha"),
    "lora_dropout": modelled("--lora-dropout"),
    "target_modules": modelled("--lora-targets"),
    "use_gradient_checkpointing": modelled("True: --grad-ckpt; False: --no-grad-ckpt; \"unsloth\" (the default): "
                                           "--grad-ckpt --activation-offload unsloth"),
    "use_rslora": modelled("rank-stabilized scaling alpha/sqrt(r): the same parameters and bytes"),
    "bias": modelled("none (the default): no bias trained; others refused"),
    "max_seq_length": modelled("unused since Unsloth 2024 (its docstring: not used anymore)"),
    "loftq_config": refused("LoftQ initialization", lambda v: v not in (None, {})),
    "layers_to_transform": refused("adapters on a subset of layers"),
    "layers_pattern": refused("adapters on a subset of layers"),
    "finetune_last_n_layers": refused("training only the last layers"),
    "modules_to_save": refused("modules_to_save trains full copies of those modules (and their optimizer state)"),
    "init_lora_weights": modelled("the initialization: the same bytes"),
    "qat_scheme": refused("quantization-aware training"),
    "target_parameters": refused("LoRA on raw parameters (MoE experts) is not planned"),
    "use_dora": refused("DoRA adds a magnitude vector and the weight-norm activations per adapted linear"),
    "finetune_vision_layers": refused("adapters on a vision tower (vision inputs)"),   # false: --lora-language-only
    "finetune_language_layers": modelled("true (the default): adapters on the language model"),
    "finetune_attention_modules": modelled("true: --lora-targets += q_proj,k_proj,v_proj,o_proj (FastModel)"),
    "finetune_mlp_modules": modelled("true: --lora-targets += gate_proj,up_proj,down_proj (FastModel)"),
    **no_effect("seeds and scratch paths", ["random_state", "temporary_location", "ensure_weight_tying"]),
}
SFT_TRAINER: dict[str, KeyRule] = {
    "max_seq_length": modelled("--seq-len (TRL's SFTTrainer argument before 0.12)"),
    "args": modelled("the SFTConfig / TrainingArguments call, read with hf.py's table"),
    "packing": modelled("true: --packing flattened (TRL's SFTTrainer packs with bfd, which switches padding_free "
                        "on) [trl/trainer/sft_trainer.py v1.16.0]"),
    **no_effect("data and the objects the trainer is given", _OBJECTS + [
        "dataset_text_field", "dataset_num_proc", "dataset_kwargs"]),
}
# UnslothTrainingArguments adds embedding_learning_rate to TrainingArguments [unsloth/trainer.py]
_UNSLOTH_ARGS = {**hf.TABLE, **no_effect("the embeddings' learning rate (a scalar)", ["embedding_learning_rate"])}
TABLES = {"from_pretrained": FROM_PRETRAINED, "get_peft_model": GET_PEFT_MODEL, "SFTTrainer": SFT_TRAINER,
          "SFTConfig": hf.TABLE, "TrainingArguments": _UNSLOTH_ARGS}
_CALLS = {"SFTTrainer": "SFTTrainer", "UnslothTrainer": "SFTTrainer", "SFTConfig": "SFTConfig",
          "TrainingArguments": "TrainingArguments", "UnslothTrainingArguments": "TrainingArguments"}

_LOADERS = {"FastLanguageModel", "FastModel"}
_DTYPES = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "bfloat16": "bf16", "float16": "fp16",
           "torch.float32": "fp32", "float32": "fp32"}


class _NonLiteral:
    def __init__(self, src: str):
        self.src = src


def _sources(p: Path) -> list[str]:
    """The Python source of a script, or of each code cell of a notebook (IPython magics and shell lines dropped)."""
    text = p.read_text()
    if p.suffix != ".ipynb":
        return [text]
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlannerError(f"{p} is not a notebook (JSON): {e.msg} at line {e.lineno}") from None
    cells = []
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            src = c.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            cells.append("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines()))
    return cells


def _walk(node: ast.AST):
    """ast.walk, skipping the bodies of `if False:` blocks."""
    todo = [node]
    while todo:
        n = todo.pop(0)
        yield n
        if isinstance(n, ast.If) and isinstance(n.test, ast.Constant) and not n.test.value:
            todo.extend(n.orelse)
            continue
        todo.extend(ast.iter_child_nodes(n))


def _call_name(c: ast.Call) -> tuple[str, str] | None:
    f = c.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f.value.id, f.attr
    if isinstance(f, ast.Name):
        return "", f.id
    return None


def read_file(p: Path) -> ConfigSetup:
    trees = []
    for i, src in enumerate(_sources(p)):
        try:
            trees.append(ast.parse(src))
        except SyntaxError as e:
            if p.suffix != ".ipynb":
                raise PlannerError(f"{p} could not be parsed: {e.msg} at line {e.lineno}") from None
            # a notebook cell that is not plain Python (a magic we did not strip): skipped
    names: dict[str, Any] = {}
    seen_twice: set[str] = set()
    for t in trees:
        for st in t.body:
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                n = st.targets[0].id
                try:
                    v = ast.literal_eval(st.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    v = _NonLiteral(ast.unparse(st.value))
                if n in names and not (type(names[n]) is type(v) and names[n] == v):
                    seen_twice.add(n)
                names[n] = v
    calls: dict[str, dict[str, Any]] = {}
    for t in trees:
        for node in _walk(t):
            if not isinstance(node, ast.Call) or (cn := _call_name(node)) is None:
                continue
            owner, fn = cn
            if owner == "FastVisionModel":
                raise PlannerError(f"{p}: FastVisionModel is not modelled yet (vision inputs); gpuplan plans "
                                   "FastLanguageModel text fine-tuning")
            key = ("from_pretrained" if owner in _LOADERS and fn == "from_pretrained" else
                   "get_peft_model" if owner in _LOADERS and fn == "get_peft_model" else
                   _CALLS[fn] if owner == "" and fn in _CALLS else None)
            if key is None or key in calls:
                continue
            kw: dict[str, Any] = {}
            for k in node.keywords:
                if k.arg is None:
                    continue
                if k.arg == "args" and isinstance(k.value, ast.Call):
                    kw[k.arg] = ast.unparse(k.value.func)
                    continue
                try:
                    kw[k.arg] = ast.literal_eval(k.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    src = ast.unparse(k.value)
                    if isinstance(k.value, ast.Name) and k.value.id in names and k.value.id not in seen_twice:
                        kw[k.arg] = names[k.value.id]
                    elif src in _DTYPES:
                        kw[k.arg] = src
                    else:
                        kw[k.arg] = _NonLiteral(src)
            calls[key] = kw
    if "from_pretrained" not in calls:
        raise PlannerError(f"{p}: no FastLanguageModel.from_pretrained(...) call found; gpuplan reads Unsloth "
                           "scripts and notebooks by their from_pretrained / get_peft_model / SFTConfig calls")
    return _read_calls(calls, str(p))


def _read_calls(calls: dict[str, dict[str, Any]], path: str) -> ConfigSetup:
    rep = Report("unsloth")
    o = Options(rep)
    notes = [f"Unsloth {VERSION} semantics; Unsloth's fused LoRA and Triton RMSNorm/RoPE kernels are planned as "
             "HF's modules (they save fewer activations), its fused cross-entropy as --loss chunked; the adapters in "
             "gpuplan's default dtype for the method (Unsloth's own choice is not read)"]
    lit: dict[str, dict[str, Any]] = {}
    for call, kw in calls.items():
        table = TABLES[call]
        literal = {}
        for k, v in kw.items():
            if isinstance(v, _NonLiteral):
                rule = table.get(k)
                if rule is None or rule.rule.value != "no_effect":
                    rep.unknown.append(f"{call}.{k} = {v.src} (not a literal: not read)")
                else:
                    rep.no_effect.append(f"{call}.{k}")
            else:
                literal[f"{call}.{k}"] = v
        todo = rep.classify(table, literal, lambda k: k.split(".", 1)[1])
        lit[call] = {k.split(".", 1)[1]: literal[k] for k in todo}
    fp, peft, tr = lit["from_pretrained"], lit.get("get_peft_model"), lit.get("SFTTrainer", {})
    args = lit.get("SFTConfig") or lit.get("TrainingArguments") or {}
    akey = "SFTConfig" if "SFTConfig" in lit else "TrainingArguments"
    fpk = calls["from_pretrained"]
    full = on(fp.get("full_finetuning"))
    q4 = fpk.get("load_in_4bit", True)           # Unsloth's default: 4-bit QLoRA
    if full:
        o.use("from_pretrained.full_finetuning", "method", "full")
    elif peft is None:
        rep.refused.append("get_peft_model: absent is not modelled yet (without adapters and without "
                           "full_finetuning = True the script does not train); add get_peft_model or full_finetuning")
    elif on(fp.get("load_in_8bit")):
        o.use("from_pretrained.load_in_8bit", "method", "qlora")
        o.use("from_pretrained.load_in_8bit", "quant_type", "int8")
    elif on(fp.get("load_in_16bit")) or q4 is False:
        o.use("from_pretrained.load_in_16bit" if on(fp.get("load_in_16bit")) else "from_pretrained.load_in_4bit",
              "method", "lora")
    elif isinstance(q4, _NonLiteral):
        rep.set("from_pretrained.load_in_4bit", "not a literal: Unsloth's default (4-bit) assumed")
        o.use("from_pretrained.load_in_4bit", "method", "qlora")
    else:
        o.use("from_pretrained.load_in_4bit" if "load_in_4bit" in fpk else "from_pretrained", "method", "qlora")
    method = o.get("method", "full")
    dt = fpk.get("dtype")                       # absent or None: Unsloth picks bf16 where the GPU has it
    half = "bf16" if dt is None else None if isinstance(dt, _NonLiteral) else _DTYPES.get(str(dt))
    if half in ("bf16", "fp16"):
        o.use("from_pretrained.dtype" if "dtype" in fpk else "from_pretrained",
              "precision", f"{half}-true" if full else f"{half}-mixed")
        if method == "lora":
            o.use("from_pretrained.dtype" if "dtype" in fpk else "from_pretrained", "base_dtype", half)
        if dt is None:
            rep.set("from_pretrained.dtype" if "dtype" in fpk else "from_pretrained",
                    "(dtype None: bf16, Unsloth's pick where the GPU has it)")
    o.use("from_pretrained", "loss", "chunked")
    if peft is not None:
        r = peft.get("r", 16)
        o.use("get_peft_model.r" if "r" in peft else "get_peft_model", "lora_r", int(r))
        o.use("get_peft_model.lora_alpha" if "lora_alpha" in peft else "get_peft_model", "lora_alpha",
              float(peft.get("lora_alpha", 16)))
        o.use("get_peft_model.lora_dropout" if "lora_dropout" in peft else "get_peft_model", "lora_dropout",
              float(peft.get("lora_dropout", 0.0)))
        attn, mlp = ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]
        if "target_modules" not in peft and any(k in peft for k in ("finetune_attention_modules",
                                                                    "finetune_mlp_modules")):
            # FastModel.get_peft_model picks the projections from its finetune_* switches (both on by default)
            mods = (attn if on(peft.get("finetune_attention_modules", True)) else []) + \
                   (mlp if on(peft.get("finetune_mlp_modules", True)) else [])
            tkey = "get_peft_model.finetune_attention_modules"
        else:
            mods, tkey = peft.get("target_modules", attn + mlp), "get_peft_model.target_modules"
        whole = [m for m in (mods if isinstance(mods, list) else []) if m in ("embed_tokens", "lm_head")]
        if whole:
            rep.refuse("get_peft_model.target_modules", ", ".join(whole), "embed_tokens / lm_head in target_modules "
                       "are trained in full (Unsloth makes them modules_to_save)", "remove them to plan the rest")
            mods = [m for m in mods if m not in whole]
        o.use(tkey if tkey.split(".", 1)[1] in peft else "get_peft_model", "lora_targets", targets(mods))
        vision = calls.get("get_peft_model", {}).get("finetune_vision_layers")   # false: not in `peft` (refused if on)
        if vision is not None and not isinstance(vision, _NonLiteral) and not on(vision):
            # get_peft_regex keeps the targets to modules named after the language model, none in the vision
            # tower [unsloth_zoo/peft_utils.py get_peft_regex]: on a multimodal model, --lora-language-only
            o.use("get_peft_model.finetune_vision_layers", "lora_language_only", True)
        if peft.get("bias", "none") != "none":
            rep.refuse("get_peft_model.bias", peft["bias"], "trained biases", "use bias = \"none\"")
    gc_src = ("get_peft_model", peft) if peft is not None else ("from_pretrained", fp)
    gc = gc_src[1].get("use_gradient_checkpointing", "unsloth")
    gkey = f"{gc_src[0]}.use_gradient_checkpointing"
    if gc == "unsloth":   # offloaded checkpointing [unsloth_zoo/gradient_checkpointing.py UnslothCheckpointFunction]
        o.use(gkey, "grad_ckpt", True)
        o.use(gkey, "activation_offload", "unsloth")
    else:
        o.use(gkey, "grad_ckpt", bool(on(gc)))
    seq_key = next((f"{akey}.{k}" for k in ("max_length", "max_seq_length") if args.get(k) is not None), None)
    if seq_key:
        o.use(seq_key, "seq_len", int(args[seq_key.split(".", 1)[1]]))
    elif tr.get("max_seq_length") is not None:
        o.use("SFTTrainer.max_seq_length", "seq_len", int(tr["max_seq_length"]))
    else:
        o.use("from_pretrained.max_seq_length" if "max_seq_length" in fp else "from_pretrained", "seq_len",
              int(fp.get("max_seq_length", 2048)))
    # the SFTConfig / TrainingArguments keys, through the HF reader's own code
    sub = Report("hf")
    so = Options(sub)
    ngpus = hf.trainer_args(args, set(args), so, path)
    hf.packing_options(args, args.get, so)     # SFTConfig(packing=..., padding_free=...)
    if on(tr.get("packing")) and "packing" not in so:
        o.use("SFTTrainer.packing", "packing", "flattened")
    for k, v in so.items():
        if k not in ("grad_ckpt",) or "grad_ckpt" not in o:
            o[k] = v
    for k, v in sub.used.items():
        rep.set(f"{akey}.{k}", v)
    rep.refused += [f"{akey}.{line}" for line in sub.refused]
    for flag, prec in (("bf16", "bf16-mixed"), ("fp16", "fp16-mixed")):
        if on(args.get(flag)) and method != "full":
            o.use(f"{akey}.{flag}", "precision", prec)
        elif on(args.get(flag)) and flag == half == "bf16":   # full: the loaded bf16 weights under the Trainer's autocast
            o.use(f"{akey}.{flag}", "precision", prec)
            o.use(f"{akey}.{flag}", "weights_dtype", half)
    used_keys = {k.split(".", 1)[1] for k in rep.used if k.startswith(akey + ".")}
    for k in args:
        if k not in used_keys and not any(r.startswith(f"{akey}.{k}:") for r in rep.refused):
            rep.set(f"{akey}.{k}", hf.TABLE[k].note if k in hf.TABLE else "read")
    model = fp.get("model_name")
    if model:
        rep.set("from_pretrained.model_name", f"--model {model}")
    for call, kw in lit.items():
        for k in kw:
            name = f"{call}.{k}"
            if call not in ("SFTConfig", "TrainingArguments"):
                rep.fallback(name, kw[k], TABLES[call][k].note)
    return ConfigSetup.of("unsloth", model, o, rep, implied_gpus=ngpus, notes=tuple(notes))
