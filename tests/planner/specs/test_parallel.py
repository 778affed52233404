"""ParallelSpec: counts, and one clear error for every impossible combination."""
import pytest

from gpuplan.planner import Optimizer, PlannerError, TrainingSetup
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.engines import Engine, engine_of, shard_degree
from gpuplan.planner.specs.parallel import Fsdp, Offload, OffloadDevice, ParallelSpec


@pytest.fixture(scope="module")
def llama70b():
    return resolve_model("llama-3.1-70b")   # 64 heads, 8 kv heads, 80 layers


def test_counts():
    p = ParallelSpec(gpus=8, nodes=4, tp=4, pp=2)
    assert (p.world, p.dp) == (32, 4)
    assert ParallelSpec().single_gpu and not ParallelSpec(gpus=2).single_gpu


@pytest.mark.parametrize("spec,engine", [
    (ParallelSpec(), Engine.SINGLE), (ParallelSpec(gpus=8), Engine.DDP), (ParallelSpec(gpus=8, tp=8), Engine.SINGLE),
    (ParallelSpec(gpus=8, zero=1), Engine.ZERO1), (ParallelSpec(gpus=1, zero=3), Engine.ZERO3),
    (ParallelSpec(gpus=8, fsdp=Fsdp.GRAD_OP), Engine.FSDP_GRAD_OP),
    (ParallelSpec(gpus=8, nodes=2, fsdp=Fsdp.HYBRID), Engine.FSDP_HYBRID),
])
def test_engine_of(spec, engine):
    assert engine_of(spec) is engine


def test_hybrid_shards_inside_a_node():
    assert shard_degree(ParallelSpec(gpus=8, nodes=4, fsdp=Fsdp.HYBRID)) == 8
    assert shard_degree(ParallelSpec(gpus=8, nodes=4, fsdp=Fsdp.FULL)) == 32


@pytest.mark.parametrize("spec,fragment", [
    (ParallelSpec(gpus=0), "--gpus must be at least 1"),
    (ParallelSpec(gpus=8, tp=3), "do not divide into --tp 3"),
    (ParallelSpec(gpus=8, nodes=2, tp=12, pp=1), "do not divide"),
    (ParallelSpec(gpus=8, zero=3, fsdp=Fsdp.FULL), "choose one of them"),
    (ParallelSpec(gpus=8, zero=5), "--zero must be 0, 1, 2 or 3"),
    (ParallelSpec(gpus=8, fsdp=Fsdp.HYBRID), "needs --nodes 2 or more"),
    (ParallelSpec(gpus=8, zero=2, pp=2), "supports ZeRO stage 0 or 1 only"),
    (ParallelSpec(gpus=8, offload=Offload.OPTIMIZER), "needs a sharding engine"),
    (ParallelSpec(gpus=8, fsdp=Fsdp.FULL, offload=Offload.OPTIMIZER), "CPUOffloadPolicy"),
    (ParallelSpec(gpus=8, fsdp=Fsdp.FULL, offload=Offload.PARAMS, offload_device=OffloadDevice.NVME), "CPU memory only"),
    (ParallelSpec(gpus=8, zero=2, offload=Offload.PARAMS), "parameters only in ZeRO-3"),
    (ParallelSpec(gpus=8, zero=2, offload=Offload.OPTIMIZER, offload_device=OffloadDevice.NVME), "needs --zero 3"),
    (ParallelSpec(gpus=8, offload_device=OffloadDevice.NVME), "--offload-device applies"),
])
def test_impossible_combinations_raise_one_clear_error(spec, fragment):
    with pytest.raises(PlannerError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spec.validate()


def test_training_setup_validate_checks_the_parallel_spec():
    with pytest.raises(PlannerError, match="choose one of them"):
        TrainingSetup(parallel=ParallelSpec(gpus=2, zero=3, fsdp=Fsdp.FULL)).validate()
    with pytest.raises(PlannerError, match="CPU Adam"):
        TrainingSetup(optimizer=Optimizer.ADAMW_8BIT,
                      parallel=ParallelSpec(gpus=2, zero=2, offload=Offload.OPTIMIZER)).validate()


@pytest.mark.parametrize("spec,fragment", [
    (ParallelSpec(gpus=8, nodes=16, tp=128), "larger than .* 64 attention heads"),
    (ParallelSpec(gpus=16, tp=16), "must divide .* 8 key/value heads; try --tp 8"),
    (ParallelSpec(gpus=8, nodes=16, pp=128), "more pipeline stages than .* 80 layers"),
])
def test_model_limits(llama70b, spec, fragment):
    with pytest.raises(PlannerError, match=fragment):
        spec.validate(llama70b)


def test_valid_specs_pass(llama70b):
    for spec in (ParallelSpec(gpus=8, nodes=2, tp=8, pp=2), ParallelSpec(gpus=8, zero=3, offload=Offload.PARAMS,
                                                                          offload_device=OffloadDevice.NVME),
                 ParallelSpec(gpus=8, nodes=2, fsdp=Fsdp.HYBRID), ParallelSpec(gpus=1, zero=3, offload=Offload.PARAMS)):
        assert spec.validate(llama70b) is spec
