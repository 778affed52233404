"""TRL 1.13-1.14's chunked_nll loss (planner/techniques/chunked_nll.py): the bytes follow from TRL's
_chunked_cross_entropy_loss as written, and the combinations TRL refuses are refused."""
import pytest

from gpuplan.planner import TrainingSetup, resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import chunked_nll, loss

LLAMA = resolve_model("llama-3.2-1b")     # h 2048, V 128256, tied
MiB = 2**20


def _bytes(model, **kw):
    setup = TrainingSetup.from_dict({"loss": "chunked-nll", **kw})
    rs = resolve(model, setup)
    T = setup.batch_size * setup.seq_len
    return loss.loss_bytes(model, rs, T, setup.batch_size)


def test_chunks_and_labelled_positions():
    assert chunked_nll.chunks(1) == 1 and chunked_nll.chunks(256) == 1 and chunked_nll.chunks(257) == 2
    assert TrainingSetup().labelled_positions(2 * 1023, 2) == 2046
    assert TrainingSetup(loss_token_fraction=0.1).labelled_positions(2 * 1023, 2) == 205


def test_bf16_lora_bytes_by_hand():
    # bf16 weights, no autocast: no casts; P = 2 x 1023 shifted positions gathered in bf16 with their
    # int64 order and labels; at a chunk four fp32 (256, V) tensors (the upcast logits, log_p, exp, product)
    fwd, saved, bwd = _bytes(LLAMA, method="lora", precision="bf16-true", batch_size=2, seq_len=1024)
    P, h, V = 2046, 2048, 128256
    assert saved == P * h * 2 + 16 * P
    assert fwd == 2048 * h * 2 + saved + 4 * 256 * V * 4
    # backward: the gathered rows' gradient (from the second chunk on) and the recompute's four fp32 tensors
    assert bwd == P * h * 2 + 4 * 256 * V * 4


def test_the_labelled_fraction_matters_only_through_the_chunk_count():
    many = _bytes(LLAMA, method="lora", batch_size=2, seq_len=1024, loss_token_fraction=0.5)
    all_ = _bytes(LLAMA, method="lora", batch_size=2, seq_len=1024, loss_token_fraction=1.0)
    one = _bytes(LLAMA, method="lora", batch_size=2, seq_len=1024, loss_token_fraction=0.1)   # 205 rows: one chunk
    assert many == all_
    assert one[:2] == all_[:2] and all_[2] - one[2] == 2046 * 2048 * 4   # no gradient to accumulate across chunks


def test_a_wide_lm_head_under_autocast_peaks_at_its_per_chunk_cast():
    wide = resolve_model("llama-3.1-8b")   # h 4096: the bf16 cast of the fp32 head (1 GiB) beats four chunks
    fwd, saved, _ = _bytes(wide, method="lora", batch_size=1, seq_len=1024)
    V, h = wide.vocab, wide.hidden
    assert fwd == 1024 * h * 4 + saved + V * h * 2 + 256 * h * 2 + 256 * V * 2


def test_far_below_the_hf_loss_and_independent_of_the_batch_at_the_chunk():
    hf = estimate(LLAMA, TrainingSetup.from_dict({"method": "lora", "batch_size": 4, "seq_len": 4096}))
    cn = estimate(LLAMA, TrainingSetup.from_dict({"method": "lora", "batch_size": 4, "seq_len": 4096,
                                                  "loss": "chunked-nll"}))
    assert cn.peak_allocated_bytes < hf.peak_allocated_bytes - 4 * 2**30
    assert any("chunked_nll" in n for n in cn.notes)


def test_what_trl_refuses_is_refused():
    with pytest.raises(PlannerError, match="use_liger_kernel"):
        TrainingSetup.from_dict({"loss": "chunked-nll", "liger": {"rms_norm": True}}).validate()
    with pytest.raises(PlannerError, match="lm_head"):
        estimate(LLAMA, TrainingSetup.from_dict({"method": "lora", "loss": "chunked-nll",
                                                 "lora": {"targets": ["q_proj", "lm_head"]}}))
    with pytest.raises(NoClosedForm, match="modules_to_save"):
        estimate(LLAMA, TrainingSetup.from_dict({"method": "lora", "loss": "chunked-nll",
                                                 "lora": {"modules_to_save": ["lm_head"]}}))


def test_the_fraction_is_shown_in_the_setup_only_where_it_matters():
    assert "loss_token_fraction" in TrainingSetup.from_dict({"loss": "chunked-nll"}).to_dict()
    assert "loss_token_fraction" not in TrainingSetup().to_dict()


def test_trl_1_12_projects_from_fp32_copies():
    # bf16 weights, no autocast: `h.float() @ w.float().t()` copies the chunk and the whole lm_head to
    # fp32 and multiplies in fp32; on Llama-3.2-1B the head's copy (1 GiB) beats the four chunk tensors
    fwd, saved, bwd = _bytes(LLAMA, method="lora", precision="bf16-true", batch_size=1, seq_len=1024,
                             loss="chunked-nll-fp32")
    h, V, R = 2048, 128256, 256
    assert fwd == 1024 * h * 2 + saved + R * h * 4 + V * h * 4 + R * V * 4
    # backward: the matmul keeps the fp32 head copy for the chunk's input gradient, beside the recompute
    assert bwd == 1023 * h * 2 + max(R * h * 4 + V * h * 4 + R * V * 4, V * h * 4 + 16 * R * V)
    newer = _bytes(LLAMA, method="lora", precision="bf16-true", batch_size=1, seq_len=1024)
    assert fwd - newer[0] == V * h * 4 + R * h * 4 + R * V * 4 - 16 * R * V


def test_trl_1_12_under_autocast_upcasts_inside_log_softmax_and_says_so():
    setup = TrainingSetup.from_dict({"method": "lora", "loss": "chunked-nll-fp32", "batch_size": 2, "seq_len": 512})
    est = estimate(resolve_model("qwen-2.5-0.5b"), setup)
    assert any("fp32 set-opt-dtype" in n for n in est.notes)
