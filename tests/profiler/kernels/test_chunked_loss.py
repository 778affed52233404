"""profiler/kernels/chunked_loss.py: the fused linear cross-entropy computes the real loss and gradients,
and never materializes the (tokens, vocab) logits."""
import pytest
import torch

from gpuplan.planner import Component, Loss, Method, Phase, TrainingSetup
from gpuplan.profiler.kernels.chunked_loss import FusedLinearCrossEntropy, chunk_rows
from gpuplan.profiler.simulate import simulate


def test_chunk_rows_follow_liger_budget():
    # Liger's own example: BT = 4096*4, V = 32000, H = 4096 -> 2048 rows per chunk
    assert chunk_rows(4096 * 4, 4096, 32000) == 2048
    assert chunk_rows(8, 64, 256) == 2            # 8 / ceil(256/64)=4 -> 2
    assert chunk_rows(3, 64, 64) == 3             # never more rows than tokens


@pytest.mark.parametrize("weight_grad", [True, False])
def test_loss_and_gradients_equal_plain_cross_entropy(weight_grad):
    torch.manual_seed(0)
    T, H, V = 37, 16, 100
    x = torch.randn(T, H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, H, dtype=torch.float64, requires_grad=weight_grad)
    target = torch.randint(0, V, (T,))
    target[-1] = -100
    n = int((target != -100).sum())
    fused = FusedLinearCrossEntropy.apply(x, w, target, n)
    fused.backward()
    gx, gw = x.grad.clone(), (w.grad.clone() if weight_grad else None)
    x.grad = None
    w.grad = None
    plain = torch.nn.functional.cross_entropy(x @ w.t(), target, ignore_index=-100)
    plain.backward()
    tol = dict(rtol=1e-4, atol=1e-6)        # the softmax runs in fp32, as Liger's kernel does
    assert fused.dtype == torch.float32 and torch.allclose(fused.double(), plain, **tol)
    assert torch.allclose(gx, x.grad, **tol)
    if weight_grad:
        assert torch.allclose(gw, w.grad, **tol)


def test_simulated_step_never_holds_the_logits(tiny):
    setup = TrainingSetup(batch_size=2, seq_len=64, loss=Loss.CHUNKED, method=Method.LORA)
    m = simulate(tiny, setup)
    full_logits_fp32 = 2 * 64 * tiny.vocab * 4
    assert m.phase_components[Phase.FORWARD][Component.LOGITS] < full_logits_fp32
    hf = simulate(tiny, setup.with_(loss=Loss.HF))
    assert m.peak_allocated_bytes < hf.peak_allocated_bytes
