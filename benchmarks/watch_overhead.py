"""What `gpuplan watch` costs the run it watches: prints a table (not a test; no timing assertions).

    python benchmarks/watch_overhead.py [--steps 60] [--repeats 3]

1. The step time of a real CPU training loop (a 4-layer MLP, ~0.1 s a step, calling the watch hook
   once per step) run plain and under `gpuplan watch` at 1 s and 0.1 s intervals, alternating runs
   (plain, watched, watched, plain again) so that machine load drifts hit all alike; median over the
   steps of all repeats. The second plain row is the noise floor: a difference below it is no cost.
2. The sampler's own cost per sample in the watcher process (the /proc tree, NVML: the real one
   where a GPU is present, else the tests' fake) and the hook's cost per call inside the run.
3. The CPU time the watch process spends per second of wall time (utime + stime from /proc),
   which machine load does not inflate: the most the watch can take from a run it shares cores with.
The goal (issue "Watch a real run live"): under 1% of step time at the default 1 s interval.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workload(steps: int) -> None:
    """The watched run: prints one JSON list of step seconds (timed here, not by the hook)."""
    import torch

    from gpuplan.profiler.watch import hook

    torch.manual_seed(0)
    torch.set_num_threads(1)
    dims = 1024
    model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(dims, dims), torch.nn.GELU())])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(256, dims)
    times = []
    hook.start()
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        hook.step(tokens=x.shape[0])
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    print(json.dumps(times))


def _run(cmd: list[str]) -> list[list[float]]:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("[")))


def step_overhead(steps: int, repeats: int) -> list[tuple[str, float, float, int]]:
    """(configuration, median wall seconds, median CPU seconds of the run's process, steps) per step."""
    me = [sys.executable, __file__, "--workload", str(steps)]
    # "plain, again" is the noise floor: what two identical runs differ by on this machine now
    configs = {"plain": None, "watch, 1 s interval": 1.0, "watch, 0.1 s interval": 0.1, "plain, again": None}
    times: dict[str, list[list[float]]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, interval in configs.items():
                if interval is None:
                    cmd = me
                else:
                    cmd = [sys.executable, "-m", "gpuplan", "watch", "--no-live", "--interval", str(interval),
                           "-o", f"{tmp}/w{r}.jsonl", "--", *me]
                times[name] += _run(cmd)[2:]   # the first steps warm up the allocator and caches
    return [(name, statistics.median(w for w, _ in v), statistics.median(c for _, c in v), len(v))
            for name, v in times.items()]


def sampler_cost(samples: int = 200) -> list[tuple[str, float]]:
    sys.path.insert(0, str(ROOT / "tests" / "profiler" / "watch"))
    from gpuplan.profiler.watch import hook
    from gpuplan.profiler.watch.nvml import NvmlSampler
    from gpuplan.profiler.watch.procs import ProcTree

    tree = ProcTree(os.getpid())
    t0 = time.perf_counter()
    for _ in range(samples):
        procs = tree.processes()
    proc_s = (time.perf_counter() - t0) / samples
    real = NvmlSampler()
    if real.available:
        nvml, label = real, f"NVML sample ({len(real.names)} GPU, real: {real.names[0]})"
    else:
        from fake_nvml import H100, FakeNvml

        nvml, label = NvmlSampler(FakeNvml([H100])), "NVML sample (1 GPU, the tests' fake: no GPU here)"
    pids = [p.pid for p in procs]
    t0 = time.perf_counter()
    for _ in range(samples):
        nvml.sample(pids)
    nvml_s = (time.perf_counter() - t0) / samples
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GPUPLAN_WATCH_DIR"] = tmp
        hook.step(tokens=1)
        t0 = time.perf_counter()
        for _ in range(samples):
            hook.step(tokens=1)
        hook_s = (time.perf_counter() - t0) / samples
        hook._writer.file.close()
        del os.environ["GPUPLAN_WATCH_DIR"]
    return [(f"/proc tree ({len(os.listdir('/proc'))} /proc entries, {len(procs)} in the tree)", proc_s),
            (label, nvml_s), ("hook.step() in the run (CPU: /proc/self reads, one line written)", hook_s)]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5): /proc/<pid>/stat fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watcher_cpu(interval: float, seconds: float = 10.0) -> float:
    """CPU seconds the watch process itself spends per wall second, watching `sleep` (startup excluded):
    CPU time, so other jobs' load does not inflate it as it does wall-clock step times."""
    with tempfile.TemporaryDirectory() as tmp:
        w = subprocess.Popen([sys.executable, "-m", "gpuplan", "watch", "--no-live", "--interval", str(interval),
                              "-o", f"{tmp}/w.jsonl", "--", "sleep", str(seconds + 6)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4)   # imports and the first samples
        c0, t0 = _cpu_seconds(w.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = _cpu_seconds(w.pid), time.monotonic()
        w.wait()
    return (c1 - c0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.workload is not None:
        return workload(a.workload)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    rows = step_overhead(a.steps, a.repeats)
    base, base_cpu = rows[0][1], rows[0][2]
    print("\n| run | median step (wall) | vs plain | median step (the run's CPU time) | vs plain | steps |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, med, cpu, n in rows:
        print(f"| {name} | {med * 1e3:.1f} ms | {(med / base - 1) * 100:+.2f}% | {cpu * 1e3:.1f} ms | "
              f"{(cpu / base_cpu - 1) * 100:+.2f}% | {n} |")
    print("\n| per sample / per call | time | share of a 1 s interval |\n|---|---:|---:|")
    for name, s in sampler_cost():
        print(f"| {name} | {s * 1e3:.3f} ms | {s / 1.0 * 100:.3f}% |")
    print("\n| the watch process (CPU time, watching `sleep`) | share of one core |\n|---|---:|")
    for interval in (1.0, 0.1):
        print(f"| --interval {interval:g} | {watcher_cpu(interval) * 100:.2f}% |")


if __name__ == "__main__":
    main()
