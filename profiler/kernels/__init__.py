"""Stand-ins for kernels that only CUDA (or only a GPU library) runs, so that simulate() counts the
bytes a GPU run allocates, not those of the CPU kernels it would otherwise take. Each stands in for
memory behaviour only (shapes, dtypes, lifetimes); under FakeTensorMode nothing is computed. The
measuring code (profiler/build.py, step.py, simulate.py) picks them; nothing here measures.

| module | stands in for | how it was checked against the real thing |
|---|---|---|
| attention.py | CUDA flash attention: SDPA's flash backend (`aten._scaled_dot_product_flash_attention`, via transformers' `sdpa_attention_forward`) and flash-attn 2 (`attn_implementation="flash_attention_2"`) | forward's saved tensors equal, byte for byte, those of torch's CPU build of the same kernel (tests/profiler/kernels/test_attention.py); simulate() and a real CPU run differ by no more than the stand-in's backward transients (tests/profiler/test_cpu.py). The CUDA-only parts (native GQA, the backward's fp32 dq accumulator and softmax_d) are read from the kernel source it cites, not measured on a GPU. |
| dropout.py | CUDA's fused dropout (`aten.native_dropout`, a bool mask), where a CPU tensor keeps an input-dtype mask | the autograd node left behind is native_dropout's with a bool mask, and without the stand-in the CPU's input-dtype one (tests/profiler/kernels/test_dropout.py) |
| bnb_linear.py | bitsandbytes' `Linear4bit` / `Linear8bitLt` and the QLoRA recipe (`from_pretrained(quantization_config=...)`, `prepare_model_for_kbit_training`), whose CUDA kernels cannot quantize a fake tensor | against real bitsandbytes on CPU (tests/profiler/kernels/test_bnb_linear.py): every module's tensors, a 4-bit linear's forward/backward allocation by allocation, a whole QLoRA step's phase peaks and allocation multiset, LLM.int8()'s saved tensors; where bitsandbytes' CPU and CUDA paths differ the stand-in follows the CUDA source, as that file's docstring lists; tests/profiler/test_cpu.py runs real bitsandbytes beside it |
| bnb_optim.py | the bitsandbytes optimizers HF Trainer builds (`adamw_bnb_8bit`, `paged_adamw_8bit`, `paged_adamw_32bit`, `lion_32bit`), paging as on CUDA | state tensor by tensor against `Trainer(optim=...).create_optimizer()` stepped on real CPU tensors, paged bytes accounted apart (tests/profiler/kernels/test_bnb_optim.py) |
| chunked_loss.py | Liger Kernel's fused linear + cross-entropy (`--loss chunked`; Triton, GPU only) | loss and gradients equal plain cross-entropy on real tensors, chunk sizes follow Liger's own example, a simulated step never holds the logits (tests/profiler/kernels/test_chunked_loss.py); its allocations are read from Liger's source, not measured against Liger on a GPU |

Importing this package imports none of them: bitsandbytes loads only for the setups that use it.
"""
