"""The model picker and the setup widgets, generated from the CLI's own options (`app/options.py`
SETUP_OPTIONS), so the dashboard offers exactly the CLI's choices and builds the setup with the
CLI's `setup_from_options`: one translation, no copy of it here.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import streamlit as st

from gpuplan.app.options import SETUP_OPTIONS, setup_from_options
from gpuplan.planner.io.catalog import model_names, resolve_model
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.model import ModelSpec
from gpuplan.planner.specs.optim import OptimSpec
from gpuplan.planner.specs.setup import ALL_LINEAR, LoraSpec, QuantSpec, TrainingSetup

from .state import Param, Params
from gpuplan.planner.io.catalog import load_preset
from gpuplan.planner.io.suggest import did_you_mean

DEFAULT_CHOICE = "default"   # a Choice option whose CLI default is None: leave it to the planner
# Widget defaults for CLI options that default to None (the planner fills them in); taken from the
# planner's own dataclasses so the widget shows what the planner would use.
UNSET_DEFAULTS: dict[str, Any] = {
    "lora_r": LoraSpec.r, "lora_alpha": float(LoraSpec.alpha), "lora_dropout": float(LoraSpec.dropout),
    "quant_type": QuantSpec.quant_type.value, "double_quant": QuantSpec.double_quant,
    "galore_rank": OptimSpec.rank, "galore_update_proj_gap": OptimSpec.update_proj_gap,
    "optim_block_size": OptimSpec.block_size,
}
# Upper bounds of the number widgets: beyond them TrainingSetup.validate() refuses, or no GPU holds it.
BOUNDS: dict[str, tuple[float, float]] = {
    "batch_size": (1, 4096), "seq_len": (1, 4 * 1024 * 1024), "grad_accum": (1, 4096), "lora_r": (1, 4096),
    "lora_alpha": (0.01, 1e6), "lora_dropout": (0.0, 0.99),
    "gpus_per_node": (1, 64), "nodes": (1, 1024), "tp": (1, 64), "pp": (1, 256),
    "context_parallel": (1, 1024), "heads_k_stride": (1, 128),
    "galore_rank": (1, 65536), "galore_update_proj_gap": (1, 10**9), "optim_block_size": (1, 2**20),
}
LORA_GROUP = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "adapter_dtype", "base_dtype")
QLORA_GROUP = ("quant_type", "double_quant")
MORE_GROUP = ("grad_accum", "attn", "padding", "packing", "loss", "ckpt_every", "ckpt_first",
              "activation_offload", "compile", "fp8", "fp8_linears")   # behind "more options" in compact forms
# multi-GPU and offload flags (planner/parallel.py ParallelSpec), where the CLI has them
PARALLEL_GROUP = ("gpus_per_node", "nodes", "zero", "fsdp", "offload", "offload_device", "tp", "pp",
                  "context_parallel", "cp_kind", "heads_k_stride")
LABELS = {"gpus_per_node": "GPUs per node", "zero": "ZeRO stage", "fsdp": "FSDP", "tp": "tensor parallel",
          "pp": "pipeline stages", "context_parallel": "context parallel", "cp_kind": "context-parallel kind", "grad_ckpt": "gradient checkpointing", "attn": "attention"}
MODEL_SOURCES = {"preset": "preset", "path": "config.json path", "upload": "upload config.json"}
DEFAULT_MODEL = "llama-3.1-8b"


@dataclass(frozen=True)
class Field:
    """One CLI option as a widget: the URL Param plus its label and help."""

    param: Param
    label: str
    help: str | None
    widget: str   # selectbox | number | checkbox | targets


def _click_option(decorator) -> click.Option:
    return decorator(lambda **kw: None).__click_params__[0]


def _field(opt: click.Option) -> Field | None:
    name, flag = opt.name, opt.opts[0]
    default = opt.default if opt.default is not None else UNSET_DEFAULTS.get(name)
    label = LABELS.get(name) or flag.lstrip("-").replace("-", " ")
    if isinstance(opt.type, click.Choice):
        choices = list(opt.type.choices)
        if default is None:
            choices, default = [DEFAULT_CHOICE, *choices], DEFAULT_CHOICE
        return Field(Param(name, default, str, choices), label, opt.help, "selectbox")
    if opt.is_flag or isinstance(opt.type, click.types.BoolParamType):
        return Field(Param(name, bool(default), bool), label, opt.help, "checkbox")
    if name == "lora_targets":
        return Field(Param(name, [], list), label, "Linear modules LoRA adapts; none: peft's default for the model",
                     "targets")
    if isinstance(opt.type, (click.types.IntParamType, click.types.FloatParamType)):
        kind = int if isinstance(opt.type, click.types.IntParamType) else float
        low, high = getattr(opt.type, "min", None), getattr(opt.type, "max", None)   # click.IntRange
        low, high = BOUNDS.get(name, (min(default or 0, 1) if low is None else low, 1 << 20 if high is None else high))
        return Field(Param(name, kind(default or 0), kind, low=low, high=high), label, opt.help, "number")
    return None


# on/off flags whose unset value is the --precision preset's (planner/specs/recipe.py): a checkbox has no
# "unset", so the form leaves them to the preset (the CLI has them)
PRESET_TRISTATE = ("autocast", "kbit_upcast")
FIELDS: list[Field] = [f for f in (_field(_click_option(o)) for o in SETUP_OPTIONS
                                     if _click_option(o).name != "model" and not _click_option(o).hidden
                                     and _click_option(o).name not in PRESET_TRISTATE) if f]


def setup_params(scope: str, overrides: dict[str, Any] | None = None) -> Params:
    """The setup's Params, with some defaults changed (the Compare page starts with LoRA in column 2)."""
    overrides = overrides or {}
    fields = [Param(**{**f.param.__dict__, "default": overrides.get(f.param.name, f.param.default)}) for f in FIELDS]
    return Params(scope, fields)


