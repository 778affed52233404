"""QLoRA's bitsandbytes layers, as byte-exact stand-ins that run under FakeTensorMode.

`quantize_for_qlora` does to a meta-device transformers model what the standard recipe does:

    AutoModelForCausalLM.from_pretrained(..., quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4"|"fp4", bnb_4bit_use_double_quant=...,
        bnb_4bit_compute_dtype=<compute dtype>))            # or load_in_8bit=True
    peft.prepare_model_for_kbit_training(model, ...)        # with the recipe's kbit_upcast (*-mixed's default)

The module surgery is transformers' own: its `Bnb4BitHfQuantizer` / `Bnb8BitHfQuantizer`
`preprocess_model` (transformers/integrations/bitsandbytes.py replace_with_bnb_linear, with
`get_keys_to_not_convert`: every nn.Linear/Conv1D but the lm_head) and `postprocess_model`
(`is_loaded_in_4bit`, `hf_quantizer`, `config.quantization_config`). Each bnb module it creates
is then swapped for a stand-in below, because real bitsandbytes cannot quantize a FakeTensor.

The stand-ins
- are subclasses of `bnb.nn.Linear4bit` / `bnb.nn.Linear8bitLt`, so peft wraps them with its own
  bnb LoRA layers (peft/tuners/lora/bnb.py dispatch_bnb_4bit / dispatch_bnb_8bit) and the LoRA
  forward that runs is peft's real code (its `result.clone()` for 4 bit included);
- hold exactly the tensors a quantized bnb layer holds (the quant state is kept in buffers so that
  build.materialize() makes them fake and the tracker counts them with the weights):
    4 bit  weight uint8 ((out*in+1)//2, 1)               Params4bit._quantize -> F.quantize_4bit
           quant_map fp32 (16,)                          get_4bit_type(), one per layer
           absmax fp32 (ceil(n/64),)                     without double quant, or
           absmax uint8 (ceil(n/64),), nested_absmax fp32 (ceil(n/64/256),),
           nested_quant_map fp32 (256,), offset fp32 ()  with double quant (quantize_blockwise, 256)
    8 bit  weight int8 (out, in), SCB fp32 (out,)        Int8Params._quantize -> int8_vectorwise_quant
- run a forward/backward that allocates what the CUDA build of bitsandbytes allocates: the
  autograd Functions below mirror bitsandbytes/autograd/_functions.py (MatMul4Bit, MatMul8bitLt,
  matmul_4bit, matmul) and every tensor the CUDA kernels in bitsandbytes/backends/cuda/ops.py
  allocate through torch (gemm_4bit, dequantize_4bit, dequantize_blockwise, int8_vectorwise_quant,
  int8_linear_matmul, int8_mm_dequant) and bitsandbytes/backends/default/ops.py
  (int8_mixed_scaled_mm, int8_scaled_mm, which CUDA also uses). Values are not computed
  (torch.empty stands for a kernel's output): only shapes, dtypes and lifetimes are exact.

Known approximations (what is checked against real bitsandbytes: tests/profiler/test_quantize.py):
- LLM.int8() outliers: with threshold 6.0 bnb keeps input columns holding |x| >= 6 in 16 bit
  (data dependent: unknowable under FakeTensorMode). The stand-in assumes none, as if no
  activation reached 6.0; real runs add (tokens x outlier columns) 16-bit tensors, a few columns.
- gemm_4bit's choice between the fused kernel and dequantize+F.linear for 5 <= tokens <= 1536
  depends on the GPU; it is evaluated with the installed bitsandbytes' own heuristic for the GPU
  in CUDA_DEVICE_PROPS (default: H100 SXM).

Behaviour of real bitsandbytes worth knowing, reproduced here: MatMul4Bit and MatMul8bitLt keep
what backward needs on `ctx` attributes, not through save_for_backward, so activation
checkpointing does not drop it. For 4 bit that is the (live anyway) packed weight; for 8 bit it
is the layer's input, kept for every quantized linear of every layer even with checkpointing.
prepare_model_for_kbit_training upcasts embeddings, lm_head and norms to fp32, and the biases of
quantized linears, which bnb's first forward casts back to the compute dtype for good.
"""
from __future__ import annotations

