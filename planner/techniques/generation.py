"""Generation with a KV cache: transformers' `generate` (greedy, `max_new_tokens` new tokens), as an
eval phase with generation runs it on the training model (Seq2SeqTrainer's `predict_with_generate`,
callbacks that sample, peft's MetaMathQA benchmark).

What `generate` keeps [transformers 5.24 generation/utils.py GenerationMixin._sample, cache_utils.py]:
- the cache: per layer, the keys and values of every position fed so far, `[b, kv_heads, t, head_dim]`
  in the dtype the attention computed them in. Under autocast over an fp32 residual stream the keys
  are fp32 (RoPE multiplies the 16-bit projection by fp32 cos/sin tables: type promotion, not
  autocast) and the values 16 bit; bitsandbytes layers return their input's dtype (fp32 under QLoRA).
  `DynamicLayer.update` grows each layer by `torch.cat([self.keys, key_states])`: the old and the new
  tensor are alive together for one layer. `StaticCache` allocates the whole `max_cache_len` up front.
- the prefill runs the prompt with `logits_to_keep=1`: logits for the last position only.
- each decode step feeds one token; SDPA under autocast casts fp32 keys (and values) to 16 bit: a copy
  of one layer's cache, per layer, transient [torch autocast: scaled_dot_product_attention is on the
  lower-precision list]; no mask and native GQA on CUDA (`use_gqa_in_sdpa`, sdpa_attention.py).
- `next_token_logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32)`: an fp32 (b, vocab)
  copy, alive until the next step replaces it (so two are alive while it is replaced).
The last position fed is the (N-1)-th new token: the cache ends at prompt + N - 1 positions.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Choice
from ..specs.model import ModelSpec, RopeKind
from ..specs.resolved import Resolved
from . import quantization


class CacheKind(Choice):
    DYNAMIC = "dynamic"   # DynamicCache, transformers' default: grows by torch.cat each step
    STATIC = "static"     # StaticCache (cache_implementation="static"): max_cache_len allocated up front


@dataclass(frozen=True)
class KvBytes:
    """Bytes per position of one layer's cache entry: keys and values (all KV heads)."""

    key: float
    value: float

    @property
    def total(self) -> float:
        return self.key + self.value


def kv_bytes(m: ModelSpec, rs: Resolved) -> KvBytes:
    """One layer's cached bytes per position, in the dtypes the attention produced them in."""
    out = quantization.base_linear_out_bytes(rs)          # k_proj / v_proj outputs
    width = m.n_kv_heads * m.head_dim
    # RoPE's fp32 tables promote the keys to fp32 under autocast (the residual stream is fp32)
    key = 4 if (m.rope is not RopeKind.NONE and rs.autocast) else out
    return KvBytes(key * width, out * width)


def frozen_mlp_cast(m: ModelSpec, rs: Resolved) -> int:
    """Autocast's transient 16-bit cast of a frozen fp32 MLP weight (gate or up, hidden x intermediate),
    made at every use and freed after it; 0 where weights are trained (cached instead), quantized or 16 bit."""
    if rs.full or rs.quantized is not None or not rs.autocast or rs.frozen.bytes <= rs.compute.bytes:
        return 0
    return int(m.hidden * m.intermediate * rs.compute.bytes)


def cached_positions(m: ModelSpec, t: int) -> float:
    """Positions held per layer, on average over the layers, once `t` have been fed: a full layer holds
    all; a sliding one (ModelSpec.sliding_layers) keeps `full[:, :, -window + 1:]`, a view that holds
    the whole `window`-long tensor `torch.cat` made [cache_utils.py DynamicSlidingWindowLayer.update]."""
    sliding = min(m.sliding_layers, m.n_layers) if m.sliding_window else 0
    return ((m.n_layers - sliding) * t + sliding * min(t, m.sliding_window or t)) / m.n_layers


@dataclass(frozen=True)
class Casts:
    """Autocast's 16-bit weight copies during generate (bytes; all 0 without autocast)."""

    cached: int = 0         # copies of trainable fp32 weights, kept to the end (made as the first forward runs)
    head_cached: int = 0    # the part of `cached` that is the lm_head's: made at the prefill's end
    head_transient: int = 0 # a frozen fp32 lm_head cast at every logits matmul, then freed
    linear_transient: int = 0   # a frozen fp32 MLP linear cast per use (the largest), then freed


@dataclass(frozen=True)
class GenerationBytes:
    """Bytes beyond the weights (and the optimizer state a training run keeps) at the peak of generate."""

    cache: int           # the KV cache at the peak, all layers
    other: int           # everything else alive then: autocast copies, a layer's work, logits
    moment: str          # where: "prefill layer", "prefill head", "decode" or "after decode"

    @property
    def total(self) -> int:
        return self.cache + self.other


def generation_bytes(m: ModelSpec, rs: Resolved, batch: int, prompt: int, new_tokens: int,
                     casts: Casts, cache: CacheKind = CacheKind.DYNAMIC) -> GenerationBytes:
    """The largest of generate's four candidate moments (module docstring), beyond the weights."""
    b, L, V, h, I = batch, m.n_layers, m.vocab, m.hidden, m.intermediate
    e, r = rs.compute.bytes, rs.residual.bytes
    T = b * prompt
    kv = kv_bytes(m, rs)
    end = prompt + max(new_tokens - 1, 0)                # positions cached after the last forward
    static = cache is CacheKind.STATIC                   # StaticCache: the whole length from the start
    cache_at = lambda t: int(b * L * kv.total * cached_positions(m, end if static else t))   # noqa: E731
    rope = 2 * m.head_dim * (4 if rs.autocast else e) if m.rope is RopeKind.SHARED else 0
    logits16, logits32 = b * V * e, b * V * 4
    layer_copies = casts.cached - casts.head_cached
    moments = {
        # the last layer's MLP at `act(gate) * up`: act, up and the product (or the up weight's
        # cast), the layer's input, the post-attention residual, the norm's output, the embedding
        # output the model keeps, and the RoPE tables [modeling_llama.py LlamaMLP, LlamaModel]
        "prefill layer": (cache_at(prompt), layer_copies + T * (2 * e * I + 4 * r * h + rope)
                          + max(T * e * I, casts.linear_transient)),
        # the lm_head on the last position: the final norm's output (whose last row it reads) and
        # the last layer's output, the head's cast, its 16-bit logits
        "prefill head": (cache_at(prompt), casts.cached + T * 2 * r * h + casts.head_transient + logits16),
    }
    if new_tokens > 1:
        grow = 0 if static else b * (end - 1) * max(kv.key, kv.value)   # one full layer's old and new cat
        width16 = e * m.n_kv_heads * m.head_dim
        sdpa_casts = b * end * ((kv.key > width16) + (kv.value > width16)) * width16
        step = max(grow, sdpa_casts, casts.head_transient + logits16, casts.linear_transient)
        moments["decode"] = (cache_at(end), casts.cached + step + logits32)   # + the last step's fp32 logits
        moments["after decode"] = (cache_at(end), casts.cached + logits16 + 2 * logits32)
    moment = max(moments, key=lambda k: sum(moments[k]))
    kv_cache, other = moments[moment]
    return GenerationBytes(int(kv_cache), int(other), moment)
