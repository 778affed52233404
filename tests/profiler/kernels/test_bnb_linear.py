"""The QLoRA stand-in (profiler/kernels/bnb_linear.py) against real bitsandbytes on CPU.

(a) is the real recipe: a tiny bf16 checkpoint loaded with `from_pretrained(quantization_config=
BitsAndBytesConfig(...), device_map="cpu")` (bitsandbytes >= 0.48 quantizes on CPU), then
prepare_model_for_kbit_training and peft, as build_model does. (b) is build_model's meta model
with the stand-ins, materialized under FakeTensorMode.

What is compared, and what differs between the CPU and CUDA kernels of bitsandbytes:
- every module's tensors (shape and dtype of parameters, buffers and bnb quant state): equal.
- one forward + backward of a 4-bit linear, allocation by allocation, with a tracker that also
  sees inside bitsandbytes' custom ops (DeepTracker). On CPU, gemm_4bit always dequantizes
  (backends/default/ops.py _gemm_4bit_default_impl); on CUDA it does so, with the same tensors,
  above 1536 tokens or when in_features % 64 != 0 (backends/cuda/ops.py gemm_4bit ->
  _dequant_linear_fallback). There the two agree exactly. At <= 4 tokens CUDA runs the fused
  kernel, which allocates only the output: CPU then allocates exactly three tensors more (the
  dequantized absmax, absmax + offset, and the dequantized weight), asserted below. One lifetime
  differs: CUDA's fallback keeps the dequantized absmax (fp32, one per 64 weights) alive during
  F.linear, CPU frees it at once; the stand-in follows CUDA.
- a whole QLoRA training step (forward + backward, 2048 tokens): equal phase peaks and equal
  allocation multisets.
- LLM.int8(): CPU trains with MatMul8bitFp (dequantize + F.linear, bitsandbytes/autograd/
  _functions.py matmul picks it for cpu/xpu), CUDA with MatMul8bitLt. In eval mode bnb runs
  MatMul8bitLt on CPU too; its CPU kernels (default int8_vectorwise_quant / int8_mm_dequant,
  torch._int_mm) allocate different temporaries than the CUDA ones, so only what outlives the
  kernels is compared: the output, what forward keeps for backward, and the input gradient.
"""
from __future__ import annotations

import collections
import contextlib
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_iter

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
bnb = pytest.importorskip("bitsandbytes")

from gpuplan.planner import (Checkpointing, Component, LoraSpec, Method, Optimizer, Phase, Precision,  # noqa: E402
                             QuantSpec, QuantType, TrainingSetup, model_from_config)
from gpuplan.profiler.build import (Built, _apply_lora, autocast_for, build_model, hf_attn_implementation,  # noqa: E402
                                    materialize)
from gpuplan.profiler.dtypes import TORCH_DTYPES  # noqa: E402
from gpuplan.profiler.kernels import bnb_linear as Q  # noqa: E402
from gpuplan.profiler.simulate import simulate  # noqa: E402
from gpuplan.profiler.step import run_steps  # noqa: E402
from gpuplan.profiler.tracker import StorageTracker, allocator_bytes  # noqa: E402

TINY = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=4, vocab_size=1000)
CPU = torch.device("cpu")

SETUPS = {
    "nf4-dq-mixed": TrainingSetup(method=Method.QLORA, lora=LoraSpec(targets=("all-linear",))),
    "fp4-true": TrainingSetup(method=Method.QLORA, precision=Precision.BF16_TRUE,
                              quant=QuantSpec(QuantType.FP4, double_quant=False)),
    "int8-mixed": TrainingSetup(method=Method.QLORA, quant=QuantSpec(QuantType.INT8)),
}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
class DeepTracker(StorageTracker):
    """StorageTracker that also sees the tensors allocated *inside* bitsandbytes' custom ops (a
    dispatch mode is popped while an op runs, so their internals are otherwise invisible) and
    keeps the list of allocation sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.allocs: list[int] = []

    def _add(self, storage, component) -> None:
        if storage._cdata not in self._live:
            self.allocs.append(allocator_bytes(storage.nbytes()))
        super()._add(storage, component)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace != "bitsandbytes":
            return super().__torch_dispatch__(func, types, args, kwargs)
        with self:  # run the CPU kernel with this mode on the stack
            out = func.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CPU), *args, **(kwargs or {}))
        for t in tree_iter(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._add(t.untyped_storage(), self.default_component)
        return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random bf16 Llama saved as a checkpoint, like a hub model."""
    torch.manual_seed(0)
    cfg = transformers.AutoConfig.for_model(**TINY)
    lm = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    path = tmp_path_factory.mktemp("tiny-llama")
    lm.save_pretrained(path)
    return path


