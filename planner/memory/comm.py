"""Communication volume of one optimizer step, per GPU, by collective and by the link it crosses.

Bytes are what one GPU sends (and, for these symmetric collectives, receives) over the wire in
one optimizer step (all `grad_accum` micro-batches), with NCCL's ring algorithms: for a group of
n ranks and a buffer of S bytes [nccl-tests doc/PERFORMANCE.md, "bus bandwidth"]:

    all-reduce      2 (n - 1) / n * S
    all-gather        (n - 1) / n * S      (S: the gathered, full-size output)
    reduce-scatter    (n - 1) / n * S      (S: the full-size input)
    p2p               S

Which collectives run, how often and in which dtype follow each engine (planner/engines.py):
DDP all-reduces gradients once per optimizer step (HF accelerate skips the sync inside gradient
accumulation with `no_sync`); ZeRO-1 reduce-scatters the gradients at the accumulation boundary
and all-gathers the updated 16-bit parameters after the step; ZeRO-2 reduce-scatters every
micro-batch (its gradients are partitioned); ZeRO-3 and FSDP FULL_SHARD all-gather the parameters
in forward and again in backward and reduce-scatter gradients every micro-batch [ZeRO paper
Sec. 7: 2x, 2x and 3x the model size]; FSDP SHARD_GRAD_OP gathers once per micro-batch (the
FSDP2 counts are checked against the collectives of the simulated step,
tests/profiler/test_distributed.py); HSDP
shards inside a node and all-reduces the gradient shard across nodes. Tensor parallelism
all-reduces the layer output twice in forward and twice in backward per layer [Megatron-LM,
Shoeybi et al. 2019, Sec. 3, Fig. 4], two more when checkpointing recomputes the forward, and
once each way for the vocab-parallel embedding. Pipeline parallelism sends each micro-batch's
activation forward and its gradient back (p2p) [Narayanan et al. 2021, Sec. 2.2]. Offload moves
gradients to the host and parameters back over PCIe (HOST link) [ZeRO-Offload, Ren et al. 2021,
Sec. 4.1].

Rank layout is Megatron's default order (tensor-parallel ranks adjacent, then data-parallel, then
pipeline stages) [megatron/core/parallel_state.py, order "tp-cp-ep-dp-pp"]: a group crosses nodes
when its ranks do not all sit on one node.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Choice
from ..specs.engines import Engine, engine_of, gather_dtype, reduce_dtype, shard_degree
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.parallel import Offload, ParallelSpec
from ..specs.resolved import resolve
from ..specs.setup import Checkpointing, TrainingSetup
from ..techniques import ADAPTERS, context_parallel, quantization
from .slices import local_model


class Collective(Choice):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    P2P = "p2p"
    HOST_COPY = "host_copy"      # device <-> host (offload): not a collective, a PCIe transfer


class Link(Choice):
    INTRA_NODE = "intra-node"    # NVLink / PCIe peer-to-peer inside a node
    INTER_NODE = "inter-node"    # the network between nodes (InfiniBand, RoCE, Ethernet)
    HOST = "host"                # the GPU's PCIe link to CPU memory (and NVMe behind it)


@dataclass(frozen=True)
class CommTerm:
    collective: Collective
    link: Link
    bytes: int          # sent per GPU per optimizer step (ring formula applied)
    calls: int          # collective launches per optimizer step (for a latency term)
    group: int          # ranks in the group
    what: str           # e.g. "gradients (DDP all-reduce)"


@dataclass(frozen=True)
class CommVolume:
    """Bytes per GPU per optimizer step; `terms` says what travels where."""

    terms: tuple[CommTerm, ...] = ()

    def bytes_by(self, collective: Collective | None = None, link: Link | None = None) -> int:
        return sum(t.bytes for t in self.terms
                   if (collective is None or t.collective is collective) and (link is None or t.link is link))

    @property
    def all_reduce(self) -> int:
        return self.bytes_by(Collective.ALL_REDUCE)

    @property
    def all_gather(self) -> int:
        return self.bytes_by(Collective.ALL_GATHER)

    @property
    def reduce_scatter(self) -> int:
        return self.bytes_by(Collective.REDUCE_SCATTER)

    @property
    def p2p(self) -> int:
        return self.bytes_by(Collective.P2P)

    @property
    def host_copy(self) -> int:
        return self.bytes_by(Collective.HOST_COPY)

    @property
    def intra_node(self) -> int:
        return self.bytes_by(link=Link.INTRA_NODE)

    @property
    def inter_node(self) -> int:
        return self.bytes_by(link=Link.INTER_NODE)

    @property
    def host(self) -> int:
        return self.bytes_by(link=Link.HOST)

    @property
    def total(self) -> int:
        """Network bytes (intra- plus inter-node), host copies excluded."""
        return self.intra_node + self.inter_node

    def to_dict(self) -> dict:
        return {
            "total_bytes": self.total, "intra_node_bytes": self.intra_node,
            "inter_node_bytes": self.inter_node, "host_bytes": self.host,
            "by_collective": {c.value: self.bytes_by(c) for c in Collective},
            "terms": [{"collective": t.collective.value, "link": t.link.value, "bytes": t.bytes,
                       "calls": t.calls, "group": t.group, "what": t.what} for t in self.terms],
        }


def ring_bytes(collective: Collective, size: float, n: int) -> int:
    """Bytes one rank sends for `collective` over a buffer of `size` bytes in a ring of n ranks."""
    if collective is Collective.P2P or collective is Collective.HOST_COPY:
        return int(size)
    if n <= 1:
        return 0
    factor = 2 * (n - 1) / n if collective is Collective.ALL_REDUCE else (n - 1) / n
    return int(factor * size)


def crosses_nodes(stride: int, size: int, gpus_per_node: int) -> bool:
    """Whether the group of rank 0 (ranks 0, stride, 2 stride, ...) spans more than one node."""
    return size > 1 and stride * (size - 1) >= gpus_per_node


@dataclass(frozen=True)
class ModelBytes:
    """What one GPU's share of the model weighs in the dtypes the engine moves it in."""

    params: int               # parameter elements on this GPU (TP/PP slice)
    trainable: int            # trainable elements
    gathered: int             # bytes of all parameters in the gather dtype (what ZeRO-3/FSDP all-gather)
    root_gathered: int        # of which the root unit (embedding, lm_head, final norm)
    grads: int                # bytes of the trainable gradients in the reduce dtype
    update: int               # bytes of the updated 16-bit parameters ZeRO-1/2 all-gather after the step


