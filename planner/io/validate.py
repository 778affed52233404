"""Validation at the edges: a user's config.json and GPU catalog entries are checked field by field
before any formula sees them, so that bad input stops with one line naming the field, the value and
what would be valid (PlannerError), never a TypeError deep inside the estimate or a negative
"fits". Pure Python, no imports beyond the standard library.

API: `validate_model_config(cfg)` (raises), `config_notes(cfg)` (what the user should know: custom
code not run), `context_check(model, seq_len)` (refuses learned positions past their table, notes
RoPE past the trained context), `validate_gpu_entry(entry, path)` (raises). --from-config values:
training_config.py.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

from ..specs.errors import PlannerError

# Upper bound of every count (int32): transformers' configs, torch sizes and CUDA grids are 32-bit;
# beyond it a "model" is a typo, and products of such numbers would overflow float formulas.
MAX_COUNT = 2**31 - 1

# The fields each config reader (planner/model.py) uses, by kind. Integers: positive counts unless
# listed in _NONNEG_INTS. The readers' alternatives (n_embd for GPT-2's hidden_size) are listed too.
_INT_FIELDS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
               "num_hidden_layers", "vocab_size", "n_embd", "n_head", "n_layer", "n_inner", "n_positions",
               "max_position_embeddings", "num_local_experts", "num_experts", "num_experts_per_tok",
               "moe_intermediate_size", "decoder_sparse_step", "sliding_window")
_NONNEG_INTS = {"num_local_experts", "num_experts"}          # 0: a dense model
_BOOL_FIELDS = ("tie_word_embeddings", "attention_bias", "mlp_bias", "use_sliding_window")
_PROB_FIELDS = ("resid_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "embd_pdrop")
_POSITIVE_FLOATS = ("final_logit_softcapping",)

# model_type -> (hidden, heads, kv heads, layers, intermediate) keys, first found wins, as the readers do
_READER_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "gpt2": {"hidden": ("n_embd", "hidden_size"), "heads": ("n_head", "num_attention_heads"),
             "layers": ("n_layer", "num_hidden_layers"), "vocab": ("vocab_size",),
             "positions": ("n_positions", "max_position_embeddings")},
    "gpt_neox": {"hidden": ("hidden_size",), "heads": ("num_attention_heads",), "layers": ("num_hidden_layers",),
                 "intermediate": ("intermediate_size",), "vocab": ("vocab_size",)},
}
_LLAMA_KEYS = {"hidden": ("hidden_size",), "heads": ("num_attention_heads",), "layers": ("num_hidden_layers",),
               "intermediate": ("intermediate_size",), "vocab": ("vocab_size",)}


def type_name(v: Any) -> str:
    return {str: "a string", bool: "a boolean", list: "a list", dict: "an object", type(None): "null"}.get(
        type(v), type(v).__name__)


def show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(cfg: Mapping[str, Any], key: str, where: str, minimum: int = 1) -> int | None:
    """cfg[key] as an int (an integral float such as 4096.0 is accepted), None when absent or null."""
    v = cfg.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not (
            math.isfinite(v) and v.is_integer())):
        raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be a whole number "
                           f"{'>= 0' if minimum == 0 else '>= 1'}, e.g. 4096")
    n = int(v)
    if n < minimum or n > MAX_COUNT:
        what = "at least 1" if minimum == 1 else "0 or more"
        raise PlannerError(f"{where}: {key} is {n}; it must be {what} and at most {MAX_COUNT:,} (int32)")
    return n


def _first(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for k in keys:
        if cfg.get(k) is not None:
            return k, cfg[k]
    return keys[0], None


def _effective(cfg: Mapping[str, Any], supported: tuple[str, ...]) -> Mapping[str, Any]:
    """The config the readers read: a multimodal config's text_config (as model_from_config unwraps it)."""
    text = cfg.get("text_config")
    if "text_config" not in cfg or "model_type" not in cfg or cfg["model_type"] in supported:
        return cfg
    if not isinstance(text, Mapping):
        raise PlannerError(f"config.json: text_config is {type_name(text)}; it must be an object (the language "
                           "model's config)")
    return {**text, "model_type": text.get("model_type", "")}


