"""Bytes bitsandbytes' 4-bit dequantization moves per weight and pass (QLoRA's frozen linears).

API: `bytes_per_weight(q, e) -> float`.

bitsandbytes 0.50.2 functional.py `dequantize_4bit` (l.992-1077), called by MatMul4Bit in the
forward, in the backward for the input gradient, and again in a recompute, reads the packed
weight (0.5 B per weight: two 4-bit codes per byte) and one fp32 absmax per block of 64 weights,
and writes the weight in the compute dtype (e bytes, `quant_state.dtype`). With double
quantization (`quant_state.nested`, l.1052-1056) it first dequantizes the uint8 absmax
(`dequantize_blockwise`: reads 1 B per block and an fp32 absmax per 256 blocks, writes the fp32
absmax), adds the offset in place (reads and writes it), and the 4-bit kernel then reads it:
17 + 4/256 bytes per block of 64 instead of 4. The GEMM's read of the dequantized weight is
counted with the other operands (planner/speed/kernels.py weight_bytes).
"""
from __future__ import annotations

from ..specs.enums import QuantType
from ..specs.setup import QuantSpec
from ..techniques.quantization import NESTED_BLOCK, QUANT_BLOCK

PACKED = 0.5   # two 4-bit codes per byte


def bytes_per_weight(q: QuantSpec, e: int) -> float:
    """Bytes moved per weight by one dequantization into an e-byte compute dtype."""
    if q.quant_type is QuantType.INT8:   # LLM.int8 (MatMul8bitLt) is not counted from source: the plain 4-bit figure
        return PACKED + 4 / QUANT_BLOCK + 2
    absmax = (1 + 4 / NESTED_BLOCK + 4 + 8 + 4) if q.double_quant else 4   # per block: in, out, += offset, kernel read
    return PACKED + absmax / QUANT_BLOCK + e
