"""YaFSDP (`--fsdp yafsdp`, planner/memory/yafsdp.py): buffers and shards read from yandex/YaFSDP's
ya_fsdp/ya_fsdp.py @ 669fc36, hand-derived for Llama-3.1-8B."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Method, PlannerError, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.comm import communication_bytes
from gpuplan.planner.memory.yafsdp import buffer_numels, super_tensors
from gpuplan.planner.specs.enums import Component, Phase
from gpuplan.planner.specs.parallel import Fsdp, Offload, ParallelSpec

LLAMA = resolve_model("llama-3.1-8b")   # V 128256, h 4096, 32 layers of 218,103,808 linear weights
VH = 128256 * 4096
LAYER = 4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 14336


def _setup(gpus: int = 8, **kw) -> TrainingSetup:
    return TrainingSetup(batch_size=1, seq_len=4096, parallel=ParallelSpec(gpus=gpus, fsdp=Fsdp.YAFSDP), **kw)


def test_super_tensors_are_the_embedding_each_layer_and_the_lm_head():
    assert super_tensors(LLAMA) == (VH, *([LAYER] * 32), VH)


def test_buffers_on_eight_ranks():
    b = buffer_numels(LLAMA, 8)
    ln = 32 * 2 * 4096 + 4096                       # input/post-attention norms and the final norm
    assert b == {"shards": 2 * VH // 8 + 32 * LAYER // 8, "ln_shard": ln // 8, "max_buffer": VH,
                 "ln_buffer": ln, "fp32_buffer": VH}


def test_weights_and_gradients_are_the_shards_plus_the_fixed_buffers():
    """bf16-mixed: param_dtype bf16. Weights: fp32 master + bf16 copy of the shard, two bf16 weight
    buffers and the bf16 layer-norm buffer; gradients: the fp32 gradient shard, two bf16 gradient
    buffers, the layer-norm gradient buffer and the fp32 reduce-scatter buffer, all in every phase."""
    b = buffer_numels(LLAMA, 8)
    shard = b["shards"] + b["ln_shard"]
    est = estimate(LLAMA, _setup())
    for phase in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER):
        comps = est.phase_components[phase]
        assert comps[Component.WEIGHTS] == 6 * shard + 2 * 2 * VH + 2 * b["ln_buffer"]
        assert comps[Component.GRADIENTS] == 4 * shard + 2 * 2 * VH + 2 * b["ln_buffer"] + 4 * VH
        assert comps[Component.OPTIMIZER_STATE] == 8 * shard        # AdamW moments on the fp32 master


def test_shard_bytes_scale_as_one_over_the_world():
    def shard_bytes(n: int) -> int:
        b = buffer_numels(LLAMA, n)
        return 10 * (b["shards"] + b["ln_shard"])   # fp32 master + fp32 gradient + bf16 copy
    for n in (2, 4, 8, 16, 32):
        assert abs(shard_bytes(n) * n - shard_bytes(1)) <= 10 * 34 * n   # padding: < n elements per tensor
        assert buffer_numels(LLAMA, n)["max_buffer"] == VH                 # the buffers do not shrink


def test_more_gpus_never_raise_the_peak():
    peaks = [estimate(LLAMA, _setup(n)).peak_allocated_bytes for n in (2, 4, 8)]
    assert peaks == sorted(peaks, reverse=True)


def test_same_collectives_and_bytes_as_fsdp2_mixed_precision():
    """bf16 all-gathers in forward and backward, fp32 reduce-scatter: what FSDP2 does with
    param_dtype=bf16, reduce_dtype=fp32 (planner/specs/engines.py)."""
    ya = communication_bytes(LLAMA, _setup())
    fsdp = communication_bytes(LLAMA, _setup().with_(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)))
    assert [(t.collective, t.bytes) for t in ya.terms] == [(t.collective, t.bytes) for t in fsdp.terms]


def test_notes_cite_the_source_and_the_readme_claim_without_applying_it():
    notes = estimate(LLAMA, _setup()).notes
    assert any("modelled from source, not simulated" in n for n in notes)
    assert any("2.32%-26.60%" in n and "not applied" in n for n in notes)


@pytest.mark.parametrize("setup, message", [
    (_setup(method=Method.LORA), "is_trainable"),
    (TrainingSetup(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.YAFSDP, offload=Offload.PARAMS)), "no offload"),
    (TrainingSetup(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.YAFSDP, tp=2)), "no TP/PP"),
])
def test_refused_in_one_line(setup, message):
    with pytest.raises(PlannerError, match=message):
        estimate(LLAMA, setup)


def test_tied_embeddings_are_refused():
    with pytest.raises(PlannerError, match="ties lm_head"):
        estimate(resolve_model("llama-3.2-1b"), _setup())


def test_cli_json_and_profile_refusal():
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "yafsdp",
                                 "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["setup"]["engine"] == "yafsdp" and d["setup"]["parallel"]["fsdp"] == "yafsdp"
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "yafsdp",
                                 "--method", "lora"])
    assert r.exit_code == 2 and "is_trainable" in r.output and "Traceback" not in r.output
    from gpuplan.profiler.run import measure

    with pytest.raises(PlannerError, match="not profiled"):
        measure(LLAMA, _setup())


def test_patched_accelerate_config_selects_it(tmp_path):
    """YaFSDP's examples/fsdp_config.yaml plus the flag its patched accelerate adds (--fsdp_ya_fsdp_enabled,
    FullyShardedDataParallelPlugin.ya_fsdp_enabled)."""
    from gpuplan.planner.fromconfig import read_config

    p = tmp_path / "fsdp_config.yaml"
    p.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nfsdp_config:\n"
                 "  fsdp_sharding_strategy: FULL_SHARD\n  fsdp_offload_params: false\n  fsdp_ya_fsdp_enabled: true\n"
                 "mixed_precision: bf16\nnum_processes: 2\n")
    c = read_config(str(p))
    assert c.options["fsdp"] == "yafsdp" and not c.refused


def test_cut_cross_entropy_under_yafsdp_keeps_its_tag():
    from gpuplan.planner import Loss

    notes = estimate(LLAMA, _setup(loss=Loss.CCE)).notes
    assert any("Cut Cross-Entropy" in n and "not simulated" in n for n in notes)


def test_a_save_adds_nothing_to_the_static_buffers():
    """state_dict() gathers each super tensor into the weight buffer it already holds (collect_module) and
    copies it to the host; zero_grad(set_to_none=True) is refused, so the gradient shard stays."""
    from gpuplan.planner.memory.checkpoints import save_peak_bytes
    from gpuplan.planner.memory.yafsdp import static_bytes

    W, G, O = static_bytes(LLAMA, _setup())
    assert save_peak_bytes(LLAMA, _setup()) == W + G + O
    est = estimate(LLAMA, _setup()).phase_components[Phase.OPTIMIZER]
    assert (est[Component.WEIGHTS], est[Component.GRADIENTS], est[Component.OPTIMIZER_STATE]) == (W, G, O)
