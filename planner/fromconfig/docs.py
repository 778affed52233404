"""The `--from-config` reference (docs/readme/from-config.md), generated from the key tables so that it
stays true: `python -m gpuplan.planner.fromconfig.docs > docs/readme/from-config.md`
(tests/planner/test_fromconfig.py checks the file against this function)."""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from . import DEFAULT_SHARDED_GPUS
from .rules import KeyRule, Rule

_INTRO = f"""\
## Your own training config: `--from-config`

`gpuplan estimate --from-config FILE` reads the config you train with and plans that run. Flags given
on the command line override the file. Formats (detected from the content):

| format | files | versions the defaults describe |
|---|---|---|
| axolotl | YAML (`axolotl train FILE`) | axolotl schema `src/axolotl/utils/schemas/` at commit 067b021c (after v0.18.0) |
| HF Trainer / TRL | `TrainingArguments` / `SFTConfig` JSON or YAML (`trl sft --config FILE`) | transformers 5.24, TRL v1.9.0 |
| torchtune | recipe YAML (`tune run RECIPE --config FILE`) | torchtune 0.6.1, its last release: torchtune is no longer actively maintained |
| LLaMA-Factory | YAML (`llamafactory-cli train FILE`), the classic `src/llamafactory/hparams` format; the v1 format (`examples/v1`) is refused | commit ff6d4d12 (after v0.9.5) |
| Unsloth | `.py` scripts and `.ipynb` notebooks, read with `ast`, never run | Unsloth 2026.8.19 |
| accelerate | `accelerate launch --config_file` YAML, as `--from-config` or `--accelerate-config` | accelerate 1.15 |

Every key the file holds gets one of three rules, listed below per format:

- **modelled**: it sets a gpuplan option (the `used` list says which flag it set);
- **refused**: it switches on something memory-relevant that gpuplan does not model yet; the estimate
  stops with one line naming the key and why (exit 2), e.g. `sample_packing: true is not modelled yet
  (packing changes the attention mask and the tokens per micro-batch); remove it to plan the rest`.
  The same key set to its off value (`sample_packing: false`) is reported as used;
- **no effect**: logging, data paths, schedule, seeds, saving: no effect on GPU memory or step time.

A key the format's table does not know is listed apart ("unknown to gpuplan's axolotl table") and the
estimate says so; it is never counted as having no effect. `estimate --json` carries
`from_config: {{format, used, no_effect, refused, unknown, notes}}`.

Multi-GPU configs are planned: a DeepSpeed JSON (`deepspeed: ds.json`, path relative to the config
file, else to the working directory; or an inline dict) sets `--zero`, `--offload`, `--offload-device`;
an FSDP block (HF `fsdp: "full_shard auto_wrap"` + `fsdp_config`, axolotl `fsdp`/`fsdp_config`/
`fsdp_version`, accelerate `fsdp_config`) sets `--fsdp full|grad-op|hybrid` and `--offload params`. The GPU
count comes from `--gpus`/`--nodes`, or from an accelerate config (`num_processes`, `num_machines`), or
from DeepSpeed's `train_batch_size / (micro-batch x accumulation)`; without any, a sharded plan is per
GPU of {DEFAULT_SHARDED_GPUS} (the launcher configs the examples ship use 8) and the estimate says so.

    gpuplan estimate --from-config qlora.yml --gpu rtx-4090
    gpuplan estimate --from-config sft.yaml --accelerate-config zero3.yaml --json
"""


def _parent(note: str) -> str:
    """"read only with use_galore on (refused)" -> "use_galore on"."""
    return note[len("read only with "):].replace(", which is refused", "").replace(" (refused)", "")


def _section(title: str, table: Mapping[str, KeyRule], preface: str = "") -> list[str]:
    out = [f"### {title}", ""]
    if preface:
        out += [preface, ""]
    def read_only(r: KeyRule) -> bool:
        return r.note.startswith("read only with")

    for rule, head in ((Rule.MODELLED, "Modelled"), (Rule.REFUSED, "Refused while on")):
        keys = sorted(k for k, r in table.items() if r.rule is rule and not read_only(r))
        if not keys:
            continue
        out += [f"{head}:", "", "| key | maps to / why |", "|---|---|"]
        out += [f"| `{k}` | {table[k].note.replace('|', '/')} |" for k in keys]
        out.append("")
    later: dict[str, list[str]] = defaultdict(list)
    for k, r in table.items():
        if read_only(r):
            later[r.note].append(k)
    if later:
        out += ["Settings of a refused technique (read only with it):", ""]
        out += [f"- {_parent(note)}: " + ", ".join(f"`{k}`" for k in sorted(keys))
                for note, keys in sorted(later.items())]
        out.append("")
    groups: dict[str, list[str]] = defaultdict(list)
    for k, r in table.items():
        if r.rule is Rule.NO_EFFECT:
            groups[r.note].append(k)
    if groups:
        out += ["No effect on memory or time:", ""]
        out += [f"- {note}: " + ", ".join(f"`{k}`" for k in sorted(keys)) for note, keys in sorted(groups.items())]
        out.append("")
    return out


def render() -> str:
    """The whole reference as markdown."""
    from . import accelerate, axolotl, hf, llamafactory, torchtune, unsloth
    from .common import DEEPSPEED_TABLE, FSDP_TABLE

    lines = [_INTRO]
    lines += _section("axolotl", axolotl.TABLE, f"Schema: {axolotl.SCHEMA}.")
    lines += _section("HF TrainingArguments / TRL SFTConfig", hf.TABLE, f"Schema: {hf.SCHEMA}.")
    lines += _section("torchtune", torchtune.TABLE,
                      f"{torchtune.SEMANTICS}: models are built in `dtype` without autocast; adapters in that dtype; "
                      "`tokenizer.max_seq_len: null` (no truncation) is refused. Builders mapped to presets: "
                      + ", ".join(f"`{b}` -> `{p}`" for b, p in sorted(torchtune.BUILDERS.items())) + ".")
    lines += _section("LLaMA-Factory", llamafactory.TABLE,
                      f"Schema: {llamafactory.SCHEMA} (the HF TrainingArguments keys above apply too). "
                      "Out of scope: the v1 format (`model:` with `peft_config`/`dist_config`), refused with one line.")
    for call, table in unsloth.TABLES.items():
        if call in ("SFTConfig", "TrainingArguments"):
            continue
        lines += _section(f"Unsloth: `{call}(...)` keywords", table,
                          f"Unsloth {unsloth.VERSION}; `SFTConfig(...)` / `TrainingArguments(...)` keywords follow "
                          "the HF table. A keyword whose value is not a literal (or a name bound once to one) is "
                          "listed as unknown." if call == "from_pretrained" else "")
    lines += _section("accelerate launcher config", accelerate.TABLE)
    lines += _section("DeepSpeed config (JSON or inline)", DEEPSPEED_TABLE,
                      "Keys are dotted paths into the JSON; `auto` values are filled by HF Trainer.")
    lines += _section("FSDP config block (`fsdp_config`, with or without the `fsdp_` prefix)", FSDP_TABLE)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
