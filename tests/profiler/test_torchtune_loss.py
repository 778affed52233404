"""profiler/torchtune_loss.py computes the same loss as transformers' (same math, chunked), on real
tensors of a tiny Llama."""
import torch
import transformers

from gpuplan.profiler.torchtune_loss import chunked_output_loss


def test_chunked_output_loss_equals_the_models_own():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    lm = transformers.AutoModelForCausalLM.from_config(cfg)
    ids = torch.randint(0, 97, (2, 21))
    ours = chunked_output_loss(lm, ids)
    theirs = lm(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    assert lm.lm_head.weight.grad is not None