def model_bytes(model: ModelSpec, setup: TrainingSetup) -> ModelBytes:
    """Per-GPU byte sizes the engine gathers and reduces (see planner/specs/engines.py for the dtypes)."""
    p = setup.parallel
    eng = engine_of(p)
    local = local_model(model, p)
    pc = param_counts(local)
    rs = resolve(local, setup)
    if rs.full:
        trainable = pc.total
        stored = setup.precision.weight_dtype
        g = gather_dtype(setup.precision, eng, stored).bytes
        gathered = pc.total * g
        root = (pc.embedding + pc.lm_head + local.norm_params) * g
        grads = trainable * reduce_dtype(setup.precision, eng, stored).bytes
    else:
        trainable = ADAPTERS[rs.adapters.kind].trainable_params(local, rs)
        frozen = rs.frozen
        if rs.quantized is not None:   # 4/8-bit storage is gathered as stored (FSDP-QLoRA)
            linear, rows = quantization.linear_inventory(local)
            base = quantization.quantized_bytes(linear, rows, rs.quantized) + (pc.total - linear) * gather_dtype(
                setup.precision, eng, frozen).bytes
        else:
            base = pc.total * gather_dtype(setup.precision, eng, frozen).bytes
        adapter = rs.adapters.dtype
        gathered = base + trainable * gather_dtype(setup.precision, eng, adapter).bytes
        root = (pc.embedding + pc.lm_head + local.norm_params) * gather_dtype(setup.precision, eng, frozen).bytes
        grads = trainable * reduce_dtype(setup.precision, eng, adapter).bytes
    update = trainable * setup.precision.compute_dtype.bytes
    return ModelBytes(pc.total, trainable, int(gathered), int(root), int(grads), int(update))


def _dp_terms(eng: Engine, p: ParallelSpec, mb: ModelBytes, micro: int) -> list[CommTerm]:
    n = shard_degree(p)
    link = Link.INTER_NODE if crosses_nodes(p.tp, n, p.gpus) else Link.INTRA_NODE
    AG, RS, AR = Collective.ALL_GATHER, Collective.REDUCE_SCATTER, Collective.ALL_REDUCE

    def term(c: Collective, size: float, calls: int, what: str, group: int = n, lk: Link = link) -> CommTerm:
        return CommTerm(c, lk, calls * ring_bytes(c, size, group), calls, group, what)

    if eng is Engine.DDP:
        return [term(AR, mb.grads, 1, "gradients (DDP all-reduce at the accumulation boundary)")]
    if eng is Engine.ZERO1:
        return [term(RS, mb.grads, 1, "gradients (ZeRO-1 reduce-scatter at the boundary)"),
                term(AG, mb.update, 1, "updated 16-bit parameters (ZeRO-1 all-gather after the step)")]
    if eng is Engine.ZERO2:
        return [term(RS, mb.grads, micro, "gradients (ZeRO-2 reduce-scatter per micro-batch)"),
                term(AG, mb.update, 1, "updated 16-bit parameters (ZeRO-2 all-gather after the step)")]
    if eng is Engine.FSDP_GRAD_OP:
        gathers = [term(AG, mb.gathered, micro, "parameters (FSDP SHARD_GRAD_OP all-gather in forward)")]
    elif eng is Engine.YAFSDP:   # zero_stage 3: every super tensor in param_dtype, before forward and backward
        gathers = [term(AG, 2 * mb.gathered, micro, "parameters (YaFSDP all-gather of each super tensor in "
                        "forward and backward)")]
    elif eng.fsdp:   # FULL and HYBRID: every unit, the root too (accelerate passes reshard_after_forward=True)
        gathers = [term(AG, 2 * mb.gathered, micro, "parameters (FSDP all-gather in forward and backward)")]
    else:
        gathers = [term(AG, 2 * mb.gathered, micro, "parameters (ZeRO-3 all-gather in forward and backward)")]
    out = gathers + [term(RS, mb.grads, micro, f"gradients ({eng.value} reduce-scatter per micro-batch)")]
    if eng is Engine.FSDP_HYBRID and p.nodes > 1:
        replicas = p.dp // n
        out.append(term(AR, mb.grads / n, micro, "gradient shards (HSDP all-reduce across nodes)",
                        group=replicas, lk=Link.INTER_NODE))
    return out


