"""The last checkpointed layer's recompute (planner/memory/layers.py mlp_backward_bytes, mlp_output_copy,
head_side): the live set at its gated MLP's MulBackward, checked term by term against what the simulated
step holds there (data/measurements/accuracy_simulate_recompute.json records the whole step)."""
from __future__ import annotations

import pytest

from gpuplan.planner import Component, Phase, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.layers import activation_bytes, mlp_backward_bytes
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import quantization, reward

LLAMA = resolve_model("llama-3.2-1b")     # H 2048, I 8192, tied embeddings, 16 layers
H, I = LLAMA.hidden, LLAMA.intermediate


def _rs(m, **setup):
    return resolve(m, TrainingSetup.from_dict(setup).for_model(m))


def test_qlora_gradients_are_fp32_where_bitsandbytes_returns_fp32():
    """Linear4bit.forward returns `.to(inp_dtype)`: on kbit-prepared QLoRA's fp32 residual the product's, the
    activation's and up's gradients are fp32; the layer output's gradient (fp32) and the reused fp32 input
    cancel. Without the upcast (bf16 residual) all is bf16 and the output's gradient stays."""
    up = _rs(LLAMA, method="qlora")
    assert quantization.base_linear_out_bytes(up) == 4
    assert mlp_backward_bytes(LLAMA, up) == 3 * 4 * I
    bf16 = _rs(LLAMA, method="qlora", kbit_upcast=False)
    assert mlp_backward_bytes(LLAMA, bf16) == 2 * H + 3 * 2 * I


def test_lora_on_an_fp32_base_under_autocast():
    """bf16 matmul outputs; down_proj's bf16 autocast copy is released before MulBackward; the final norm's
    saved fp32 input is released by its backward."""
    rs = _rs(LLAMA, method="lora")
    act = activation_bytes(LLAMA, rs)
    assert act.mlp_backward == 3 * 2 * I
    assert act.mlp_out_copy == 2 * H * I
    assert act.head_side == 4 * H
    quantized = activation_bytes(LLAMA, _rs(LLAMA, method="qlora"))
    assert quantized.mlp_out_copy == 0       # bitsandbytes dequantizes per use: autocast copies nothing


def test_an_adapted_down_proj_releases_what_it_saved():
    """all-linear: down_proj's lora_A saved autocast's bf16 cast of the product and lora_B lora_A's output
    [peft/tuners/lora/layer.py Linear.forward]; its backward has run before MulBackward."""
    default = mlp_backward_bytes(LLAMA, _rs(LLAMA, method="qlora"))
    wide = _rs(LLAMA, method="qlora", lora={"targets": ["all-linear"]})
    assert default - mlp_backward_bytes(LLAMA, wide) == 2 * (I + wide.adapters.r)


def test_full_fine_tuning_releases_down_projs_weight_gradient_input():
    full = _rs(LLAMA, precision="bf16-true")
    assert mlp_backward_bytes(LLAMA, full) == 2 * H + 3 * 2 * I - 2 * I


def test_one_term_for_every_objective():
    """SFT, RewardTrainer's score model and the preference trainers share the layer's term."""
    sft = mlp_backward_bytes(LLAMA, _rs(LLAMA, method="qlora"))
    score = reward.score_model(LLAMA)
    assert mlp_backward_bytes(score, _rs(score, method="qlora", objective="rm")) == sft
    for objective in ("dpo", "kto", "orpo", "grpo"):
        assert mlp_backward_bytes(LLAMA, _rs(LLAMA, method="qlora", objective=objective, loss="trl"
                                              if objective != "orpo" else "hf")) == sft


def test_other_mlps_keep_two_gradients_in_the_output_dtype():
    gpt2 = resolve_model("gpt-2-small")
    rs = _rs(gpt2, method="lora")
    assert mlp_backward_bytes(gpt2, rs) == 2 * rs.residual.bytes * gpt2.hidden + 2 * rs.compute.bytes * gpt2.intermediate


@pytest.mark.parametrize("setup, tokens", [({"method": "qlora", "loss": "chunked"}, 4096),
                                           ({"method": "lora", "objective": "rm"}, 2048)])
def test_the_recompute_point_is_the_backward_peak(setup, tokens):
    """The candidate the step builder takes: the checkpoint inputs and what outlives the head, the recomputed
    layer, one layer's copies less down_proj's, and the MLP backward's gradients."""
    m = reward.model_for(LLAMA, TrainingSetup.from_dict(setup))
    s = TrainingSetup.from_dict({**setup, "batch_size": 4, "seq_len": 1024 if tokens == 4096 else 256})
    est = estimate(LLAMA, s)
    act = activation_bytes(m, resolve(m, s.for_model(m)))
    bwd = est.phase_components[Phase.BACKWARD]
    assert est.peak_phase is Phase.BACKWARD
    assert bwd[Component.ACTIVATIONS] == int(tokens * (m.n_layers * act.ckpt_per_layer + act.outside)) \
        - int(tokens * act.head_side)
    copies = (act.layer_copies + act.adapter_copies) // m.n_layers - act.mlp_out_copy
    assert bwd[Component.TEMPORARIES] == int(tokens * act.per_layer) + copies + int(tokens * act.mlp_backward)
