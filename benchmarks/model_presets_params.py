"""Every model preset's params_total against transformers on the meta device, in one table.

    python benchmarks/model_presets_params.py             # data/models/*.json and data/models/pending/*.json
    python benchmarks/model_presets_params.py --pending   # only the pending ones

tests/data/test_model_presets.py checks a fixed sample of the presets (building a model on meta
takes about half a second each); this script checks all of them and exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import time
from pathlib import Path

import torch
import transformers

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def count_on_meta(config: dict) -> tuple[str, int]:
    """(class name, sum(p.numel())) of the model transformers builds from `config`, tied weights once."""
    config = copy.deepcopy(config)   # transformers 5 rewrites rope dicts it is given
    cfg = transformers.AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        except ValueError:   # multimodal wrappers (llava) are image-text-to-text classes
            model = transformers.AutoModelForImageTextToText.from_config(cfg)
    try:
        return type(model).__name__, sum(p.numel() for p in model.parameters())
    finally:
        del model
        gc.collect()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pending", action="store_true", help="only data/models/pending/")
    args = ap.parse_args()
    files = sorted((MODELS / "pending").glob("*.json"))
    if not args.pending:
        files = sorted(MODELS.glob("*.json")) + files
    bad, t0 = 0, time.perf_counter()
    print(f"{'preset':44s} {'model_type':14s} {'params_total':>18s} {'transformers':>18s}  ok")
    for path in files:
        preset = json.loads(path.read_text())
        _, n = count_on_meta(preset["config"])
        ok = n == preset["params_total"]
        bad += not ok
        where = "pending/" if path.parent.name == "pending" else ""
        print(f"{where + preset['name']:44s} {preset['config']['model_type']:14s} "
              f"{preset['params_total']:>18,d} {n:>18,d}  {'yes' if ok else 'NO'}")
    print(f"{len(files)} presets, {bad} mismatches, {time.perf_counter() - t0:.1f} s "
          f"(transformers {transformers.__version__}, torch {torch.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
