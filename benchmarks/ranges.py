"""Memory ranges: the held-out real-GPU error of each kind of setup (stack, method, figure), as the
estimate shows it (planner/plans/ranges.py), and how well the ranges held on sources left out.

Reads data/published/ranges_recorded.json, which `python benchmarks/published.py --record` writes
from the same errors as errors_recorded.json (re-record after a change to the estimate: that one
command rewrites both files and docs/readme/ranges.md).

    python benchmarks/ranges.py            # print the tables (markdown)
    python benchmarks/ranges.py --write    # also regenerate docs/readme/ranges.md (tables and example);
                                           # published.py --record does this too
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from gpuplan.planner.io.published import held_out_sources
from gpuplan.planner.plans.ranges import (ANY, FIGURE_NAMES, FIGURES, MIN_ROWS, MIN_SOURCES, QUANTILES, EvidenceRow,
                                          EvidenceStack, coverage, recorded_table)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "readme" / "ranges.md"
README = ROOT / "README.md"
EXAMPLE = "gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 1 --seq-len 4096 --gpu rtx-4090 --gpu l40s"
DOC_TEXT = """## Ranges: how far each memory figure may be on a real GPU

Every memory figure of `gpuplan estimate` carries the error that published real-GPU runs of the same
kind of setup showed against gpuplan (the runs of "Against real GPUs", `data/published/`), so an
estimate reads "{fits_line}" instead of a single number. With `--gpu`
the verdict says **may not fit** when the range reaches past the card ("{may_line}"); "+a/-b" is how
much more or less room there is at the two ends of the range. `--json` has a `ranges` object (bytes):
the kind, each figure's low and high bytes, the rows and sources behind them, and each GPU's headroom
at both ends. `gpuplan fit` adds the same verdict for the setup as given; neither changes its own
verdict, which stays the estimate's.

**What a range is.** error = (gpuplan - published) / published, so the real figure is
estimate / (1 + error); the range is the 10th to 90th percentile of the kind's errors *held out by
source*, each source one vote. A kind is (stack, method, figure): the stack as the evidence names it,
collapsed to what an estimate can know (`hf`: transformers and peft, in HF Trainer/TRL or peft's own
loop, gpuplan's default; `torchtune`, from `--stack-versions torchtune-0.6.1` or a torchtune config;
`other`: stacks with their own model code or loop, LitGPT and Answer.AI's FSDP script, and an Unsloth
script; `--ranges-stack` chooses one); the method (full, lora, qlora, with the adapter or objective when it is not plain LoRA SFT);
the figure (peak allocated, peak reserved, device total, as each published figure is compared).