def _offload_terms(eng: Engine, p: ParallelSpec, mb: ModelBytes, micro: int) -> list[CommTerm]:
    if p.offload is Offload.NONE:
        return []
    n = shard_degree(p)
    HC, H = Collective.HOST_COPY, Link.HOST
    grads_down = mb.grads / n * (micro if eng.shards_grads else 1)
    out = [CommTerm(HC, H, int(grads_down), micro, 1, "gradient shard to the host optimizer")]
    # FSDP with its parameters on the host steps the pinned CPU shard in place; the next unshard's copy is the
    # fetch below, no copy back after the step (torch FSDP1 _flat_param.py FlatParamHandle.pre_unshard:
    # flat_param_to(device, non_blocking=True); FSDP2 _fsdp_param.py: sharded data .to(device, non_blocking=True))
    if not (p.offload is Offload.PARAMS and eng.fsdp and eng is not Engine.YAFSDP):
        out.append(CommTerm(HC, H, int(mb.update / n), 1, 1, "updated parameter shard back to the GPU"))
    if p.offload is Offload.PARAMS:
        fetches = 2 * micro if eng is not Engine.FSDP_GRAD_OP else micro
        out.append(CommTerm(HC, H, int(fetches * mb.gathered / n), fetches, 1,
                            "parameter shards fetched from the host before each all-gather"))
    return out


def _cp_terms(model: ModelSpec, setup: TrainingSetup) -> list[CommTerm]:
    """Context parallelism's attention exchanges, every layer, every micro-batch (an all-to-all as the
    p2p sends NCCL groups it into) [techniques/context_parallel.py transfers]; CP ranks adjacent."""
    p = setup.parallel
    T = setup.batch_size * context_parallel.local_seq_len(p, setup.seq_len)
    recompute = setup.checkpointing is not Checkpointing.NONE
    link = Link.INTER_NODE if crosses_nodes(1, p.cp, p.gpus) else Link.INTRA_NODE
    per = setup.grad_accum * model.n_layers
    out = []
    for t in context_parallel.transfers(model, p, setup.precision.compute_dtype.bytes, T, recompute):
        c = Collective(t.collective)
        out.append(CommTerm(c, link, per * ring_bytes(c, t.size, p.cp), per * t.calls, p.cp,
                            f"{t.what} (context parallel {p.cp_kind.value})"))
    return out


def communication_bytes(model: ModelSpec, setup: TrainingSetup) -> CommVolume:
    """CommVolume: bytes each GPU sends per optimizer step, by collective and link (see module doc)."""
    p = setup.parallel
    if p.single_gpu:
        return CommVolume()
    eng = engine_of(p)
    mb = model_bytes(model, setup)
    micro = setup.grad_accum
    terms = _dp_terms(eng, p, mb, micro) if eng is not Engine.SINGLE else []
    e = setup.precision.compute_dtype.bytes
    act = setup.batch_size * setup.seq_len * model.hidden * e     # one (b, s, h) activation
    if p.tp > 1:
        layers = local_model(model, p).n_layers
        per_layer = 4 + (2 if setup.checkpointing is not Checkpointing.NONE else 0)
        calls = micro * (layers * per_layer + 2)
        link = Link.INTER_NODE if crosses_nodes(1, p.tp, p.gpus) else Link.INTRA_NODE
        terms.append(CommTerm(Collective.ALL_REDUCE, link, calls * ring_bytes(Collective.ALL_REDUCE, act, p.tp),
                              calls, p.tp, "layer outputs (tensor-parallel all-reduce)"))
    if p.pp > 1:
        link = Link.INTER_NODE if crosses_nodes(p.tp * p.dp, p.pp, p.gpus) else Link.INTRA_NODE
        # a middle stage sends each micro-batch's activation forward and its gradient back
        terms.append(CommTerm(Collective.P2P, link, int(2 * micro * act), 2 * micro, 2,
                              "activations and their gradients between pipeline stages"))
    if context_parallel.enabled(p):
        terms += _cp_terms(model, setup)
    terms += _offload_terms(eng, p, mb, micro)
    return CommVolume(tuple(t for t in terms if t.bytes > 0 or t.collective is Collective.HOST_COPY))
