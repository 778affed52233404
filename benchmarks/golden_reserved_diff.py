"""How the golden cases move when reserved memory comes from the caching allocator replay
(planner/memory/reserved.py) instead of the fixed 6% slack: a report for the commit that
rewrites tests/golden/golden.jsonl. Prints a summary; exits 1 if any other number moved.

    python benchmarks/golden_reserved_diff.py [--limit N]

Reads the recorded rows (tests/golden/golden.jsonl), recomputes every case (tests/golden/cases.py),
and compares number by number: `peak_reserved_bytes`, `device_total_bytes`, the
`allocator_slack` component and fit headroom/verdicts are expected to move; every other number
(`peak_allocated_bytes` above all) must not. Recomputing every case takes a few minutes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "golden"))
from cases import cases, load, run, split  # noqa: E402

EXPECTED = ("peak_reserved_bytes", "device_total_bytes", "allocator_slack", "headroom_bytes", "fits",
            "fits_by_bytes", "short_by_bytes", "allocator_note")
# run_phases: each phase's device bytes (its allocated x the step's reserved/allocated), names matched whole
PHASES = ("load", "first_step", "step", "generate", "eval", "save")
# cases whose answer is a choice made by device totals (a micro-batch, a GPU, a knob, a safety margin
# from published runs' device figures): what they chose, and its time and cost, may move with them
SEARCHES = ("fit ", "recommend", "plan ", "purchase", "sweep", "why-not", "technique fit", "technique recommend")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases (0: all)")
    args = ap.parse_args()
    old = load()
    changed_cases, unexpected, reserved_ratio, verdicts, allocated_moved = set(), [], [], [], []
    from collections import Counter
    by_class: dict[str, Counter] = {"reserved/device figures": Counter(), "choices of searches": Counter()}
    todo = list(cases())
    if args.limit:
        todo = todo[:args.limit]
    for i, (name, argv) in enumerate(todo, 1):
        if name not in old:
            continue
        new = run(argv)
        rec = {k: old[name][k] for k in ("exit", "output", "error") if k in old[name]}
        before, after = split(rec)[0], split(new)[0]
        for path in sorted(set(before) | set(after)):
            a, b = before.get(path), after.get(path)
            if a == b:
                continue
            changed_cases.add(name)
            leaf = path.rsplit(".", 1)[-1].split("[")[0]
            if leaf == "peak_reserved_bytes" and isinstance(a, int) and isinstance(b, int) and a:
                reserved_ratio.append((b / a - 1, name, path))
            if leaf == "fits":
                verdicts.append((name, path, a, b))
            if leaf == "peak_allocated_bytes":
                allocated_moved.append((name, path, a, b))
            if leaf in PHASES or any(leaf == e or leaf.endswith(e) for e in EXPECTED):
                by_class["reserved/device figures"][leaf] += 1
            elif name.startswith(SEARCHES) or "--gpu" in argv:
                by_class["choices of searches"][leaf] += 1
            else:
                unexpected.append((name, path, a, b))
        if i % 200 == 0:
            print(f"[{i}/{len(todo)}]", file=sys.stderr, flush=True)
    print(f"cases compared: {len(todo)}; cases with a changed number: {len(changed_cases)}")
    if reserved_ratio:
        r = sorted(x[0] for x in reserved_ratio)
        print(f"peak_reserved_bytes, new/old - 1 over {len(r)} figures: min {100 * r[0]:+.1f}%, median "
              f"{100 * statistics.median(r):+.1f}%, max {100 * r[-1]:+.1f}%")
        lo, hi = min(reserved_ratio), max(reserved_ratio)
        print(f"  lowest: {lo[1]} ({lo[2]}); highest: {hi[1]} ({hi[2]})")
    print(f"fit verdicts changed: {len(verdicts)}")
    for name, path, a, b in verdicts[:20]:
        print(f"  {name} {path}: {a} -> {b}")
    print(f"peak_allocated_bytes changed: {len(allocated_moved)}")
    for row in allocated_moved[:20]:
        print("  ", *row)
    for cls, counts in by_class.items():
        print(f"{cls}: {sum(counts.values())} numbers: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    leaves = Counter(path.rsplit(".", 1)[-1].split("[")[0] for _, path, _, _ in unexpected)
    print(f"other numbers changed (not expected): {len(unexpected)}: " + ", ".join(f"{k} {v}" for k, v in leaves.most_common(12)))
    for row in unexpected[:30]:
        print("  ", *row)
    sys.exit(1 if unexpected or allocated_moved else 0)


if __name__ == "__main__":
    main()
