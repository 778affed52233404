"""FLOPs per token against the papers' closed forms (golden) and between methods (properties)."""
import pytest

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.enums import Method
from gpuplan.planner.speed.flops import step_flops
from gpuplan.planner.specs.params import param_counts
from gpuplan.planner.specs.setup import Checkpointing, LoraSpec, TrainingSetup


def test_full_no_ckpt_is_palm_6n_plus_attention():
    """PaLM App. B: 6N + 12 L H Q T per token, N the matmul weights (Llama-2-7B: no biases, untied head)."""
    m = resolve_model("llama-2-7b")
    T = 4096
    f = step_flops(m, TrainingSetup(seq_len=T, checkpointing=Checkpointing.NONE))
    pc = param_counts(m)
    N = pc.attention + pc.mlp + m.vocab * m.hidden   # no biases or q/k norms in Llama-2
    assert f.model == 6 * N + 12 * m.n_layers * m.n_heads * m.head_dim * T
    assert f.hardware == f.model - f.causal_saving
    # hand count of one layer: q,k,v,o 4 h^2 + gate,up,down 3 h i = 4*4096^2 + 3*4096*11008
    assert pc.attention + pc.mlp == 32 * (4 * 4096**2 + 3 * 4096 * 11008)


def test_full_ckpt_is_narayanan_eq3():
    """Narayanan21 eq. 3 with recompute: 96 B s l h^2 (1 + s/6h + V/16lh) per batch, GPT-2 (4h MLP, MHA)."""
    m = resolve_model("gpt-2-xl")
    s, l, h, V = 1024, m.n_layers, m.hidden, m.vocab
    f = step_flops(m, TrainingSetup(seq_len=s, checkpointing=Checkpointing.FULL))
    assert f.hardware + f.causal_saving == pytest.approx(96 * s * l * h**2 * (1 + s / (6 * h) + V / (16 * l * h)) / s, rel=1e-12)


def test_lora_skips_weight_gradients():
    m = resolve_model("llama-3.1-8b")
    base = TrainingSetup(seq_len=2048, checkpointing=Checkpointing.NONE)
    full = step_flops(m, base)
    lora = step_flops(m, base.with_(method=Method.LORA))
    pc = param_counts(m)
    W = pc.attention + pc.mlp + m.vocab * m.hidden
    adapters = 32 * 8 * ((4096 + 4096) + (4096 + 1024))     # q_proj and v_proj, r = 8
    assert full.model - lora.model == pytest.approx(2 * W - 6 * adapters)
    assert lora.model < full.model * 0.7


def test_checkpointing_adds_one_forward_of_the_layers():
    m = resolve_model("qwen-2.5-7b")
    on = step_flops(m, TrainingSetup(checkpointing=Checkpointing.FULL))
    off = step_flops(m, TrainingSetup(checkpointing=Checkpointing.NONE))
    head = 2 * m.vocab * m.hidden
    assert on.recompute == pytest.approx(off.forward - head)
    assert on.model == off.model


def test_qlora_dequantizes_each_pass():
    m = resolve_model("llama-3.1-8b")
    q = step_flops(m, TrainingSetup(method=Method.QLORA))
    assert q.dequant_passes == 3 and q.quantized_weights == param_counts(m).attention + param_counts(m).mlp
    assert step_flops(m, TrainingSetup(method=Method.QLORA, checkpointing=Checkpointing.NONE)).dequant_passes == 2
    assert step_flops(m, TrainingSetup(method=Method.LORA)).dequant_passes == 0


def test_moe_counts_active_experts_only():
    m = resolve_model("mixtral-8x7b")
    f = step_flops(m, TrainingSetup(checkpointing=Checkpointing.NONE, seq_len=1))
    # Mixtral: ~12.9 B active of 46.7 B [Mistral AI, Mixtral of experts, Sec. 2]
    active = (f.model - 12 * m.n_layers * m.n_heads * m.head_dim) / 6
    assert 12.5e9 < active < 13.2e9


def test_lora_rank_raises_flops():
    m = resolve_model("llama-3.2-1b")
    lo = step_flops(m, TrainingSetup(method=Method.LORA, lora=LoraSpec(r=8)))
    hi = step_flops(m, TrainingSetup(method=Method.LORA, lora=LoraSpec(r=64)))
    assert hi.model > lo.model


def test_causal_flash_kernels_compute_half_the_scores_plus_the_diagonal():
    """Executed score FLOPs under a causal mask: s (s + 1) / 2 of s^2 query-key pairs with flash kernels,
    every pair with eager (it masks after the matmul)."""
    from gpuplan.planner.specs.enums import Attention

    m = resolve_model("llama-2-7b")
    T = 4096
    full_scores = 12 * m.n_layers * m.n_heads * m.head_dim * T        # forward + backward, PaLM's count
    sdpa = step_flops(m, TrainingSetup(seq_len=T, checkpointing=Checkpointing.NONE))
    assert sdpa.attention == pytest.approx(full_scores * (T + 1) / (2 * T))
    assert sdpa.model - sdpa.hardware == pytest.approx(full_scores * (T - 1) / (2 * T))
    eager = step_flops(m, TrainingSetup(seq_len=T, checkpointing=Checkpointing.NONE, attention=Attention.EAGER))
    assert eager.attention == full_scores and eager.hardware == eager.model
