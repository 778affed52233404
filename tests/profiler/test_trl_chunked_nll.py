"""profiler/trl_chunked_nll.py runs TRL 1.13-1.14's own chunked_nll loss: on real tensors it is the
model's own loss, under the simulator its one host read is answered, and the estimate agrees."""
import pytest
import torch
import transformers

trl = pytest.importorskip("trl", reason="the [trl] extra (TRL 1.13-1.14) runs TRL's own chunked_nll")

from gpuplan.planner import TrainingSetup, resolve_model   # noqa: E402
from gpuplan.planner.memory.estimate import estimate        # noqa: E402
from gpuplan.profiler.simulate import simulate              # noqa: E402
from gpuplan.profiler.trl_chunked_nll import HostCount, answered_chunk_count, chunked_nll_forward   # noqa: E402


def _tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    return transformers.AutoModelForCausalLM.from_config(cfg)


def test_trls_patched_forward_is_the_models_own_loss_and_is_removed_after():
    lm = _tiny()
    ids = torch.randint(0, 97, (2, 300))   # 598 shifted positions: three chunks of 256
    theirs = lm(input_ids=ids, labels=ids).loss
    marks = []
    with chunked_nll_forward(lm, lambda: marks.append(1)):
        out = lm(input_ids=ids, labels=ids)
    torch.testing.assert_close(out.loss, theirs)
    assert out.logits is None and marks == [1]
    assert "forward" not in vars(lm) and lm(input_ids=ids).logits is not None   # the class's forward is back


def test_a_second_host_read_fails_instead_of_being_guessed():
    with pytest.raises(RuntimeError, match="second integer"):
        with HostCount(256):
            t = torch.tensor([3, 4])
            int(t.sum()), int(t.max())
    with pytest.raises(RuntimeError, match="read 0 integers"):
        with answered_chunk_count(TrainingSetup(), 1, 300):
            pass


def test_the_simulated_trl_step_agrees_with_the_estimate():
    model = resolve_model("qwen-2.5-0.5b")
    for kw in ({"method": "lora"}, {"method": "lora", "loss_token_fraction": 0.1}):
        setup = TrainingSetup.from_dict({"loss": "chunked-nll", "batch_size": 2, "seq_len": 256, **kw})
        simulated = simulate(model, setup).peak_allocated_bytes
        assert abs(estimate(model, setup).peak_allocated_bytes / simulated - 1) < 0.01


def test_each_form_names_the_trl_it_needs():
    from gpuplan.planner.specs.enums import Loss
    from gpuplan.planner.specs.errors import PlannerError
    from gpuplan.profiler.trl_chunked_nll import SIMULATED_TRL, _trl_patch
    installed = trl.__version__
    for loss, versions in SIMULATED_TRL.items():
        if installed.startswith(versions):
            assert callable(_trl_patch(loss))
        else:
            with pytest.raises(PlannerError, match="trl==1.1"):
                _trl_patch(loss)
    assert set(SIMULATED_TRL) == {Loss.CHUNKED_NLL, Loss.CHUNKED_NLL_FP32}