QWEN = dict(model_type="qwen2", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=4, vocab_size=1000, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory):
    """Qwen2: q/k/v with bias, tied embeddings."""
    torch.manual_seed(0)
    lm = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**QWEN), dtype=torch.bfloat16)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    lm.save_pretrained(path)
    return path


def real_model(path, setup: TrainingSetup, lora: bool = True, cfg: dict = TINY) -> torch.nn.Module:
    """(a): what a user runs, with real bitsandbytes on CPU, then build_model's peft + checkpointing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            path, quantization_config=Q.bnb_config(setup), dtype=TORCH_DTYPES[setup.precision.compute_dtype],
            device_map="cpu")
        lm.config.use_cache = False
        lm.config._attn_implementation = hf_attn_implementation(setup.attention)
        lm.train()
        if setup.precision.autocast:
            lm = peft.prepare_model_for_kbit_training(
                lm, use_gradient_checkpointing=setup.checkpointing is Checkpointing.FULL,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora:
            lm = _apply_lora(lm, model_from_config(cfg, "tiny"), setup)
            if setup.checkpointing is Checkpointing.FULL:
                lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                lm.enable_input_require_grads()
    return lm


def standin_model(setup: TrainingSetup, lora: bool = True, cfg: dict = TINY) -> torch.nn.Module:
    """(b): build_model's meta model with the stand-ins (materialize later)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if lora:
            lm, _ = build_model(model_from_config(cfg, "tiny"), setup, torch.device("meta"))
            return lm
        from gpuplan.profiler.build import hf_config

        with torch.device("meta"):
            lm = transformers.AutoModelForCausalLM.from_config(
                hf_config(model_from_config(cfg, "tiny"), setup), dtype=TORCH_DTYPES[setup.precision.compute_dtype])
        lm.train()
        return Q.quantize_for_qlora(lm, None, setup)


def bnb_state_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """Tensors real bitsandbytes keeps outside parameters/buffers: the 4-bit QuantState, int8 SCB."""
    w = module._parameters.get("weight")
    out = []
    qs = getattr(w, "quant_state", None)
    if qs is not None:
        out += [qs.absmax, qs.code]
        if qs.nested:
            out += [qs.offset, qs.state2.absmax, qs.state2.code]
    scb = getattr(w, "SCB", None)
    if scb is None and isinstance(module, bnb.nn.Linear8bitLt):
        scb = module.state.SCB
    if scb is not None:
        out.append(scb)
    return out


def inventory(lm: torch.nn.Module) -> dict[str, list[tuple[tuple[int, ...], torch.dtype]]]:
    """module name -> sorted (shape, dtype) of the tensors it owns."""
    out = {}
    for name, m in lm.named_modules():
        tensors = [t for t in list(m._parameters.values()) + list(m._buffers.values()) if t is not None]
        tensors += bnb_state_tensors(m)
        if tensors:
            out[name] = sorted(((tuple(t.shape), t.dtype) for t in tensors), key=str)
    return out


def nbytes(inv) -> int:
    return sum(allocator_bytes(torch.Size(s).numel() * d.itemsize) for v in inv.values() for s, d in v)


def all_weights(lm) -> list[torch.Tensor]:
    out = list(lm.parameters()) + list(lm.buffers())
    for m in lm.modules():
        out += bnb_state_tensors(m)
    return out


