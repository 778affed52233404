"""Cut Cross-Entropy (`--loss cce`, planner/techniques/cut_ce.py): bytes read from apple/ml-cross-entropy
25.6.4's LinearCrossEntropyFunction, hand-derived, and its README's published figure."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Loss, Method, PlannerError, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.fromconfig import read_config
from gpuplan.planner.speed.flops import step_flops
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import Checkpointing
from gpuplan.planner.techniques import cut_ce, loss

GEMMA2 = resolve_model("gemma-2-2b")     # h 2304, V 256000
LLAMA = resolve_model("llama-3.1-8b")    # h 4096, V 128256


def _cce(model, setup: TrainingSetup, T: int, sequences: int = 1) -> tuple[int, int, int]:
    return cut_ce.loss_bytes(model, resolve(model, setup), T, sequences)


def test_bf16_without_autocast_keeps_the_hidden_states_and_three_vectors():
    """bf16-true: no cast. Saved: e (T x h bf16), lse and valids (4 bytes x N each), logit_avg (fp32 V);
    backward: argsort (int64 + int32 of V), de (T x h) and the trained lm_head's dc (V x h), bf16."""
    T, h, V = 8192, GEMMA2.hidden, GEMMA2.vocab
    N = T - 1                                          # shift=True: the last position has no label
    fwd, saved, bwd = _cce(GEMMA2, TrainingSetup(precision=Precision.BF16_TRUE, loss=Loss.CCE), T)
    assert saved == 2 * T * h + 8 * N + 4 * V == 38_838_264
    assert fwd == saved + 4 * N
    assert bwd == 12 * V + 2 * T * h + 2 * V * h == 1_220_468_736


def test_readme_figure_gemma_2_2b():
    """apple/ml-cross-entropy README.md @ d42911f9b1a1f98289bb601c35c8151562603d74: "Taking the Gemma 2 (2B)
    model as an example, CCE reduces the memory footprint of the loss computation from 24 GB to 1 MB,
    and the total training-time memory consumption of the classifier head from 28 GB to 1 GB." (the
    paper's loss benchmark: "a batch of 8,192 tokens", E and C in bf16). The loss's own buffers (lse,
    valids, logit_avg; E and C are the inputs) round to 1 MB; with the gradients de and dc, to 1 GB."""
    T = 8192
    fwd, saved, bwd = _cce(GEMMA2, TrainingSetup(precision=Precision.BF16_TRUE, loss=Loss.CCE), T)
    own = saved - 2 * T * GEMMA2.hidden
    assert round(own / 1e6) == 1
    assert round((own + bwd) / 1e9) == 1


def test_autocast_keeps_bf16_copies_of_the_fp32_hidden_states_and_lm_head():
    """QLoRA: fp32 residual stream and lm_head (prepare_model_for_kbit_training), bf16 autocast:
    `e.to(bf16)` and `c.to(bf16)` (cce.py L71-73) are what save_for_backward keeps."""
    T, h, V = 4 * 4096, LLAMA.hidden, LLAMA.vocab
    _, saved, bwd = _cce(LLAMA, TrainingSetup(method=Method.QLORA, loss=Loss.CCE), T, 4)
    N = T - 4
    assert saved == 2 * T * h + 2 * V * h + 8 * N + 4 * V
    assert bwd == 12 * V + 2 * T * h + 4 * T * h       # de in bf16, then cast back to fp32; lm_head frozen


def test_a_trained_lm_head_adds_its_gradient_and_its_cast_back():
    kw = dict(loss=Loss.CCE, batch_size=1, seq_len=1024)
    full = _cce(LLAMA, TrainingSetup(**kw), 1024)
    lora = _cce(LLAMA, TrainingSetup(method=Method.LORA, **kw), 1024)
    V, h = LLAMA.vocab, LLAMA.hidden
    assert full[2] - lora[2] == 2 * V * h + 4 * V * h   # dc bf16, then .to(fp32)


def test_only_labelled_positions_get_a_log_sum_exp():
    s = TrainingSetup(precision=Precision.BF16_TRUE, loss=Loss.CCE, loss_token_fraction=0.5)
    full = _cce(LLAMA, s.with_(loss_token_fraction=1.0), 4096)
    half = _cce(LLAMA, s, 4096)
    assert full[1] - half[1] == 8 * (4095 - 2048)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "gemma-2-2b", "qwen-2.5-0.5b", "llama-3.2-1b"])
@pytest.mark.parametrize("method", [Method.FULL, Method.LORA, Method.QLORA])
def test_cce_never_raises_the_peak_over_transformers_loss(name, method):
    model = resolve_model(name)
    s = TrainingSetup(method=method, batch_size=2, seq_len=2048, checkpointing=Checkpointing.NONE)
    assert estimate(model, s.with_(loss=Loss.CCE)).peak_allocated_bytes <= estimate(model, s).peak_allocated_bytes


def test_backward_recomputes_the_logits():
    s = TrainingSetup(loss=Loss.CCE)
    extra = step_flops(LLAMA, s).recompute - step_flops(LLAMA, s.with_(loss=Loss.CHUNKED)).recompute
    assert extra == 2 * LLAMA.hidden * LLAMA.vocab


def test_estimate_notes_and_json():
    est = estimate(LLAMA, TrainingSetup(loss=Loss.CCE))
    assert any("Cut Cross-Entropy" in n and "modelled from source, not simulated" in n for n in est.notes)
    assert est.setup["loss"] == "cce" and est.setup["loss_token_fraction"] == 1.0
    assert loss.notes(resolve(LLAMA, TrainingSetup())) == []


def test_cli_and_axolotl_config(tmp_path):
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--loss", "cce", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["setup"]["loss"] == "cce"
    p = tmp_path / "ax.yaml"
    p.write_text("base_model: meta-llama/Llama-3.2-1B\nplugins:\n"
                 "  - axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin\ncut_cross_entropy: true\n")
    assert read_config(str(p)).options["loss"] == "cce"
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--loss", "cce", "--liger"])
    assert r.exit_code == 2 and "not --loss cce" in r.output


def test_the_profiler_refuses_it():
    from gpuplan.profiler.run import measure

    with pytest.raises(PlannerError, match="Cut Cross-Entropy"):
        measure(LLAMA, TrainingSetup(loss=Loss.CCE))
