"""The losses' bytes: HF's fp32 logits against the fused heads that never build them."""
from __future__ import annotations

from gpuplan.planner import Component, Loss, Method, Phase, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import loss

LLAMA = resolve_model("llama-3.1-8b")


def _bytes(setup: TrainingSetup, model=LLAMA) -> tuple[int, int, int]:
    return loss.loss_bytes(model, resolve(model, setup), setup.batch_size * setup.seq_len, setup.batch_size)


def test_trl_fused_head_never_builds_the_logits():
    hf = _bytes(TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=4096))
    trl = _bytes(TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=4096, loss=Loss.TRL))
    assert trl[0] < hf[0] / 20 and trl[2] < hf[2] / 20     # 128k vocabulary: logits dwarf hidden states


def test_trl_gathers_only_the_labelled_positions():
    """QLoRA on Llama-3.1-8B (fp32 residual under bf16 autocast): halving the labelled positions
    removes half of the gathered fp32 hidden states, int64 targets and fp32 vectors."""
    s = TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=4097, loss=Loss.TRL)   # both over one tile
    full, half = _bytes(s), _bytes(s.with_(loss_token_fraction=0.5))
    n_full, n_half = 4 * 4096, 2 * 4096
    per_position = 4096 * 4 + 8 + 7 * 4        # gathered hidden (fp32) + target + online-logsumexp vectors
    assert full[0] - half[0] == (n_full - n_half) * per_position


def test_trl_backward_accumulates_the_lm_head_gradient_in_fp32_only_when_it_trains():
    kw = dict(batch_size=1, seq_len=1024, loss=Loss.TRL, precision=Precision.BF16_TRUE)
    full = _bytes(TrainingSetup(**kw))
    lora = _bytes(TrainingSetup(method=Method.LORA, **kw))
    V, h = LLAMA.vocab, LLAMA.hidden
    assert full[2] - lora[2] == 4 * V * h + 2 * V * h      # fp32 accumulator, then its bf16 cast


def test_trl_loss_fits_a_24gb_card_where_the_hf_loss_does_not():
    """The README's example: Llama-3.1-8B QLoRA at 4 x 4096 on an RTX 4090 (23.99 GiB)."""
    base = TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=4096)
    card = 25_757_220_864
    assert estimate(LLAMA, base).device_total_bytes > card
    assert estimate(LLAMA, base.with_(loss=Loss.TRL)).device_total_bytes < card


def test_trl_loss_keeps_no_autocast_copy_of_the_lm_head():
    s = TrainingSetup(batch_size=1, seq_len=512, loss=Loss.TRL)          # full fine-tuning, bf16-mixed
    e = estimate(resolve_model("qwen-2.5-0.5b"), s)
    hf = estimate(resolve_model("qwen-2.5-0.5b"), s.with_(loss=Loss.HF))
    m = resolve_model("qwen-2.5-0.5b")
    fwd = {x: y.phase_components[Phase.FORWARD][Component.ACTIVATIONS] for x, y in (("trl", e), ("hf", hf))}
    assert fwd["hf"] - fwd["trl"] == 2 * m.vocab * m.hidden       # autocast's cached bf16 copy of the lm_head
    assert "TRL >= 1.15 fused LM head" in " ".join(e.notes) and "loss_token_fraction" in e.setup