def run_layer(layer, x, weights) -> dict:
    """Forward + backward of one layer; the input and weights are counted before it starts."""
    tr = DeepTracker()
    tr.track(weights, Component.WEIGHTS)
    tr.track([x], Component.ACTIVATIONS)
    base = tr.current
    tr.allocs.clear()
    with tr:
        y = layer(x)
        kept = tr.current - base
        out = (tuple(y.shape), y.dtype)
        tr.mark(Phase.BACKWARD, Component.TEMPORARIES)
        if y.requires_grad:
            y.backward(torch.ones_like(y))
        grad = None if x.grad is None else (tuple(x.grad.shape), x.grad.dtype)
        del y
    return dict(forward_peak=tr.peaks[Phase.FORWARD].total - base, kept_by_forward=kept,
                backward_peak=tr.peaks[Phase.BACKWARD].total - base, output=out, grad=grad,
                allocs=collections.Counter(tr.allocs))


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SETUPS))
@pytest.mark.parametrize("lora", [False, True], ids=["base", "peft"])
def test_every_module_holds_the_bytes_of_real_bitsandbytes(checkpoint, name, lora):
    setup = SETUPS[name]
    real = inventory(real_model(checkpoint, setup, lora))
    stand = standin_model(setup, lora)
    assert inventory(stand) == real
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        materialize(stand, CPU)
    assert inventory(stand) == real
    quantized = [n for n, m in stand.named_modules()
                 if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) and not hasattr(m, "base_layer")]
    assert len(quantized) == 14 and not any("lm_head" in n for n in quantized)
    if lora:  # peft wrapped the stand-ins with its own bnb LoRA layers, as it does real bnb modules
        import peft.tuners.lora.bnb as lora_bnb

        wrapped = {n: type(m) for n, m in stand.named_modules() if hasattr(m, "base_layer")}
        assert wrapped and set(wrapped.values()) <= {lora_bnb.Linear4bit, lora_bnb.Linear8bitLt}
        assert wrapped == {n: type(m) for n, m in real_model(checkpoint, setup, lora).named_modules()
                           if hasattr(m, "base_layer")}