**Held out, for an estimate that is not fitted.** No memory constant is fitted on the published runs,
so each run's error is already out of sample: the estimate never saw it. What the rows do teach is
the range itself, above all its bias (the kind's typical error). That is held out by source: a run's
held-out error is its error taken relative to the bias of the kind's *other* sources and put back on
the bias of all of them. Where sources agree this is the run's own error; where they disagree it lies
further out, as a source not in the evidence (a user's own run) may. The check below leaves each
source out in turn and counts how many of its figures fall inside the range the others give. The
tuned and the held-out sources of `split.json` both count: the split guards fitting, and nothing is
fitted here (the tables say how many of each group's sources are held-out ones).

**Few rows.** A kind needs {min_rows} runs from {min_sources} sources for a range of its own. With
fewer, it takes the range of all stacks with its method and figure, then of every method with its
figure, widened to cover its own runs; the output says so. A method no published run covers (DoRA,
IA3, prompt tuning, DPO/ORPO/GRPO objectives) gets the estimate's agreement with the simulator
(`data/measurements/accuracy_simulate_*.json`) and the statement that no real-GPU evidence covers it:
that range leaves out what a real GPU adds (allocator, CUDA context, a stack's own code).

**Read them with care.** Almost every published run has features gpuplan does not model yet (padding,
packing, evaluation generation, fused kernels, FSDP1); their effect is part of these ranges, which is
why many are wide: they show the evidence as it is, not a target. Two pairs of sources share a harness
(fms-acceleration's two CSVs, LitGPT's two tables), so "2 sources" there is less independent than it
reads. The ranges come from a recorded file, never from the runs at estimate time:

    python benchmarks/published.py --record   # errors_recorded.json, ranges_recorded.json, this section
    python benchmarks/ranges.py               # the tables alone

{tables}
**In the estimate**

<!-- example: {example_command} -->
```text
{example}
```
"""


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _group_name(key: str) -> str:
    stack, method, figure = key.split("|")
    return f"{'all stacks' if stack == ANY else stack} | {'all methods' if method == ANY else method} | {FIGURE_NAMES[figure]}"



def group_table(table: dict) -> str:
    """Every group with a range of its own: rows, sources, bias, range, held-out median and worst."""
    rows = [EvidenceRow(**r) for r in table["rows"]]
    held = held_out_sources()
    out = ["| stack | method | figure | runs | sources (held out in split.json) | bias | range (10th-90th, held out) "
           "| errors as measured (lowest..highest) | held-out median abs | held-out worst |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for key, g in table["groups"].items():
        stack, method, figure = key.split("|")
        mine = [r for r in rows if r.figure == figure and (method == ANY or r.method == method)
                and (stack == ANY or r.stack == stack)]
        raw = [r.error for r in mine]
        n_held = sum(s in held for s in g["sources"])
        out.append(f"| {_group_name(key)} | {g['rows']} | {len(g['sources'])} ({n_held}) | {pct(g['bias'])} | "
                   f"{pct(g['low'])}..{pct(g['high'])}{'' if g['held_out'] else ' (one source: not held out)'} | "
                   f"{pct(min(raw))}..{pct(max(raw))} | {100 * g['median_abs']:.1f}% | {pct(g['worst'])} |")
    return "\n".join(out)


def kind_table(table: dict) -> str:
    """What an estimate of each kind gets: the group its range comes from and the range."""
    published = sorted({r["method"] for r in table["rows"]})
    out = ["| stack | method | figure | range from | range | runs | sources |", "|---|---|---|---|---|---|---|"]
    for stack in EvidenceStack:
        for method in published:
            for figure in FIGURES:
                k = table["kinds"][f"{stack.value}|{method}|{figure}"]
                src = "its own runs" if not k["fallback"] else f"the runs of {k['fallback']}"
                out.append(f"| {stack.value} | {method} | {FIGURE_NAMES[figure]} | {src} | {pct(k['low'])}..{pct(k['high'])} | "
                           f"{k['rows']} | {len(k['sources'])} |")
    return "\n".join(out)


def simulated_table(table: dict) -> str:
    published = {r["method"] for r in table["rows"]}
    seen, out = set(), ["| method | simulated rows | estimate vs simulator (lowest..highest) |", "|---|---|---|"]
    for key, k in table["kinds"].items():
        method = key.split("|")[1]
        if method in published or method in seen:
            continue
        seen.add(method)
        out.append(f"| {method} | {k['rows']} | {pct(k['low'])}..{pct(k['high'])} |")
    sim = table.get("simulated_only")
    if sim:
        out.append(f"| any other | {sim['rows']} (every method) | {pct(sim['low'])}..{pct(sim['high'])} |")
    return "\n".join(out)


def coverage_table(table: dict) -> tuple[str, int, int]:
    """Per source left out: how many of its figures fell inside the range the other sources give."""
    rows = [EvidenceRow(**r) for r in table["rows"]]
    cov = coverage(rows)
    by: dict[str, list[bool]] = collections.defaultdict(list)
    for r, _, ok in cov:
        by[r.source].append(ok)
    held = held_out_sources()
    out = ["| source left out | figures | inside the range of the other sources | share |", "|---|---|---|---|"]
    for s, oks in sorted(by.items()):
        out.append(f"| {s}{' (held out)' if s in held else ''} | {len(oks)} | {sum(oks)} | {100 * sum(oks) / len(oks):.0f}% |")
    inside = sum(ok for _, _, ok in cov)
    out.append(f"| **all** | {len(cov)} | {inside} | {100 * inside / len(cov):.0f}% |")
    return "\n".join(out), inside, len(cov)


def report(table: dict) -> str:
    cov, inside, n = coverage_table(table)
    return (f"**Ranges by kind** (groups with at least {MIN_ROWS} runs from {MIN_SOURCES} sources, and every figure "
            f"over all stacks and methods)\n\n{group_table(table)}\n\n"
            f"**What an estimate of each kind shows**\n\n{kind_table(table)}\n\n"
            f"**Methods no published run covers** (the simulator's agreement; no real-GPU evidence)\n\n"
            f"{simulated_table(table)}\n\n"
            f"**The ranges on sources left out** (each source's figures against the range its kind gets from the "
            f"other sources, through the same fallbacks; a {int(100 * QUANTILES[0])}th-{int(100 * QUANTILES[1])}th "
            f"percentile range should hold about {int(100 * (QUANTILES[1] - QUANTILES[0]))}%: {inside} of {n})\n\n{cov}\n")


def write_doc(table: dict) -> Path:
    """Regenerate docs/readme/ranges.md: the prose, the tables of `table`, and the estimate example
    as the README examples' runner prints it (tests/readme/examples.py checks it stays so)."""
    sys.path.insert(0, str(ROOT / "tests" / "readme"))
    from examples import run   # the README examples' runner: the block is what the command prints

    full = run(EXAMPLE).splitlines()
    start = next(i for i, ln in enumerate(full) if ln.startswith("Real-GPU range"))
    command = f"{EXAMPLE} | tail -{len(full) - start}"   # from the range table to the end
    fits_line = next(ln for ln in full if ": fits with " in ln)
    may_line = next(ln for ln in full if ": may not fit: " in ln)
    DOC.write_text(DOC_TEXT.format(fits_line=fits_line, may_line=may_line, min_rows=MIN_ROWS, min_sources=MIN_SOURCES,
                                   tables=report(table), example_command=command,
                                   example="\n".join(run(command).splitlines())))
    sync_readme()
    return DOC


def sync_readme() -> None:
    """README.md carries docs/readme/ranges.md as its section of the same heading: replace that section
    (up to the next level-2 heading) with the doc, so a re-record refreshes both."""
    doc = DOC.read_text().rstrip("\n").split("\n")
    lines = README.read_text().split("\n")
    start = lines.index(doc[0])
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    lines[start:end] = doc + [""]
    README.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate docs/readme/ranges.md and its README section")
    args = parser.parse_args()
    table = recorded_table()
    if not table:
        print("data/published/ranges_recorded.json is missing: run benchmarks/published.py --record", file=sys.stderr)
        return 1
    text = report(table)
    print(text)
    if args.write:
        print(f"wrote {write_doc(table)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
