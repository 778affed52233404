"""AllocatorConfig: the caching allocator's settings, parsed from a `PYTORCH_CUDA_ALLOC_CONF` string.

The grammar and the checks follow `AllocatorConfig::parseArgs` and its `parse*` helpers in
c10/core/AllocatorConfig.cpp @ 065861fba7598880aa3216822742a1172d0a197c (the keys moved there
from c10/cuda/CUDAAllocatorConfig.cpp): tokens are split on `,` `:` `[` `]` with spaces dropped
(`lexArgs`), each key is followed by `:` and its value, keys are separated by `,`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.errors import PlannerError

MiB = 2**20
# "large" allocations may be packed in 20 MiB blocks [CUDACachingAllocator.cpp: kLargeBuffer]
LARGE_BUFFER = 20 * MiB
# std::numeric_limits<size_t>::max(): max_split_size_ when the key is absent [AllocatorConfig ctor]
SIZE_MAX = 2**64 - 1
# divisions are kept per power-of-two interval from 1 MiB to 64 GiB
# [AllocatorConfig.cpp: kRoundUpPowerOfTwoIntervals = 16, kRoundUpPowerOfTwoStart = 1 MB]
ROUNDUP_INTERVALS = 16
_INTERVAL_START_LOG2 = 20

# keys torch accepts that do not change device memory (pinned host memory, lock behaviour)
_NO_EFFECT_BOOL = ("release_lock_on_cudamalloc", "pinned_use_cuda_host_register", "pinned_use_background_threads",
                   "graph_capture_record_stream_reuse")
_NO_EFFECT_INT = ("pinned_num_register_threads",)
_KNOWN = ("max_split_size_mb", "max_non_split_rounding_mb", "garbage_collection_threshold",
          "roundup_power2_divisions", "expandable_segments", "backend") + _NO_EFFECT_BOOL + _NO_EFFECT_INT


@dataclass(frozen=True)
class AllocatorConfig:
    """The settings that change what the caching allocator reserves (bytes, not MiB)."""

    max_split_size: int = SIZE_MAX                       # blocks this large or larger are never split
    max_non_split_rounding: int = LARGE_BUFFER           # an oversize block serves requests up to this much smaller
    roundup_power2_divisions: tuple[int, ...] = (0,) * ROUNDUP_INTERVALS
    garbage_collection_threshold: float = 0.0            # acts only with a per-process memory fraction
    expandable_segments: bool = False

    @classmethod
    def parse(cls, conf: str | None) -> "AllocatorConfig":
        """The config a `PYTORCH_CUDA_ALLOC_CONF` value sets; PlannerError naming the key if it is bad."""
        return _parse(conf or "")

    def divisions_for(self, size: int) -> int:
        """`AllocatorConfig::roundup_power2_divisions(size)`: the interval is floor(log2(size)) - 20, clamped."""
        index = size.bit_length() - 1 - _INTERVAL_START_LOG2
        return self.roundup_power2_divisions[min(max(index, 0), ROUNDUP_INTERVALS - 1)]

    def to_conf(self) -> str:
        """A PYTORCH_CUDA_ALLOC_CONF string that parses back to this config."""
        parts = []
        if self.max_split_size != SIZE_MAX:
            parts.append(f"max_split_size_mb:{self.max_split_size // MiB}")
        if self.max_non_split_rounding != LARGE_BUFFER:
            parts.append(f"max_non_split_rounding_mb:{self.max_non_split_rounding // MiB}")
        if any(self.roundup_power2_divisions):
            items = ",".join(f"{2**i}:{d}" for i, d in enumerate(self.roundup_power2_divisions))
            parts.append(f"roundup_power2_divisions:[{items}]")
        if self.garbage_collection_threshold:
            parts.append(f"garbage_collection_threshold:{self.garbage_collection_threshold}")
        if self.expandable_segments:
            parts.append("expandable_segments:True")
        return ",".join(parts)


def _lex(conf: str) -> list[str]:
    """`AllocatorConfig::lexArgs`: separators are tokens of their own, spaces vanish."""
    tokens, buf = [], []
    for ch in conf:
        if ch in ",:[]":
            if buf:
                tokens.append("".join(buf))
                buf = []
            tokens.append(ch)
        elif ch != " ":
            buf.append(ch)
    if buf:
        tokens.append("".join(buf))
    return tokens


class _Tokens:
    def __init__(self, conf: str) -> None:
        self.conf, self.tokens = conf, _lex(conf)

    def fail(self, key: str, why: str) -> PlannerError:
        return PlannerError(f"PYTORCH_CUDA_ALLOC_CONF={self.conf!r}: {key}: {why}")

    def expect(self, i: int, sep: str, key: str) -> None:
        """`consumeToken`: the separator must be there."""
        if i >= len(self.tokens) or self.tokens[i] != sep:
            raise self.fail(key, f"expected '{sep}'" + (" after the key" if sep == ":" else ""))

    def value(self, i: int, key: str) -> str:
        if i >= len(self.tokens) or self.tokens[i] in ",:[]":
            raise self.fail(key, "a value is missing")
        return self.tokens[i]


def _int(tok: _Tokens, text: str, key: str) -> int:
    if not text.isdigit():
        raise tok.fail(key, f"expected a non-negative integer, got {text!r}")
    return int(text)


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _bool(tok: _Tokens, text: str, key: str) -> bool:
    if text not in ("True", "False"):   # torch accepts exactly these two spellings
        raise tok.fail(key, f"expected True or False, got {text!r}")
    return text == "True"


def _split_size_mb(tok: _Tokens, text: str, key: str) -> int:
    """`parseMaxSplitSize` / `parseMaxNonSplitRoundingSize`: MiB, at least kLargeBuffer / kMB = 20."""
    mb = _int(tok, text, key)
    if mb < LARGE_BUFFER // MiB:
        raise tok.fail(key, f"must be >= {LARGE_BUFFER // MiB} (MiB), got {mb}")
    return min(mb, SIZE_MAX // MiB) * MiB


def _divisions(tok: _Tokens, i: int, key: str) -> tuple[int, tuple[int, ...]]:
    """`parseRoundUpPower2Divisions`: one power of two for every interval, or `[MB:div, ..., >:div]`.

    Each `MB:div` sets the interval of floor(log2(MB)); the first one also fills the intervals
    below it; `>` fills the intervals after the last one named. That is what the newest stored
    c10/test/core/AllocatorConfig_test.cpp expects ([64:8,...,1024:4,>:1] gives 1024 MB -> 4,
    2048 MB -> 1); the 065861f parser filled from the last index itself, a bug later fixed.
    """
    divs = [0] * ROUNDUP_INTERVALS
    if i >= len(tok.tokens) or tok.tokens[i] != "[":
        n = _int(tok, tok.value(i, key), key)
        if not _power_of_two(n):
            raise tok.fail(key, f"divisions must be a power of 2, got {n}")
        return i, (n,) * ROUNDUP_INTERVALS
    last, first_value = -1, True
    i += 1
    while True:
        if i >= len(tok.tokens):
            raise tok.fail(key, "the list is not closed with ']'")
        if tok.tokens[i] == "]":
            return i, tuple(divs)
        bound = tok.value(i, key)
        tok.expect(i + 1, ":", key)
        n = _int(tok, tok.value(i + 2, key), key)
        if n != 0 and not _power_of_two(n):
            raise tok.fail(key, f"divisions must be a power of 2 or 0, got {n}")
        if bound == ">":
            for j in range(last + 1, ROUNDUP_INTERVALS):
                divs[j] = n
        else:
            mb = _int(tok, bound, key)
            if not _power_of_two(mb):
                raise tok.fail(key, f"interval bounds must be powers of 2 (MiB), got {mb}")
            index = min(mb.bit_length() - 1, ROUNDUP_INTERVALS - 1)
            if first_value:
                divs[:index] = [n] * index
                first_value = False
            divs[index] = n
            last = index
        i += 3
        if i < len(tok.tokens) and tok.tokens[i] == ",":
            i += 1


def _parse(conf: str) -> AllocatorConfig:
    tok = _Tokens(conf)
    fields: dict = {}
    i, n = 0, len(tok.tokens)
    while i < n:
        key = tok.tokens[i]
        if key not in _KNOWN:
            hint = (" (a newer PyTorch option this model does not follow)" if key == "large_segment_size_mb"
                    else f"; known keys: {', '.join(_KNOWN)}")
            raise tok.fail(key, "unknown key" + hint)
        tok.expect(i + 1, ":", key)
        i += 2
        text = "" if key == "roundup_power2_divisions" else tok.value(i, key)
        if key in ("max_split_size_mb", "max_non_split_rounding_mb"):
            name = "max_split_size" if key == "max_split_size_mb" else "max_non_split_rounding"
            fields[name] = _split_size_mb(tok, text, key)
        elif key == "garbage_collection_threshold":   # parseGarbageCollectionThreshold: in (0, 1)
            try:
                value = float(text)
            except ValueError:
                raise tok.fail(key, f"expected a number in (0, 1), got {text!r}") from None
            if not 0.0 < value < 1.0:
                raise tok.fail(key, f"must be in (0.0, 1.0), got {value}")
            fields["garbage_collection_threshold"] = value
        elif key == "roundup_power2_divisions":
            i, fields["roundup_power2_divisions"] = _divisions(tok, i, key)
        elif key == "expandable_segments":
            fields["expandable_segments"] = _bool(tok, text, key)
        elif key == "backend":   # parseAllocatorConfig: native or cudaMallocAsync
            if text == "cudaMallocAsync":
                raise tok.fail(key, "cudaMallocAsync hands memory to the driver's pool, which this model "
                                    "does not simulate; use backend:native (the default)")
            if text != "native":
                raise tok.fail(key, f"unknown allocator backend {text!r}; options are native and cudaMallocAsync")
        elif key in _NO_EFFECT_BOOL:
            _bool(tok, text, key)
        else:
            _int(tok, text, key)
        i += 1
        if i < n:
            tok.expect(i, ",", key)
            i += 1
    return AllocatorConfig(**fields)