def model_params(scope: str) -> Params:
    return Params(scope, [Param("model_source", "preset", str, list(MODEL_SOURCES)),
                          Param("model", DEFAULT_MODEL, str)])


def _upload_path(upload) -> str:
    """The uploaded config.json written to a temporary file named by its content (planner reads files)."""
    data = upload.getvalue()
    folder = Path(tempfile.gettempdir()) / "gpuplan-uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(upload.name).name
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def _preset_named(name: object) -> str | None:
    """The canonical preset a link's model names through an alias or another spelling (qwen2.5-7b)."""

    try:
        return load_preset(str(name))["name"] if name else None
    except KeyError:
        return None


def model_ui(mp: Params, container=st) -> tuple[str | None, ModelSpec | None]:
    """(the --model value, its ModelSpec), or (None, None) with the reason shown inline."""
    source = container.radio("Model from", list(MODEL_SOURCES), key=mp.key("model_source"),
                             format_func=MODEL_SOURCES.__getitem__, horizontal=True)
    key = mp.key("model")
    if source == "preset":
        names = model_names()
        asked = st.session_state.get(key)
        if asked not in names:
            st.session_state[key] = _preset_named(asked) or DEFAULT_MODEL
            if st.session_state[key] == DEFAULT_MODEL and asked not in (None, "", DEFAULT_MODEL):

                container.warning(f"The link's model {asked!r} is not a preset{did_you_mean(str(asked), names)} "
                                  f"Showing {DEFAULT_MODEL} instead; pick the model below.")
        name = container.selectbox("Model preset", names, key=key, help="`gpuplan models` lists them")
    elif source == "path":
        name = container.text_input("config.json path (file or folder)", key=key).strip()
    else:
        upload = container.file_uploader("config.json of a Hugging Face model", type=["json"], key=mp.key("upload"))
        if upload is None:
            container.info("Upload a model's config.json (not part of the shareable link).")
            return None, None
        name = _upload_path(upload)
    if not name:
        container.info("Enter the path of a model's config.json.")
        return None, None
    try:
        return name, resolve_model(name)
    except PlannerError as e:
        container.error(str(e))
        return None, None


def _render(f: Field, sp: Params, model: ModelSpec | None, container) -> None:
    p, key = f.param, sp.key(f.param.name)
    if f.widget == "selectbox":
        container.selectbox(f.label, p.choices, key=key, help=f.help)
    elif f.widget == "checkbox":
        container.checkbox(f.label, key=key, help=f.help)
    elif f.widget == "number":
        step = 1 if p.kind is int else 0.05 if p.name == "lora_dropout" else 1.0
        container.number_input(f.label, min_value=p.kind(p.low), max_value=p.kind(p.high), step=p.kind(step),
                               key=key, help=f.help)
    elif f.widget == "targets":
        names = [ALL_LINEAR]
        if model is not None:
            names += list(dict.fromkeys(lin.name for lin in model.dense_linears + model.moe_linears
                                        if lin.experts == 1))
        st.session_state[key] = [t for t in st.session_state.get(key, []) if t in names]
        container.multiselect(f.label, names, key=key, help=f.help, placeholder="peft's default")


def setup_ui(sp: Params, model: ModelSpec | None, container=st, compact: bool = False) -> dict[str, Any]:
    """Renders the setup widgets; returns `setup_from_options` keyword arguments (without model).

    `compact` puts the less used options (grad accum, attention, loss) in an expander too."""
    general = [f for f in FIELDS if f.param.name not in LORA_GROUP + QLORA_GROUP + PARALLEL_GROUP]
    for f in general:
        if not (compact and f.param.name in MORE_GROUP):
            _render(f, sp, model, container)
    if compact:
        more = container.expander("More options")
        for f in general:
            if f.param.name in MORE_GROUP:
                _render(f, sp, model, more)
    parallel = [f for f in FIELDS if f.param.name in PARALLEL_GROUP]
    if parallel:
        box = container.expander("Multi-GPU and offload (ZeRO, FSDP, TP/PP)")
        for f in parallel:
            _render(f, sp, model, box)
    method = sp.get("method")
    if method != "full":
        box = container.expander("LoRA / QLoRA options")
        for f in FIELDS:
            if f.param.name in LORA_GROUP or (f.param.name in QLORA_GROUP and method == "qlora"):
                _render(f, sp, model, box)
    return options_from_state(sp)


def options_from_state(sp: Params) -> dict[str, Any]:
    """setup_from_options kwargs from the session values: options the method ignores, or left at
    "default", are None, as when the flag is not given on the command line."""
    method = sp.get("method")
    kw: dict[str, Any] = {}
    for f in FIELDS:
        name = f.param.name
        value = sp.get(name)
        if (name in LORA_GROUP + QLORA_GROUP and method == "full") or (name in QLORA_GROUP and method != "qlora"):
            value = None
        if value == DEFAULT_CHOICE:
            value = None
        if f.widget == "targets":
            value = ",".join(value) if value else None
        kw[name] = value
    return kw


def build_setup(model_arg: str, kw: dict[str, Any]) -> tuple[ModelSpec, TrainingSetup]:
    """The CLI's own translation of the same flags; raises PlannerError on an impossible setup."""
    return setup_from_options(model=model_arg, **kw)
