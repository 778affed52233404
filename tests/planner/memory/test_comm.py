"""communication_bytes: ring formulas, the engines' traffic, and which link it crosses."""
import pytest

from gpuplan.planner import Method, Precision, TrainingSetup
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.comm import Collective, Link, communication_bytes, crosses_nodes, ring_bytes
from gpuplan.planner.specs.params import param_counts
from gpuplan.planner.specs.parallel import Fsdp, Offload, ParallelSpec


@pytest.fixture(scope="module")
def llama8b():
    return resolve_model("llama-3.1-8b")


def _setup(**parallel):
    return TrainingSetup(precision=Precision.BF16_TRUE, batch_size=1, seq_len=2048,
                         parallel=ParallelSpec(**parallel))


def test_ring_formulas_match_nccl_bus_bandwidth_factors():
    assert ring_bytes(Collective.ALL_REDUCE, 800, 8) == 1400        # 2 (n-1)/n S
    assert ring_bytes(Collective.ALL_GATHER, 800, 8) == 700         # (n-1)/n S
    assert ring_bytes(Collective.REDUCE_SCATTER, 800, 4) == 600
    assert ring_bytes(Collective.ALL_REDUCE, 800, 1) == 0
    assert ring_bytes(Collective.P2P, 800, 2) == 800


def test_single_gpu_moves_nothing(llama8b):
    assert communication_bytes(llama8b, TrainingSetup()).total == 0
    assert communication_bytes(llama8b, TrainingSetup()).terms == ()


def test_ddp_all_reduces_the_16_bit_gradients_once(llama8b):
    n, psi = 8, param_counts(llama8b).total
    c = communication_bytes(llama8b, _setup(gpus=n))
    assert c.all_reduce == int(2 * (n - 1) / n * 2 * psi)
    assert c.total == c.intra_node == c.all_reduce and c.inter_node == 0


def test_zero_paper_volumes_zero3_is_one_and_a_half_times_ddp(llama8b):
    """[ZeRO paper Sec. 7.2-7.3]: P_os and P_os+g move 2 Psi like DDP, P_os+g+p moves 3 Psi."""
    ddp = communication_bytes(llama8b, _setup(gpus=8)).total
    for stage in (1, 2):
        assert communication_bytes(llama8b, _setup(gpus=8, zero=stage)).total == pytest.approx(ddp, rel=1e-6)
    assert communication_bytes(llama8b, _setup(gpus=8, zero=3)).total == pytest.approx(1.5 * ddp, rel=1e-6)


def test_gradient_accumulation_multiplies_per_micro_batch_collectives_only(llama8b):
    one = _setup(gpus=8, zero=3)
    four = one.with_(grad_accum=4)
    assert communication_bytes(llama8b, four).total == pytest.approx(4 * communication_bytes(llama8b, one).total, rel=1e-6)
    ddp1, ddp4 = _setup(gpus=8), _setup(gpus=8).with_(grad_accum=4)
    assert communication_bytes(llama8b, ddp4).total == communication_bytes(llama8b, ddp1).total  # no_sync


def test_fsdp_grad_op_gathers_once_full_shard_twice(llama8b):
    full = communication_bytes(llama8b, _setup(gpus=8, fsdp=Fsdp.FULL)).all_gather
    grad_op = communication_bytes(llama8b, _setup(gpus=8, fsdp=Fsdp.GRAD_OP)).all_gather
    assert full == 2 * grad_op


def test_links_follow_the_rank_layout(llama8b):
    assert crosses_nodes(1, 8, 8) is False and crosses_nodes(1, 16, 8) is True
    two_nodes = communication_bytes(llama8b, _setup(gpus=8, nodes=2, fsdp=Fsdp.FULL))
    assert two_nodes.inter_node > 0 and two_nodes.intra_node == 0
    hsdp = communication_bytes(llama8b, _setup(gpus=8, nodes=2, fsdp=Fsdp.HYBRID))
    assert hsdp.intra_node > hsdp.inter_node > 0      # only the gradient shard crosses nodes
    assert {t.collective for t in hsdp.terms if t.link is Link.INTER_NODE} == {Collective.ALL_REDUCE}


def test_tensor_parallel_all_reduces_activations_inside_the_node(llama8b):
    s = _setup(gpus=8, tp=8)
    c = communication_bytes(llama8b, s)
    act = s.batch_size * s.seq_len * llama8b.hidden * 2
    calls = llama8b.n_layers * (4 + 2) + 2     # checkpointing recomputes the forward's two
    assert c.all_reduce == calls * ring_bytes(Collective.ALL_REDUCE, act, 8)
    assert c.inter_node == 0


def test_pipeline_sends_activation_and_gradient_per_micro_batch(llama8b):
    s = _setup(gpus=4, pp=4).with_(grad_accum=8)
    act = s.batch_size * s.seq_len * llama8b.hidden * 2
    assert communication_bytes(llama8b, s).p2p == 2 * 8 * act


def test_offload_moves_shards_over_the_host_link_not_the_network(llama8b):
    base = communication_bytes(llama8b, _setup(gpus=8, zero=3))
    off = communication_bytes(llama8b, _setup(gpus=8, zero=3, offload=Offload.PARAMS))
    assert off.total == base.total and off.host > 0 and base.host == 0


def test_lora_reduces_only_adapter_gradients(llama8b):
    full = communication_bytes(llama8b, _setup(gpus=8)).all_reduce
    lora = communication_bytes(llama8b, _setup(gpus=8).with_(method=Method.LORA)).all_reduce
    assert 0 < lora < full / 1000