import ast
import functools
import math
import pathlib
from dataclasses import dataclass
from typing import Callable

import bitsandbytes as bnb  # the stand-ins subclass its modules
import torch
from peft import prepare_model_for_kbit_training
from torch import nn
from transformers import BitsAndBytesConfig
from transformers.pytorch_utils import Conv1D
from transformers.quantizers.auto import AutoHfQuantizer

from gpuplan.planner import Checkpointing, ModelSpec, QuantType, TrainingSetup

from ..dtypes import TORCH_DTYPES

BLOCKSIZE_4BIT = 64        # Params4bit's default blocksize [bitsandbytes/nn/modules.py Params4bit.__new__]
NESTED_BLOCKSIZE = 256     # double quant: quantize_blockwise(absmax - offset, blocksize=256) [functional.py quantize_4bit]
DYNAMIC_MAP_SIZE = 256     # create_dynamic_map(): 256 fp32 values, copied per layer (code.to(device, copy=True))
INT8_THRESHOLD = 6.0       # BitsAndBytesConfig.llm_int8_threshold default

# (multiprocessor count, compute capability major, minor) of the GPU whose gemm_4bit heuristic
# decides between the fused 4-bit kernel and dequantize + F.linear for 5..1536 tokens.
CUDA_DEVICE_PROPS: tuple[int, int, int] = (132, 9, 0)   # H100 SXM


# ------------------------------------------------------------------------------------------------
# quant state
# ------------------------------------------------------------------------------------------------
@dataclass
class _QuantState:
    """The parts of bnb.functional.QuantState that MatMul4Bit reads, pointing at the module's buffers."""

    absmax: torch.Tensor
    shape: torch.Size
    code: torch.Tensor
    blocksize: int
    quant_type: str
    dtype: torch.dtype
    offset: torch.Tensor | None = None
    nested_absmax: torch.Tensor | None = None
    nested_code: torch.Tensor | None = None

    @property
    def nested(self) -> bool:
        return self.nested_absmax is not None