def validate_model_config(cfg: Any, supported: tuple[str, ...] = ()) -> None:
    """Raise PlannerError (one line: field, value, what is valid) for a config.json the readers would
    misread: wrong types, non-positive counts, hidden not divisible by heads (without head_dim),
    heads not divisible by kv heads, top-k beyond the experts, dropout outside [0, 1)."""
    where = "config.json"
    if not isinstance(cfg, Mapping):
        raise PlannerError(f"{where} must hold a JSON object of settings, not {type_name(cfg)}")
    cfg = _effective(cfg, supported)
    mt = cfg.get("model_type")
    if mt is not None and not isinstance(mt, str):
        raise PlannerError(f"{where}: model_type is {show(mt)} ({type_name(mt)}); it must be a string such as 'llama'")
    if mt:
        where = f"config.json (model_type {mt!r})"
    for key in _INT_FIELDS:
        _int(cfg, key, where, 0 if key in _NONNEG_INTS else 1)
    for key in _BOOL_FIELDS:
        v = cfg.get(key)
        if v is not None and not isinstance(v, bool):
            raise PlannerError(f"{where}: {key} is {show(v)} ({type_name(v)}); it must be true or false")
    for key in _PROB_FIELDS:
        v = cfg.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1):
            raise PlannerError(f"{where}: {key} is {show(v)}; a dropout probability must be a number in [0, 1)")
    for key in _POSITIVE_FLOATS:
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise PlannerError(f"{where}: {key} is {show(v)}; it must be a positive number or null")
    layers = cfg.get("mlp_only_layers")
    if layers is not None and (not isinstance(layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers)):
        raise PlannerError(f"{where}: mlp_only_layers is {show(layers)}; it must be a list of layer indices (>= 0)")
    rope = cfg.get("rope_scaling")
    if rope is not None and not isinstance(rope, Mapping):
        raise PlannerError(f"{where}: rope_scaling is {show(rope)} ({type_name(rope)}); it must be an object or null")
    _check_shapes(cfg, str(mt or ""), where)


def _check_shapes(cfg: Mapping[str, Any], mt: str, where: str) -> None:
    keys = _READER_KEYS.get(mt, _LLAMA_KEYS)
    hk, h = _first(cfg, keys["hidden"])
    ak, a = _first(cfg, keys["heads"])
    if h is None or a is None:
        return                     # the reader names the missing field
    h, a = int(h), int(a)
    head_dim = cfg.get("head_dim") if mt not in _READER_KEYS else None   # GPT-2 and NeoX always use h // a
    if head_dim is None and h % a:
        divisors = [d for d in range(1, min(a * 2, h) + 1) if h % d == 0]
        near = min(divisors, key=lambda d: abs(d - a))
        raise PlannerError(f"{where}: {hk} {h} is not divisible by {ak} {a}, and there is no head_dim; "
                           f"give head_dim, or a head count that divides {h} (e.g. {near})")
    kv = cfg.get("num_key_value_heads")
    if kv is not None and mt not in _READER_KEYS and a % int(kv):
        raise PlannerError(f"{where}: {ak} {a} is not divisible by num_key_value_heads {int(kv)} "
                           "(grouped-query attention shares each key/value head among a whole number of query heads)")
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    top_k = cfg.get("num_experts_per_tok")
    if experts and top_k is not None and int(top_k) > experts:
        raise PlannerError(f"{where}: num_experts_per_tok {int(top_k)} is more than the {experts} experts")


def config_notes(cfg: Mapping[str, Any]) -> list[str]:
    """What the user should know about how the config was read (not errors)."""
    notes = []
    if isinstance(cfg, Mapping) and cfg.get("auto_map"):
        classes = cfg["auto_map"]
        which = ", ".join(sorted(classes)) if isinstance(classes, Mapping) else "custom classes"
        notes.append(f"config.json has auto_map ({which}): the model's custom code (trust_remote_code) was not "
                     f"used; gpuplan read the standard fields of model_type {cfg.get('model_type')!r}, so a "
                     "custom architecture may differ")
    return notes


def trained_context(cfg: Mapping[str, Any]) -> int | None:
    """The longest sequence the model was trained for (max_position_embeddings, GPT-2's n_positions)."""
    v = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def context_check(model: Any, seq_len: int) -> list[str]:
    """Notes for a sequence longer than the model's trained context; PlannerError where the model
    cannot run it at all: learned absolute positions (GPT-2's wpe table has n_positions rows, and
    position ids past it index out of range [transformers modeling_gpt2.py, `self.wpe(position_ids)`])."""
    if getattr(model, "learned_positions", 0) and seq_len > model.learned_positions:
        raise PlannerError(f"--seq-len {seq_len} is longer than {model.name}'s {model.learned_positions} learned "
                           f"positions (n_positions): the model cannot run it; use --seq-len {model.learned_positions} "
                           "or less")
    cfg = getattr(model, "hf_config", {}) or {}
    ctx = trained_context(cfg)
    if ctx is None or seq_len <= ctx:
        return []
    rope = cfg.get("rope_scaling")
    kind = rope.get("rope_type") or rope.get("type") if isinstance(rope, Mapping) else None
    scaled = (f"rope_scaling is set ({kind}, factor {rope.get('factor')}), which the trained context already includes"
              if rope else "rope_scaling is not set: quality past the trained context is not assured")
    return [f"--seq-len {seq_len} exceeds {model.name}'s trained context of {ctx:,} tokens "
            f"(max_position_embeddings); {scaled}; the memory estimate holds either way"]


