"""The dashboard's Watch page through AppTest: a watch file's figures, a file that grows, two runs side
by side, the live warnings, and one-line problems for a missing file."""
import json

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from gpuplan.app.dashboard import main as dashboard_main  # noqa: E402
from gpuplan.app.dashboard.page_watch import paths_of  # noqa: E402
from gpuplan.app.watch_charts import run_series  # noqa: E402
from gpuplan.profiler.watch.schema import Kind, line  # noqa: E402

GIB = 2**30
T0 = 1_800_000_000.0


def _write(path, steps, gpu=True, leak=False, finished=False, expected=None, cpu=False):
    """A watch file as `gpuplan watch` writes it: start, one sample and one step a second."""
    exp = expected or {"source": "--estimate-from my.yaml", "model": "llama-3.2-1b", "device_total_bytes": 30 * GIB,
                       "peak_reserved_bytes": 28 * GIB, "peak_allocated_bytes": 26 * GIB, "tokens_per_s": 9000.0,
                       "growth_bytes": 0}
    rows = [line(Kind.START, T0, mode="launch", command=["python", "train.py"], pid=7, expected=exp, notes=[])]
    for s in range(1, steps + 1):
        g = [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * GIB,
              "run_memory_bytes": (20 + s) * GIB, "run_memory_source": "process", "utilization_pct": 90 + s % 5}]
        rows.append(line(Kind.SAMPLE, T0 + s, gpus=g if gpu else [], processes=[], rss_bytes=3 * GIB, notes=[]))
        memory = ({"device": "cpu", "rss_bytes": 3 * GIB, "peak_rss_bytes": 3 * GIB + s * 2**20} if cpu else
                  {"device": "cuda:0", "allocated_bytes": 10 * GIB + (s * 2**20 if leak else 0),
                   "peak_allocated_bytes": 25 * GIB, "peak_reserved_bytes": (26 if s > 1 else 27) * GIB})
        rows.append(line(Kind.STEP, T0 + s + 0.5, pid=8, rank=0, step=s, step_time_s=1.0 if s > 1 else None,
                         tokens=8192, **memory))
    if finished:
        rows.append(line(Kind.SUMMARY, T0 + steps + 1, exit_code=0, warnings=[], expected=exp, notes=[]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def app(**params) -> AppTest:
    at = AppTest.from_file(dashboard_main.__file__, default_timeout=60)
    at.query_params["page"] = "watch"
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def charts(at):
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_no_file_asks_for_one():
    at = app()
    assert not at.exception and at.header[0].value == "Watch" and "gpuplan watch --output" in at.info[0].value


def test_a_watch_file_is_plotted_against_its_estimate(tmp_path):
    path = _write(tmp_path / "run.jsonl", steps=5)
    at = app(runs=str(path), refresh="0")
    assert not at.exception and not at.error
    figs = charts(at)
    assert set(figs) == {"Memory over time", "Memory per step", "Tokens per second", "GPU utilization (NVML)"}
    mem = figs["Memory over time"]
    gpu = next(t for t in mem["data"] if t["name"] == "run: GPU (NVML)")
    assert gpu["y"] == [21.0, 22.0, 23.0, 24.0, 25.0] and gpu["x"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    shapes = sorted(s["y0"] for s in mem["layout"]["shapes"])
    assert shapes == [30.0, 80.0]                               # the estimate and the GPU's capacity
    steps = figs["Memory per step"]
    assert next(t for t in steps["data"] if t["name"] == "run: peak reserved")["y"] == [27.0, 26.0, 26.0, 26.0, 26.0]
    tps = next(t for t in figs["Tokens per second"]["data"])
    assert tps["y"][1:] == [8192.0] * 4 and tps["y"][0] is None  # step 1 has no step time
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["peak GPU memory (NVML)"] == "25.00 GiB" and metrics["peak reserved (allocator)"] == "27.00 GiB"
    assert metrics["tokens/s (mean of steps)"] == "8,192"


def test_the_page_follows_a_growing_file(tmp_path):
    path = _write(tmp_path / "run.jsonl", steps=3)
    at = app(runs=str(path), refresh="0")
    assert len(charts(at)["Memory over time"]["data"][0]["y"]) == 3
    _write(path, steps=7)
    at.run()
    assert len(charts(at)["Memory over time"]["data"][0]["y"]) == 7


def test_two_runs_side_by_side_with_a_live_leak_warning(tmp_path):
    a = _write(tmp_path / "a.jsonl", steps=12, leak=True)
    b = _write(tmp_path / "b.jsonl", steps=4, gpu=False, finished=True)
    at = app(runs=f"{a}, {b}", refresh="0")
    assert not at.exception
    assert [s.value for s in at.subheader] == ["a", "b"]
    step_traces = [t["name"] for t in charts(at)["Memory per step"]["data"]]
    assert step_traces == ["a: peak reserved", "a: peak allocated", "a: allocated between steps",
                           "b: peak reserved", "b: peak allocated", "b: allocated between steps"]
    names = [t["name"] for t in charts(at)["Memory over time"]["data"]]
    assert names == ["a: GPU (NVML)", "a: host RSS", "b: host RSS"]
    assert len(at.error) == 1 and at.error[0].value.startswith("leak: allocated between steps rose")


def test_a_missing_file_is_one_warning(tmp_path):
    good = _write(tmp_path / "run.jsonl", steps=2)
    at = app(runs=f"{tmp_path / 'nope.jsonl'},{good}", refresh="0")
    assert not at.exception
    assert any("nope.jsonl: no such file" in w.value for w in at.warning)
    assert [s.value for s in at.subheader] == ["run"]


def test_paths_and_a_half_written_last_line(tmp_path):
    assert paths_of("a.jsonl, b.jsonl\nc.jsonl,,") == ["a.jsonl", "b.jsonl", "c.jsonl"]
    path = _write(tmp_path / "run.jsonl", steps=2)
    with open(path, "a") as f:
        f.write('{"schema": "gpuplan.watch-sample/1", "kind": "sam')   # the watch is writing this line now
    assert run_series(path).step == [1, 2]


def test_a_cpu_runs_steps_show_their_peak_rss(tmp_path):
    path = _write(tmp_path / "cpu.jsonl", steps=3, gpu=False, cpu=True)
    at = app(runs=str(path), refresh="0")
    assert not at.exception
    traces = charts(at)["Memory per step"]["data"]
    assert [t["name"] for t in traces] == ["cpu: peak RSS (CPU)"]
    assert traces[0]["y"] == [(3 * GIB + s * 2**20) / GIB for s in (1, 2, 3)]
    assert {m.label: m.value for m in at.metric}["peak reserved (allocator)"] == "-"
