"""A regular (non-editable) install holds every module and data file: the wheel is built from
this tree and its contents checked against the folders on disk (pyproject.toml lists packages by
hand, as the package-dir mapping requires; a folder missing there is missing here)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"planner": "gpuplan/planner", "profiler": "gpuplan/profiler", "app": "gpuplan/app", "gpuplan": "gpuplan",
         "data": "gpuplan/data"}


def _expected() -> set[str]:
    out = set()
    for src, dst in TREES.items():
        for path in (ROOT / src).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (src == "data" and path.suffix in (".json", ".md")):
                out.add(f"{dst}/{path.relative_to(ROOT / src).as_posix()}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a clean copy of the sources (a build/ folder left by an earlier build
    would otherwise lend the wheel files that pyproject.toml no longer names)."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in TREES:
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr and "setuptools" in r.stderr:
        pytest.skip("setuptools is not installed in this environment (CI builds the wheel in .ci/run)")
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("gpuplan-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_module_and_data_file(wheel):
    names = set(wheel.namelist())
    missing = sorted(_expected() - names)
    assert not missing, f"{len(missing)} files are not in the wheel (add their package to pyproject.toml): {missing[:10]}"


def test_every_module_folder_is_a_package():
    """A folder with modules but no __init__.py would be left out of the wheel silently."""
    lacking = [str(d.relative_to(ROOT)) for src in ("planner", "profiler", "app")
               for d in [ROOT / src, *(p for p in (ROOT / src).rglob("*") if p.is_dir())]
               if "__pycache__" not in d.parts and any(d.glob("*.py")) and not (d / "__init__.py").exists()]
    assert not lacking, f"folders with modules but no __init__.py: {lacking}"
