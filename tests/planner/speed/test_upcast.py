"""prepare_model_for_kbit_training's fp32 upcast: the casts bitsandbytes' 4-bit linears then run."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.io.published import load_published
from gpuplan.planner.specs.enums import Attention, Method
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.speed import upcast
from gpuplan.planner.speed.kernels import step_traffic
from gpuplan.planner.speed.throughput import step_time

QLORA = TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=2048, attention=Attention.FLASH)


def test_active_only_where_the_activations_are_fp32():
    m = resolve_model("mistral-7b")
    assert upcast.active(resolve(m, QLORA))                                         # default QLoRA: kbit upcast
    assert not upcast.active(resolve(m, QLORA.with_(kbit_upcast=False)))
    assert not upcast.active(resolve(m, QLORA.with_(method=Method.LORA)))
    fsdp = QLORA.with_(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))               # gathered in bf16
    assert not upcast.active(resolve(m, fsdp))


def test_layer_bytes_are_each_linears_casts_plus_fp32_elementwise():
    m = resolve_model("mistral-7b")                 # h 4096, I 14336, 32 q / 8 kv heads of 128
    rs = resolve(m, QLORA)
    h, I, A, K = 4096, 14336, 4096, 1024
    casts = 6 * ((h + A) + 2 * (h + K) + (A + h) + 2 * (h + I) + (I + h))   # (4 + 2) (K + N) per linear
    assert upcast.layer_bytes(m, rs, m.dense_linears, False) == casts + 5 * I * 2 + 7 * (A + K) * 2 + 6 * (A + 2 * K)


def test_step_traffic_adds_them_forward_backward_and_recompute():
    m = resolve_model("mistral-7b")
    rs = resolve(m, QLORA)
    on, off = step_traffic(m, QLORA), step_traffic(m, QLORA.with_(kbit_upcast=False))
    extra = m.n_layers * upcast.layer_bytes(m, rs, m.dense_linears, False) * 3     # full checkpointing: 2 + 1
    assert on.bytes_per_token - off.bytes_per_token > extra                        # plus the fp32 residual's norms
    assert on.bytes_per_token - off.bytes_per_token < extra * 1.5


def test_published_order_one_gpu_baseline_slower_than_accelerated():
    """fms-acceleration a100_80gb.csv: baseline-peft-bnb (TRL's upcast) below accelerated-peft-bnb on one GPU."""
    runs = {r.id: r for r in load_published()}
    stem = "fms-mixtral-8x7b-instruct-v0.1-{0}-peft-bnb-{0}-peft-bnb-1gpu-bs4"
    base, acc = runs[stem.format("baseline")], runs[stem.format("accelerated")]
    m, g = resolve_model(base.model), resolve_gpu(base.gpu_catalog)
    assert step_time(m, base.time_setup(), g).total > step_time(m, acc.time_setup(), g).total
    assert acc.time_setup().kbit_upcast is False and base.time_setup().kbit_upcast is None
