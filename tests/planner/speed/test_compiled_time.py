"""torch.compile in the time model: inductor's fused kernels move fewer bytes than eager's, term by term."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.io.published import load_published
from gpuplan.planner.plans.evidence import time_class
from gpuplan.planner.specs.enums import Compile, Loss
from gpuplan.planner.specs.setup import Checkpointing, TrainingSetup
from gpuplan.planner.speed import compiled
from gpuplan.planner.speed.kernels import _layer_bytes_forward, step_traffic
from gpuplan.planner.speed.throughput import step_time


def test_fused_layer_saves_the_norm_activation_and_rope_passes():
    m = resolve_model("llama-3.2-1b")          # h 2048, I 8192, 32 q heads / 8 kv heads of 64
    e = r = 2
    h, I, A, K = m.hidden, m.intermediate, m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    eager = _layer_bytes_forward(m, m.dense_linears, False, e, r, 0)
    fused = compiled.layer_bytes_forward(m, m.dense_linears, False, e, r)
    # norms (20 + 2e) h -> (r + e) h each, SiLU x up 5 I e -> 3 I e, RoPE 7 (A + K) e -> 2 (A + K) e
    saved = 2 * h * (20 + 2 * e - r - e) + 2 * I * e + 5 * (A + K) * e
    assert eager - fused == saved == 2 * 2048 * 20 + 2 * 8192 * 2 + 5 * 2560 * 2 == 140288


def test_compiled_loss_reads_the_logits_three_times_and_writes_their_gradient_once():
    m = resolve_model("llama-3.2-1b")
    s = TrainingSetup(batch_size=1, seq_len=1024, checkpointing=Checkpointing.NONE)
    eager, fused = step_traffic(m, s), step_traffic(m, s.with_(compile=Compile.INDUCTOR))
    layers = m.n_layers * (_layer_bytes_forward(m, m.dense_linears, False, 2, 4, 0)
                           - compiled.layer_bytes_forward(m, m.dense_linears, False, 2, 4)) * 3
    # HF loss (3e + 28) V -> 4 e V, the layers' savings over forward and backward (1 + 2)
    assert eager.bytes_per_token - fused.bytes_per_token == pytest.approx(layers + (3 * 2 + 28 - 8) * m.vocab)
    assert eager.weight_bytes == fused.weight_bytes and eager.layer_passes == fused.layer_passes


def test_compile_never_slows_a_step_and_times_what_the_memory_model_refuses():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("a100-80gb")
    for s in (TrainingSetup(batch_size=2, seq_len=2048, checkpointing=Checkpointing.NONE),
              TrainingSetup(batch_size=2, seq_len=2048, loss=Loss.CHUNKED)):   # checkpointed: memory refuses compile
        eager, fused = step_time(m, s, g), step_time(m, s.with_(compile=Compile.INDUCTOR), g)
        assert fused.total < eager.total
        assert fused.compute == eager.compute and fused.overhead == eager.overhead   # GEMMs and launches unchanged


def test_published_compile_rows_are_scored_not_excluded():
    runs = [r for r in load_published() if any("torch.compile" in u for u in r.unmodelled) and r.mapping]
    assert runs and all(r.time_setup().compile is Compile.INDUCTOR for r in runs)
    by_id = {r.id: r for r in runs}
    assert time_class(by_id["torchtune-flags-l323b-compile"]) == "mild"            # packed rows: mild
    assert time_class(by_id["torchtune-l318b-full-a6000"]) == "distorting"         # other reasons stay


def test_the_step_says_what_it_modelled_from_source():
    m, g = resolve_model("llama-3.2-1b"), resolve_gpu("a100-80gb")
    s = TrainingSetup(batch_size=1, seq_len=1024, checkpointing=Checkpointing.NONE)
    names = lambda st: {a.name for a in st.assumptions}   # noqa: E731
    assert "compile_fused_kernels" in names(step_time(m, s.with_(compile=Compile.INDUCTOR), g))
    assert "compile_fused_kernels" not in names(step_time(m, s, g))
