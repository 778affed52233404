"""Attention masks: what a padded batch, packed samples and a padding-free row cost, and the
combinations refused."""
from __future__ import annotations

import pytest

from gpuplan.planner import Attention, Method, PlannerError, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.enums import Packing, Padding
from gpuplan.planner.specs.setup import Checkpointing

LLAMA = resolve_model("llama-3.2-1b")      # 32 heads, 8 KV heads, head_dim 64, 16 layers
BASE = TrainingSetup(method=Method.LORA, batch_size=2, seq_len=1024, checkpointing=Checkpointing.NONE)


def _per_layer(setup: TrainingSetup, model=LLAMA) -> float:
    return terms(model, setup)[2].per_layer


def test_defaults_are_unpadded_and_left_out_of_the_setup_dict():
    d = BASE.to_dict(LLAMA)
    assert "padding" not in d and "packing" not in d
    padded = BASE.with_(padding=Padding.LONGEST)
    assert padded.to_dict(LLAMA)["padding"] == "longest"
    assert TrainingSetup.from_dict({**padded.to_dict(LLAMA)}).padding is Padding.LONGEST


def test_a_padded_sdpa_layer_saves_the_bias_row_and_kv_expanded_to_every_head():
    """Per token and layer: one (s)-long bias row in bf16, and K/V copied from 8 to 32 heads."""
    e, A, K, s = 2, 32 * 64, 8 * 64, 1024
    delta = _per_layer(BASE.with_(padding=Padding.LONGEST)) - _per_layer(BASE)
    assert delta == e * s + 2 * e * (A - K)


def test_the_bias_is_padded_to_8_keys_and_the_logsumexp_to_32_queries():
    s = 1001
    plain = _per_layer(BASE.with_(seq_len=s))
    padded = _per_layer(BASE.with_(seq_len=s, padding=Padding.MAX_LENGTH))
    e, A, K, a = 2, 32 * 64, 8 * 64, 32
    lse_extra = 4 * a * (1024 - s) / s                  # ceil32(1001) = 1024 rows of logsumexp
    assert padded - plain == pytest.approx(e * 1008 + 2 * e * (A - K) + lse_extra)   # ceil8(1001) = 1008


def test_packed_rows_cost_what_a_padded_batch_costs_with_sdpa():
    assert _per_layer(BASE.with_(packing=Packing.ROWS)) == _per_layer(BASE.with_(padding=Padding.LONGEST))


def test_packing_with_flash_attention_is_varlen_without_a_mask():
    flash = BASE.with_(attention=Attention.FLASH)
    assert _per_layer(flash.with_(packing=Packing.ROWS)) == _per_layer(flash)
    assert estimate(LLAMA, flash.with_(packing=Packing.FLATTENED)).peak_allocated_bytes == \
        estimate(LLAMA, flash).peak_allocated_bytes


def test_padding_free_with_sdpa_makes_one_row_whose_mask_is_b_times_longer():
    flat = estimate(LLAMA, BASE.with_(packing=Packing.FLATTENED))
    rows = estimate(LLAMA, BASE.with_(packing=Packing.ROWS))
    L, e, T = LLAMA.n_layers, 2, 2 * 1024
    assert flat.peak_allocated_bytes - rows.peak_allocated_bytes == L * T * e * 1024   # rows of 2048, not 1024
    assert flat.setup["batch_size"] == 2 and flat.setup["seq_len"] == 1024 and flat.setup["packing"] == "flattened"
    assert any("one row of 2048 tokens" in n for n in flat.notes)


def test_eager_attention_builds_its_mask_anyway():
    eager = BASE.with_(attention=Attention.EAGER)
    assert estimate(LLAMA, eager.with_(padding=Padding.LONGEST)).peak_allocated_bytes == \
        estimate(LLAMA, eager).peak_allocated_bytes


def test_checkpointing_keeps_the_bool_mask_for_every_layer_recompute():
    ckpt = BASE.with_(checkpointing=Checkpointing.FULL)
    outside = terms(LLAMA, ckpt.with_(padding=Padding.LONGEST))[2].outside - terms(LLAMA, ckpt)[2].outside
    assert outside == 1024           # one bool (b, 1, s, s): s bytes per token


def test_memory_never_shrinks_when_a_mask_is_added():
    for setup in (BASE, BASE.with_(method=Method.FULL), BASE.with_(checkpointing=Checkpointing.FULL)):
        assert estimate(LLAMA, setup.with_(padding=Padding.LONGEST)).peak_allocated_bytes >= \
            estimate(LLAMA, setup).peak_allocated_bytes


def test_flash_on_a_padded_batch_keeps_o_projs_input_apart_only_when_o_proj_trains():
    flash = BASE.with_(attention=Attention.FLASH)
    full = flash.with_(method=Method.FULL)
    A, e = 32 * 64, 2
    assert _per_layer(flash.with_(padding=Padding.LONGEST)) == _per_layer(flash)          # LoRA q/v: o_proj frozen
    assert _per_layer(full.with_(padding=Padding.LONGEST)) - _per_layer(full) == e * A
    assert any("not simulated" in n for n in estimate(LLAMA, full.with_(padding=Padding.LONGEST)).notes)


@pytest.mark.parametrize("changes, words", [
    (dict(padding=Padding.LONGEST, packing=Packing.ROWS), "exclude each other"),
])
def test_impossible_combinations_are_refused_naming_both_knobs(changes, words):
    with pytest.raises(PlannerError, match=words):
        estimate(LLAMA, BASE.with_(**changes))


def test_sliding_window_layers_get_a_mask_once_the_keys_reach_the_window():
    """Gemma-3-1B: 22 of 26 layers slide (every 6th is global), window 512 [transformers Gemma3TextConfig];
    Mistral-7B-v0.1: every layer, window 4096; v0.3 has no window."""
    from gpuplan.planner.specs.resolved import resolve
    from gpuplan.planner.techniques import masks

    gemma = resolve_model("gemma-3-1b")
    assert gemma.sliding_window == 512 and gemma.sliding_layers == 22 and gemma.n_layers == 26
    rs = resolve(gemma, BASE)
    assert masks.masked_layers(gemma, rs, 511) == 0 and masks.masked_layers(gemma, rs, 512) == 22
    assert masks.masked_layers(gemma, resolve(gemma, BASE.with_(padding=Padding.LONGEST)), 512) == 26
    assert masks.masked_layers(gemma, resolve(gemma, BASE.with_(attention=Attention.FLASH)), 4096) == 0
    assert resolve_model("mistral-7b-v0.1").sliding_layers == 32 and resolve_model("mistral-7b-v0.3").sliding_layers == 0
    short, long = (estimate(gemma, BASE.with_(seq_len=s)) for s in (511, 512))
    assert any("sliding window (512)" in n for n in long.notes) and not any("sliding" in n for n in short.notes)
