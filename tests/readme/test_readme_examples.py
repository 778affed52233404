"""README.md's example outputs are what the commands print today (regenerate them with
`python tests/readme/examples.py --write`), and every `gpuplan` command the README shows runs."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import examples  # noqa: E402

README = examples.ROOT / "README.md"


def test_readme_has_generated_examples():
    assert examples.examples(README), "README.md has no <!-- example: ... --> block"


def test_every_example_is_up_to_date():
    bad = examples.stale()
    assert not bad, ("stale README example(s), run `python tests/readme/examples.py --write`: "
                     + "; ".join(f"{e.path.name}: {e.command}" for e, _ in bad))


def test_a_changed_output_is_seen(tmp_path):
    ex = examples.examples(README)[0]
    now = examples.run(ex.command)
    assert examples.normalize(now) == examples.normalize(ex.shown)
    tampered = ex.shown.replace("tokens", "tokenz", 1)
    assert examples.normalize(tampered) != examples.normalize(now)


def test_normalize_only_touches_variable_text():
    assert examples.normalize("done, 12.5 s elapsed") == examples.normalize("done, 3 s elapsed")
    assert examples.normalize("8.29 h, $12.44") != examples.normalize("8.29 h, $12.45")


def test_parse_refuses_what_it_cannot_run():
    assert examples.parse("gpuplan gpus | head -3") == (["gpus"], 3, False)
    assert examples.parse("gpuplan fit -m x 2>&1 | tail -1") == (["fit", "-m", "x"], -1, True)
    with pytest.raises(ValueError):
        examples.parse("gpuplan gpus | grep h100")


def _readme_commands() -> list[str]:
    """`gpuplan estimate|fit|gpus|models|recommend ...` lines of README.md's bash blocks."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if re.match(r"gpuplan (estimate|fit|gpus|models|recommend)\b", part):
                    cmds.append(part)
    return cmds


def test_readme_names_commands():
    assert len(_readme_commands()) >= 5


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_runs(command):
    """Catches a README command whose example file (examples/axolotl.yaml ...) is missing."""
    for arg in shlex.split(command):
        if arg.startswith("examples/"):
            assert (examples.ROOT / arg).exists(), f"README names {arg}, which is not shipped"
    code, out = examples.invoke(command)
    assert code == 0 and out.strip(), f"{command}: exit {code}"