def quant_state_shapes(out_features: int, in_features: int, double_quant: bool,
                       blocksize: int = BLOCKSIZE_4BIT) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of every tensor bitsandbytes keeps for one 4-bit weight."""
    n = out_features * in_features
    blocks = -(n // -blocksize)
    out = {"weight": (((n + 1) // 2, 1), torch.uint8),     # quantize_4bit: packed, 2 per byte
           "quant_map": ((16,), torch.float32)}            # get_4bit_type(quant_type)
    if double_quant:
        out["absmax"] = ((blocks,), torch.uint8)
        out["nested_absmax"] = ((-(blocks // -NESTED_BLOCKSIZE),), torch.float32)
        out["nested_quant_map"] = ((DYNAMIC_MAP_SIZE,), torch.float32)
        out["offset"] = ((), torch.float32)                # _absmax.mean()
    else:
        out["absmax"] = ((blocks,), torch.float32)
    return out


# ------------------------------------------------------------------------------------------------
# gemm_4bit: which CUDA path runs
# ------------------------------------------------------------------------------------------------
@functools.cache
def _cuda_gemm_4bit_rule() -> tuple[Callable[..., bool] | None, int, int]:
    """(heuristic, custom_max_m, floor_m) read from the installed bitsandbytes' CUDA backend.

    bitsandbytes/backends/cuda/ops.py cannot be imported without a GPU (it binds CUDA symbols at
    import), so its pure-Python `_gemm_4bit_use_custom_cuda` is compiled from the source file, with
    `_gpu_dispatch_props` bound to CUDA_DEVICE_PROPS. None if the source has changed shape.
    """
    floor_m, max_m = 4, 1536
    try:
        path = pathlib.Path(bnb.__file__).parent / "backends" / "cuda" / "ops.py"
        tree = ast.parse(path.read_text())
        fn = None
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "_gemm_4bit_use_custom_cuda":
                fn = node
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_GEMM_4BIT_CUSTOM_FLOOR_M"
                                                      for t in node.targets):
                floor_m = ast.literal_eval(node.value)
            elif isinstance(node, ast.If) and ast.unparse(node.test) == "torch.version.hip is None":
                for stmt in node.body:  # the CUDA (not ROCm) branch
                    if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", "") == "_gemm_4bit_custom_max_m":
                        max_m = ast.literal_eval(stmt.value)
        if fn is None:
            return None, max_m, floor_m
        fn.decorator_list = []
        namespace = {"torch": torch, "_GEMM_4BIT_CUSTOM_FLOOR_M": floor_m,
                     "_gpu_dispatch_props": lambda device_index: CUDA_DEVICE_PROPS}
        exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), namespace)
        return namespace["_gemm_4bit_use_custom_cuda"], max_m, floor_m
    except Exception:  # pragma: no cover - a future bitsandbytes
        return None, max_m, floor_m


def gemm_4bit_uses_fused_kernel(M: int, N: int, K: int, dtype: torch.dtype, blocksize: int = BLOCKSIZE_4BIT) -> bool:
    """The dispatch of bitsandbytes::gemm_4bit on CUDA [backends/cuda/ops.py, registered "cuda" kernel]:
    M > 1536 tokens or K not a multiple of the blocksize -> dequantize + F.linear; else the heuristic."""
    rule, max_m, floor_m = _cuda_gemm_4bit_rule()
    if M > max_m or K % blocksize != 0:
        return False
    if rule is None:
        return M <= floor_m
    return bool(rule(0, dtype, M, N, K))


def _gemm_4bit(A: torch.Tensor, B: torch.Tensor, qs: _QuantState, bias: torch.Tensor | None) -> torch.Tensor:
    """torch.ops.bitsandbytes.gemm_4bit on CUDA, allocation for allocation."""
    K = A.shape[-1]
    M = A.numel() // K
    N = qs.shape[0]
    if not gemm_4bit_uses_fused_kernel(M, N, K, A.dtype, qs.blocksize):
        # _dequant_linear_fallback: its locals live until F.linear returns
        absmax = qs.absmax
        absmax_dq = None
        if qs.nested:
            absmax_dq = torch.empty_like(qs.absmax, dtype=torch.float32)   # _dequantize_blockwise_impl(out=)
            absmax = absmax_dq + qs.offset
        B_dq = torch.empty(qs.shape, dtype=A.dtype, device=A.device)       # _dequantize_4bit_impl(out=)
        out = torch.nn.functional.linear(A, B_dq, bias)
        del absmax, absmax_dq, B_dq
        return out
    # _gemm_4bit_kernel_impl: the fused cgemm_4bit_* kernel writes `out` only
    A = A.contiguous()
    return torch.empty((*A.shape[:-1], N), dtype=A.dtype, device=A.device)


def _dequantize_4bit(B: torch.Tensor, qs: _QuantState) -> torch.Tensor:
    """bnb.functional.dequantize_4bit with the CUDA kernels."""
    absmax = qs.absmax
    if qs.nested:
        absmax = torch.empty_like(qs.absmax, dtype=torch.float32)   # dequantize_blockwise (cuda): empty_like(A, dtype)
        absmax += qs.offset
    out = torch.empty(qs.shape, dtype=qs.dtype, device=B.device)    # dequantize_4bit (cuda): empty(shape, dtype)
    del absmax
    if B.shape[0] == 1:
        return out.t()
    return out


class MatMul4Bit(torch.autograd.Function):
    """bitsandbytes/autograd/_functions.py MatMul4Bit: saves only the packed weight (on ctx, not
    through save_for_backward), dequantizes it in backward for grad_A."""

    @staticmethod
    def forward(ctx, A, B, out, bias, quant_state: _QuantState):
        ctx.is_empty = False
        if A.numel() == 0:
            ctx.is_empty = True
            ctx.A, ctx.B, ctx.bias = A, B, bias
            return torch.empty(A.shape[:-1] + quant_state.shape[:1], dtype=A.dtype, device=A.device)
        B = B.view(-1, 1)
        output = _gemm_4bit(A, B, quant_state, bias)
        if out is not None:
            out.copy_(output)
            output = out
        ctx.state = quant_state
        ctx.dtype_A, ctx.dtype_B, ctx.dtype_bias = A.dtype, B.dtype, None if bias is None else bias.dtype
        ctx.tensors = (None, B) if any(ctx.needs_input_grad[:2]) else (None, None)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.is_empty:
            bias_grad = None if ctx.bias is None else torch.zeros_like(ctx.bias)
            return torch.zeros_like(ctx.A), torch.zeros_like(ctx.B), None, bias_grad, None
        req_gradA, _, _, req_gradBias, _ = ctx.needs_input_grad
        _, B = ctx.tensors
        grad_A, grad_B, grad_bias = None, None, None
        if req_gradBias:
            grad_bias = grad_output.sum(0, dtype=ctx.dtype_bias)
        if req_gradA:
            grad_A = torch.matmul(grad_output, _dequantize_4bit(B, ctx.state).to(grad_output.dtype))
        return grad_A, grad_B, None, grad_bias, None


def matmul_4bit(A: torch.Tensor, B: torch.Tensor, quant_state: _QuantState,
                out: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """bitsandbytes.matmul_4bit for a weight quantized in [N, K] orientation, on CUDA."""
    B = B.view(-1, 1)
    needs_grad = torch.is_grad_enabled() and (A.requires_grad or (bias is not None and bias.requires_grad))
    if not needs_grad:
        if A.numel() == 0:
            return out if out is not None else torch.empty(
                (*A.shape[:-1], quant_state.shape[0]), dtype=A.dtype, device=A.device)
        result = _gemm_4bit(A, B, quant_state, bias)
        if out is not None:
            out.copy_(result)
            return out
        return result
    return MatMul4Bit.apply(A, B, out, bias, quant_state)


class Linear4bit(bnb.nn.Linear4bit):
    """Stand-in for a loaded bnb.nn.Linear4bit (quantized by from_pretrained), on `meta`."""

    def __init__(self, in_features: int, out_features: int, bias: nn.Parameter | None, *,
                 compute_dtype: torch.dtype, compress_statistics: bool, quant_type: str,
                 weight_dtype: torch.dtype, blocksize: int = BLOCKSIZE_4BIT, source_cls: type | None = None):
        nn.Module.__init__(self)   # not bnb's: it would build a Params4bit
        self.in_features, self.out_features = in_features, out_features
        shapes = quant_state_shapes(out_features, in_features, compress_statistics, blocksize)
        shape, dtype = shapes.pop("weight")
        weight = nn.Parameter(torch.empty(shape, dtype=dtype, device="meta"), requires_grad=False)
        weight.quant_type, weight.compress_statistics, weight.blocksize = quant_type, compress_statistics, blocksize
        self.weight = weight
        self.bias = bias   # as loaded: still requires grad (peft / prepare_model_for_kbit_training freeze it)
        for name, (shape, dtype) in shapes.items():
            self.register_buffer(name, torch.empty(shape, dtype=dtype, device="meta"), persistent=False)
        self.compute_dtype = compute_dtype
        self.compute_type_is_set = compute_dtype is not None
        self.quant_storage = torch.uint8
        self.quant_state = None
        self.support_avx512bf16_for_cpu = False
        self.weight_dtype = weight_dtype       # dtype the weight was quantized from: quant_state.dtype
        self.blocksize, self.quant_type, self.compress_statistics = blocksize, quant_type, compress_statistics
        if source_cls is not None:
            self.source_cls = source_cls

    def _quant_state(self) -> _QuantState:
        nested = self.compress_statistics
        return _QuantState(
            absmax=self.absmax, shape=torch.Size((self.out_features, self.in_features)), code=self.quant_map,
            blocksize=self.blocksize, quant_type=self.quant_type, dtype=self.weight_dtype,
            offset=self.offset if nested else None,
            nested_absmax=self.nested_absmax if nested else None,
            nested_code=self.nested_quant_map if nested else None)

    def dequantized(self) -> torch.Tensor:
        """bnb.functional.dequantize_4bit(weight, quant_state): the (out, in) weight in the dtype it was
        quantized from, as peft's dequantize_module_weight returns it for DoRA's weight norm."""
        return _dequantize_4bit(self.weight, self._quant_state())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bnb.nn.Linear4bit.forward
        inp_dtype = x.dtype
        if self.compute_dtype is not None:
            x = x.to(self.compute_dtype)
        bias = self.bias
        if bias is not None:
            if bias.dtype != x.dtype:
                bias.data = bias.data.to(x.dtype)   # bnb casts the stored bias for good
            bias = bias.to(self.compute_dtype)
        return matmul_4bit(x, self.weight, bias=bias, quant_state=self._quant_state()).to(inp_dtype)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        nn.Module._save_to_state_dict(self, destination, prefix, keep_vars)


# ------------------------------------------------------------------------------------------------
# 8 bit (LLM.int8())
# ------------------------------------------------------------------------------------------------
def _int8_vectorwise_quant(A: torch.Tensor, threshold: float):
    """torch.ops.bitsandbytes.int8_vectorwise_quant, CUDA kernel, assuming no outlier reaches threshold."""
    rows = A.numel() // A.shape[-1]
    row_stats = torch.empty(rows, device=A.device, dtype=torch.float32)
    out_row = torch.empty(A.shape, device=A.device, dtype=torch.int8)
    outlier_cols = None
    if threshold > 0.0:
        outliers = A.abs() >= threshold
        outliers.any()                      # data dependent in bnb; the stand-in takes "no outliers"
        outlier_cols = torch.empty(0, device=A.device, dtype=torch.int64)
        del outliers
    if rows > 1 and outlier_cols is not None:
        out_row[:, outlier_cols] = 0
    return out_row, row_stats, outlier_cols


def _int8_linear_matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """int8_linear_matmul, CUDA kernel (cuBLASLt igemm; fp32 fallback when K % 4 != 0)."""
    out = torch.empty((*A.shape[:-1], B.shape[0]), device=A.device, dtype=torch.int32)
    if A.shape[-1] % 4 != 0:
        result = torch.matmul(A.float(), B.float().t()).to(torch.int32)
        return out.copy_(result)
    return out


def _int8_mm_dequant(A: torch.Tensor, row_stats, col_stats, dtype=None, bias=None) -> torch.Tensor:
    """int8_mm_dequant, CUDA kernel: fp16 output, then the cast to `dtype`."""
    out = torch.empty_like(A, dtype=torch.float16)
    if bias is not None and bias.dtype != torch.float16:
        out.add_(bias)
    return out.to(dtype or torch.float16)


def _int8_scaled_mm(A, B, row_stats, col_stats, bias=None, dtype=None) -> torch.Tensor:
    """int8_scaled_mm, default backend (used on CUDA too)."""
    out_i32 = _int8_linear_matmul(A, B)
    return _int8_mm_dequant(out_i32, row_stats, col_stats, dtype=dtype or torch.float16, bias=bias)


def _int8_mixed_scaled_mm(A, CA, CB, SCA, SCB, outlier_cols=None, bias=None):
    """int8_mixed_scaled_mm, default backend (used on CUDA too), without outliers."""
    subA = torch.empty(0, device=A.device, dtype=A.dtype)
    output = _int8_scaled_mm(CA, CB, SCA, SCB, bias=bias, dtype=A.dtype)
    return output, subA


class MatMul8bitLt(torch.autograd.Function):
    """bitsandbytes/autograd/_functions.py MatMul8bitLt (what bnb.matmul runs on CUDA), frozen int8
    weight (has_fp16_weights=False): the 16-bit input is kept on ctx for backward."""

    @staticmethod
    def forward(ctx, A, B, out=None, bias=None, state=None):
        ctx.is_empty = False
        if math.prod(A.shape) == 0:
            ctx.is_empty = True
            ctx.A, ctx.B, ctx.bias = A, B, bias
            if A.shape[-1] == B.shape[0]:
                return torch.empty(A.shape[:-1] + B.shape[1:], dtype=A.dtype, device=A.device)
            return torch.empty(A.shape[:-1] + B.shape[:1], dtype=A.dtype, device=A.device)
        input_shape = A.shape
        if len(A.shape) == 3:
            A = A.reshape(-1, A.shape[-1])
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("trainable int8 weights (has_fp16_weights=True) are not modelled")
        CA, SCA, outlier_cols = _int8_vectorwise_quant(A.to(torch.float16), threshold=state.threshold)
        CAt = SCAt = None
        if state.threshold > 0.0:
            state.idx = outlier_cols
            output, subA = _int8_mixed_scaled_mm(A, CA, state.CB, SCA, state.SCB, outlier_cols, bias)
        else:
            output = _int8_scaled_mm(CA, state.CB, SCA, state.SCB, bias=bias, dtype=A.dtype)
            subA = None
        ctx.state = state
        ctx.grad_shape = input_shape
        ctx.dtype_A = A.dtype
        ctx.dtype_bias = None if bias is None else bias.dtype
        if any(ctx.needs_input_grad[:2]):
            ctx.tensors = (CAt, subA, A)
            ctx.tensor_states = (SCAt, state.idx)
        else:
            ctx.tensors = [None, None, None]
            ctx.tensor_states = (None, None)
            ctx.save_for_backward(None, None)
        output_shape = (*input_shape[:-1], state.CB.shape[0])
        if len(input_shape) == 3:
            return output.reshape(output_shape)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.is_empty:
            bias_grad = None if ctx.bias is None else torch.zeros_like(ctx.bias)
            return torch.zeros_like(ctx.A), torch.zeros_like(ctx.B), None, bias_grad, None
        req_gradA, req_gradB, _, req_gradBias, _ = ctx.needs_input_grad
        state = ctx.state
        grad_A = grad_B = grad_bias = None
        if req_gradBias:
            grad_bias = grad_output.sum(0, dtype=ctx.dtype_bias)
        if len(grad_output.shape) == 3:
            grad_output = grad_output.reshape(-1, grad_output.shape[-1]).contiguous()
        if req_gradA:
            CB = state.CB.to(ctx.dtype_A, copy=True).mul_(state.SCB.unsqueeze(1).mul(1.0 / 127.0))
            grad_A = torch.matmul(grad_output.to(ctx.dtype_A), CB).view(ctx.grad_shape)
        return grad_A, grad_B, None, grad_bias, None


class Linear8bitLt(bnb.nn.Linear8bitLt):
    """Stand-in for a loaded bnb.nn.Linear8bitLt (has_fp16_weights=False), on `meta`."""

    def __init__(self, in_features: int, out_features: int, bias: nn.Parameter | None, *,
                 threshold: float = INT8_THRESHOLD, has_fp16_weights: bool = False, index=None,
                 source_cls: type | None = None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, out_features
        self.state = bnb.MatmulLtState()
        self.index = index
        self.state.threshold = threshold
        self.state.has_fp16_weights = has_fp16_weights
        if threshold > 0.0 and not has_fp16_weights:
            self.state.use_pool = True
        self.weight = nn.Parameter(torch.empty((out_features, in_features), dtype=torch.int8, device="meta"),
                                   requires_grad=False)
        self.register_buffer("SCB", torch.empty((out_features,), dtype=torch.float32, device="meta"),
                             persistent=False)
        self.bias = bias   # as loaded: still requires grad (peft / prepare_model_for_kbit_training freeze it)
        if source_cls is not None:
            self.source_cls = source_cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bnb.nn.Linear8bitLt.forward after init_8bit_state(): state.CB is the int8 weight, state.SCB its row stats
        self.state.is_training = self.training
        self.state.CB, self.state.SCB = self.weight.data, self.SCB
        if self.bias is not None and self.bias.dtype != x.dtype:
            self.bias.data = self.bias.data.to(x.dtype)
        # bnb.matmul -> MatMul8bitLt on CUDA (MatMul8bitFp only on cpu/xpu)
        return MatMul8bitLt.apply(x, self.weight, None, self.bias, self.state)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        nn.Module._save_to_state_dict(self, destination, prefix, keep_vars)

    def _load_from_state_dict(self, *args, **kwargs):
        nn.Module._load_from_state_dict(self, *args, **kwargs)


# ------------------------------------------------------------------------------------------------
# the recipe
# ------------------------------------------------------------------------------------------------
def bnb_config(setup: TrainingSetup):
    """The BitsAndBytesConfig of the standard QLoRA recipe for this setup."""
    if setup.quant.quant_type is QuantType.INT8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=setup.quant.quant_type.value,
        bnb_4bit_use_double_quant=setup.quant.double_quant,
        bnb_4bit_compute_dtype=TORCH_DTYPES[setup.precision.compute_dtype])


def _linear_like(module: nn.Module) -> bool:
    return type(module) is nn.Linear or isinstance(module, Conv1D)


def quantize_for_qlora(lm: nn.Module, model_spec: ModelSpec | None, setup: TrainingSetup) -> nn.Module:
    """from_pretrained(quantization_config=...) [+ prepare_model_for_kbit_training] on a meta model."""
    config = bnb_config(setup)
    # what the checkpoint's linears hold before quantization: their dtype (quant_state.dtype) and bias
    before = {name: (m.weight.dtype, m.bias) for name, m in lm.named_modules() if _linear_like(m)}

    quantizer = AutoHfQuantizer.from_config(config, pre_quantized=False)
    quantizer.preprocess_model(lm, dtype=lm.dtype, device_map=None)   # replace_with_bnb_linear, on meta
    for name, module in list(lm.named_modules()):
        if type(module) is bnb.nn.Linear4bit:
            weight_dtype, bias = before[name]
            new = Linear4bit(module.in_features, module.out_features, bias,
                             compute_dtype=module.compute_dtype,
                             compress_statistics=module.weight.compress_statistics,
                             quant_type=module.weight.quant_type, weight_dtype=weight_dtype,
                             blocksize=module.weight.blocksize, source_cls=getattr(module, "source_cls", None))
        elif type(module) is bnb.nn.Linear8bitLt:
            _, bias = before[name]
            new = Linear8bitLt(module.in_features, module.out_features, bias,
                               threshold=module.state.threshold, has_fp16_weights=module.state.has_fp16_weights,
                               index=module.index, source_cls=getattr(module, "source_cls", None))
        else:
            continue
        new.train(lm.training)
        lm.set_submodule(name, new)
    lm.hf_quantizer = quantizer
    quantizer.postprocess_model(lm)   # is_loaded_in_4bit / is_loaded_in_8bit, config.quantization_config

    if setup.recipe.kbit_upcast:
        # TRL / the QLoRA notebooks: every non-quantized 16-bit parameter upcast to fp32, base frozen.
        # Checkpointing is then enabled by build_model exactly as for the other methods.
        lm = prepare_model_for_kbit_training(
            lm, use_gradient_checkpointing=setup.checkpointing is Checkpointing.FULL,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm
