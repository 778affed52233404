"""The one-call GPU validation: the estimate against a real GPU, recorded for the calibrations.

    python benchmarks/gpu_validate.py                      # on an H100/H200: under 8 minutes
    python benchmarks/gpu_validate.py --list               # the cases, no GPU needed
    python benchmarks/gpu_validate.py --device cpu --out /tmp/v   # the CPU path (tiny model): what CI tests

On `cuda` it measures, in this order, each within the time budget (`--budget-s`, default 420 s):
1. the device: the CUDA context (NVML's used memory after torch initializes the device, minus what
   the caching allocator reserved) and the cuBLAS workspace (allocated bytes a first bf16 GEMM leaves
   behind, CublasHandlePool.cpp), with PYTORCH_CUDA_ALLOC_CONF / CUBLAS_WORKSPACE_CONFIG as set;
2. a subset of the accuracy matrix for real (`profile --device cuda`): allocated and reserved peaks,
   NVML's device total, the step time of untracked steps; the estimate beside each;
3. allocator snapshots (`torch.cuda.memory._record_memory_history`) of the first `--snapshots` cases,
   replayed through the planner's allocator model (profiler/snapshot_replay.py) to compare reserved.

Every run writes one `gpuplan.record/1` file per case (kind `gpu_validate`, data/measurements/README.md:
the time model's calibration reads `gpu`, `setup` and `timing`), one for the device, and a summary
`gpu_validate_<gpu>_<date>.json` with the estimate and the measurement of each figure, into `--out`
(default data/measurements/gpu/<gpu>/<date>/; `$OUT` on the device machine). Progress goes to stderr,
the table to stdout.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuplan.planner import (PlannerError, TrainingSetup, estimate, resolve_gpu, resolve_model, step_time)
from gpuplan.planner.io.files import write_json_atomic
from gpuplan.planner.io.records import RecordKind, catalog_gpu_name, environment, make_record, write_record
from gpuplan.profiler import Device, measure

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "examples" / "tiny" / "config.json")


@dataclass(frozen=True)
class Case:
    """One validation setup: a model (preset or config path), setup overrides, micro-batch x length."""

    model: str
    setup: dict[str, Any]
    batch_size: int
    seq_len: int
    seconds: float      # expected wall seconds on an H100 (build, 3 tracked + 3 timed steps): the budget check

    @property
    def name(self) -> str:
        knobs = " ".join(f"{k}={v}" for k, v in self.setup.items()) or "defaults"
        return f"{Path(self.model).parent.name if self.model.endswith('.json') else self.model} " \
               f"b{self.batch_size}x{self.seq_len} {knobs}"

    def training_setup(self) -> TrainingSetup:
        return TrainingSetup.from_dict({**self.setup, "batch_size": self.batch_size, "seq_len": self.seq_len})


NO_CKPT = {"checkpointing": "none"}
# Cheapest first, so that a short budget still covers every method; the figures decide "fits", so each
# method (full / LoRA / QLoRA), each precision path and each family quirk the matrix checks in
# simulation gets one real row. The seconds are guesses until the first run replaces them.
CUDA_CASES: tuple[Case, ...] = (
    Case("llama-3.2-1b", {}, 4, 1024, 20),
    Case("llama-3.2-1b", {"method": "lora"}, 4, 1024, 15),
    Case("llama-3.2-1b", {"method": "qlora"}, 4, 1024, 20),
    Case("llama-3.2-1b", NO_CKPT, 2, 1024, 15),
    Case("llama-3.2-1b", {"precision": "bf16-true", "optimizer": "adamw-8bit"}, 4, 1024, 15),
    Case("qwen-2.5-0.5b", {"method": "lora", "lora": {"targets": ["all-linear"], "dropout": 0.05}}, 8, 1024, 15),
    Case("gemma-3-1b", {"method": "lora", **NO_CKPT}, 2, 1024, 20),
    Case("qwen-2.5-0.5b", {"loss": "chunked"}, 8, 1024, 15),
    Case("llama-3.1-8b", {"method": "qlora"}, 4, 1024, 45),
    Case("llama-3.1-8b", {"method": "lora", "base_dtype": "bf16"}, 2, 2048, 45),
    Case("mistral-7b-v0.3", {"method": "qlora", **NO_CKPT}, 1, 512, 40),
    Case("llama-3.1-8b", {"precision": "bf16-true", "optimizer": "adamw-8bit"}, 1, 2048, 60),
)
CPU_CASES: tuple[Case, ...] = (
    Case(TINY, {"method": "lora"}, 2, 64, 5),
    Case(TINY, {"precision": "fp32", **NO_CKPT}, 2, 64, 5),
)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def device_constants(device: Device) -> tuple[dict[str, Any], list[str]]:
    """(the record's `device` object, notes): context and cuBLAS workspace bytes on `cuda`, nulls on the CPU."""
    alloc_conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    if device is not Device.CUDA:
        return {"cuda_context_bytes": None, "cublas_workspace_bytes": None, "alloc_conf": alloc_conf}, \
            ["CPU run: no CUDA context, no cuBLAS workspace"]
    import torch

    from gpuplan.profiler.nvml import DeviceMemorySampler

    dev = torch.device("cuda", 0)
    torch.empty(1, device=dev)                      # initializes the context (lazy module loading as set)
    torch.cuda.synchronize(dev)
    with DeviceMemorySampler(dev) as sampler:      # NVML (per process where listed), else cudaMemGetInfo
        used = sampler.sample()
    reserved = torch.cuda.memory_reserved(dev)
    before = torch.cuda.memory_allocated(dev)
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    c = a @ b                                       # the first GEMM on this stream creates the handle's workspace
    torch.cuda.synchronize(dev)
    del a, b, c
    workspace = torch.cuda.memory_allocated(dev) - before
    notes = [f"CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG', '(unset)')}",
             f"CUDA_MODULE_LOADING={os.environ.get('CUDA_MODULE_LOADING', '(unset: LAZY since CUDA 11.7)')}"]
    context = used - reserved
    if sampler.note:
        notes.append(sampler.note)
    return {"cuda_context_bytes": context, "cublas_workspace_bytes": workspace, "alloc_conf": alloc_conf}, notes


def gpu_identity(device: Device) -> tuple[str, str | None, str | None, dict[str, str]]:
    """(NVML/torch device name, driver, CUDA version, library versions as the run imports them)."""
    import peft
    import torch
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    if device is not Device.CUDA:
        return "cpu", None, None, versions
    driver = None
    try:
        import pynvml
        pynvml.nvmlInit()
        driver = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001  (the driver version is informative; the run goes on)
        pass
    return torch.cuda.get_device_name(0), driver, str(torch.version.cuda), versions


def _figures(x: Any) -> dict[str, int | None]:
    return {k: getattr(x, k) for k in ("peak_allocated_bytes", "peak_reserved_bytes", "device_total_bytes")}


def run_case(case: Case, device: Device, env: dict[str, Any], dev: dict[str, Any], out: Path,
             snapshot: bool) -> dict[str, Any]:
    """Estimate and measure one case; write its record (and snapshot); the summary row."""
    model, setup = resolve_model(case.model), case.training_setup()
    est = estimate(model, setup)
    row: dict[str, Any] = {"case": case.name, "model": case.model, "setup": setup.to_dict(model),
                           "estimate": _figures(est), "measured": None, "error": None}
    gpu_name = catalog_gpu_name(env["gpu_name"])
    try:
        row["estimate"]["step_time_s"] = step_time(model, setup, resolve_gpu(gpu_name)).total
    except PlannerError:        # a CPU run or an uncatalogued GPU: no time estimate
        row["estimate"]["step_time_s"] = None
    files: dict[str, str] = {}
    if snapshot:
        import torch
        torch.cuda.memory._record_memory_history(max_entries=500_000)
    try:
        measured = measure(model, setup, device)
    except Exception as exc:  # noqa: BLE001  (the validation records what failed and goes on)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return row
    finally:
        if snapshot:
            import torch
            path = out / "snapshots" / (safe_name(case.name) + ".pickle")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.cuda.memory._dump_snapshot(str(path))
            torch.cuda.memory._record_memory_history(enabled=None)
            files["allocator_snapshot"] = str(path.relative_to(out))
    row["measured"] = {**_figures(measured), "fits": measured.fits,
                       "step_time_s": (measured.timing or {}).get("step_time_s")}
    if files:
        row["snapshot_replay"] = snapshot_replay(out / files["allocator_snapshot"])
    timing = None
    if measured.timing and gpu_name != env["gpu_name"]:   # calibrates the time model: catalogued GPUs only
        tokens = setup.batch_size * setup.seq_len
        timing = {"step_time_s": measured.timing["step_time_s"], "tokens_per_s": tokens / measured.timing["step_time_s"],
                  "steps_timed": int(measured.timing["steps_timed"])}
    record = make_record(RecordKind.GPU_VALIDATE, env, model=case.model, setup=setup.to_dict(model),
                         memory=_figures(measured), timing=timing, device=dev, files=files,
                         notes=[f"estimate: {json.dumps(row['estimate'])}", *measured.notes])
    write_record(out / (safe_name(case.name) + ".json"), record)
    return row


def snapshot_replay(path: Path) -> dict[str, Any]:
    """The snapshot's reserved peak next to the planner's allocator replaying the same trace."""
    from gpuplan.profiler.snapshot_replay import compare_snapshot

    try:
        comparisons = compare_snapshot(path)
    except Exception as exc:  # noqa: BLE001  (a replay failure is a finding, not a crash)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"devices": [{"device": c.device, "reserved_error_bytes": c.reserved_error,
                         "segments_match": c.segments_match, "notes": c.notes} for c in comparisons]}


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:120]


