"""profiler/trl_steps.py runs ORPO's loss through TRL's own ORPOTrainer methods; on real tensors of a tiny
Llama (TRL's CPU log-prob fallback) it equals ORPO's loss written out from the paper's Eqs. 6-7 as TRL
implements them. Needs TRL (skipped without it)."""
import pytest
import torch
import transformers

pytest.importorskip("trl")
pytest.importorskip("datasets")

from gpuplan.profiler.trl_steps import ORPO_BETA, orpo_loss, preference_batch  # noqa: E402


def _tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.AutoModelForCausalLM.from_config(cfg)


def _by_hand(lm, batch):
    """NLL of the chosen sequence (every position), minus beta x mean log sigmoid(log odds ratio) of the
    length-averaged completion log-probs [trl/experimental/orpo/orpo_trainer.py, TRL 1.16.0]."""
    out = {}
    for side in ("chosen", "rejected"):
        logits = lm(batch[f"{side}_input_ids"]).logits[:, :-1].float()
        labels = batch[f"{side}_labels"][:, 1:]
        logps = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        out[side] = logps.mean(-1)
        if side == "chosen":
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
    c, r = out["chosen"], out["rejected"]
    log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
    return nll - ORPO_BETA * torch.nn.functional.logsigmoid(log_odds).mean()


def test_orpo_loss_is_trls_orpo_loss():
    lm = _tiny()
    batch = preference_batch(3, 11, 97, torch.device("cpu"))
    ours = orpo_loss(lm, 3, 11, 97, torch.device("cpu"), batch=batch)   # TRL's CPU fallback: real values
    torch.testing.assert_close(ours, _by_hand(lm, batch))
    ours.backward()
    assert lm.lm_head.weight.grad is not None


def test_the_kernel_stand_in_allocates_as_trls_triton_function():
    from trl.trainer import utils

    from gpuplan.profiler.kernels.trl_logprob import trl_logprob_kernel

    logits = torch.randn(2, 5, 97, dtype=torch.bfloat16, requires_grad=True)
    index = torch.randint(0, 97, (2, 5))
    before = utils._supports_trl_loss_kernel
    with trl_logprob_kernel():
        logps = utils.selective_log_softmax(logits, index)
        assert logps.shape == (2, 5) and logps.dtype is torch.float32   # fp32, of the index's shape
        (grad,) = torch.autograd.grad(logps.sum(), logits)
    assert grad.shape == logits.shape and grad.dtype is logits.dtype and grad.is_contiguous()
    assert utils._supports_trl_loss_kernel is before                    # restored after the block
    assert utils.selective_log_softmax(logits, index).dtype is torch.bfloat16   # TRL's CPU fallback again
