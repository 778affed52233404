"""Throughput: gpuplan's step_time tokens/s against published real-GPU runs (data/published/), signed error per run.

For each mapped run with a published tokens/s on a GPU in the catalog, the published figure over
all GPUs (a per-GPU figure times the GPU count) is compared with the time model's tokens/s for the
run's mapping (with its `time_overrides`, e.g. peft's mean sample length). error = (gpuplan -
published) / published: negative means gpuplan promises fewer tokens/s than the run got.

The headline error is out of sample: a tuned source's runs are predicted by constants fitted on
the other tuned sources (leave one source out, planner/speed/calibrate.py), a held-out source's
(split.json) by the constants fitted on every tuned source. Runs with a time-distorting unmodelled
feature (compile, eval generation, a power-limited rig...) are never fitted on and are reported
apart; runs with mild ones (fused kernels, packing, padding) are fitted on and shown apart too.

    python benchmarks/published_time.py                    # print the tables (markdown)
    python benchmarks/published_time.py --record           # also write the errors to data/published/errors_recorded.json
    python benchmarks/published_time.py --write-constants  # refit and write data/mfu.json (constants, runs, error bands)
    python benchmarks/published_time.py --readme docs/readme/time.md   # rewrite its generated tables
"""
from __future__ import annotations

import argparse
import sys

from _published_common import fmt, record, table, write_generated_block

import json
import statistics

from gpuplan.planner.io.catalog import data_dir
from gpuplan.planner.plans.evidence import TIME_DISTORTING, TIME_MILD, error_bands, fitted_constants, time_errors


def tokens_bucket(tokens: int) -> str:
    """Micro-batch tokens per GPU, in the bands where the time model's small-batch factor changes."""
    for limit, name in ((1024, "1: <1k"), (4096, "2: 1k-4k"), (16384, "3: 4k-16k")):
        if tokens < limit:
            return name
    return "4: >=16k"


def write_constants(rows) -> str:
    """Refit on every fit sample and write the constants, the runs they stand on and the error bands."""
    c, samples = fitted_constants()
    path = data_dir() / "mfu.json"
    d = json.loads(path.read_text())
    by_family: dict[str, list[str]] = {}
    for s in samples:
        by_family.setdefault(s.family, []).append(s.id)
    ids = sorted(s.id for s in samples)
    own = dict(c.gemm_efficiency)
    note = lambda what: (f"fitted by planner/speed/calibrate.py on {len(ids)} runs of {len({s.source for s in samples})} "  # noqa: E731
                         f"tuned sources ({', '.join(sorted({s.source for s in samples}))}): {what}")
    f = d["fitted"]
    f["gemm_efficiency"]["families"] = {
        fam: {"value": round(v, 4), "runs": sorted(by_family[fam]),
              "source": note(f"fraction of the measured matmul ceiling (planner/speed/ceiling.py, data/matmul.json) on GEMM FLOPs, {len(by_family[fam])} {fam} runs")}
        for fam, v in sorted(own.items())}
    f["gemm_efficiency"]["cross_family"] = {"value": round(c.cross_family, 4), "runs": ids,
                                            "source": note("every family pooled; used for families with fewer than 5 runs")}
    for key, value, what in (("memory_efficiency", c.memory_efficiency, "fraction of datasheet bandwidth for element-wise kernels, GEMM operands, LoRA branches, loss, optimizer (bound at 0.95)"),
                             ("dequant_efficiency", c.dequant_efficiency, "fraction of bandwidth for bitsandbytes 4-bit dequantization: the memory efficiency (one bandwidth-bound kernel class, not fitted apart)"),
                             ("per_layer_pass_s", c.per_layer_pass_s, "seconds per decoder-layer pass (launches)"),
                             ("per_adapter_call_s", c.per_adapter_call_s, "seconds per LoRA branch pass (launches)"),
                             ("per_step_s", c.per_step_s, "seconds per optimizer step"),
                             ("per_expert_call_s", c.per_expert_call_s, "seconds per MoE expert pass (transformers loops over the experts): the per-layer-pass cost, one launch cost per block pass, not fitted apart (left out of the fit, the MoE source is then predicted within 16%)"),
                             ("overlap_efficiency", c.overlap_efficiency, "share of the collectives that can hide behind compute (multi-GPU runs; at most 1)")):
        f[key] = {"value": round(value, 6), "runs": ids, "source": note(what)}
    d["error_bands"] = {"source": "out-of-sample signed tokens/s errors (fraction) of the runs without a time-distorting "
                                  "feature, lowest and highest per GPU family x method, per method and overall "
                                  "(benchmarks/published_time.py)", "groups": error_bands(rows)}
    path.write_text(json.dumps(d, indent=1) + "\n")
    return str(path)


