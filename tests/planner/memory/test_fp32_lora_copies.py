"""LoRA on an fp32 frozen base under bf16 autocast: the recompute's end with every 16-bit copy of the layer
live, and layer 0's untracked norm and q/k/v copies without checkpointing (planner/memory/layers.py
recompute_end_bytes, _untracked_first_attention; issue 14/11). The recorded matrix
(data/measurements/accuracy_simulate_fp32lora.json) checks the figures against the simulated step."""
from gpuplan.planner import Component, Phase, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.layers import _untracked_first_attention, recompute_end_bytes
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.model import LinearRole

MISTRAL_2L = "tests/fixtures/models/mistral-7b-v0.1-2-layers.config.json"


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup.from_dict({"method": "lora", "batch_size": 1, "seq_len": 128, **kw})


def _layer_copies(m) -> int:
    return 2 * sum(lin.weight_count for lin in m.dense_linears)


def test_recompute_end_holds_every_copy_of_the_layer():
    m = resolve_model(MISTRAL_2L)
    est = estimate(m, _setup(lora={"targets": ["all-linear"], "dropout": 0.0}), replay=False)
    bwd = est.phase_components[Phase.BACKWARD]
    # down_proj's copy is live at the recompute's end: more than the six other linears' copies
    assert bwd[Component.TEMPORARIES] > _layer_copies(m)


def test_recompute_end_only_for_cast_frozen_weights():
    m = resolve_model(MISTRAL_2L)
    rs, _, act = terms(m, _setup())
    assert act.recompute_end == recompute_end_bytes(m, rs, act.layer_copies) > 0
    for other in (_setup(base_dtype="bf16"), _setup(method="full"), _setup(precision="bf16-true")):
        assert terms(m, other)[2].recompute_end == 0


def test_first_layer_untracked_without_checkpointing_only():
    m = resolve_model(MISTRAL_2L)
    rs = terms(m, _setup(checkpointing="none"))[0]
    norm, copies = _untracked_first_attention(m, rs)
    qkv = sum(lin.weight_count for lin in m.dense_linears if lin.block == "attn" and lin.role is LinearRole.INPUT)
    assert (norm, copies) == (4 * m.hidden, 2 * qkv)
    assert _untracked_first_attention(m, terms(m, _setup())[0]) == (0.0, 0)            # checkpointing
    assert _untracked_first_attention(m, terms(m, _setup(checkpointing="none", method="full"))[0]) == (0.0, 0)
    bf16 = terms(m, _setup(checkpointing="none", base_dtype="bf16"))[0]
    assert _untracked_first_attention(m, bf16) == (4 * m.hidden, 0)                   # no copies to drop
    trained_embedding = _setup(checkpointing="none", lora={"modules_to_save": ["embed_tokens"]})
    assert _untracked_first_attention(m, terms(m, trained_embedding)[0]) == (0.0, 0)
