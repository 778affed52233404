"""The measurement record (planner/io/records.py): made, validated, written atomically, loaded, and
read by the time model's calibration as it is today."""
import json
from datetime import datetime, timezone

import pytest

from gpuplan.planner import Checkpointing, PlannerError, RunPhase, TrainingSetup, resolve_gpu, resolve_model, step_time
from gpuplan.planner.io import records
from gpuplan.planner.io.records import SCHEMA, environment, load_records, make_record, validate_record, write_record

SETUP = TrainingSetup(batch_size=4, seq_len=2048, checkpointing=Checkpointing.NONE)


def _record(**kw):
    env = environment("NVIDIA H100 80GB HBM3", gpu_count=1, driver="580.65.06", cuda="12.8",
                      versions={"torch": "2.13.0+cu128"})
    args = dict(model="llama-3.2-1b", setup=SETUP.to_dict(resolve_model("llama-3.2-1b")),
                memory={"peak_allocated_bytes": 30_000_000_000, "peak_reserved_bytes": 31_000_000_000,
                        "device_total_bytes": 31_600_000_000},
                run_phases={RunPhase.STEP: {"peak_allocated_bytes": 30_000_000_000}},
                timing={"step_time_s": 0.5, "tokens_per_s": 16384.0, "steps_timed": 10},
                device={"cuda_context_bytes": 600_000_000, "alloc_conf": "expandable_segments:True"},
                files={"log": "run.jsonl"}, notes=["a test"],
                recorded_at=datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc))
    args.update(kw)
    return make_record("watch", env, **args)


