"""Every dashboard page through Streamlit's AppTest: inputs change, outputs change, errors stay inline.

The figures shown must be the planner's own (computed here a second way, straight from the planner).
"""
import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from gpuplan.app.dashboard import main as dashboard_main  # noqa: E402
from gpuplan.planner import Method, Precision, TrainingSetup, estimate  # noqa: E402
from gpuplan.planner.io.catalog import _gpu_catalog, resolve_model  # noqa: E402

SCRIPT = dashboard_main.__file__
FIXTURES = Path(__file__).parent / "fixtures"
TINY_CONFIG = FIXTURES / "tiny-llama-config.json"
PROFILE = FIXTURES / "profile-tiny-llama.json"
GIB = 2**30


def app(page: str | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(SCRIPT, default_timeout=60)
    if page:
        at.query_params["page"] = page
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def gib(nbytes: int) -> str:
    return f"{nbytes / GIB:,.2f} GiB"


# --- navigation and the URL --------------------------------------------------------------------
def test_every_page_renders_without_error():
    for page in dashboard_main.PAGES:
        at = ok(app(page))
        assert not at.error, (page, [e.value for e in at.error])
        assert at.header[0].value == dashboard_main.PAGES[page][0]


def test_sidebar_navigation_writes_the_page_to_the_url():
    at = ok(app())
    assert at.header[0].value == "Estimate" and "page" not in at.query_params
    at.radio(key="page").set_value("gpus").run()
    assert at.header[0].value == "GPUs" and at.query_params["page"] == "gpus"


def test_unknown_page_and_bad_link_values_fall_back_with_a_message():
    at = ok(app("nope", batch_size="lots", method="sgd"))
    assert at.header[0].value == "Estimate"
    warnings = " ".join(w.value for w in at.warning)
    assert "batch_size='lots'" in warnings and "method='sgd'" in warnings
    assert at.number_input(key="estimate.batch_size").value == 8


# --- Estimate ------------------------------------------------------------------------------------
def test_estimate_shows_the_planners_figures_and_changes_with_the_setup():
    at = ok(app())
    default = estimate(resolve_model("llama-3.1-8b"), TrainingSetup())
    assert metric(at, "device total") == gib(default.device_total_bytes)
    assert metric(at, "peak allocated") == gib(default.peak_allocated_bytes)
    at.selectbox(key="estimate.method").set_value("qlora").run()
    at.number_input(key="estimate.batch_size").set_value(2).run()
    qlora = estimate(resolve_model("llama-3.1-8b"), TrainingSetup(method=Method.QLORA, batch_size=2))
    assert metric(ok(at), "device total") == gib(qlora.device_total_bytes)
    assert at.query_params["method"] == "qlora" and at.query_params["batch_size"] == "2"
    (fig,) = charts(at)
    total_bar = sum(trace["y"][-1] for trace in fig["data"])
    assert total_bar == pytest.approx(qlora.device_total_bytes / GIB)
    fit = at.dataframe[0].value
    assert list(fit["GPU"]) == ["rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb"] and list(fit["fits"]) == ["yes"] * 3


def test_estimate_from_a_shared_link():
    at = ok(app(model="qwen-2.5-7b", method="lora", lora_r="64", lora_targets="all-linear", seq_len="4096",
                gpus="t4,l4"))
    setup = TrainingSetup(method=Method.LORA, seq_len=4096).with_(
        lora=TrainingSetup().lora.__class__(r=64, targets=("all-linear",)))
    expected = estimate(resolve_model("qwen-2.5-7b"), setup)
    assert metric(at, "device total") == gib(expected.device_total_bytes)
    assert list(at.dataframe[0].value["GPU"]) == ["t4", "l4"]
    assert at.multiselect(key="estimate.lora_targets").value == ["all-linear"]


def test_estimate_impossible_setup_is_an_inline_error():
    at = ok(app(method="qlora", precision="fp32"))
    assert any("QLoRA" in e.value for e in at.error) and not at.metric
    at.selectbox(key="estimate.precision").set_value("bf16-true").run()
    assert not ok(at).error and metric(at, "device total")


def test_estimate_from_an_uploaded_config_and_a_bad_one():
    at = ok(app())
    at.radio(key="estimate.model_source").set_value("upload").run()
    assert not at.metric and at.info
    at.file_uploader(key="estimate.upload").set_value(("tiny.json", TINY_CONFIG.read_bytes(), "application/json")).run()
    tiny = resolve_model(str(TINY_CONFIG))
    assert metric(ok(at), "device total") == gib(estimate(tiny, TrainingSetup()).device_total_bytes)
    assert at.subheader[0].value.startswith("tiny:")
    at.file_uploader(key="estimate.upload").set_value(("bad.json", b"{not json", "application/json")).run()
    assert any("not valid JSON" in e.value for e in ok(at).error)


def test_estimate_from_a_config_path_and_a_missing_one(tmp_path):
    at = ok(app(model_source="path", model=str(TINY_CONFIG)))
    assert metric(at, "parameters")
    at.text_input(key="estimate.model").set_value(str(tmp_path / "nothing.json")).run()
    assert any("no config.json" in e.value for e in ok(at).error)


# --- Compare -------------------------------------------------------------------------------------
def test_compare_full_lora_qlora_side_by_side():
    at = ok(app("compare"))
    table = at.dataframe[0].value
    assert [s.split(":")[1].split(",")[0].strip() for s in table["setup"]] == ["full", "lora", "qlora"]
    model = resolve_model("llama-3.1-8b")
    for row, method in zip(table["device total"], (Method.FULL, Method.LORA, Method.QLORA)):
        assert row == gib(estimate(model, TrainingSetup(method=method)).device_total_bytes)
    bars, sweep = charts(at)
    assert list(bars["data"][0]["x"]) == list(table["setup"])
    assert len(sweep["data"]) == 3 and sweep["data"][0]["x"] == [512, 1024, 2048, 4096, 8192, 16384]


def test_compare_changes_count_setup_and_sweep():
    at = ok(app("compare"))
    at.number_input(key="compare.setups").set_value(4).run()
    assert len(at.dataframe[0].value) == 4 and "no ckpt" in at.dataframe[0].value["setup"][3]
    at.selectbox(key="compare.s2.method").set_value("full").run()
    at.checkbox(key="compare.s2.grad_ckpt").set_value(False).run()
    table = ok(at).dataframe[0].value
    assert table["device total"][1] == table["device total"][3]   # the same setup twice
    assert at.query_params["s2.method"] == "full" and at.query_params["setups"] == "4"
    at.selectbox(key="compare.sweep").set_value("batch_size").run()
    sweep = charts(ok(at))[1]
    assert sweep["data"][0]["x"] == [1, 2, 4, 8, 16, 32]
    ys = sweep["data"][0]["y"]
    assert ys == sorted(ys)   # memory never shrinks as the batch grows


def test_compare_one_bad_column_leaves_the_others():
    at = ok(app("compare", **{"s3.precision": "fp32"}))
    assert any("QLoRA" in e.value for e in at.error)
    assert len(at.dataframe[0].value) == 2


# --- Profile -------------------------------------------------------------------------------------
def test_profile_loads_a_json_with_comparison_modules_and_timeline():
    at = ok(app("profile", source="load"))
    at.file_uploader(key="profile.upload").set_value(("p.json", PROFILE.read_bytes(), "application/json")).run()
    saved = json.loads(PROFILE.read_text())
    assert metric(ok(at), "peak allocated (max_memory_allocated)") == f"{saved['peak_allocated_bytes'] / 2**20:,.2f} MiB"
    assert at.subheader[0].value.startswith("p.json on simulate")
    assert metric(at, "device total (nvidia-smi)") == "not measurable here"
    compare_table, modules = at.dataframe[0].value, at.dataframe[1].value
    assert list(compare_table["error %"][:1]) == [saved["comparison"]["figures"][0]["error_pct"]]
    assert "model.layers.*.mlp.gate_proj" in list(modules["module"]) and modules["copies"].max() == 2
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert any("timeline" in t for t in titles) and any("Estimate vs measured" in t for t in titles)


def test_profile_rejects_a_file_that_is_no_profile():
    at = ok(app("profile", source="load"))
    at.file_uploader(key="profile.upload").set_value(("x.json", b'{"a": 1}', "application/json")).run()
    assert any("not a gpuplan profile" in e.value for e in ok(at).error) and not at.metric


def test_profile_simulates_from_the_page():
    """The same setup as the saved fixture (`gpuplan profile --device simulate`) gives the same bytes."""
    pytest.importorskip("torch")
    at = ok(app("profile", model_source="path", model=str(TINY_CONFIG), batch_size="2", seq_len="32"))
    at.button(key="profile.run").click().run()
    result = ok(at).session_state["profile._result.simulate"]
    saved = json.loads(PROFILE.read_text())
    for key in ("peak_allocated_bytes", "phases", "phase_components"):
        assert result[key] == saved[key], key
    measured = [r["measured_bytes"] for r in result["comparison"]["components"]]
    assert measured == [r["measured_bytes"] for r in saved["comparison"]["components"]]
    planned = estimate(resolve_model(str(TINY_CONFIG)), TrainingSetup(batch_size=2, seq_len=32))
    assert result["comparison"]["figures"][0]["estimate_bytes"] == planned.peak_allocated_bytes
    assert any("timeline" in c["layout"]["title"]["text"] for c in charts(at))


def test_profile_simulation_refused_inline():
    at = ok(app("profile", model_source="path", model=str(TINY_CONFIG), method="qlora", precision="fp32"))
    at.button(key="profile.run").click().run()
    assert any("QLoRA" in e.value for e in ok(at).error)


# --- GPUs ----------------------------------------------------------------------------------------
def test_gpus_catalog_filters_and_prices():
    at = ok(app("gpus"))
    table = at.dataframe[0].value
    assert len(table) == len(_gpu_catalog()["gpus"])
    h100 = table[table["name"] == "h100-sxm-80gb"].iloc[0]
    assert h100["usd_per_gib_hour"] == pytest.approx(h100["usd_per_hour"] / h100["memory_gib"], rel=1e-3)
    at.slider(key="gpus.min_memory").set_value(80).run()
    big = ok(at).dataframe[0].value
    assert 0 < len(big) < len(table) and (big["memory_gib"] >= 80).all()
    assert at.query_params["min_memory"] == "80"
    at.multiselect(key="gpus.vendor").set_value(["amd"]).run()
    assert list(ok(at).dataframe[0].value["name"]) == ["mi300x"]
    at.text_input(key="gpus.q").set_value("no-such-gpu").run()
    assert ok(at).info and not at.dataframe


# --- Recommend -----------------------------------------------------------------------------------
RECOMMEND_LINK = dict(model="qwen-2.5-0.5b", gpus="rtx-4090,h100-sxm-80gb", tokens="50M")


def test_recommend_shows_the_planners_cheapest_and_fastest():
    from gpuplan.planner.plans.recommend import Constraints, recommend

    at = ok(app("recommend", **RECOMMEND_LINK))
    rec = recommend(resolve_model("qwen-2.5-0.5b"), 50_000_000, 1.0, Constraints(gpus=("rtx-4090", "h100-sxm-80gb")))
    assert metric(at, "Cheapest: cost") == f"${rec.cheapest.usd:,.2f}"
    assert metric(at, "Fastest: time") == f"{rec.fastest.hours:,.2f} h"
    frontier = at.dataframe[0].value
    assert len(frontier) == len(rec.frontier) and frontier["pareto"].all()
    assert list(frontier["usd"]) == sorted(frontier["usd"])
    (scatter,) = charts(at)
    front_trace = next(t for t in scatter["data"] if t["name"] == "Pareto front")
    assert len(front_trace["x"]) == len(rec.frontier)
    at.radio(key="recommend.table").set_value("all").run()
    assert len(ok(at).dataframe[0].value) == rec.qualifying > len(rec.frontier)
    assert at.query_params["table"] == "all"


def test_recommend_impossible_budget_shows_what_gets_closest():
    at = ok(app("recommend", budget="0.01", **RECOMMEND_LINK))
    assert any("No plan meets" in w.value for w in at.warning)
    assert any("budget" in m.value for m in at.markdown)
    assert not at.dataframe


def test_recommend_bad_input_inline():
    at = ok(app("recommend", **RECOMMEND_LINK))
    at.text_input(key="recommend.tokens").set_value("lots").run()
    assert any("cannot read 'lots'" in e.value for e in ok(at).error)
    at.text_input(key="recommend.tokens").set_value("50M").run()
    at.multiselect(key="recommend.methods").set_value([]).run()
    assert any("at least one method" in e.value for e in ok(at).error)


def test_compare_zero_stages_when_the_cli_has_them():
    from gpuplan.app.dashboard.setup_form import FIELDS
    from gpuplan.app.options import setup_from_options

    if "zero" not in {f.param.name for f in FIELDS}:
        pytest.skip("the CLI has no --zero yet (multi-GPU flags, issue 4)")
    at = ok(app("compare", setups="2", **{"s1.gpus_per_node": "8", "s2.gpus_per_node": "8", "s2.zero": "3", "s2.method": "full"}))
    table = at.dataframe[0].value
    base = dict(method="full", precision="bf16-mixed", optimizer="adamw-fused", batch_size=8, seq_len=1024,
                grad_accum=1, grad_ckpt=True, attn="sdpa", loss="hf", gpus_per_node=8)
    for row, zero in zip(table["device total"], (0, 3)):
        model, setup = setup_from_options(model="llama-3.1-8b", **base, zero=zero)
        assert row == gib(estimate(model, setup).device_total_bytes)
    assert table["device total"][1] != table["device total"][0]


def test_an_unexpected_failure_is_one_line_not_a_traceback(monkeypatch):
    from gpuplan.app.dashboard import page_estimate

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nTraceback (most recent call last): ...")

    monkeypatch.setattr(page_estimate, "estimate", broken)
    at = ok(app())
    (error,) = at.error
    assert "RuntimeError: disk on fire" in error.value and "Traceback" not in error.value
    assert at.radio(key="page").value == "estimate"   # the navigation still works


def test_inputs_survive_a_visit_to_another_page():
    at = ok(app())
    at.selectbox(key="estimate.method").set_value("qlora").run()
    at.radio(key="page").set_value("gpus").run()
    assert "method" not in at.query_params   # the link holds the shown page's inputs only
    at.radio(key="page").set_value("estimate").run()
    assert ok(at).selectbox(key="estimate.method").value == "qlora" and at.query_params["method"] == "qlora"
