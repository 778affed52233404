"""ModelSpec's own queries: the linears an adapter wraps."""
from gpuplan.planner.io.catalog import resolve_model


def test_adapted_linears_names_dense_layer_targets_in_layer_order():
    m = resolve_model("llama-3.1-8b")
    got = [lin.name for lin in m.adapted_linears(("v_proj", "q_proj", "down_proj", "no_such_module"))]
    assert got == [lin.name for lin in m.dense_linears if lin.name in {"q_proj", "v_proj", "down_proj"}]
    assert len(got) == 3 and m.adapted_linears(()) == []


def test_adapted_linears_leaves_fused_experts_to_moe_lora():
    m = resolve_model("mixtral-8x7b")
    fused = {lin.name for lin in m.moe_linears if lin.experts > 1}
    assert fused, "mixtral's MoE layers carry fused expert weights"
    targets = tuple(lin.name for lin in m.moe_linears)
    moe = m.adapted_linears(targets, moe=True)
    assert moe and not fused & {lin.name for lin in moe}
    # None: the dense layer's linears, then the MoE layer's
    both = m.adapted_linears(targets, moe=None)
    assert both == m.adapted_linears(targets) + moe