def pct(est: int | None, meas: int | None) -> str:
    return "-" if not est or not meas else f"{100 * (est - meas) / meas:+.1f}%"


def mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:,.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("MiB (2^20 bytes) estimated and measured; step seconds")
    print(f"{'case':58s} {'alloc est':>9s} {'meas':>7s} {'err':>7s} {'resv est':>9s} {'meas':>7s} {'err':>7s} "
          f"{'smi est':>8s} {'meas':>7s} {'err':>7s} {'step est':>8s} {'meas':>7s}")
    for r in rows:
        e, m = r["estimate"], r["measured"] or {}
        if r["error"]:
            print(f"{r['case'][:58]:58s} failed: {r['error']}")
            continue
        step_e = "-" if e.get("step_time_s") is None else f"{e['step_time_s']:.3f}"
        step_m = "-" if m.get("step_time_s") is None else f"{m['step_time_s']:.3f}"
        print(f"{r['case'][:58]:58s} {mib(e['peak_allocated_bytes']):>9s} {mib(m['peak_allocated_bytes']):>7s} "
              f"{pct(e['peak_allocated_bytes'], m['peak_allocated_bytes']):>7s} "
              f"{mib(e['peak_reserved_bytes']):>9s} {mib(m['peak_reserved_bytes']):>7s} "
              f"{pct(e['peak_reserved_bytes'], m['peak_reserved_bytes']):>7s} "
              f"{mib(e['device_total_bytes']):>8s} {mib(m['device_total_bytes']):>7s} "
              f"{pct(e['device_total_bytes'], m['device_total_bytes']):>7s} {step_e:>8s} {step_m:>7s}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=[Device.CUDA.value, Device.CPU.value], default=Device.CUDA.value)
    parser.add_argument("--out", type=Path, default=None, help="folder for the records [data/measurements/gpu/<gpu>/<date>]")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no case that would end past this")
    parser.add_argument("--snapshots", type=int, default=2, help="allocator snapshots of the first N cases (cuda)")
    parser.add_argument("--match", default=None, help="only cases whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the cases and their expected seconds, run nothing")
    args = parser.parse_args(argv)
    device = Device(args.device)
    cases = [c for c in (CUDA_CASES if device is Device.CUDA else CPU_CASES) if not args.match or args.match in c.name]
    if args.list:
        for c in cases:
            print(f"{c.seconds:5.0f} s  {c.name}")
        print(f"{sum(c.seconds for c in cases):5.0f} s  in all (budget {args.budget_s:.0f} s)")
        return 0
    if device is Device.CUDA:
        import torch
        if not torch.cuda.is_available():
            say(f"no CUDA GPU is visible to torch {torch.__version__}: run with --device cpu for the CPU path")
            return 2
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    name, driver, cuda, versions = gpu_identity(device)
    env = environment(name, 1, driver, cuda, versions)
    gpu = catalog_gpu_name(name)
    today = dt.date.today().isoformat()
    out = args.out or (ROOT / "data" / "measurements" / "gpu" / gpu / today)
    out.mkdir(parents=True, exist_ok=True)
    dev, dev_notes = device_constants(device)
    write_record(out / "device.json", make_record(RecordKind.GPU_VALIDATE, env, device=dev, notes=dev_notes))
    say(f"{name} (driver {driver}, CUDA {cuda}; torch {versions['torch']}): context "
        f"{mib(dev['cuda_context_bytes'])} MiB, cuBLAS workspace {dev['cublas_workspace_bytes']} B")
    rows, skipped = [], []
    for i, case in enumerate(cases, 1):
        elapsed = time.perf_counter() - start
        if elapsed + case.seconds > args.budget_s:
            skipped.append(case.name)
            say(f"[{i}/{len(cases)}] {case.name}: skipped (at {elapsed:.0f} s, expected {case.seconds:.0f} s, "
                f"budget {args.budget_s:.0f} s)")
            continue
        t0 = time.perf_counter()
        row = run_case(case, device, env, dev, out, snapshot=device is Device.CUDA and i <= args.snapshots)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        m = row["measured"] or {}
        status = row["error"] or (f"allocated {mib(row['estimate']['peak_allocated_bytes'])} est vs "
                                  f"{mib(m.get('peak_allocated_bytes'))} MiB measured "
                                  f"({pct(row['estimate']['peak_allocated_bytes'], m.get('peak_allocated_bytes'))})")
        say(f"[{i}/{len(cases)}] {case.name}: {status} ({row['seconds']:.0f} s, {time.perf_counter() - start:.0f} s in all)")
    summary = {"environment": env, "device": dev, "date": today, "seconds": round(time.perf_counter() - start, 1),
               "results": rows, "skipped": skipped}
    write_json_atomic(out / f"gpu_validate_{gpu}_{today}.json", summary)
    print_table(rows)
    say(f"wrote {len(rows) + 1} records and the summary to {out} in {summary['seconds']:.0f} s"
        + (f"; {len(skipped)} case(s) skipped for time" if skipped else ""))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