def test_make_record_has_every_field_of_the_schema():
    r = _record()
    assert list(r) == ["schema", "kind", "recorded_at", "gpu", "environment", "model", "setup", "memory",
                       "run_phases", "timing", "device", "files", "notes"]
    assert r["schema"] == SCHEMA == "gpuplan.record/1"
    assert r["gpu"] == "h100-sxm-80gb"                    # catalog name from the NVML name
    assert r["environment"]["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert r["environment"]["torch"] == "2.13.0+cu128"    # given wins over installed metadata
    assert r["environment"]["transformers"] is not None   # read from installed metadata
    assert r["recorded_at"] == "2026-12-01T09:30:00Z"
    assert r["setup"]["model"] == "llama-3.2-1b" and r["setup"]["batch_size"] == 4
    assert r["run_phases"] == {"step": {"peak_allocated_bytes": 30_000_000_000, "peak_reserved_bytes": None,
                                        "device_total_bytes": None}}
    assert r["device"] == {"cuda_context_bytes": 600_000_000, "cublas_workspace_bytes": None,
                           "alloc_conf": "expandable_segments:True"}


def test_uncatalogued_gpu_keeps_its_nvml_name():
    r = _record(timing=None, recorded_at=None)
    r2 = make_record("profile", environment("NVIDIA Imaginary X1"), model=None, setup=None)
    assert r2["gpu"] == "NVIDIA Imaginary X1" and r2["timing"] is None and r2["setup"] is None
    assert r["recorded_at"].endswith("Z")


@pytest.mark.parametrize("change, field", [
    (lambda r: r.update(schema="gpuplan.record/2"), "schema"),
    (lambda r: r.pop("timing"), "timing is missing"),
    (lambda r: r.update(kind="benchmark"), "kind"),
    (lambda r: r.update(recorded_at="yesterday"), "recorded_at"),
    (lambda r: r.update(recorded_at="2026-12-01T09:30:00+02:00"), "recorded_at"),
    (lambda r: r["environment"].update(gpu_count="1"), "environment.gpu_count"),
    (lambda r: r["environment"].pop("python"), "environment.python"),
    (lambda r: r["memory"].update(peak_reserved_bytes=1.5), "memory.peak_reserved_bytes"),
    (lambda r: r["memory"].update(peak_reserved_bytes=True), "memory.peak_reserved_bytes"),
    (lambda r: r["memory"].update(peak_gib=3), "memory.peak_gib"),
    (lambda r: r["run_phases"].update(warmup={}), "run_phases.warmup"),
    (lambda r: r["timing"].update(step_time_s=0), "timing.step_time_s"),
    (lambda r: r["setup"].update(method="dora-plus"), "setup"),
    (lambda r: r["setup"].update(model="other"), "setup.model"),
    (lambda r: r.update(gpu="NVIDIA Imaginary X1"), "timing needs a catalog GPU"),
    (lambda r: r["device"].pop("alloc_conf"), "device.alloc_conf"),
    (lambda r: r.update(notes="one"), "notes"),
    (lambda r: r.update(extra=1), "extra"),
])
def test_validate_names_the_file_and_the_field(change, field):
    r = _record()
    change(r)
    with pytest.raises(PlannerError) as e:
        validate_record(r, "data/measurements/h100-run.json")
    msg = str(e.value)
    assert msg.startswith("data/measurements/h100-run.json: ") and field in msg and "\n" not in msg


def test_write_is_atomic_and_round_trips(tmp_path, monkeypatch):
    r = _record()
    path = write_record(tmp_path / "sub" / "h100-run.json", r)
    assert json.loads(path.read_text()) == r
    assert [p.name for p in path.parent.iterdir()] == ["h100-run.json"]   # no temp file left behind

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", broken_replace)
    bad = _record(notes=["second version"])
    with pytest.raises(OSError):
        write_record(path, bad)
    assert json.loads(path.read_text()) == r                              # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["h100-run.json"]


def test_write_refuses_an_invalid_record(tmp_path):
    r = _record()
    r["memory"]["peak_allocated_bytes"] = "lots"
    with pytest.raises(PlannerError, match="memory.peak_allocated_bytes"):
        write_record(tmp_path / "x.json", r)
    assert not (tmp_path / "x.json").exists()


def test_load_records_skips_other_data_and_raises_on_a_bad_record(tmp_path):
    write_record(tmp_path / "b.json", _record())
    write_record(tmp_path / "a.json", _record(timing=None, notes=["first"]))
    (tmp_path / "accuracy_simulate.json").write_text(json.dumps({"environment": {}, "results": []}))
    got = load_records(tmp_path)
    assert [r["notes"] for r in got] == [["first"], ["a test"]]
    (tmp_path / "c.json").write_text(json.dumps({**_record(), "schema": "gpuplan.record/9"}))
    with pytest.raises(PlannerError, match=r"c\.json: schema"):
        load_records(tmp_path)


def test_the_repository_measurements_folder_loads():
    from gpuplan.planner.io.catalog import measurements_dir

    for r in load_records(measurements_dir()):   # every record there is valid
        assert r["schema"] == SCHEMA


def test_a_written_record_calibrates_the_time_model(tmp_path, monkeypatch):
    """The time model (planner/speed/throughput.py calibrated_mfu) reads gpu, setup and timing.step_time_s of a
    record written here, exactly as tests/planner/test_throughput.py checks with a hand-written one."""
    from gpuplan.planner.io import catalog
    from gpuplan.planner.speed import ceiling, throughput

    write_record(tmp_path / "measurements" / "h100-run.json", _record())
    monkeypatch.setattr(catalog, "measurements_dir", lambda: tmp_path / "measurements")
    throughput.calibrated_mfu.cache_clear()
    try:
        a = throughput.mfu_for(resolve_gpu("h100"))
        st = step_time(resolve_model("llama-3.2-1b"), SETUP, resolve_gpu("h100"))
        assert "calibrated from 1 recorded step time(s): h100-run.json" in a.source
        # a fraction of the card's measured matmul ceiling, not of its 989.4 TFLOP/s datasheet peak
        rate = ceiling.matmul_ceiling(resolve_gpu("h100"), "bf16").flops
        assert rate < 989.4e12
        assert a.value == pytest.approx(4 * 2048 * st.flops.hardware / (0.5 * rate), rel=1e-3)
    finally:
        throughput.calibrated_mfu.cache_clear()
