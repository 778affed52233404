"""The accuracy proof: estimate vs the profiled training step over the matrix in profiler/matrix.py.

    python benchmarks/accuracy.py                        # every case, simulated (about 10-20 min here)
    python benchmarks/accuracy.py --family qwen --max-params 2e9
    python benchmarks/accuracy.py --record               # also write data/measurements/accuracy_simulate.json
    python benchmarks/accuracy.py --matrix peft --record # one technique's rows: accuracy_simulate_peft.json
    python benchmarks/accuracy.py --device cuda --record # on a GPU: accuracy_cuda_<gpu>.json

Prints one row per setup: peak_allocated_bytes estimated and profiled, the signed error, and the
signed error of the components that differ most; then the median / worst / worst under-estimate
against the targets (median <= 2%, worst <= 5%, never under by more than 3%).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import platform
import sys
import warnings
from pathlib import Path

from gpuplan.planner import Component, estimate, resolve_model
from gpuplan.profiler import Device
from gpuplan.profiler.matrix import (MATRICES, TARGET_MEDIAN_PCT, TARGET_UNDER_PCT, TARGET_WORST_PCT, Case, Result, run,
                                     select, summarize)
from gpuplan.planner.io.files import write_json_atomic

MIB = 2**20
DATA = Path(__file__).resolve().parent.parent / "data" / "measurements"


def component_errors(result: Result, top: int = 2) -> str:
    """The `top` components with the largest absolute byte difference, as name:+x.x MiB."""
    diffs = [(name, est - meas) for name, (est, meas) in result.components.items() if meas is not None]
    diffs = sorted(diffs, key=lambda d: -abs(d[1]))[:top]
    return " ".join(f"{name}:{d / MIB:+.1f}MiB" for name, d in diffs if abs(d) >= MIB / 10) or "-"


def environment(device: str) -> dict[str, str]:
    """The library versions (and GPU) of a recorded run. Imported here: `--from-record` needs no torch."""
    import peft
    import torch
    import transformers

    env = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "python": platform.python_version(), "date": dt.date.today().isoformat()}
    try:
        import bitsandbytes   # optional: recorded when installed
        env["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    try:
        env["trl"] = importlib.metadata.version("trl")   # optional: the trl matrices run TRL's own loss
    except importlib.metadata.PackageNotFoundError:
        pass
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = str(torch.version.cuda)
        try:
            import pynvml   # optional (nvidia-ml-py)
            pynvml.nvmlInit()
            env["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001  (the driver version is informative only)
            env["driver"] = "unknown"
    return env


def recorded(path: Path) -> list[Result]:
    """Results of a recorded run, with the current estimate against the recorded measurement."""
    out = []
    for r in json.loads(path.read_text())["results"]:
        case = Case(r["family"], r["model"], r["setup"], r["batch_size"], r["seq_len"])
        est = estimate(resolve_model(case.model), case.training_setup())
        at_peak = est.phase_components[est.peak_phase]
        components = {name: (at_peak.get(Component(name)), c["measured_bytes"]) for name, c in r["components"].items()}
        out.append(Result(case, est.peak_allocated_bytes, r["measured_bytes"], components, r["seconds"], r["error"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=Device.values(), default=Device.SIMULATE.value)
    parser.add_argument("--matrix", choices=sorted(MATRICES), default="core",
                        help="which matrix of profiler/matrix.py to run (core: the architectures and techniques)")
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    parser.add_argument("--max-params", type=float, default=None, help="skip models larger than this")
    parser.add_argument("--match", default=None, help="only cases whose name contains this")
    parser.add_argument("--record", action="store_true", help="write the results under data/measurements/")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown (for the README)")
    parser.add_argument("--from-record", type=Path, default=None,
                        help="re-estimate the setups of a recorded run (no profiling) and print its table")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    cases = select(MATRICES[args.matrix], set(args.family or []) or None, args.max_params, args.match)

    def progress(i: int, n: int, r: Result) -> None:
        status = f"{r.error_pct:+.2f}%" if r.error_pct is not None else f"FAILED {r.error}"
        print(f"[{i}/{n}] {r.case.name}: {status} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)

    if args.from_record:
        results = recorded(args.from_record)
        args.record = False
    else:
        results = list(run(cases, Device(args.device), progress))
    if args.markdown:
        print("| family | setup | estimate GiB | profiled GiB | error | largest component gaps |")
        print("|---|---|---:|---:|---:|---|")
    else:
        print(f"{'family':7s} {'setup':92s} {'est GiB':>8s} {'prof GiB':>8s} {'error':>7s}  component gaps")
    for r in results:
        measured = f"{r.measured_bytes / 2**30:.3f}" if r.measured_bytes else "-"
        err = f"{r.error_pct:+.2f}%" if r.error_pct is not None else "failed"
        gaps = component_errors(r) if r.error is None else r.error
        if args.markdown:
            print(f"| {r.case.family} | `{r.case.name}` | {r.estimate_bytes / 2**30:.3f} | {measured} | {err} | {gaps} |")
        else:
            print(f"{r.case.family:7s} {r.case.name:92s} {r.estimate_bytes / 2**30:8.3f} {measured:>8s} {err:>7s}  {gaps}")
    errors = [r.error_pct for r in results if r.error_pct is not None]
    s = summarize(errors, failed=sum(r.error is not None for r in results))
    print(f"\n{s.n} setups profiled ({s.failed} failed): median |error| {s.median_abs_pct:.2f}% "
          f"(target <= {TARGET_MEDIAN_PCT}%), worst |error| {s.worst_abs_pct:.2f}% (target <= {TARGET_WORST_PCT}%), "
          f"worst under-estimate {s.worst_under_pct:+.2f}% (target >= {TARGET_UNDER_PCT}%): "
          f"{'targets met' if s.meets_targets and not s.failed else 'TARGETS NOT MET'}")
    if args.record:
        suffix = "" if args.matrix == "core" else f"_{args.matrix}"
        name = f"accuracy_simulate{suffix}.json" if args.device != "cuda" else None
        env = environment(args.device)
        if name is None:
            name = "accuracy_cuda_" + env["gpu"].lower().replace(" ", "-") + suffix + ".json"
        if args.device == "cpu":
            name = f"accuracy_cpu{suffix}.json"
        write_json_atomic(DATA / name, {"environment": env, "results": [r.to_dict() for r in results]})
        print(f"recorded {len(results)} results in {DATA / name}", file=sys.stderr)
    return 0 if s.meets_targets and not s.failed else 1


if __name__ == "__main__":
    sys.exit(main())
