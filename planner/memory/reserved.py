"""Reserved memory of the estimate: a compact synthetic step, built from the estimate's own pieces,
replayed through the caching allocator model (memory/allocator.py), memoized per step shape.

`peak_reserved_bytes` is not allocated plus a fixed fraction: it is what PyTorch's CUDA caching
allocator holds in segments at the worst moment, and that depends on the sizes and lifetimes of the
step's tensors (DESIGN.md, "Beyond the simulator"). The simulator logs every storage of a real step
(profiler/allocator_replay.py: thousands of events, seconds); the estimate instead builds a step of
a few hundred events from what memory/step.py already knows, in the order a training step makes them:

- weights (each decoder layer's linears and norms, the embedding and lm_head), sized as the model's
  linears, summing to the step's weight bytes; optimizer state allocated lazily in the first
  optimizer step [torch/optim/adam.py: _init_group], persistent;
- forward: per layer its temporaries (2 residual-width and 2 MLP-width tensors, freed at the layer's
  end) and its saved tensors (kept to its backward); then the loss's tensors (memory/pieces.py);
- backward: the loss's gradients, then per layer in reverse its recompute under checkpointing, its
  temporaries, its weight gradients (kept to zero_grad), and the free of what it saved; the
  embedding's backward buffers last;
- the optimizer step's temporaries per layer, then zero_grad(set_to_none=True) frees the gradients
  [torch/optim/optimizer.py: zero_grad];
- FSDP2: each unit's all-gather output on the all-gather stream, copied out into its unsharded
  parameters on the default stream, freed at reshard; each layer's reduce-scatter input on the
  default stream (kept until the next reduce-scatter), the sharded gradients on the reduce-scatter
  stream, whose pool only that stream reuses; the root unit (embedding, lm_head) gathered from the
  forward's start to the backward's end [torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py:
  foreach_all_gather, foreach_all_gather_copy_out, foreach_reduce; _fsdp_param_group.py].

Two steps are replayed and the peaks reset before the second (the steady state, as the simulator
measures). Weights of 10 MiB or more (own segments, allocated first, never freed) are counted in
closed form; optimizer state is replayed (it takes blocks the first step freed); small persistent
tensors are replayed as 1 MiB pieces of the small pool; decoder layers beyond MAX_LAYERS are merged
into MAX_LAYERS groups of the same bytes. reserved_for() replays on a grid of tokens per
micro-batch and makes the reserved bytes non-decreasing in it. benchmarks/reserved.py checks the
result against the replay of the simulated step's own allocation log (error table in
docs/readme/reserved.md); modelled from source, not measured on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Callable

from ..specs.engines import Engine, engine_of, gather_dtype, reduce_dtype
from ..specs.enums import Component as C
from ..specs.enums import MlpKind, Phase
from ..specs.memo import per_model
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.setup import TrainingSetup
from .alloc_config import LARGE_BUFFER, AllocatorConfig
from .allocator import MIN_BLOCK_SIZE, SMALL_SIZE, AllocatorOOM, CachingAllocator, allocation_size, round_size
from .pieces import Stage, pieces, terms
from .replay import Event, Op
from .result import Assumption

MiB = 2**20
# requests of 10 MiB or more get a segment of their own, rounded to 2 MiB [CCA: kMinLargeAlloc, get_allocation_size]
OWN_SEGMENT = 10 * MiB
_ALL_GATHER, _REDUCE_SCATTER = 1, 2      # FSDP2's side streams, as the simulator's log numbers them
_CACHE: dict = {}
_FOR: dict = {}
_GRID: dict = {}
GRID_MIN_TOKENS = 256                    # the grid of tokens per micro-batch starts here (reserved_for)
GRID_STEP = 2                            # each grid point this many times the last
GRID_SEQ = 2048                          # sequence length of the grid's steps, at most
MAX_LAYERS = 8                           # decoder layers replayed, at most (merged() groups the rest)
MAX_PIECES = 3                           # residual-width saved tensors per layer, at most
_CONFIGS: dict[str, AllocatorConfig] = {}
_MAX_ENTRIES = 4096


def allocator_config(conf: str) -> AllocatorConfig:
    """The parsed PYTORCH_CUDA_ALLOC_CONF (memoized); PlannerError naming the key when it is bad."""
    cfg = _CONFIGS.get(conf)
    if cfg is None:
        cfg = _CONFIGS[conf] = AllocatorConfig.parse(conf)
    return cfg


@dataclass(frozen=True)
class StepShape:
    """The tensors of the synthetic step, in bytes (one decoder layer's, repeated `layers` times)."""
    layers: int
    layer_weights: tuple[int, ...]
    outer_weights: tuple[int, ...]     # embedding, lm_head (untied), final norm
    layer_grads: tuple[int, ...]       # made in the layer's backward, freed by zero_grad
    outer_grads: tuple[int, ...]       # embedding's, lm_head's (full fine-tuning; one when tied)
    tied: bool                         # the embedding's backward adds into the lm_head's gradient
    states_per_grad: tuple[float, ...] # optimizer state tensors per gradient, as fractions of its bytes
    saved: tuple[int, ...]             # one layer's saved tensors, end of forward to its backward
    recompute: tuple[int, ...]         # one layer's tensors rebuilt in backward (checkpointing)
    transient: tuple[int, ...]         # one layer's temporaries, in forward and in backward
    outside: int                       # saved outside the layers (embedding output, RoPE tables)
    loss_fwd: tuple[int, ...]          # the loss's forward temporaries
    loss_saved: tuple[int, ...]
    loss_bwd: tuple[int, ...]
    logit_grad16: int
    embed_grad: tuple[int, ...]        # the embedding backward's buffers (full fine-tuning)
    opt_temp_fraction: float           # optimizer-step temporaries per gradient byte
    micro_batches: int                 # 2 with accumulation (gradients live through the second)
    unit: int = 0                      # FSDP2: one layer unit gathered (0: not sharded)
    root: int = 0                      # FSDP2: the root unit gathered, forward start to backward end
    unit_grad: int = 0                 # FSDP2: one layer's unsharded gradients
    unit_reduce: int = 0               # FSDP2: its reduce-scatter input
    root_grad: int = 0                 # FSDP2: the lm_head's unsharded gradient (full fine-tuning)
    root_reduce: int = 0               # FSDP2: the root's reduce-scatter input
    keep_gathered: bool = False        # SHARD_GRAD_OP: units stay gathered from forward to backward


@dataclass(frozen=True)
class Reserved:
    """What the replay of a step shape gave, under one allocator config."""
    ratio: float                       # peak reserved / peak requested bytes (the tensors' own sizes)
    peak_allocated: int                # of the synthetic step: its tensors' bytes at the peak, as requested
    peak_reserved: int
    largest_free_at_peak: int          # largest cached free block when reserved peaked
    largest_request: int               # the largest single allocation of the step
    conf: str                          # the PYTORCH_CUDA_ALLOC_CONF, canonical (to_conf)
    # what was replayed (for fragmentation_risk): a StepShape, or a function that builds it, called
    # the first time `shape` is read (only fits() on a device too small reads it)
    shape_of: StepShape | Callable[[], StepShape] | None = field(default=None, compare=False, repr=False)
    closed_reserved: int = 0           # reserved by the persistent tensors counted in closed form

    @property
    def shape(self) -> StepShape | None:
        s = self.shape_of
        if callable(s):
            s = s()
            object.__setattr__(self, "shape_of", s)
        return s

    def assumption(self) -> Assumption:
        """The line the estimate shows: the ratio, and the allocator settings it assumed."""
        conf = f"PYTORCH_CUDA_ALLOC_CONF={self.conf}" if self.conf else "PYTORCH_CUDA_ALLOC_CONF unset (PyTorch's defaults)"
        return Assumption("allocator_reserved_ratio", round(self.ratio, 4), "reserved / allocated",
                          f"{conf}; the caching allocator (c10/cuda/CUDACachingAllocator.cpp, modelled in "
                          "planner/memory/allocator.py) replayed on this step's tensors, sized by the estimate "
                          "(planner/memory/reserved.py); modelled from source, not measured on a GPU")


# estimate(replay=False)'s stand-in: reserved taken as allocated (a lower bound; never shown)
NOT_REPLAYED = Reserved(1.0, 0, 0, 0, 0, "")


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` bytes in pieces proportional to `weights` (512-byte multiples, the remainder in the last)."""
    s = sum(weights)
    if total <= 0 or s <= 0:
        return []
    out = [total * w // s // MIN_BLOCK_SIZE * MIN_BLOCK_SIZE for w in weights]
    out[-1] += total - sum(out)
    return [x for x in out if x > 0]


def _pieces_of(total: int, unit: int) -> tuple[int, ...]:
    """`total` bytes as whole `unit`-sized tensors and a remainder."""
    if total <= 0:
        return ()
    if unit <= 0 or unit >= total:
        return (total,)
    n, rest = divmod(total, unit)
    return (unit,) * n + ((rest,) if rest >= MIN_BLOCK_SIZE else ())


def _layer_saved(total: int, h_piece: int, i_piece: int, gated: bool) -> tuple[int, ...]:
    """One layer's saved bytes as the tensors a decoder layer saves: the MLP's intermediate-width
    ones (gate, up and the activation's output for a gated MLP; fc and activation for a plain one),
    the rest residual-width (norm inputs and outputs, q, k, v, attention output)."""
    if total <= 0:
        return ()
    n_i = min(3 if gated else 2, int(0.6 * total) // max(i_piece, 1))
    rest = total - n_i * i_piece
    # at most MAX_PIECES residual-width tensors (more, smaller ones only add events to replay)
    unit = max(h_piece, -(-rest // MAX_PIECES) // MIN_BLOCK_SIZE * MIN_BLOCK_SIZE + MIN_BLOCK_SIZE)
    return (i_piece,) * n_i + _pieces_of(rest, unit)


def merged(shape: StepShape, most: int = MAX_LAYERS) -> StepShape:
    """`shape` with its decoder layers merged into at most `most` groups, each holding the saved
    tensors, gradients and weights of layers/groups layers (the bytes are kept). What lives only
    while one layer runs stays one layer's: its temporaries and recompute (backward runs one layer
    at a time) and, under FSDP2, its all-gathered unit, unsharded gradients and reduce-scatter
    input (each decoder layer is its own fully_shard unit, gathered before it runs and resharded
    after it [_fsdp_param_group.py: unshard, reshard, post_backward]); SHARD_GRAD_OP keeps every
    unit gathered from forward to backward, so there the gathered bytes are a group's.
    benchmarks/reserved.py's `full` column compares it with the replay of every layer."""
    if shape.layers <= most:
        return shape
    groups = most
    g = shape.layers / groups
    sc = lambda t: tuple(int(x * g) // MIN_BLOCK_SIZE * MIN_BLOCK_SIZE for x in t)  # noqa: E731
    one = lambda x: int(x * g) // MIN_BLOCK_SIZE * MIN_BLOCK_SIZE  # noqa: E731
    return replace(shape, layers=groups, saved=sc(shape.saved), layer_grads=sc(shape.layer_grads),
                   layer_weights=sc(shape.layer_weights), unit=one(shape.unit) if shape.keep_gathered else shape.unit)


def step_shape(model: ModelSpec, setup: TrainingSetup, phases: dict) -> StepShape:
    """The synthetic step of `setup` on `model` (the slice this GPU holds), sized by the estimate's
    `phases` (memory/step.py) and pieces (memory/pieces.py)."""
    eng = engine_of(setup.parallel)
    rs, st, _ = terms(model, setup)
    pz = pieces(model, setup, eng, Stage.ALL)
    pc = param_counts(model)
    L = max(model.n_layers, 1)
    opt = phases[Phase.OPTIMIZER]
    W, G, O = opt[C.WEIGHTS], opt[C.GRADIENTS], opt[C.OPTIMIZER_STATE]
    T = setup.batch_size * setup.seq_len
    e = rs.compute.bytes
    h_piece, i_piece = T * model.hidden * e, T * model.intermediate * e
    linears = model.dense_linears or ()
    counts = [lin.weight_count for lin in linears] or [1]
    # weights: the embedding and lm_head at the stored dtype, the layers' linears sharing the rest
    scale = W / st.weights if st.weights else 0.0
    outer_b = (rs.trainable.bytes if rs.full else rs.frozen.bytes) * scale
    outer_w = [int(pc.embedding * outer_b), int(pc.lm_head * outer_b)]
    outer_w = [x for x in outer_w if x > 0]
    layer_total = max(W - sum(outer_w), 0) // L
    norms = int(2 * model.hidden * outer_b)
    layer_w = _split(max(layer_total - norms, 0), counts) + ([norms] if norms >= MIN_BLOCK_SIZE else [])
    # gradients: full fine-tuning as the parameters; adapters as A (r x in) and B (out x r) per linear
    if rs.full:
        per_param = G / pc.total if pc.total else 0.0
        head = model.vocab * model.hidden
        outer_g = [int((pc.embedding - (head if model.tied_embeddings else 0)) * per_param), int(head * per_param)]
        outer_g = [x for x in outer_g if x > 0]
        if eng.fsdp and model.tied_embeddings:
            outer_g = outer_g[-1:]
        layer_g = _split(int((G - sum(outer_g)) // L), counts)
    else:
        outer_g = []
        ab = [x for lin in linears for x in (lin.in_features, lin.out_features)] or [1]
        layer_g = _split(G // L, ab)
    grads = sum(outer_g) + L * sum(layer_g)
    k = O / grads if grads else 0.0
    # Adam-like: two states per gradient (exp_avg, exp_avg_sq); fewer bytes: one
    states = (k / 2, k / 2) if k >= 1.5 else ((k,) if k > 0 else ())
    temp = opt[C.TEMPORARIES] / grads if grads else 0.0
    # the loss's tensors: fp32 logits-sized pieces
    v_piece = T * model.vocab * 4
    unit = root = unit_grad = unit_reduce = root_grad = root_reduce = 0
    keep = False
    if eng.fsdp and eng is not Engine.YAFSDP:
        g_e = gather_dtype(setup.precision, eng, setup.precision.weight_dtype).bytes
        unit = (pc.attention + pc.mlp) // L * g_e
        root = (pc.embedding + pc.lm_head) * g_e
        unit_grad = (pc.attention + pc.mlp) // L * g_e if rs.full else st.trainable_params // L * g_e
        # the reduce-scatter input in reduce_dtype, as memory/sharded.py sizes it
        r_e = reduce_dtype(setup.precision, eng, setup.precision.weight_dtype if rs.full else setup.adapter_dtype).bytes
        unit_reduce = unit_grad // g_e * r_e
        keep = eng is Engine.FSDP_GRAD_OP
        if rs.full:
            root_grad = model.vocab * model.hidden * g_e
            root_reduce = (pc.embedding + pc.lm_head) * r_e
    ckpt_saved = pz.acts - pz.outside
    return StepShape(
        layers=L, layer_weights=tuple(layer_w), outer_weights=tuple(outer_w),
        layer_grads=tuple(layer_g), outer_grads=tuple(outer_g), states_per_grad=tuple(states),
        saved=_layer_saved(ckpt_saved // L, h_piece, i_piece, model.mlp_kind is MlpKind.GATED)
        if not pz.recompute else _pieces_of(ckpt_saved // L, h_piece),
        recompute=_layer_saved(pz.recompute, h_piece, i_piece, model.mlp_kind is MlpKind.GATED),
        transient=tuple(_split(pz.layer_transient, [model.hidden * rs.residual.bytes] * 2 + [model.intermediate * e] * 2)),
        outside=pz.outside,
        loss_fwd=_pieces_of(pz.logit_fwd - pz.logit_saved, v_piece), loss_saved=_pieces_of(pz.logit_saved, v_piece),
        loss_bwd=_pieces_of(pz.logit_bwd, v_piece), logit_grad16=pz.logit_grad16,
        embed_grad=(), tied=model.tied_embeddings,
        opt_temp_fraction=temp, micro_batches=2 if setup.grad_accum > 1 else 1,
        unit=unit, root=root, unit_grad=unit_grad, unit_reduce=unit_reduce, keep_gathered=keep,
        root_grad=root_grad, root_reduce=root_reduce,
    )


class _Log:
    """Builds the event list; keys are handed out in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.next = 0
        self.largest = 0

    def malloc(self, size: int, stream: int = 0) -> int:
        self.next += 1
        if size > 0:
            self.events.append(Event(Op.MALLOC, self.next, size, stream))
            self.largest = max(self.largest, size)
        return self.next if size > 0 else 0

    def free(self, *keys: int) -> None:
        self.events += [Event(Op.FREE, k) for k in keys if k]

    def mark(self, label: str) -> None:
        self.events.append(Event(Op.MARK, label=label))

    def reset_peaks(self) -> None:
        self.events.append(Event(Op.RESET_PEAKS))


class _Direct:
    """_Log's interface applied straight to a CachingAllocator: the replay of the same events as
    replay.replay() makes of synthetic_events(), without building them (the estimate's hot path).
    AllocatorOOM propagates from malloc."""

    def __init__(self, alloc: CachingAllocator) -> None:
        self.alloc = alloc
        self.largest = 0
        self._malloc, self._free = alloc.malloc, alloc.free

    def malloc(self, size: int, stream: int = 0) -> int:
        if size <= 0:
            return 0
        if size > self.largest:
            self.largest = size
        return self._malloc(size, stream)

    def free(self, *keys: int) -> None:
        free = self._free
        for k in keys:
            if k:
                free(k)

    def mark(self, label: str) -> None:
        pass

    def reset_peaks(self) -> None:
        self.alloc.reset_peaks()


_DEFAULT = AllocatorConfig()


def _persistent(sizes, small: list[int], large: list[int]) -> None:
    """Sorts persistent tensors: 10 MiB or more are counted in closed form, the rest replayed."""
    for size in sizes:
        (large if round_size(size, _DEFAULT) >= OWN_SEGMENT else small).append(size)


def _small_pieces(sizes: list[int], log: _Log) -> list[int]:
    """Persistent tensors under 1 MiB as 1 MiB pieces of the small pool (the same 2 MiB segments fill
    up, in fewer events); 1-10 MiB ones as they are."""
    tiny = sum(-(-s // MIN_BLOCK_SIZE) * MIN_BLOCK_SIZE for s in sizes if s <= SMALL_SIZE)
    keys = [log.malloc(p) for p in _pieces_of(tiny, SMALL_SIZE)]
    return keys + [log.malloc(s) for s in sizes if s > SMALL_SIZE]


def _compact(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Tensors of 1 MiB or less as 1 MiB pieces of the small pool (2 MiB segments fill alike, in
    fewer events); larger ones as they are."""
    tiny = sum(-(-x // MIN_BLOCK_SIZE) * MIN_BLOCK_SIZE for x in sizes if 0 < x <= SMALL_SIZE)
    return _pieces_of(tiny, SMALL_SIZE) + tuple(x for x in sizes if x > SMALL_SIZE)


def synthetic_events(shape: StepShape) -> tuple[list[Event], list[int]]:
    """(the events of two steps of `shape`, the persistent tensors counted in closed form)."""
    log = _Log()
    return log.events, _steps(log, shape)


def _direct(shape: StepShape, cfg: AllocatorConfig, capacity: int | None = None) -> tuple[CachingAllocator, AllocatorOOM | None, int, list[int]]:
    """(the allocator after two steps of `shape`, the OOM that stopped it or None, the largest
    request, the persistent tensors counted in closed form): replay(synthetic_events(shape)) without the events."""
    alloc = CachingAllocator(cfg, capacity)
    log = _Direct(alloc)
    try:
        large = _steps(log, shape)
    except AllocatorOOM as exc:
        return alloc, exc, log.largest, []
    return alloc, None, log.largest, large


def _steps(log, shape: StepShape) -> list[int]:
    """Two steps of `shape` into `log` (_Log or _Direct); the persistent tensors counted in closed form."""
    small: list[int] = []
    large: list[int] = []
    _persistent(list(shape.outer_weights) + list(shape.layer_weights) * shape.layers, small, large)
    _small_pieces(small, log)
    for step in range(2):
        if step == 1:
            log.reset_peaks()
        grads: list[int] = []
        for mb in range(shape.micro_batches):
            _micro_batch(log, shape, grads, first=mb == 0)
        log.mark("optimizer")
        if step == 0:   # lazily, after the first step's frees, so they may take cached blocks: replayed
            states = [int(g * f) for g in list(shape.outer_grads) + list(shape.layer_grads) * shape.layers
                      for f in shape.states_per_grad]
            _small_pieces([x for x in states if x <= SMALL_SIZE], log)
            for x in states:
                if x > SMALL_SIZE:
                    log.malloc(x)
        if shape.opt_temp_fraction:   # foreach temporaries, one layer's at a time
            per_layer = _compact(tuple(int(g * shape.opt_temp_fraction) for g in shape.layer_grads))
            for _ in range(shape.layers):
                log.free(*[log.malloc(x) for x in per_layer])
            log.free(*[log.malloc(int(g * shape.opt_temp_fraction)) for g in shape.outer_grads])
        log.free(*grads)   # zero_grad(set_to_none=True)
    return large


def _micro_batch(log: _Log, shape: StepShape, grads: list[int], first: bool) -> None:
    """One forward and backward; the gradients it makes (the first micro-batch only) go to `grads`."""
    sharded = shape.unit > 0
    grad_stream = _REDUCE_SCATTER if sharded else 0
    log.mark("forward")
    outside = log.malloc(shape.outside)
    root = _gather(log, shape.root) if shape.root else 0
    saved, gathered = [], []
    for _ in range(shape.layers):
        unit = _gather(log, shape.unit) if sharded else 0
        temps = [log.malloc(s) for s in shape.transient]
        saved.append([log.malloc(s) for s in shape.saved])
        log.free(*temps)
        if shape.keep_gathered:
            gathered.append(unit)
        else:
            log.free(unit)
    fwd = [log.malloc(s) for s in shape.loss_fwd]
    kept = [log.malloc(s) for s in shape.loss_saved]
    log.free(*fwd)
    log.mark("backward")
    bwd = [log.malloc(s) for s in shape.loss_bwd]
    log.free(*kept, *bwd[:-1])
    g16 = log.malloc(shape.logit_grad16)
    # the lm_head's gradient: its .grad, or under FSDP2 the root's unsharded gradient
    head = shape.root_grad if sharded else (shape.outer_grads[-1] if shape.outer_grads else 0)
    head_key = log.malloc(head) if (first or sharded) else 0
    log.free(*bwd[-1:], g16)
    reduce_input = 0
    for layer in reversed(range(shape.layers)):
        unit = gathered.pop() if shape.keep_gathered else (_gather(log, shape.unit) if sharded else 0)
        rec = [log.malloc(s) for s in shape.recompute]
        temps = [log.malloc(s) for s in shape.transient]
        if sharded:   # foreach_reduce: the input on the default stream, the sharded output on the reduce-scatter stream
            full_grad = log.malloc(shape.unit_grad)
            log.free(reduce_input)
            reduce_input = log.malloc(shape.unit_reduce)
            log.free(full_grad)
        if first:
            grads += [log.malloc(g, grad_stream) for g in _compact(shape.layer_grads)]
        log.free(*temps, *rec, *saved[layer], unit)
    if head and shape.tied:
        # embedding_dense_backward's (vocab, hidden) gradient, then its sum with the lm_head's,
        # which replaces it as the tied weight's .grad [aten Embedding.cpp; autograd accumulation]
        dense = log.malloc(head)
        if head_key:   # later micro-batches add into the .grad in place
            total = log.malloc(head)
            log.free(head_key)
            head_key = total
        log.free(dense)
    elif first and len(shape.outer_grads) > 1 and not sharded:
        grads.append(log.malloc(shape.outer_grads[0]))
    if sharded:   # the root unit's reduce-scatter, then its reshard
        log.free(reduce_input)
        reduce_input = log.malloc(shape.root_reduce)
        log.free(head_key)
        if first:
            grads += [log.malloc(g, grad_stream) for g in shape.outer_grads]
        log.free(reduce_input, root)
    elif head_key:
        grads.append(head_key)
    log.free(outside)


def _gather(log: _Log, size: int) -> int:
    """An FSDP2 all-gather: the flat output on the all-gather stream, copied out into the unsharded
    parameters on the default stream, then freed [foreach_all_gather, foreach_all_gather_copy_out]."""
    flat = log.malloc(size, _ALL_GATHER)
    params = log.malloc(size)
    log.free(flat)
    return params


def closed_form_large(sizes: list[int], conf: AllocatorConfig) -> tuple[int, int]:
    """(allocated, reserved) of persistent tensors with segments of their own: each block is its
    rounded size, or the whole segment where the remainder (1 MiB or less) is not split off
    [CCA: get_allocation_size, should_split]."""
    alloc = resv = 0
    for size in sizes:
        r = round_size(size, conf)
        seg = allocation_size(r)
        if conf.expandable_segments:   # mapped back to back onto one segment, 20 MiB pages
            alloc, resv = alloc + r, resv + r
            continue
        resv += seg
        alloc += seg if seg - r <= SMALL_SIZE else r
    if conf.expandable_segments:       # the last page partly used [ExpandableSegment::map]
        resv += -resv % LARGE_BUFFER
    return alloc, resv


def replay_shape(shape: StepShape, conf: str = "") -> Reserved:
    """The replay of `shape` under PYTORCH_CUDA_ALLOC_CONF `conf`, memoized by value."""
    key = (shape, conf)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    cfg = allocator_config(conf)
    a, _, largest, large = _direct(shape, cfg)
    st = a.stats
    la, lr = closed_form_large(large, cfg)
    resv = st.reserved.peak + lr
    # the ratio is to the tensors' bytes as requested (what the estimate's allocated adds up), not to
    # the allocator's blocks, whose unsplit remainders depend on the settings themselves
    requested = st.requested.peak + sum(large)
    largest = max([largest] + large)
    out = Reserved(resv / requested if requested else 1.0, requested, resv, st.largest_free_at_peak_reserved,
                   largest, cfg.to_conf(), shape, lr)
    if len(_CACHE) > _MAX_ENTRIES:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def grid_setup(setup: TrainingSetup, tokens: int) -> TrainingSetup:
    """The setup at a grid point of `tokens` per micro-batch: sequences of GRID_SEQ (or fewer) tokens;
    under context parallelism one row of `tokens` (its ranks split the sequence; --cp-kind llama3
    takes batch 1 only), a multiple of 2 x the degree (torch's context_parallel shards it evenly)."""
    n = setup.parallel.cp
    if n > 1:
        return setup.with_(batch_size=1, seq_len=max(tokens // (2 * n), 1) * 2 * n)
    seq = min(tokens, GRID_SEQ)
    return setup.with_(batch_size=max(tokens // seq, 1), seq_len=seq)


def grid_points(tokens: int) -> list[int]:
    """GRID_MIN_TOKENS, GRID_STEP times that, ... up to the first grid point not below `tokens`."""
    points, g = [GRID_MIN_TOKENS], GRID_MIN_TOKENS
    while g < tokens:
        g *= GRID_STEP
        points.append(g)
    return points


def reserved_for(model: ModelSpec, setup: TrainingSetup, phases: dict,
                 phases_at: Callable[[TrainingSetup], tuple[ModelSpec, dict]]) -> tuple[Reserved, int]:
    """(the caching allocator's replay, the estimate's reserved bytes) for the step of `setup` (as it
    runs: the slice `model` this GPU holds, `phases` from memory/step.py), under `setup.alloc_conf`.

    Replays run on a grid of tokens per micro-batch (GRID_MIN_TOKENS, doubling), each grid point's
    step built by `phases_at` from `setup` at that size. Between grid points g_lo < T <= g_hi the
    reserved bytes are allocated(T) x ratio(g_hi), and never less than the largest reserved bytes
    of the grid points below: so they never fall as the micro-batch or the sequence grows (the fit
    and recommend bisections rely on it), and a grid's replays serve every size of the setup.
    """
    def make() -> tuple[Reserved, int]:
        cfg = allocator_config(setup.alloc_conf)   # a bad setting is refused before any work
        conf = cfg.to_conf()
        allocated = max(sum(c.values()) for c in phases.values())
        points = grid_points(setup.batch_size * setup.seq_len)
        grid = _grid_of(model, setup, conf)
        floor = 0
        for g in points[:-1]:
            res, alloc_g = _grid(grid, model, setup, g, conf, phases_at)
            floor = max(floor, int(alloc_g * res.ratio))
        top, _ = _grid(grid, model, setup, points[-1], conf, phases_at)
        reserved = max(int(allocated * top.ratio), floor, allocated)
        return replace(top, ratio=reserved / allocated if allocated else 1.0,
                       shape_of=lambda: merged(step_shape(model, setup, phases))), reserved

    return per_model(_FOR, (id(model), setup), model, make)


# every field of a setup but its sizes: with a grid point's tokens, what fixes grid_setup(setup, tokens)
_GRID_FIELDS = tuple(f for f in TrainingSetup.__dataclass_fields__ if f not in ("batch_size", "seq_len"))
_grid_key = attrgetter(*_GRID_FIELDS)


def _grid_of(model: ModelSpec, setup: TrainingSetup, conf: str) -> dict:
    """The memo of `setup`'s grid points (tokens -> (replay, allocated)): shared by every setup that
    differs from it in batch size and sequence length only, which grid_setup() replaces."""
    return per_model(_GRID, (id(model), _grid_key(setup), conf), model, dict)


def _grid(grid: dict, model: ModelSpec, setup: TrainingSetup, tokens: int, conf: str,
          phases_at) -> tuple[Reserved, int]:
    """(the replay, the estimate's allocated bytes) at a grid point, memoized in `grid` (_grid_of)."""
    hit = grid.get(tokens)
    if hit is None:
        at = grid_setup(setup, tokens)
        local, phases = phases_at(at)
        hit = grid[tokens] = (replay_shape(merged(step_shape(local, at, phases)), conf),
                              max(sum(c.values()) for c in phases.values()))
    return hit


def fragmentation_risk(res: Reserved, allocated: int, capacity: int) -> str | None:
    """What the caching allocator does on a device that holds `capacity` bytes for it, where the
    step's tensors fit but its cached segments would not: a note that it gets by after freeing its
    cache and retrying (slower), or that it runs out of memory by fragmentation (the largest request
    exceeds the largest free block though the free bytes in all would hold it). None if neither.

    `allocated` is the estimate's peak allocated bytes; the capacity is scaled by the synthetic
    step's own peak to it, and the persistent tensors counted in closed form are taken off first.
    """
    if res.shape is None or allocated <= 0 or capacity <= 0:
        return None
    res = replay_shape(res.shape, res.conf)   # this step's own size, not the grid point's
    cap = int(capacity * res.peak_allocated / allocated) - res.closed_reserved
    if cap <= 0:
        return None
    a, exc, _, _ = _direct(res.shape, allocator_config(res.conf), capacity=cap)
    oom, MiB_ = (exc.oom if exc is not None else None), 2**20
    if oom is None:
        if not a.stats.num_alloc_retries:
            return None
        return (f"the allocator fits this step only by freeing its cached segments and retrying "
                f"({a.stats.num_alloc_retries} times in two steps: cudaFree/cudaMalloc stalls); PYTORCH_CUDA_ALLOC_CONF="
                f"expandable_segments:True reserves less (caching allocator replay, modelled from source)")
    if not oom.fragmentation:
        return None
    return (f"fragmentation OOM risk: a {oom.rounded / MiB_:,.0f} MiB request finds no free block that large "
            f"(largest {oom.largest_free_block / MiB_:,.0f} MiB, {oom.cached_free / MiB_:,.0f} MiB cached free in all) "
            f"and too little device memory for a new segment, though the tensors fit; "
            f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True or a smaller micro-batch avoids it "
            f"(caching allocator replay, modelled from source)")