def _kernels(r) -> tuple[str, ...]:
    """The run's unmodelled kernel and data features (fused kernels, packing, padding; not the method's own
    NF4 path): two runs that differ in them differ in more than the method or GPU (fms-acceleration's QLoRA
    foak runs have fused_lora, its LoRA foak runs do not)."""
    return tuple(sorted(u for u in r.run.unmodelled if any(k in u for k, _ in TIME_MILD if k != "NF4 path")))


def _same_setup(r, drop: str) -> tuple:
    """A run's setup with one dimension (method or GPU) left out, for ranking pairs within a source."""
    m = {k: v for k, v in r.run.mapping.items() if k not in ("method", "lora", "quant", "base_dtype", "precision")}
    return (r.run.file, r.run.gpu_count, r.micro_batch_tokens, None if drop == "gpu" else r.run.gpu_catalog,
            None if drop == "method" else r.method, json.dumps(m, sort_keys=True), _kernels(r))


def rankings(rows, drop: str, label) -> str:
    """Pairs of runs of one source that differ only in `drop` (method, or GPU type; same unmodelled kernels): does gpuplan's
    out-of-sample tokens/s order them as the published figures do? Pairs whose published figures
    differ by less than 10% are counted apart (inside the model's error bands)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(_same_setup(r, drop), []).append(r)
    out = [f"\n**Ranking by {drop}: pairs of runs of one source differing only in {drop}**\n",
           f"| pair ({drop}) | pairs | same order | same order, published gap >= 10% | pairs with gap >= 10% |",
           "|---|---|---|---|---|"]
    tally: dict[str, list[int]] = {}
    for g in groups.values():
        for i, a in enumerate(g):
            for b in g[i + 1:]:
                if label(a) == label(b):
                    continue
                lo, hi = sorted((a, b), key=label)
                same = (lo.published_tokens_per_s > hi.published_tokens_per_s) == (lo.oos_tokens_per_s > hi.oos_tokens_per_s)
                wide = abs(lo.published_tokens_per_s / hi.published_tokens_per_s - 1) >= 0.10
                t = tally.setdefault(f"{label(lo)} vs {label(hi)}", [0, 0, 0, 0])
                t[0] += 1
                t[1] += same
                t[2] += same and wide
                t[3] += wide
    for k, (n, same, same_wide, wide) in sorted(tally.items()):
        out.append(f"| {k} | {n} | {same} | {same_wide} | {wide} |")
    return "\n".join(out) + "\n"


def headline(rows) -> str:
    part = [r for r in rows if r.time_class != "distorting" and r.micro_batch_tokens >= 2048]
    errs = [abs(r.error_pct) for r in part]
    med, worst = statistics.median(errs), max(errs)
    return (f"Out of sample, runs without a time-distorting feature and >= 2k tokens per micro-batch ({len(part)} runs): "
            f"median |error| {med:.1f}% (target <= 15%: {'met' if med <= 15 else 'not met'}), worst {worst:.1f}% "
            f"(target <= 40%: {'met' if worst <= 40 else 'not met'})\n")


BEGIN, END = "<!-- published_time.py --readme: begin -->", "<!-- published_time.py --readme: end -->"


def readme_tables(rows) -> str:
    """The constants and accuracy tables of docs/readme/time.md, as this script computes them."""
    d = json.loads((data_dir() / "mfu.json").read_text())["fitted"]
    fams = d["gemm_efficiency"]["families"]
    n = len(d["gemm_efficiency"]["cross_family"]["runs"])
    out = ["| constant | value | fitted on |", "|---|---|---|"]
    out += [f"| GEMM efficiency, {fam} | {v['value']} | {len(v['runs'])} {fam} runs |" for fam, v in sorted(fams.items())]
    out.append(f"| GEMM efficiency, cross-family (families with < 5 runs) | {d['gemm_efficiency']['cross_family']['value']} "
               "| every family pooled |")
    for key, how in (("memory_efficiency", f"all {n} fit runs"), ("dequant_efficiency", "= memory_efficiency (not fitted apart)"),
                     ("per_layer_pass_s", f"all {n} fit runs"), ("per_expert_call_s", "= per_layer_pass_s (not fitted apart)"),
                     ("per_adapter_call_s", f"all {n} fit runs"), ("per_step_s", f"all {n} fit runs"),
                     ("overlap_efficiency", f"all {n} fit runs")):
        out.append(f"| {key} | {d[key]['value']} | {how} |")
    fit_rows = [r for r in rows if r.time_class != "distorting"]
    parts = ["\n".join(out) + "\n", headline(rows),
             table("Without time-distorting features: by GPU family and method", fit_rows,
                   lambda r: (r.gpu_family, r.method), ("GPU family", "method")),
             table("Without time-distorting features: by source (LOSO for tuned, fitted-on-all-tuned for held out)",
                   fit_rows, lambda r: (r.run.file, "held out" if r.held_out else "tuned"), ("source", "side")),
             table("Without time-distorting features: by micro-batch tokens", fit_rows,
                   lambda r: (tokens_bucket(r.micro_batch_tokens),), ("micro-batch tokens per GPU",)),
             table("Without time-distorting features: by GPU count", fit_rows, lambda r: (str(r.run.gpu_count),), ("GPUs",)),
             rankings(rows, "method", lambda r: r.method), rankings(rows, "gpu", lambda r: r.run.gpu_catalog),
             table("By class of unmodelled features", rows, lambda r: (r.time_class,), ("class",)),
             table("With time-distorting features (reported apart): by source",
                   [r for r in rows if r.time_class == "distorting"], lambda r: (r.run.file,), ("source",))]
    return "\n\n".join(p.strip("\n") for p in parts) + "\n"


def write_readme(path: str, rows) -> None:
    """Replace the generated block of `path` (between BEGIN and END) with today's tables."""
    write_generated_block(path, BEGIN, END, readme_tables(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write today's errors to data/published/errors_recorded.json")
    parser.add_argument("--write-constants", action="store_true", help="refit and write data/mfu.json")
    parser.add_argument("--readme", metavar="PATH", help="rewrite the generated tables of PATH (docs/readme/time.md)")
    args = parser.parse_args()
    rows = time_errors()
    if args.write_constants:
        print(f"wrote {write_constants(rows)}; run again (without --write-constants) for the tables", file=sys.stderr)
        return 0
    if args.readme:
        write_readme(args.readme, rows)
        print(f"rewrote the generated tables of {args.readme}", file=sys.stderr)
        return 0
    print(f"# gpuplan time model against {len(rows)} published throughputs (out-of-sample errors)\n")
    print(headline(rows))
    print("Time-distorting features (never fitted on): " + "; ".join(f"{k} ({why})" for k, why in TIME_DISTORTING))
    print("\nMild features (fitted on, shown apart): " + "; ".join(f"{k} ({why})" for k, why in TIME_MILD) + "\n")
    fit_rows = [r for r in rows if r.time_class != "distorting"]
    print(table("Without time-distorting features: by source (LOSO for tuned, fitted-on-all-tuned for held out)",
                fit_rows, lambda r: (r.run.file, "held out" if r.held_out else "tuned"), ("source", "side")))
    print(table("Without time-distorting features: by GPU family and method", fit_rows,
                lambda r: (r.gpu_family, r.method), ("GPU family", "method")))
    print(table("Without time-distorting features: by micro-batch tokens", fit_rows,
                lambda r: (tokens_bucket(r.micro_batch_tokens),), ("micro-batch tokens per GPU",)))
    print(table("Without time-distorting features: by GPU count", fit_rows, lambda r: (str(r.run.gpu_count),), ("GPUs",)))
    print(rankings(rows, "method", lambda r: r.method))
    print(rankings(rows, "gpu", lambda r: r.run.gpu_catalog))
    print(table("By class of unmodelled features", rows, lambda r: (r.time_class,), ("class",)))
    print(table("With time-distorting features (reported apart): by source", [r for r in rows if r.time_class == "distorting"],
                lambda r: (r.run.file,), ("source",)))
    print("\n**Every run** (class: clean, mild, distorting; errors out of sample, and under today's constants)\n")
    print("| run | source | held out | class | GPU | GPUs | micro-batch tokens | published tok/s | gpuplan tok/s (out of sample) | error | error, today's constants |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.held_out, r.run.file, r.run.id)):
        print(f"| {r.run.id} | {r.run.file} | {'yes' if r.held_out else 'no'} | {r.time_class} | {r.run.gpu_catalog} | "
              f"{r.run.gpu_count} | {r.micro_batch_tokens} | {r.published_tokens_per_s:.0f} | {r.oos_tokens_per_s:.0f} | "
              f"{fmt(r.error_pct, True)} | {fmt(r.fitted_error_pct, True)} |")
    if args.record:
        print(f"\nrecorded {len(rows)} errors to {record('time', rows)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
