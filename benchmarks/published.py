"""Memory: gpuplan's estimate against published real-GPU runs (data/published/), signed error per run.

Each mapped run's published memory figure is compared with the estimate figure it measures:
max_memory_allocated and torchtune's active bytes with peak_allocated_bytes, max_memory_reserved
(and a peak that does not say which) with peak_reserved_bytes, nvidia-smi with device_total_bytes.
error = (estimate - published) / published; negative means under. Tables: median and worst |error|
by stack, method and figure, tuned and held-out sources apart (data/published/split.json); runs
with features gpuplan does not model are counted as "flagged" and listed with those features.

    python benchmarks/published.py            # print the tables (markdown)
    python benchmarks/published.py --readme README.md   # rewrite the README's generated tables
    python benchmarks/published.py --record   # also write data/published/errors_recorded.json (memory)
                                              # and data/published/ranges_recorded.json (the ranges the
                                              # estimate shows: planner/plans/ranges.py), and regenerate
                                              # docs/readme/ranges.md and the README's tables
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _published_common import fmt, record, table, write_generated_block, write_json

from gpuplan.planner.plans.evidence import memory_errors
from gpuplan.planner.plans.ranges import build_table, evidence_rows, ranges_path, recorded_table, simulated_rows

GIB = 2**30


BEGIN, END = "<!-- published.py --readme: begin -->", "<!-- published.py --readme: end -->"


def summary(rows) -> str:
    """One paragraph: tuned and held-out medians, and the figures of runs with no unmodelled feature."""
    parts = []
    for held, name in ((False, "tuned"), (True, "held-out")):
        errs = [r.error_pct for r in rows if r.held_out is held]
        parts.append(f"{name} sources {len(errs)} figures, median |error| {statistics.median(map(abs, errs)):.1f}%, "
                     f"median signed {fmt(statistics.median(errs), True)}")
    clean = [r for r in rows if not r.flagged]
    by_kind: dict[str, list[float]] = {}
    for r in clean:
        by_kind.setdefault(r.kind.value, []).append(r.error_pct)
    spans = "; ".join(f"{k}: {fmt(min(v), True)} to {fmt(max(v), True)}" for k, v in sorted(by_kind.items()))
    return (f"Memory, all mapped figures: {'; '.join(parts)}. The {len(clean)} figures of runs with no unmodelled "
            f"feature ({len({r.run.id for r in clean})} runs): {spans}.\n")


def readme_tables(rows) -> str:
    """The summary and the tables of the README's "Against real GPUs" section, as this script computes them."""
    by = lambda r: (r.run.stack, r.run.mapping["method"], r.kind.value)   # noqa: E731
    out = [summary(rows)]
    for held, title in ((False, "Tuned sources"), (True, "Held-out sources (split.json; never used for fitting)")):
        part = [r for r in rows if r.held_out is held]
        out.append(table(f"{title}: by stack, method and figure", part, by, ("stack", "method", "published figure")))
    out.append(table("All sources: by figure compared", rows, lambda r: (r.kind.value, r.compared_with),
                     ("published figure", "gpuplan figure")))
    out.append(table("All sources: by stack", rows, lambda r: (r.run.stack,), ("stack",)))
    return "\n\n".join(p.strip("\n") for p in out) + "\n"


def write_readme(path: str, rows) -> None:
    """Replace the generated block of `path` (between BEGIN and END) with today's tables."""
    write_generated_block(path, BEGIN, END, readme_tables(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write today's errors to data/published/errors_recorded.json")
    parser.add_argument("--readme", metavar="PATH", help="rewrite the generated tables of PATH (README.md)")
    args = parser.parse_args()
    rows = memory_errors()
    if args.readme:
        write_readme(args.readme, rows)
        print(f"rewrote the generated tables of {args.readme}", file=sys.stderr)
        return 0
    print(f"# gpuplan memory estimate against {len(rows)} published figures of {len({r.run.id for r in rows})} mapped runs\n")
    print(readme_tables(rows))
    print("\n**Every run** (`*`: has features gpuplan does not model, listed below the table)\n")
    print("| run | source | held out | figure | compared with | published GiB | estimate GiB | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.held_out, r.run.file, r.run.id, r.kind.value)):
        print(f"| {r.run.id}{' *' if r.flagged else ''} | {r.run.file} | {'yes' if r.held_out else 'no'} | {r.kind.value} | "
              f"{r.compared_with} | {r.published_bytes / GIB:.2f} | {r.estimate_bytes / GIB:.2f} | {fmt(r.error_pct, True)} |")
    print("\n**Unmodelled features of the flagged runs**\n")
    seen = set()
    for r in rows:
        if r.flagged and r.run.id not in seen:
            seen.add(r.run.id)
            print(f"- {r.run.id}: " + "; ".join(r.run.unmodelled))
    if args.record:
        print(f"\nrecorded {len(rows)} errors to {record('memory', rows)}", file=sys.stderr)
        print(f"recorded the ranges of {len(rows)} errors to {record_ranges(rows)}", file=sys.stderr)
        from ranges import write_doc   # benchmarks/ranges.py (imports the CLI for its example): only here

        recorded_table.cache_clear()   # the file just written
        print(f"regenerated {write_doc(recorded_table())}", file=sys.stderr)
        readme = Path(__file__).resolve().parents[1] / "README.md"
        write_readme(str(readme), rows)
        print(f"rewrote the generated tables of {readme}", file=sys.stderr)
    return 0


def record_ranges(rows) -> str:
    """Write data/published/ranges_recorded.json from today's errors and the simulator's accuracy files."""
    path = ranges_path()
    write_json(path, build_table(evidence_rows(rows), simulated_rows()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
