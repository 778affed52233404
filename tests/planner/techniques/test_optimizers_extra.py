"""planner/techniques/optimizers.py, the optimizers beyond HF's AdamW family: GaLore's projectors
and low-rank states, torchao's block-quantized states, schedule-free AdamW; each against its
library's rule (the profiler's tests check them against the real optimizers' state)."""
from __future__ import annotations

import pytest

from gpuplan.planner import Optimizer, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.optim import OptimSpec
from gpuplan.planner.techniques import optimizers as O

QWEN = "qwen-2.5-0.5b"


def _states(name: str, **kw):
    model = resolve_model(name)
    return terms(model, TrainingSetup(batch_size=1, seq_len=64, **kw))[1]


def test_galore_fp32_projector_keeps_the_whole_svd_factor_16_bit_keeps_r_rows():
    # (4864, 896) gate_proj, rank 128: right projector Vh[:128] of the (896, 896) Vh
    state32, _ = O.galore_tensor(4864, 896, 128, 4)
    assert state32 == 896 * 896 * 4 + 2 * 4864 * 128 * 4
    state16, _ = O.galore_tensor(4864, 896, 128, 2)
    assert state16 == 128 * 896 * 2 + 2 * 4864 * 128 * 2
    # wide weight (rows < cols): left projector U[:, :r] of the (rows, rows) U, states (r, cols)
    assert O.galore_tensor(896, 4864, 128, 4)[0] == 896 * 896 * 4 + 2 * 128 * 4864 * 4
    # a rank above min(rows, cols) projects to min(rows, cols)
    assert O.galore_tensor(128, 896, 256, 2)[0] == 128 * 128 * 2 + 2 * 128 * 896 * 2


def test_galore_targets_follow_optim_target_modules():
    model = resolve_model(QWEN)
    every = O.galore_targets(model, ())
    assert len(every) == len(model.dense_linears)
    assert [r for r, c, n in O.galore_targets(model, ("q_proj", "v_proj"))] == [896, 128]
    assert O.galore_targets(model, ("attn",)) == every[:4]
    untied = resolve_model("tinyllama-1.1b")
    assert (untied.vocab, untied.hidden, 1) in O.galore_targets(untied, ("all-linear",))
    assert (untied.vocab, untied.hidden, 1) not in O.galore_targets(untied, ())


def test_galore_holds_less_state_than_adamw_and_less_with_a_lower_rank():
    adamw = _states(QWEN, optimizer=Optimizer.ADAMW).optimizer_state
    galore = _states(QWEN, optimizer=Optimizer.GALORE_ADAMW).optimizer_state
    low = _states(QWEN, optimizer=Optimizer.GALORE_ADAMW, optim=OptimSpec(rank=16)).optimizer_state
    assert low < galore < adamw


def test_torchao_states_codes_scales_and_qmap_per_tensor():
    n = 4864 * 896
    assert O.torchao_state(n, 4, 8, 256) == 2 * (n + 4 * n // 256 + 256 * 4)
    assert O.torchao_state(n, 4, 4, 128) == 2 * (n // 2 + 4 * n // 128 + 16 * 4)
    assert O.torchao_state(896, 4, 8, 256) == 2 * 896 * 4          # under 4096 elements: zeros_like(p)
    assert O.torchao_state(4096 + 128, 2, 8, 256) == 2 * (4096 + 128) * 2   # not a whole number of blocks
    eight = _states(QWEN, optimizer=Optimizer.TORCHAO_ADAMW_8BIT).optimizer_state
    four = _states(QWEN, optimizer=Optimizer.TORCHAO_ADAMW_4BIT).optimizer_state
    assert four < eight < _states(QWEN, optimizer=Optimizer.ADAMW).optimizer_state


def test_schedule_free_adamw_keeps_z_and_the_second_moment_and_one_foreach_list():
    sf, adamw = (_states(QWEN, optimizer=o, precision=Precision.BF16_TRUE)
                 for o in (Optimizer.SCHEDULE_FREE_ADAMW, Optimizer.ADAMW))
    assert (sf.optimizer_state, sf.optimizer_step_temporaries) == (adamw.optimizer_state, adamw.optimizer_step_temporaries)


def test_tensor_inventory_sums_to_the_parameter_count():
    from gpuplan.planner.specs.params import param_counts
    for name in (QWEN, "tinyllama-1.1b", "gpt-2-small", "gemma-2-2b", "mixtral-8x7b"):
        model = resolve_model(name)
        assert sum(n * c for n, c in O.tensor_inventory(model)) == param_counts(model).total


def test_galore_svd_is_amortized_over_update_proj_gap():
    model = resolve_model(QWEN)
    per200 = O.galore_svd_flops_per_step(model, 128, 200, ())
    assert O.galore_svd_flops_per_step(model, 128, 100, ()) == pytest.approx(2 * per200)
    assert O.svd_flops(896, 4864) == O.svd_flops(4864, 896) == 4 * 4864 * 896 ** 2 + 8 * 896 ** 3


@pytest.mark.parametrize("opt", sorted(O.EXTRA, key=lambda o: o.value))
def test_each_new_optimizer_estimates_and_refuses_lora_where_planned_for_full(opt):
    model = resolve_model(QWEN)
    assert estimate(model, TrainingSetup(optimizer=opt)).peak_allocated_bytes > 0


def test_muon_keeps_one_momentum_buffer_per_matrix_and_adamw_states_for_the_rest():
    from gpuplan.planner.specs.params import param_counts
    model = resolve_model(QWEN)
    mats = sum(r * c * n for r, c, n in O.muon_matrices(model))
    rest = param_counts(model).total - mats
    assert 0 < rest < mats // 100          # norms and biases
    st = _states(QWEN, optimizer=Optimizer.MUON, precision=Precision.BF16_TRUE)
    assert st.optimizer_state == mats * 2 + 2 * rest * 2
    # the Newton-Schulz step of the largest matrix: update, two bf16 iterates, two (s, s) bf16 grams
    v, h = model.vocab, model.hidden
    assert st.optimizer_step_temporaries >= v * h * 2 + 2 * v * h * 2 + 2 * h * h * 2


def test_apollo_random_projector_is_not_clamped_and_keeps_the_weight_dtype():
    assert O.apollo_tensor(4864, 896, 128, 2)[0] == 128 * 896 * 2 + 2 * 4864 * 128 * 2 + 2
    assert O.apollo_tensor(128, 896, 256, 4)[0] == 128 * 256 * 4 + 2 * 256 * 896 * 4 + 4   # left, rank 256 > 128
    galore = _states(QWEN, optimizer=Optimizer.GALORE_ADAMW).optimizer_state
    apollo = _states(QWEN, optimizer=Optimizer.APOLLO_ADAMW).optimizer_state
    assert apollo < galore   # fp32: no whole SVD factor held
