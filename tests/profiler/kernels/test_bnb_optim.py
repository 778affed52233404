"""profiler/kernels/bnb_optim.py against the optimizers HF Trainer really builds (bitsandbytes on CPU).

bitsandbytes >= 0.48 runs its 8-bit and 32-bit optimizers on CPU (backends/cpu/ops.py
_optimizer_update_8bit_blockwise_cpu / _optimizer_update_32bit_cpu), so (a) is
`Trainer(optim=...).create_optimizer()` stepped once on real CPU tensors. Its state is
compared tensor by tensor with (b) `bnb_optimizer(..., model=...)` on real tensors and (c) the
same under FakeTensorMode, as simulate() builds it.

CPU vs CUDA: on CPU bitsandbytes never pages (Optimizer8bit.get_state_buffer warns and uses
torch.zeros_like); on CUDA a paged optimizer puts state1/state2 of every parameter with
>= 1e5 elements in cudaMallocManaged memory, which torch's allocator does not count. The
stand-in follows CUDA: those states are `meta` placeholders flagged is_paged. So real CPU bytes
== stand-in device bytes + paged_state_bytes(). The CPU update kernels also allocate
temporaries the CUDA kernels do not (those update in place): not compared; the stand-in
allocates none, as CUDA.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

transformers = pytest.importorskip("transformers")
bnb = pytest.importorskip("bitsandbytes")

from gpuplan.planner import Component, Method, Optimizer, Phase, TrainingSetup, model_from_config  # noqa: E402
from gpuplan.profiler.kernels import bnb_optim  # noqa: E402
from gpuplan.profiler.build import build, materialize  # noqa: E402
from gpuplan.profiler.simulate import simulate  # noqa: E402
from gpuplan.profiler.tracker import allocator_bytes  # noqa: E402

TINY = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=4, vocab_size=1000)
HF_NAMES = {Optimizer.ADAMW_8BIT: "adamw_bnb_8bit", Optimizer.PAGED_ADAMW_8BIT: "paged_adamw_8bit",
            Optimizer.PAGED_ADAMW: "paged_adamw_32bit", Optimizer.LION: "lion_32bit"}
KINDS = list(HF_NAMES)


def tiny_model(device="cpu") -> torch.nn.Module:
    """Parameters of every size class: norms (256 < min_8bit_size), attention (65536), MLP
    (176128 >= 1e5: paged) and embedding / lm_head (256000: paged, nn.Embedding: 32-bit)."""
    torch.manual_seed(0)
    with torch.device(device):
        lm = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**TINY))
    return lm


def step_once(lm, opt) -> None:
    for p in lm.parameters():
        p.grad = torch.randn_like(p) if p.device.type != "meta" else torch.empty_like(p)
    opt.step()


def inventory(lm, opt) -> dict[str, dict[str, tuple[tuple[int, ...], torch.dtype, bool]]]:
    names = {id(p): n for n, p in lm.named_parameters()}
    return {names[id(p)]: {k: (tuple(v.shape), v.dtype, bool(getattr(v, "is_paged", False)))
                           for k, v in state.items() if isinstance(v, torch.Tensor)}
            for p, state in opt.state.items()}


def hf_trainer_optimizer(lm, kind: Optimizer, tmp_path):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), optim=HF_NAMES[kind], report_to=[], use_cpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = transformers.Trainer(model=lm, args=args)
        return trainer.create_optimizer()


@pytest.fixture(autouse=True)
def clean_global_manager():
    """HF Trainer registers its overrides in bitsandbytes' process-wide GlobalOptimManager."""
    bnb.optim.GlobalOptimManager.get_instance().initialize()
    yield
    bnb.optim.GlobalOptimManager.get_instance().initialize()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_state_matches_hf_trainer_bitsandbytes(kind, tmp_path):
    lm_real = tiny_model()
    lm_stand = copy.deepcopy(lm_real)
    real = hf_trainer_optimizer(lm_real, kind, tmp_path)
    assert type(real) is (bnb.optim.Lion if kind is Optimizer.LION else bnb.optim.AdamW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "Paged optimizers are not supported on CPU"
        step_once(lm_real, real)
    stand = bnb_optim.bnb_optimizer(lm_stand.parameters(), kind, model=lm_stand)
    assert isinstance(stand, type(real))
    assert (stand.args.optim_bits, stand.is_paged) == (real.args.optim_bits, real.is_paged)
    assert stand.param_groups[0]["betas"] == real.param_groups[0]["betas"]
    step_once(lm_stand, stand)
    step_once(lm_stand, stand)

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    lm_fake = tiny_model("meta")
    with fake:
        materialize(lm_fake, torch.device("cpu"))
        opt_fake = bnb_optim.bnb_optimizer(lm_fake.parameters(), kind, model=lm_fake)
        step_once(lm_fake, opt_fake)
        step_once(lm_fake, opt_fake)

    a, b, c = inventory(lm_real, real), inventory(lm_stand, stand), inventory(lm_fake, opt_fake)
    assert b == c
    unpaged = {n: {k: v[:2] for k, v in s.items()} for n, s in b.items()}
    assert {n: {k: v[:2] for k, v in s.items()} for n, s in a.items()} == unpaged
    assert not any(v[2] for s in a.values() for v in s.values())   # CPU never pages

    # which states are paged: state1/state2 of params with >= 1e5 elements, under a paged optimizer
    numel = {n: p.numel() for n, p in lm_stand.named_parameters()}
    for n, s in b.items():
        for k, (_, _, paged) in s.items():
            assert paged == (stand.is_paged and k in ("state1", "state2") and numel[n] >= 1e5), (n, k)

    # 8 bit: the embeddings (HF Trainer's override) and params < 4096 elements keep fp32 states
    if kind.eight_bit:
        assert b["model.embed_tokens.weight"]["state1"][1] == torch.float32
        assert b["lm_head.weight"]["state1"][1] == torch.uint8
        assert b["model.norm.weight"]["state1"][1] == torch.float32
        assert b["model.layers.0.mlp.up_proj.weight"]["absmax1"][0] == (-(-256 * 688 // 256),)

    def nbytes(opt, paged):
        return sum(t.numel() * t.element_size() for t in bnb_optim.state_tensors(opt)
                   if bool(getattr(t, "is_paged", False)) is paged)
    assert nbytes(real, False) == nbytes(stand, False) + bnb_optim.paged_state_bytes(stand)
    assert bnb_optim.paged_state_bytes(stand) == bnb_optim.paged_state_bytes(opt_fake) == nbytes(stand, True)
    print(f"\n{kind.value}: real CPU state {nbytes(real, False)} B; stand-in device "
          f"{nbytes(stand, False)} B + paged {bnb_optim.paged_state_bytes(stand)} B")


def test_qmaps_are_shared_and_stepping_allocates_nothing():
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    lm = tiny_model("meta")
    with fake:
        materialize(lm, torch.device("cpu"))
        opt = bnb_optim.bnb_optimizer(lm.parameters(), Optimizer.ADAMW_8BIT)
        step_once(lm, opt)
        before = {id(t) for t in bnb_optim.state_tensors(opt)}
        step_once(lm, opt)
        assert {id(t) for t in bnb_optim.state_tensors(opt)} == before
    qmaps = [t for s in opt.state.values() for k, t in s.items() if k in ("qmap1", "qmap2")]
    assert len({id(t) for t in qmaps}) == 2 and all(t.shape == (256,) for t in qmaps)


def test_private_manager_does_not_leak_overrides():
    lm = tiny_model()
    a = bnb_optim.bnb_optimizer(lm.parameters(), Optimizer.ADAMW_8BIT, model=lm)
    b = bnb_optim.bnb_optimizer(lm.parameters(), Optimizer.ADAMW_8BIT)
    assert a.mng is not b.mng and len(a.mng.module_weight_config_triple) == 1
    assert not b.mng.module_weight_config_triple
    assert not bnb.optim.GlobalOptimManager.get_instance().module_weight_config_triple


@pytest.mark.parametrize("method", [Method.FULL, Method.QLORA])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_simulate_runs_with_each_bnb_optimizer(kind, method):
    model = model_from_config(TINY, "tiny")
    setup = TrainingSetup(method=method, optimizer=kind, batch_size=2, seq_len=64)
    r = simulate(model, setup)
    assert r.components[Component.OPTIMIZER_STATE] > 0
    # the update kernels work in place: nothing but weights, grads and state in the optimizer phase
    assert r.phase_components[Phase.OPTIMIZER][Component.TEMPORARIES] == 0


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_simulate_counts_device_resident_state_only(kind):
    """Paged states live in CUDA unified memory, outside torch's allocator: not counted."""
    model = model_from_config(TINY, "tiny")
    setup = TrainingSetup(method=Method.FULL, optimizer=kind, batch_size=2, seq_len=64)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    opt = built.optimizer
    with fake:
        for p in built.model.parameters():
            p.grad = torch.empty_like(p)
        opt.step()
    device = sum(allocator_bytes(t.untyped_storage().nbytes()) for t in bnb_optim.state_tensors(opt)
                 if not getattr(t, "is_paged", False))
    r = simulate(model, setup)
    assert r.phase_components[Phase.OPTIMIZER][Component.OPTIMIZER_STATE] == device, (
        "paged states counted: profiler/step.py _optimizer_state (or tracker.track) must skip tensors "
        "with `getattr(t, 'is_paged', False)` / on the meta device")