# --- GPU catalog entries (--gpu-catalog files, data/gpus.json's schema in data/README.md) -------------
_FLOP_DTYPES = ("bf16", "fp16", "fp32", "tf32", "fp8")
_STRING_FIELDS = ("name", "vendor", "architecture", "display_name", "memory_source", "purchase_source",
                  "purchase_as_of", "source", "as_of", "notes", "note", "user_file")
_GPU_FIELDS = {*_STRING_FIELDS, "aliases", "memory_bytes", "peak_flops", "memory_bandwidth_bytes_per_s",
               "interconnect", "host_link", "power_watts", "purchase_usd", "prices", "matmul_flops"}
_PRICE_FIELDS = {"provider", "usd_per_hour", "spot_usd_per_hour", "source", "as_of", "note", "verified"}
# Smallest plausible values: below them the figure is in the wrong unit (GB for bytes, TFLOP/s for FLOP/s)
_UNIT_FLOORS = {"memory_bytes": (2**30, "bytes (nvidia-smi memory.total MiB x 2**20, e.g. 85520809984 for 81559 MiB)"),
                "peak_flops": (1e11, "FLOP/s (e.g. 9.894e+14 for 989.4 TFLOP/s)"),
                "memory_bandwidth_bytes_per_s": (1e9, "bytes per second (e.g. 3.35e+12 for 3.35 TB/s)"),
                "bytes_per_s": (1e8, "bytes per second, one direction (e.g. 4.5e+11 for NVLink 4's 450 GB/s)")}


def _number(v: Any, field: str, where: str, unit_floor: str | None = None, allow_zero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        hint = ""
        if isinstance(v, str):
            try:
                float(v)
                hint = f" (write {v} without quotes)"
            except ValueError:
                pass
        raise PlannerError(f"{where}: {field} is {show(v)} ({type_name(v)}); it must be a number{hint}")
    if v < 0 or (v == 0 and not allow_zero):
        raise PlannerError(f"{where}: {field} is {v}; it must be {'0 or more' if allow_zero else 'positive'}")
    if unit_floor and v < _UNIT_FLOORS[unit_floor][0]:
        raise PlannerError(f"{where}: {field} is {v:g}, too small: it is in {_UNIT_FLOORS[unit_floor][1]}")
    return float(v)


def _string(v: Any, field: str, where: str) -> None:
    if v is not None and not isinstance(v, str):
        raise PlannerError(f"{where}: {field} is {show(v)} ({type_name(v)}); it must be text")


def _unknown(keys: Any, known: set[str], where: str, what: str) -> None:
    for k in keys:
        if k not in known:
            close = difflib.get_close_matches(str(k), sorted(known), n=1)
            raise PlannerError(f"{where}: unknown {what} {k!r}" + (f"; did you mean {close[0]!r}?" if close else
                               f"; known: {', '.join(sorted(known))}"))


def validate_gpu_entry(entry: Any, path: str, new: bool = False) -> None:
    """Raise PlannerError for a GPU catalog entry that does not follow data/README.md's schema:
    types, units (bytes, FLOP/s, bytes/s, USD per GPU-hour) and, for `new` GPUs, the required fields."""
    if not isinstance(entry, Mapping):
        raise PlannerError(f"GPU catalog file {path}: each entry of gpus must be an object with a name, "
                           f"not {type_name(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PlannerError(f"GPU catalog file {path}: an entry has name {show(name)}; each GPU needs a name (text)")
    where = f"GPU {name!r} in {path}"
    _unknown(entry.keys(), _GPU_FIELDS, where, "field")
    for f in _STRING_FIELDS:
        _string(entry.get(f), f, where)
    aliases = entry.get("aliases")
    if "aliases" in entry and (not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases)):
        raise PlannerError(f"{where}: aliases is {show(aliases)}; it must be a list of names")
    if "memory_bytes" in entry:
        _number(entry["memory_bytes"], "memory_bytes", where, "memory_bytes")
    if "peak_flops" in entry:
        flops = entry["peak_flops"]
        if not isinstance(flops, Mapping):
            raise PlannerError(f"{where}: peak_flops is {show(flops)} ({type_name(flops)}); it must map dtypes "
                               f"({', '.join(_FLOP_DTYPES)}) to dense FLOP/s")
        _unknown(flops.keys(), set(_FLOP_DTYPES), where, "peak_flops dtype")
        for k, v in flops.items():
            if v is not None:
                _number(v, f"peak_flops.{k}", where, "peak_flops")
        if new and flops.get("fp32") is None and flops.get("bf16") is None and flops.get("fp16") is None:
            raise PlannerError(f"{where}: peak_flops needs at least one of bf16, fp16, fp32")
    if "matmul_flops" in entry:   # a measured matmul rate (mamf-finder.py): the time model's GEMM ceiling
        mm = entry["matmul_flops"]
        if not isinstance(mm, Mapping) or set(mm) != {"bf16"}:
            raise PlannerError(f"{where}: matmul_flops is {show(mm)}; it must be {{\"bf16\": FLOP/s}}, the dense bf16 "
                               "matmul rate measured on the card (e.g. stas00's mamf-finder.py)")
        _number(mm["bf16"], "matmul_flops.bf16", where, "peak_flops")
    if "memory_bandwidth_bytes_per_s" in entry:
        _number(entry["memory_bandwidth_bytes_per_s"], "memory_bandwidth_bytes_per_s", where,
                "memory_bandwidth_bytes_per_s")
    for link in ("interconnect", "host_link"):
        if link not in entry:
            continue
        v = entry[link]
        if not isinstance(v, Mapping):
            raise PlannerError(f"{where}: {link} is {show(v)} ({type_name(v)}); it must be an object "
                               "{kind: nvlink4 | pcie4 | ..., bytes_per_s: ...}")
        _unknown(v.keys(), {"kind", "bytes_per_s", "note"}, where, f"{link} field")
        # an entry's interconnect replaces the catalog's whole object (planner/catalog.py _overlay): both fields
        if link == "interconnect" and not isinstance(v.get("kind"), str):
            raise PlannerError(f"{where}: interconnect.kind is {show(v.get('kind'))}; it must be text such as "
                               "'nvlink4' or 'pcie4'")
        if "bytes_per_s" in v or link == "interconnect":
            _number(v.get("bytes_per_s"), f"{link}.bytes_per_s", where, "bytes_per_s")
    if "power_watts" in entry:
        _number(entry["power_watts"], "power_watts", where)
        if not float(entry["power_watts"]).is_integer():
            raise PlannerError(f"{where}: power_watts is {entry['power_watts']}; it must be whole watts")
    if entry.get("purchase_usd") is not None:
        _number(entry["purchase_usd"], "purchase_usd", where)
    if "prices" in entry:
        _validate_prices(entry["prices"], where)


def _validate_prices(prices: Any, where: str) -> None:
    shape = "a list of {provider: ..., usd_per_hour: ...} objects"
    if not isinstance(prices, list):
        raise PlannerError(f"{where}: prices is {type_name(prices)}; it must be {shape}")
    seen = set()
    for i, p in enumerate(prices):
        at = f"prices[{i}]"
        if not isinstance(p, Mapping):
            raise PlannerError(f"{where}: {at} is {show(p)} ({type_name(p)}); prices must be {shape}")
        _unknown(p.keys(), _PRICE_FIELDS, where, f"{at} field")
        provider = p.get("provider")
        if not isinstance(provider, str) or not provider.strip():
            raise PlannerError(f"{where}: {at}.provider is {show(provider)}; each price names its provider (text)")
        if provider in seen:
            raise PlannerError(f"{where}: provider {provider!r} is priced twice; give one price per provider")
        seen.add(provider)
        if "usd_per_hour" not in p:
            raise PlannerError(f"{where}: {at} ({provider}) lacks usd_per_hour (USD per GPU-hour, on-demand)")
        _number(p["usd_per_hour"], f"{at}.usd_per_hour", where)
        if p.get("spot_usd_per_hour") is not None:
            _number(p["spot_usd_per_hour"], f"{at}.spot_usd_per_hour", where)
        for f in ("source", "as_of", "note"):
            _string(p.get(f), f"{at}.{f}", where)
        if p.get("verified") is not None and not isinstance(p["verified"], bool):
            raise PlannerError(f"{where}: {at}.verified is {show(p['verified'])}; it must be true or false")

