"""The planner's package levels point one way, with no import circle, no private cross-module
import and no function-body import except the deliberate lazy ones; no formula tests
`model_type` or `Method`."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PLANNER = Path(__file__).resolve().parents[2] / "planner"
# planner/fromconfig/ is an io-level package (it reads user files)
LEVELS = {"specs": 0, "io": 1, "fromconfig": 1, "techniques": 2, "memory": 3, "speed": 4, "plans": 5}
LAZY_OK = {"yaml", "huggingface_hub"}      # optional dependencies, imported where first needed
FORMULA_PACKAGES = ("techniques", "memory", "speed")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PLANNER.rglob("*.py"):
        parts = path.relative_to(PLANNER).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        out[name] = path
    return out


def _target(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        mod = node.module or ""
        return mod.removeprefix("gpuplan.planner").lstrip(".") if mod.startswith("gpuplan.planner") else "<external>"
    base = module.split(".") if module else []
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path) -> list[tuple[str, list[str], bool, int]]:
    """(target module, imported names, inside a function, line) of every planner-internal import."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    in_func: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                in_func.add(id(sub))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            tgt = _target(name, is_pkg, node)
            out.append((tgt, [a.name for a in node.names], id(node) in in_func, node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                out.append(("<external>:" + a.name, [], id(node) in in_func, node.lineno))
    return out


def _level(module: str) -> int:
    return LEVELS.get(module.split(".")[0], 6) if module else 6


def test_levels_point_one_way():
    bad = []
    for name, path in _modules().items():
        for tgt, _, _, line in _imports(name, path):
            if tgt.startswith("<external>") or not name:
                continue
            if _level(tgt) > _level(name):
                bad.append(f"planner/{path.relative_to(PLANNER)}:{line} ({name}, level {_level(name)}) imports {tgt} "
                           f"(level {_level(tgt)})")
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    mods = _modules()
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        for tgt, names, in_func, _ in _imports(name, path):
            if tgt.startswith("<external>") or in_func:
                continue
            for n in names:       # `from . import lora` imports the module planner.techniques.lora
                if f"{tgt}.{n}".lstrip(".") in mods:
                    graph[name].add(f"{tgt}.{n}".lstrip("."))
            if tgt in mods and tgt != name:
                graph[name].add(tgt)
    # a package's __init__ importing its own modules is not a circle through them
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for m in graph[n]:
            if m == n or (m and n.startswith(m + ".") and _modules()[m].name == "__init__.py"):
                continue
            if state.get(m) == 1:
                cycle.extend(stack[stack.index(m):] + [m] if m in stack else [n, m])
                return True
            if state.get(m) is None and visit(m, stack + [m]):
                return True
        state[n] = 2
        return False

    for n in graph:
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " -> ".join(cycle)


def test_no_private_cross_module_imports():
    bad = []
    for name, path in _modules().items():
        for tgt, names, _, line in _imports(name, path):
            if tgt.startswith("<external>") or tgt == name:
                continue
            bad += [f"planner/{path.relative_to(PLANNER)}:{line} imports {tgt}.{n}" for n in names if n.startswith("_")]
    assert not bad, "\n".join(bad)


def test_function_body_imports_are_the_deliberate_lazy_ones():
    bad = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for tgt, names, in_func, line in _imports(name, path):
            if not in_func:
                continue
            ext = tgt.split(":", 1)[1] if tgt.startswith("<external>:") else None
            if ext in LAZY_OK or (tgt == "<external>" and "lazily" in lines[line - 1]):
                continue
            if name.startswith("fromconfig"):     # the readers are chosen by format (see fromconfig/__init__)
                continue
            bad.append(f"planner/{path.relative_to(PLANNER)}:{line}: {lines[line - 1].strip()}")
    assert not bad, "\n".join(bad)


def test_no_formula_tests_model_type_or_method():
    bad = []
    for name, path in _modules().items():
        if not name.startswith(FORMULA_PACKAGES):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"model_type\s*(==|!=|in\b)|model_type\.startswith|Method\.", code):
                bad.append(f"planner/{path.relative_to(PLANNER)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_violation(tmp_path):
    """The level check is not vacuous: a specs module importing memory is caught."""
    node = ast.parse("from ..memory.estimate import estimate").body[0]
    assert _level(_target("specs.model", False, node)) > _level("specs.model")
