"""bitsandbytes dequantize_4bit's bytes per weight: packed codes and absmax in, the compute dtype out."""
from gpuplan.planner.specs.enums import QuantType
from gpuplan.planner.specs.setup import QuantSpec
from gpuplan.planner.speed.dequant import bytes_per_weight
from gpuplan.planner.speed.throughput import DEQUANT_BYTES_PER_WEIGHT


def test_plain_nf4_into_bf16_reads_half_a_byte_and_a_sixteenth_writes_two():
    assert bytes_per_weight(QuantSpec(quant_type=QuantType.NF4, double_quant=False), 2) == 0.5 + 4 / 64 + 2 == 2.5625
    assert DEQUANT_BYTES_PER_WEIGHT == 2.5625


def test_double_quant_first_rebuilds_the_fp32_absmax():
    # uint8 absmax + fp32 absmax per 256 blocks in, fp32 absmax out, += offset (read, write), read by the 4-bit kernel
    nested = bytes_per_weight(QuantSpec(quant_type=QuantType.NF4, double_quant=True), 2)
    assert nested == 0.5 + (1 + 4 / 256 + 4 + 4 + 4 + 4) / 64 + 2
    assert 2.76 < nested < 2.77


def test_fp32_compute_writes_four_bytes_per_weight():
    assert bytes_per_weight(QuantSpec(quant_type=QuantType.FP4, double_quant=False), 4) == 0.5 + 4 / 64 + 4
