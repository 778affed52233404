"""Optimizers as HF Trainer builds them for `optim=...`: the state they keep, the temporaries of
their step and the bytes the step streams through memory."""
from __future__ import annotations

import re

from ..specs.enums import DType, Optimizer
from ..specs.params import param_counts
from . import lora_fa

# 8-bit optimizers keep blockwise-quantized states (blocks of 256, fp32 absmax) for tensors with
# at least 4096 elements; smaller tensors keep 32-bit states
# [bitsandbytes/optim/optimizer.py: Optimizer8bit.init_state, min_8bit_size=4096].
OPT8_BLOCK = 256
OPT8_MIN_SIZE = 4096


def state_bytes(opt: Optimizer, trainable: int, dtype: DType, largest: int,
                param_shapes_2d: tuple[int, int], embedding: int = 0) -> tuple[int, int, int]:
    """(allocated state, paged state, step temporaries) for `trainable` parameters of `dtype`."""
    p = dtype.bytes
    if opt in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
        # torch AdamW: exp_avg and exp_avg_sq in the parameter's dtype [torch/optim/adamw.py]
        state = 2 * trainable * p
        # foreach: torch._foreach_sqrt(exp_avg_sqs) makes one state-sized temporary list
        # [torch/optim/adam.py: _multi_tensor_adam]; fused kernels update in place.
        temp = trainable * p if opt is Optimizer.ADAMW else 0
        return int(state), 0, int(temp)
    if opt is Optimizer.SGD:  # momentum_buffer; foreach updates in place
        return int(trainable * p), 0, 0
    if opt is Optimizer.LION:  # bitsandbytes 32-bit states are fp32 whatever the parameter dtype
        return int(4 * trainable), 0, 0
    if opt is Optimizer.PAGED_ADAMW:
        return 0, int(8 * trainable), 0
    if opt in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT):
        per = 2 + 2 * 4 / OPT8_BLOCK   # state1 + state2 uint8, one fp32 absmax per block each
        # HF Trainer keeps 32-bit (fp32) states for nn.Embedding weights: it registers them with
        # bnb's GlobalOptimManager (override optim_bits=32) [transformers/trainer.py: create_optimizer]
        state = int((trainable - embedding) * per + 8 * embedding)
        return (0, state, 0) if opt.paged else (state, 0, 0)
    if opt is Optimizer.ADAFACTOR:
        # transformers Adafactor: factored second moment (row + col vectors, fp32) for 2-D
        # tensors, no first moment (beta1=None); per tensor it builds grad**2 + eps and the
        # full-size approximated update in fp32 [transformers/optimization.py: Adafactor.step].
        # For 16-bit weights it also upcasts the gradient and the weight (`.float()` copies), and
        # `update = _approx_sq_grad(...)` is built while `grad**2 + eps` is still referenced.
        rows, cols = param_shapes_2d
        state = 4 * (rows + cols)
        temp = 2 * 4 * largest + (2 * 4 * largest if p < 4 else 0)
        return int(state), 0, int(temp)
    raise AssertionError(opt)


def streamed_bytes_per_param(opt: Optimizer, w: float) -> float:
    """Bytes the optimizer step streams per trainable parameter of `w` bytes (reads and writes).

    AdamW: read param, grad, m, v; write param, m, v [torch/optim/adamw.py _fused_adamw]; 8-bit
    states are 1 byte each [bitsandbytes optim/optimizer.py]; SGD with momentum: p, g, buf read,
    p, buf written; Adafactor keeps factored second moments (no full-size state) plus p and g.
    """
    state = 1 if opt.eight_bit else 4
    if opt is Optimizer.SCHEDULE_FREE_ADAMW:
        # read p, grad, z, exp_avg_sq; write p, z, exp_avg_sq and the gradient normalized in place
        # [schedulefree adamw_schedulefree.py AdamWScheduleFree.step, foreach branch]
        return 4 * w + 4 * state
    if opt.torchao:
        # single_param_adam: p and grad read, p written; codes read and written, 1 byte (8-bit) or half
        # a byte (4-bit) per element for each of the two states [torchao optim/adam.py]
        return 3 * w + 4 * (1 if opt is Optimizer.TORCHAO_ADAMW_8BIT else 0.5)
    if opt.low_rank:
        # GaLoreAdamW.step: p and grad read, p written, and project_back's full-size update written,
        # scaled into a second one and read by p.add_; the low-rank states are r/cols of a full one
        return 3 * w + 3 * w
    if opt is Optimizer.SGD:
        return 3 * w + 2 * state
    if opt is Optimizer.ADAFACTOR:
        return 3 * w
    if opt is Optimizer.LION:
        return 3 * w + 2 * state
    return 3 * w + 4 * state


