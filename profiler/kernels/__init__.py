"""Stand-ins for kernels that only CUDA (or only a GPU library) runs, so that simulate() counts the
bytes a GPU run allocates, not those of the CPU kernels it would otherwise take. Each reproduces
memory behaviour only (shapes, dtypes, lifetimes); under FakeTensorMode nothing is computed. The
measuring code (profiler/build.py, step.py, simulate.py) picks them; nothing here measures.

attention.py
    Stands in for CUDA flash attention: SDPA's flash backend (`aten._scaled_dot_product_flash_attention`,
    reached through transformers' `sdpa_attention_forward`) and flash-attn 2
    (`attn_implementation="flash_attention_2"`).
    Checked: the tensors its forward saves equal, byte for byte, those of torch's CPU build of the
    same kernel (tests/profiler/kernels/test_attention.py); simulate() and a real CPU run differ by
    no more than the stand-in's backward transients (tests/profiler/test_cpu.py). The CUDA-only
    parts (native GQA, the backward's fp32 dq accumulator and softmax_d) are read from the kernel
    source cited there, not measured on a GPU.

dropout.py
    Stands in for CUDA's fused dropout (`aten.native_dropout`, which keeps a bool mask), where a CPU
    tensor keeps a mask in the input's dtype.
    Checked: the autograd node left behind is native_dropout's with a bool mask, and without the
    stand-in the CPU's input-dtype one (tests/profiler/kernels/test_dropout.py).

bnb_linear.py
    Stands in for bitsandbytes' `Linear4bit` / `Linear8bitLt` and the QLoRA recipe
    (`from_pretrained(quantization_config=...)`, `prepare_model_for_kbit_training`), whose kernels
    cannot quantize a fake tensor.
    Checked against real bitsandbytes on CPU (tests/profiler/kernels/test_bnb_linear.py): every
    module's tensors, a 4-bit linear's forward and backward allocation by allocation, a whole QLoRA
    step's phase peaks and allocations, what LLM.int8() keeps for backward; where bitsandbytes' CPU
    and CUDA paths differ the stand-in follows the CUDA source (listed in that module's docstring).
    tests/profiler/test_cpu.py also runs real bitsandbytes beside it.

bnb_optim.py
    Stands in for the bitsandbytes optimizers HF Trainer builds (adamw_bnb_8bit, paged_adamw_8bit,
    paged_adamw_32bit, lion_32bit), paging their state as on CUDA.
    Checked: state tensor by tensor against `Trainer(optim=...).create_optimizer()` stepped on real
    CPU tensors, paged bytes accounted apart (tests/profiler/kernels/test_bnb_optim.py).

chunked_loss.py
    Stands in for Liger Kernel's fused linear + cross-entropy (`--loss chunked`; Triton, GPU only).
    Checked: loss and gradients equal plain cross-entropy on real tensors, chunk sizes follow
    Liger's own example, a simulated step never holds the logits
    (tests/profiler/kernels/test_chunked_loss.py); its allocations are read from Liger's source,
    not measured against Liger on a GPU.

Importing this package imports none of them: bitsandbytes loads only for the setups that use it.
"""
