"""torchao float8 training: the closed form (planner/techniques/fp8.py) and its refusals."""
from __future__ import annotations

import pytest

from gpuplan.planner import TrainingSetup
from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.enums import Component as C, Fp8, Fp8Linears, Phase
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.techniques import fp8

QWEN = resolve_model("qwen2.5-0.5b")
BASE = {"precision": "bf16-true", "checkpointing": "none", "batch_size": 1, "seq_len": 256}


def _est(**kw):
    return estimate(QWEN, TrainingSetup.from_dict({**BASE, **kw}))


def test_dict_shows_fp8_only_when_set_and_round_trips():
    plain = TrainingSetup.from_dict(BASE)
    assert "fp8" not in plain.to_dict() and "fp8_linears" not in plain.to_dict()
    s = TrainingSetup.from_dict({**BASE, "fp8": "rowwise", "fp8_linears": "all"})
    d = s.to_dict()
    assert d["fp8"] == "rowwise" and d["fp8_linears"] == "all"
    back = TrainingSetup.from_dict(d)
    assert back.fp8 is Fp8.ROWWISE and back.fp8_linears is Fp8Linears.ALL


def test_accelerate_filter_changes_nothing_in_bf16_true():
    """Converted decoder linears save what nn.Linear saves; their casts stay under the loss's peak
    (the simulator's phase peaks are byte-identical to bf16 for this model)."""
    assert _est(fp8="tensorwise").phases == _est().phases


def test_converted_lm_head_forward_is_its_weight_cast():
    T, V, h = 256, QWEN.vocab, QWEN.hidden
    plain, all8 = _est(), _est(fp8="tensorwise", fp8_linears="all")
    f0, f8 = plain.phase_components[Phase.FORWARD], all8.phase_components[Phase.FORWARD]
    assert f8[C.LOGITS] == 0 and f8[C.TEMPORARIES] == T * h + 9 * V * h   # fp8 input + the weight's cast
    assert f8[C.ACTIVATIONS] == f0[C.ACTIVATIONS]
    # rowwise keeps one fp32 scale per row of the weight beside its fp8 data
    row = _est(fp8="rowwise", fp8_linears="all").phases[Phase.FORWARD]
    assert row - all8.phases[Phase.FORWARD] == 4 * V


def test_converted_lm_head_backward():
    T, V, h = 256, QWEN.vocab, QWEN.hidden
    b = _est(fp8="tensorwise", fp8_linears="all").phase_components[Phase.BACKWARD]
    assert b[C.TEMPORARIES] == 2 * T * V + T * V + 9 * V * h   # bf16 grad of logits, fp8 copy, weight cast


def test_all_linears_never_below_accelerate_filter():
    for s in (256, 1024):
        lo = _est(fp8="tensorwise", seq_len=s).peak_allocated_bytes
        assert _est(fp8="tensorwise", fp8_linears="all", seq_len=s).peak_allocated_bytes >= lo


def test_autocast_copies_dropped_for_converted_linears():
    """bf16-mixed: Float8Linear casts the fp32 weight to fp8 itself, autocast caches no bf16 copy;
    layer 0's first linear (unconverted under accelerate's filter) keeps its copy."""
    mixed = {"precision": "bf16-mixed"}
    plain, f8 = _est(**mixed), _est(**mixed, fp8="tensorwise")
    first = QWEN.dense_linears[0]
    linear_params = sum(lin.param_count for lin in QWEN.dense_linears) * QWEN.n_layers
    drop = 2 * (linear_params - first.param_count)
    assert plain.phase_components[Phase.FORWARD][C.ACTIVATIONS] - f8.phase_components[Phase.FORWARD][C.ACTIVATIONS] \
        == drop
    assert any("not simulated" in n for n in f8.notes)


@pytest.mark.parametrize("kw, words", [
    ({"method": "qlora"}, "not nn.Linear"),
    ({"method": "lora"}, "--method lora"),
    ({"precision": "fp16-mixed"}, "--precision fp16-mixed"),
    ({"compile": "inductor"}, "--compile"),
    ({"loss": "chunked"}, "--loss chunked"),
])
def test_refusals(kw, words):
    with pytest.raises(PlannerError, match=words.replace("-", r"\-")):
        _est(fp8="tensorwise", **kw)


def test_gpu_without_fp8_tensor_cores_refused():
    s = TrainingSetup.from_dict({**BASE, "fp8": "tensorwise"})
    for name in ("h100", "h200", "l40s", "rtx-4090", "b200"):
        fp8.check_gpu(s, resolve_gpu(name))
    for name in ("a100-80gb", "t4", "rtx-3090", "mi300x"):
        with pytest.raises(PlannerError, match="--fp8 tensorwise on"):
            fp8.check_gpu(s, resolve_gpu(name))
    fp8.check_gpu(TrainingSetup.from_dict(BASE), resolve_gpu("t4"))   # no --fp8: nothing to refuse


def test_largest_decoder_linear_casts():
    """The worst converted decoder linear (Qwen2.5-0.5B's MLP, 896 x 4864): its fp8 input and its
    weight's 9-byte-per-element cast in the forward; grad_output in bf16 plus the larger of its own
    cast and the weight's (with the fp8 grad_output held) in the backward."""
    rs_setup = TrainingSetup.from_dict({**BASE, "fp8": "tensorwise"})
    from gpuplan.planner.specs.resolved import resolve

    rs = resolve(QWEN, rs_setup)
    T, h, inter = 256, QWEN.hidden, QWEN.intermediate
    n = h * inter
    assert fp8.layer_forward_peak(QWEN, rs, T) == T * inter + 9 * n   # down_proj reads the intermediate
    # backward: gate/up write the wider (T, 4864) grad_output
    assert fp8.layer_backward_peak(QWEN, rs, T) == 2 * T * inter + max(9 * T * inter, T * inter + 9 * n)
    assert fp8.head_forward_peak(QWEN, rs, T) == 0   # accelerate's filter keeps the lm_head in bf16