# --- optimizers beyond HF's AdamW family (full fine-tuning) ------------------------------------

def galore_targets(model, targets: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """(rows, cols, count) of the weights GaLore projects: transformers 5.24 _setup_low_rank_optimizer
    takes the `.weight` of every nn.Linear matching optim_target_modules; () = gpuplan's default, the
    GaLore README's `[r".*.attn.*", r".*.mlp.*"]` (every decoder-layer linear); "all-linear" adds the
    lm_head when it is its own parameter (a tied head is named embed_tokens.weight: not targeted).
    Fused MoE experts are 3-D parameters, not nn.Linear: never targeted."""
    out = [(lin.out_features, lin.in_features, model.dense_layers) for lin in model.dense_linears
           if lin.experts == 1 and (not targets or targets == ("all-linear",) or _targeted(lin, targets))]
    out += [(lin.out_features, lin.in_features, model.moe_layers) for lin in model.moe_linears
            if model.moe_layers and lin.experts == 1 and (not targets or targets == ("all-linear",)
                                                         or _targeted(lin, targets))]
    if not model.tied_embeddings and (targets == ("all-linear",) or any(_hit(t, "lm_head") for t in targets)):
        out.append((model.head_rows, model.hidden, 1))   # the lm_head (a reward model's score head)
    return out


def _hit(target: str, path: str) -> bool:
    """transformers 5.24 trainer_utils.py check_target_module_exists for a list of names: a name that
    is a substring of the module's path, or a regex that fully matches it."""
    try:
        return target in path or bool(re.fullmatch(target, path))
    except re.error:
        return False


def _targeted(lin, targets: tuple[str, ...]) -> bool:
    # the module path as the Llama-style families name it: model.layers.N.self_attn.q_proj, ...mlp.up_proj
    path = f"model.layers.0.{'self_attn' if lin.block == 'attn' else 'mlp'}.{lin.name}"
    return any(_hit(t, path) for t in targets)


def galore_tensor(rows: int, cols: int, rank: int, p: int) -> tuple[int, int]:
    """(state, step temporaries) of one projected (rows, cols) weight of `p`-byte dtype under
    galore_torch 1.0 GaLoreAdamW, proj_type "std" [galore_torch/galore_projector.py GaLoreProjector]:

    - rows >= cols: the right projector `Vh[:rank, :]`, the low-rank gradient (rows, r); else the left
      one `U[:, :rank]`, the gradient (r, cols); r = min(rank, rows, cols).
    - The projector is a *view* of the SVD's factor for fp32 weights (get_orthogonal_matrix keeps
      `matrix = module_params.data`, no copy): the whole (k, cols) Vh or (rows, k) U storage stays
      live, k = min(rows, cols). For 16-bit weights `.type(original_type)` copies the r rows out.
    - exp_avg, exp_avg_sq: zeros_like(the low-rank gradient), in its dtype (the weight's).
    - step temporaries (galore_torch/adamw.py GaLoreAdamW.step, a loop over tensors): the low-rank
      gradient, denom, norm_grad, and project_back's full-size product and its `* scale` copy.
    """
    k = min(rows, cols)
    r = min(rank, k)
    low = rows * r if rows >= cols else r * cols
    proj = (k * cols if rows >= cols else rows * k) * 4 if p == 4 else (r * cols if rows >= cols else rows * r) * p
    state = proj + 2 * low * p
    temp = 3 * low * p + 2 * rows * cols * p
    return state, temp


def apollo_tensor(rows: int, cols: int, rank: int, p: int) -> tuple[int, int]:
    """(state, step temporaries) of one projected (rows, cols) weight under apollo_torch 1.0.3
    APOLLOAdamW with HF's defaults (proj "random", proj_type "std", scale_type "channel")
    [apollo_torch/apollo.py AdamW.step, random_projector.py GradientProjector]: the projector is
    `stable_randn((rank, cols))` (rows >= cols) or `((rows, rank))`, generated in fp32 and copied to
    a 16-bit weight's dtype; the rank is not clamped to the matrix. exp_avg, exp_avg_sq of the
    low-rank gradient; `scaled_grad`, the norm of the last scaled update (0-dim). The step: the
    low-rank gradient, denom, norm_grad, `scaled_grad = p.grad * factor` and its `/ limiter` copy."""
    proj = (rank * cols if rows >= cols else rows * rank) * p
    low = rows * rank if rows >= cols else rank * cols
    return proj + 2 * low * p + p, 3 * low * p + 2 * rows * cols * p


def apollo_update_temporaries(rows: int, cols: int, rank: int, p: int) -> int:
    """A projector update (every update_proj_gap steps): `matrix = data.float()` for 16-bit
    weights, the new fp32 projector and its 16-bit copy, while the old one is still held."""
    proj = rank * cols if rows >= cols else rows * rank
    return (rows * cols * 4 + proj * 4 + 2 * proj * p) if p != 4 else 2 * proj * 4


def galore_svd_temporaries(rows: int, cols: int, rank: int, p: int) -> int:
    """The projector update every update_proj_gap steps (and at step 0): torch.linalg.svd of the
    gradient (an fp32 copy first for 16-bit weights), U (rows, k), S (k), Vh (k, cols), the right
    type's `U[:, :rank] @ diag(s[:rank])` (rows, r) and (r, r), while the old projector is still held."""
    k = min(rows, cols)
    r = min(rank, k)
    old = (k * cols if rows >= cols else rows * k) * 4 if p == 4 else (r * cols if rows >= cols else rows * r) * p
    copy = rows * cols * 4 if p != 4 else 0
    extra = rows * r * 4 + r * r * 4 if rows >= cols else 0
    return copy + (rows * k + k + k * cols) * 4 + extra + old


# torchao 0.18 optim/adam.py _AdamBase._new_buffer: a state is quantized when the tensor has at least
# 4096 elements and its element count divides into blocks; otherwise torch.zeros_like (the parameter's dtype).
TORCHAO_MIN_SIZE = 4096


def torchao_state(numel: int, p: int, bits: int, block: int) -> int:
    """exp_avg + exp_avg_sq of one tensor under torchao AdamW8bit/AdamW4bit [torchao 0.18
    optim/subclass_8bit.py OptimState8bit.zeros: codes uint8 (n), scale fp32 (n / block), qmap fp32
    (256 entries, a tensor per state); subclass_4bit.py OptimState4bit.zeros: codes uint8 (n / 2),
    scale fp32 (n / block), qmap fp32 (16 entries)]. state["step"] is torch.tensor(0.0): on the host."""
    if numel < TORCHAO_MIN_SIZE or numel % block:
        return 2 * numel * p
    codes = numel if bits == 8 else numel // 2
    qmap = (256 if bits == 8 else 16) * 4
    return 2 * (codes + 4 * (numel // block) + qmap)


def tensor_inventory(model) -> list[tuple[int, int]]:
    """(elements, count) of every trainable tensor of a full fine-tuning, as transformers builds
    the model: embeddings, an untied lm_head, each layer's linear weights (fused experts as one 3-D
    tensor) and biases, norms; what is left of the parameter count (q/k norms, routers) as
    one-element entries, so the counts sum to the model's parameters."""
    out = [(model.vocab * model.hidden, 1)]
    if model.learned_positions:
        out.append((model.learned_positions * model.hidden, 1))
    if not model.tied_embeddings:
        out.append((model.head_rows * model.hidden, 1))   # the lm_head (a reward model's score head)
    for linears, layers in ((model.dense_linears, model.dense_layers), (model.moe_linears, model.moe_layers)):
        for lin in linears:
            if layers:
                out.append((lin.out_features * lin.in_features * lin.experts, layers))
                if lin.bias:
                    out.append((lin.out_features * lin.experts, layers))
    pc = param_counts(model)
    norms = pc.norms // max(model.hidden, 1)
    out.append((model.hidden, norms))
    rest = pc.total - sum(n * c for n, c in out)
    if rest > 0:
        out.append((1, rest))
    return out


def extra_state_bytes(opt: Optimizer, model, tensors: list[tuple[int, int]], dtype: DType,
                      rank: int, gap: int, targets: tuple[str, ...], block: int) -> tuple[int, int, int]:
    """(state, paged, step temporaries) of the optimizers beyond HF's AdamW family, over the
    trainable `tensors` ((numel, count) pairs) of `model` (full fine-tuning)."""
    p = dtype.bytes
    total = sum(n * c for n, c in tensors)
    if opt is Optimizer.MUON:
        state, temp = muon_bytes(model, total, p)
        return state, 0, temp
    if opt is Optimizer.ADAM_MINI:
        state, temp = adam_mini_bytes(model, p)
        return state, 0, temp
    if opt is Optimizer.SCHEDULE_FREE_ADAMW:
        # schedulefree 1.4.1 adamw_schedulefree.py AdamWScheduleFree.step: z = clone(p), exp_avg_sq =
        # zeros_like(p); foreach (the default): `denom = torch._foreach_div(exp_avg_sq, ...)` is one
        # state-sized list; the gradient is normalized in place. train()/eval() lerp p in place.
        return 2 * total * p, 0, total * p
    if opt.torchao:
        bits = 8 if opt is Optimizer.TORCHAO_ADAMW_8BIT else 4
        state = sum(torchao_state(n, p, bits, block) * c for n, c in tensors)
        # single_param_adam runs under torch.compile, one tensor at a time: Inductor fuses the
        # dequantize-update-requantize chain; its intermediates are not modelled (not simulated)
        return state, 0, 0
    if opt in (Optimizer.GALORE_ADAMW, Optimizer.APOLLO_ADAMW):
        projected = galore_targets(model, targets)   # _setup_low_rank_optimizer picks both the same way
        state = temp = 0
        proj_numel = 0
        apollo = opt is Optimizer.APOLLO_ADAMW
        for rows, cols, count in projected:
            s, t = (apollo_tensor if apollo else galore_tensor)(rows, cols, rank, p)
            state += s * count
            update = (apollo_update_temporaries if apollo else galore_svd_temporaries)(rows, cols, rank, p)
            temp = max(temp, t, update)
            proj_numel += rows * cols * count
        # the rest: plain Adam states, one tensor at a time: denom and norm_grad of each
        # (galore_torch/adamw.py: `denom = exp_avg_sq.sqrt()`, `norm_grad = exp_avg / denom`)
        state += 2 * (total - proj_numel) * p
        rest = list(tensors)
        for rows, cols, count in projected:   # the projected weights leave the plain-Adam rest
            for i, (n, c) in enumerate(rest):
                if n == rows * cols and c >= count:
                    rest[i] = (n, c - count)
                    break
        temp = max(temp, 2 * max([n for n, c in rest if c] or [0]) * p)
        return int(state), 0, int(temp)
    raise AssertionError(opt)


# adam_mini 1.1.1 adam_mini.py Adam_mini.__init__: the name keywords that pick each block's rule
_MINI_ADAM, _MINI_QK = ("bias",), ("k_proj", "q_proj", "wq", "wk", "query", "key")
_MINI_ROWS = ("embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value", "o_proj", "wo",
              "attn.proj", "feed_forward", "linear", "mlp")


def adam_mini_tensors(model) -> list[tuple[int, int, int]]:
    """(elements, second-moment elements, count) per trainable tensor under adam_mini 1.1.1
    Adam_mini.step, by parameter name as Llama-style families name them:
    - a name with "bias": Adam, m and v both full;
    - q/k projections: m full, vmean one per head: numel / head_numel rows, head_numel = dim^2 / n_heads;
    - embeddings, lm_head, v/o projections, MLPs: m full, vmean one per output row (size(0));
    - the rest (norms): m full, one scalar vmean (`zeros_like(torch.sum(p * p))`).
    Every state is in the parameter's dtype (zeros_like)."""
    head_numel = model.hidden * model.hidden // model.n_heads
    out = [(model.vocab * model.hidden, model.vocab, 1)]
    if not model.tied_embeddings:
        out.append((model.head_rows * model.hidden, model.head_rows, 1))   # the lm_head (or a score head)
    for lin in model.dense_linears:
        name = f"model.layers.0.{'self_attn' if lin.block == 'attn' else 'mlp'}.{lin.name}.weight"
        numel = lin.out_features * lin.in_features
        if any(k in name for k in _MINI_QK):
            v = numel // head_numel
        elif any(k in name for k in _MINI_ROWS):
            v = lin.out_features
        else:
            v = 1
        out.append((numel, v, model.dense_layers))
        if lin.bias:
            out.append((lin.out_features, lin.out_features, model.dense_layers))
    pc = param_counts(model)
    out.append((model.hidden, 1, pc.norms // model.hidden))
    return out


def adam_mini_bytes(model, p: int) -> tuple[int, int]:
    """(state, step temporaries): m everywhere, the reduced second moments; per tensor the step
    builds `update = m * stepsize` and `-update` (two tensor-sized temporaries), the largest's at worst."""
    tensors = adam_mini_tensors(model)
    state = sum((n + v) * c for n, v, c in tensors) * p
    return state, 2 * max(n for n, _, _ in tensors) * p


def muon_matrices(model) -> list[tuple[int, int, int]]:
    """(rows, cols, count) of the 2-D parameters, in model.parameters() order: torch 2.13's Muon
    docstring splits `p.ndim == 2` (embeddings, every linear weight, an untied lm_head) to Muon and
    the rest (norms, biases, fused 3-D experts) to AdamW [torch/optim/_muon.py Muon]."""
    out = [(model.vocab, model.hidden, 1)]
    if model.learned_positions:
        out.append((model.learned_positions, model.hidden, 1))
    for linears, layers in ((model.dense_linears, model.dense_layers), (model.moe_linears, model.moe_layers)):
        out += [(lin.out_features, lin.in_features, layers) for lin in linears if layers and lin.experts == 1]
    if not model.tied_embeddings:
        out.append((model.head_rows, model.hidden, 1))   # the lm_head (a reward model's score head)
    return out


def muon_bytes(model, total: int, p: int) -> tuple[int, int]:
    """(state, step temporaries) of torch.optim.Muon on the 2-D parameters plus torch.optim.AdamW
    (foreach) on the rest. Muon keeps `momentum_buffer = zeros_like(grad)`; its step, one tensor at a
    time [_muon.py _single_tensor_muon, _zeropower_via_newtonschulz]: `update = grad.lerp(buf)`
    (nesterov, the default), a bf16 copy `ortho_grad`, and per Newton-Schulz step the (s, s) bf16
    gram matrix and its update (s = min(rows, cols)) while the next iterate (bf16) is made; the
    previous tensor's bf16 update is still referenced while the next one's is built."""
    mats = muon_matrices(model)
    muon_numel = sum(r * c * n for r, c, n in mats)
    rest = total - muon_numel
    state = muon_numel * p + 2 * rest * p
    temp, prev = 0, 0
    for rows, cols, count in mats:
        n, s_ = rows * cols, min(rows, cols)
        one = n * p + 2 * n * 2 + 2 * s_ * s_ * 2
        temp = max(temp, prev + one, (n * 2 + one) if count > 1 else 0)
        prev = n * 2
    return state, max(temp, rest * p)   # AdamW's foreach sqrt list over the rest


def svd_flops(rows: int, cols: int) -> float:
    """FLOPs of one thin SVD of a (rows, cols) matrix, rows >= cols: about 4 rows cols^2 + 8 cols^3
    (Golub-Reinsch with R-bidiagonalization, Golub & Van Loan, Matrix Computations 4th ed., Fig. 8.6.1)."""
    m, n = max(rows, cols), min(rows, cols)
    return 4.0 * m * n * n + 8.0 * n ** 3


def galore_svd_flops_per_step(model, rank: int, gap: int, targets: tuple[str, ...]) -> float:
    """GaLore's projector updates, amortized: one SVD per projected weight every `gap` steps."""
    return sum(svd_flops(r, c) * n for r, c, n in galore_targets(model, targets)) / gap


EXTRA = frozenset({Optimizer.APOLLO_ADAMW, Optimizer.MUON, Optimizer.ADAM_MINI, Optimizer.GALORE_ADAMW, Optimizer.TORCHAO_ADAMW_8BIT, Optimizer.TORCHAO_ADAMW_4BIT,
                   Optimizer.SCHEDULE_FREE_ADAMW})


def notes(opt: Optimizer) -> list[str]:
    """How the estimate modelled the optimizers beyond HF's AdamW family."""
    if opt.torchao:
        return [f"{opt.value}: torchao's block-quantized states modelled from source (torchao 0.18 optim/), not "
                "simulated (its step runs under torch.compile); the compiled step's intermediates are not counted"]
    if opt is Optimizer.APOLLO_ADAMW:
        return ["apollo-adamw: apollo_torch 1.0.3's random projectors and low-rank states modelled from source and "
                "checked on a real CPU step, not simulated (its projector seeds are read from tensors)"]
    if opt.low_rank:
        return [f"{opt.value}: galore_torch 1.0's projectors and low-rank states, simulated; the projector update "
                "(an SVD every update_proj_gap steps) is in the step's temporaries, cuSOLVER's workspace is not"]
    if opt is Optimizer.MUON:
        return ["muon: torch.optim.Muon on the 2-D parameters, torch.optim.AdamW on the rest (torch 2.13's "
                "documented split), simulated"]
    if opt is Optimizer.ADAM_MINI:
        return ["adam-mini: adam_mini 1.1.1's reduced second moments by parameter name (Llama-style names), modelled "
                "from source and checked on a real CPU step, not simulated (its step reads tensor values)"]
    if opt is Optimizer.LORAFA:
        return [lora_fa.note()]
    if opt is Optimizer.SCHEDULE_FREE_ADAMW:
        return ["schedule-free-adamw: schedulefree 1.4.1 AdamWScheduleFree (z and the second moment), simulated"]
    return []