@pytest.mark.parametrize("name", list(SETUPS))
def test_biased_and_tied_model_matches_real_bitsandbytes(qwen_checkpoint, name):
    """Qwen2's q/k/v biases: upcast to fp32 by prepare_model_for_kbit_training, cast back to the
    compute dtype for good by bnb's first forward (Linear4bit.forward / Linear8bitLt.forward)."""
    setup = SETUPS[name]
    assert inventory(standin_model(setup, cfg=QWEN)) == inventory(real_model(qwen_checkpoint, setup, cfg=QWEN))
    if setup.quant.quant_type is QuantType.INT8:
        return
    module = "model.layers.0.self_attn.q_proj"
    real = real_model(qwen_checkpoint, setup, lora=False, cfg=QWEN).get_submodule(module)
    stand = standin_model(setup, lora=False, cfg=QWEN).get_submodule(module)
    shape = (2, 1024, real.in_features)
    a = run_layer(real, torch.randn(shape).requires_grad_(), all_weights(real))
    with FakeTensorMode(allow_non_fake_inputs=True):
        materialize(stand, CPU)
        b = run_layer(stand, torch.empty(shape).requires_grad_(), all_weights(stand))
    held = allocator_bytes(real.out_features * real.in_features // 64 * 4) if setup.quant.double_quant else 0
    assert b.pop("forward_peak") - a.pop("forward_peak") in {0, held}
    assert a == b
    assert real.bias.dtype == stand.bias.dtype == TORCH_DTYPES[setup.precision.compute_dtype]


def test_quant_state_shapes_match_bitsandbytes_quantize_4bit():
    w = torch.randn(300, 70, dtype=torch.bfloat16)   # n % 64 != 0 and blocks % 256 != 0
    for dq in (False, True):
        packed, qs = bnb.functional.quantize_4bit(w, compress_statistics=dq, quant_type="nf4")
        real = {"weight": packed, "absmax": qs.absmax, "quant_map": qs.code}
        if dq:
            real.update(nested_absmax=qs.state2.absmax, nested_quant_map=qs.state2.code, offset=qs.offset)
        assert {k: (tuple(v.shape), v.dtype) for k, v in real.items()} == Q.quant_state_shapes(300, 70, dq)


LAYER_CASES = [  # (module, tokens, input dtype, requires grad)
    ("model.layers.0.mlp.gate_proj", 2048, torch.float32, True),    # autocast: fp32 norm output, cast by bnb
    ("model.layers.0.mlp.gate_proj", 2048, torch.bfloat16, True),
    ("model.layers.0.mlp.gate_proj", 2048, torch.bfloat16, False),  # matmul_4bit's no-grad path
    ("model.layers.1.self_attn.o_proj", 2048, torch.bfloat16, True),
    ("model.layers.0.mlp.down_proj", 4, torch.bfloat16, True),      # in_features 688 % 64: CUDA dequantizes too
]


@pytest.mark.parametrize("name", ["nf4-dq-mixed", "fp4-true"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c[0].split('.')[-1]}-{c[1]}-{str(c[2])[6:]}-{c[3]}")
def test_4bit_linear_forward_backward_allocates_like_bitsandbytes(checkpoint, name, case):
    module, tokens, dtype, grad = case
    setup = SETUPS[name]
    real = real_model(checkpoint, setup, lora=False).get_submodule(module)
    stand = standin_model(setup, lora=False).get_submodule(module)
    assert Q.gemm_4bit_uses_fused_kernel(tokens, real.out_features, real.in_features, torch.bfloat16) is False
    shape = (2, tokens // 2, real.in_features)
    a = run_layer(real, (torch.randn(shape) * 0.1).to(dtype).requires_grad_(grad), all_weights(real))
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        materialize(stand, CPU)
        b = run_layer(stand, torch.empty(shape, dtype=dtype).requires_grad_(grad), all_weights(stand))
    # CUDA's _dequant_linear_fallback keeps its dequantized absmax (a named local) alive through
    # F.linear; CPU's _gemm_4bit_default_impl frees it as soon as the offset is added.
    held = allocator_bytes(real.out_features * real.in_features // 64 * 4) if setup.quant.double_quant else 0
    assert b.pop("forward_peak") - a.pop("forward_peak") in {0, held}
    assert a == b


def test_4bit_fused_kernel_saves_exactly_the_dequantized_weight(checkpoint):
    """At 4 tokens CUDA's fused gemm_4bit allocates only its output; CPU still dequantizes."""
    setup = SETUPS["nf4-dq-mixed"]
    module = "model.layers.0.mlp.gate_proj"
    real = real_model(checkpoint, setup, lora=False).get_submodule(module)
    stand = standin_model(setup, lora=False).get_submodule(module)
    assert Q.gemm_4bit_uses_fused_kernel(4, real.out_features, real.in_features, torch.bfloat16)
    shape = (1, 4, real.in_features)
    a = run_layer(real, torch.randn(shape, dtype=torch.bfloat16).requires_grad_(), all_weights(real))
    with FakeTensorMode(allow_non_fake_inputs=True):
        materialize(stand, CPU)
        b = run_layer(stand, torch.empty(shape, dtype=torch.bfloat16).requires_grad_(), all_weights(stand))
    blocks = real.out_features * real.in_features // 64
    dequant = collections.Counter({allocator_bytes(blocks * 4): 2,          # absmax_dq, absmax + offset
                                   allocator_bytes(real.out_features * real.in_features * 2): 1})  # B_dq
    assert a["allocs"] - b["allocs"] == dequant and not b["allocs"] - a["allocs"]
    assert a["kept_by_forward"] == b["kept_by_forward"]
    assert a["backward_peak"] == b["backward_peak"] and a["grad"] == b["grad"]


@pytest.mark.parametrize("tokens", [2048, 4])
def test_int8_linear_keeps_what_bitsandbytes_keeps(checkpoint, tokens):
    setup = SETUPS["int8-mixed"]
    module = "model.layers.0.mlp.gate_proj"
    real = real_model(checkpoint, setup, lora=False).get_submodule(module)
    stand = standin_model(setup, lora=False).get_submodule(module)
    real.eval()  # bnb.matmul runs MatMul8bitLt (the CUDA training path) on CPU only in eval mode
    shape = (2, tokens // 2, real.in_features)
    # |x| < 6: no LLM.int8() outlier columns, as the stand-in assumes
    a = run_layer(real, (torch.rand(shape) - 0.5).to(torch.bfloat16).requires_grad_(), all_weights(real))
    with FakeTensorMode(allow_non_fake_inputs=True):
        materialize(stand, CPU)
        b = run_layer(stand, torch.empty(shape, dtype=torch.bfloat16).requires_grad_(), all_weights(stand))
    for key in ("output", "grad", "kept_by_forward"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("name", list(SETUPS))
def test_training_step_allocates_like_real_bitsandbytes(checkpoint, name, monkeypatch):
    """One QLoRA step (forward, backward; 2 x 1024 tokens), real CPU model vs stand-in under fake.

    transformers takes other branches for FakeTensors (utils/import_utils.py is_tracing ->
    is_fake_tensor: masking_utils materializes the causal mask, so sdpa_attention's
    use_gqa_in_sdpa is False and repeat_kv copies K/V). The real run is told its tensors are
    fake too, so that both run the same transformers code and only bitsandbytes differs.
    """
    setup = SETUPS[name].with_(batch_size=2, seq_len=1024, optimizer=Optimizer.SGD)
    if setup.quant.quant_type is QuantType.INT8:
        pytest.skip("CPU trains LLM.int8() with MatMul8bitFp, CUDA with MatMul8bitLt (see module doc)")
    import transformers.utils.import_utils as import_utils

    results = []
    for which in ("real", "stand-in"):
        torch.manual_seed(0)
        fake = FakeTensorMode(allow_non_fake_inputs=True) if which == "stand-in" else None
        if which == "real":
            monkeypatch.setattr(import_utils, "is_fake_tensor", lambda x: isinstance(x, torch.Tensor))
        else:
            monkeypatch.undo()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm = real_model(checkpoint, setup) if which == "real" else standin_model(setup)
            with fake or contextlib.nullcontext():
                if fake is not None:
                    materialize(lm, CPU)
                opt = torch.optim.SGD([p for p in lm.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
                built = Built(lm, opt, autocast_for(setup, CPU), CPU, [])
                tracker = DeepTracker()
                tracker.track([t for m in lm.modules() for t in bnb_state_tensors(m)], Component.WEIGHTS)
                with tracker:
                    run_steps(built, setup, tracker, steps=1)
        results.append(({p: tracker.peaks[p].total for p in Phase}, collections.Counter(tracker.allocs)))
    (real_peaks, real_allocs), (stand_peaks, stand_allocs) = results
    assert stand_peaks == real_peaks
    assert stand_allocs == real_allocs


def test_gemm_4bit_dispatch_follows_the_installed_cuda_heuristic():
    rule, max_m, floor_m = Q._cuda_gemm_4bit_rule()
    assert rule is not None and max_m == 1536 and floor_m == 4
    assert Q.gemm_4bit_uses_fused_kernel(1, 4096, 4096, torch.bfloat16)
    assert not Q.gemm_4bit_uses_fused_kernel(2048, 4096, 4096, torch.bfloat16)
    assert not Q.gemm_4bit_uses_fused_kernel(8, 4096, 4000, torch.bfloat16)   # K % 64
    assert not Q.gemm_4bit_uses_fused_kernel(1024, 14336, 4096, torch.bfloat16)


def test_simulate_qlora_end_to_end():
    cfg = dict(TINY, vocab_size=128, num_hidden_layers=4)
    model = model_from_config(cfg, "tiny-qlora")
    base = TrainingSetup(method=Method.QLORA, batch_size=2, seq_len=64, optimizer=Optimizer.ADAMW)
    bf16 = simulate(model, TrainingSetup(method=Method.LORA, precision=Precision.BF16_TRUE, batch_size=2,
                                         seq_len=64, optimizer=Optimizer.ADAMW))
    for setup in (base, base.with_(precision=Precision.BF16_TRUE),
                  base.with_(quant=QuantSpec(QuantType.FP4, double_quant=False), checkpointing=Checkpointing.NONE)):
        r = simulate(model, setup)
        assert "bitsandbytes weights replaced by a byte-exact stand-in" in r.notes
        assert r.components[Component.WEIGHTS] < 0.4 * bf16.components[Component.WEIGHTS]
        assert r.peak_allocated_bytes > r.components[Component.WEIGHTS]
    r8 = simulate(model, base.with_(quant=QuantSpec(QuantType.INT8)))
    assert r8.components[Component.WEIGHTS] < 0.65 * bf16.components[Component.WEIGHTS]
