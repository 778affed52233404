"""LoRA variants from papers peft lacks (planner/techniques/lora_variants.py): DyLoRA is LoRA at its maximum rank,
Delta-LoRA adds its in-place update's temporaries, LongLoRA and RoSA are refused naming what is missing."""
import pytest

from gpuplan.planner import PlannerError, estimate
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.states import states
from gpuplan.planner.specs.enums import LoraVariant, Method
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import LoraSpec, TrainingSetup

M = resolve_model("llama-3.2-1b")


def setup(variant: LoraVariant, method: Method = Method.LORA, **lora) -> TrainingSetup:
    spec = LoraSpec(**{"r": 16, "targets": ("q_proj", "k_proj", "v_proj", "o_proj"), **lora, "variant": variant})
    return TrainingSetup(method=method, lora=spec, batch_size=2, seq_len=512)


def test_dylora_is_lora_at_its_maximum_rank_and_says_so():
    plain, dy = estimate(M, setup(LoraVariant.NONE)), estimate(M, setup(LoraVariant.DYLORA))
    assert dy.peak_allocated_bytes == plain.peak_allocated_bytes and dy.phase_components == plain.phase_components
    assert any("DyLoRA" in n and "r = 16" in n for n in dy.notes)
    assert estimate(M, setup(LoraVariant.DYLORA, Method.QLORA)).peak_allocated_bytes > 0   # on a 4-bit base too


def test_delta_lora_holds_the_adapters_copies_and_one_linears_products():
    plain, delta = (states(M, resolve(M, setup(v))) for v in (LoraVariant.NONE, LoraVariant.DELTA_LORA))
    q, kv = M.n_heads * M.head_dim, M.n_kv_heads * M.head_dim
    adapters = M.n_layers * 16 * ((M.hidden + q) + 2 * (M.hidden + kv) + (q + M.hidden))   # r (in + out) each
    assert adapters == plain.trainable_params
    largest = M.hidden * M.n_heads * M.head_dim          # q_proj / o_proj: hidden x hidden
    rs = resolve(M, setup(LoraVariant.DELTA_LORA))
    assert delta.optimizer_step_temporaries - plain.optimizer_step_temporaries == \
        4 * adapters + largest * (2 * 4 + rs.frozen.bytes)
    assert delta.gradients == plain.gradients and delta.optimizer_state == plain.optimizer_state   # W has neither
    assert any("Delta-LoRA" in n for n in estimate(M, setup(LoraVariant.DELTA_LORA)).notes)


@pytest.mark.parametrize("s, words", [
    (setup(LoraVariant.LONGLORA), "S\\^2-Attn .* not in transformers or peft"),
    (setup(LoraVariant.ROSA), "peft-rosa.*spops"),
    (setup(LoraVariant.DELTA_LORA, Method.QLORA), "cannot be updated"),
    (setup(LoraVariant.DELTA_LORA, dropout=0.1), "--lora-dropout 0"),
    (setup(LoraVariant.DYLORA, use_dora=True), "--use-dora"),
    (TrainingSetup(lora=LoraSpec(variant=LoraVariant.DYLORA)), "--lora-variant"),
])
def test_refusals_are_one_line_naming_what_is_missing(s, words):
    with pytest.raises(PlannerError, match=words):
        estimate(M, s)


def test_the_variant_round_trips_and_shows_only_when_set():
    s = setup(LoraVariant.DELTA_LORA)
    assert s.to_dict()["lora"]["variant"] == "delta-lora"
    assert TrainingSetup.from_dict(s.to_dict()).to_dict() == s.to_dict()
    assert "variant" not in setup(LoraVariant.NONE).to_dict()["lora"]
