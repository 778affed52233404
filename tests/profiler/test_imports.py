"""The profiler's import structure: no circles, every module importable in a fresh interpreter, the
package itself (and the CLI's view of it) free of torch, and every function-body import commented.

A circle between two modules fails only when one of them happens to be imported first, so the
graph is checked from the source (ast), not by importing in some order.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILER = ROOT / "profiler"
PACKAGE = "gpuplan.profiler"
TORCH_FREE = ["gpuplan.profiler", "gpuplan.profiler.device", "gpuplan.profiler.run", "gpuplan.profiler.compare",
              "gpuplan.profiler.matrix", "gpuplan.planner.io.hf_vocabulary",
              "gpuplan.app.cli_profile", "gpuplan.app.cli"]
# modules outside profiler/ that belong to it and follow the same rule on function-body imports
ALSO_CHECKED = [ROOT / "app" / "cli_profile.py", ROOT / "app" / "dashboard" / "page_profile.py"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROFILER).with_suffix("").parts
    return ".".join((PACKAGE, *parts[:-1])) if parts[-1] == "__init__" else ".".join((PACKAGE, *parts))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PROFILER.rglob("*.py"))}


def _imported(node: ast.ImportFrom | ast.Import, module: str, is_package: bool) -> list[str]:
    """The gpuplan.profiler modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module if is_package else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            base = base.rsplit(".", 1)[0]
        source = node.module if node.level == 0 else ".".join(filter(None, (base, node.module)))
        names = [source] + [f"{source}.{a.name}" for a in node.names]
    return [n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")]


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Module-level import statements, except those under `if TYPE_CHECKING:` (never run)."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and ast.unparse(node.test) != "TYPE_CHECKING":
            out.extend(n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
    return out


def _graph(include_lazy: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = _top_level(tree)
        if include_lazy:
            nodes += [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and n not in nodes
                      and not _under_type_checking(tree, n)]
        deps = {d for n in nodes for d in _imported(n, name, path.name == "__init__.py") if d in modules}
        graph[name] = deps - {name}
    return graph


def _under_type_checking(tree: ast.Module, node: ast.stmt) -> bool:
    return any(isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING" and node in n.body
               for n in tree.body)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_the_imports():
    """The checker itself: it finds known edges (a relative import, a lazy one, a package one)."""
    top, everything = _graph(False), _graph(True)
    assert "gpuplan.profiler.tracker" in top["gpuplan.profiler.step"]
    assert "gpuplan.profiler.kernels.chunked_loss" in top["gpuplan.profiler.step"]
    assert "gpuplan.profiler.simulate" not in top["gpuplan.profiler.run"]
    assert "gpuplan.profiler.simulate" in everything["gpuplan.profiler.run"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circles_inside_the_profiler():
    assert _cycle(_graph(include_lazy=False)) is None
    assert _cycle(_graph(include_lazy=True)) is None   # lazy imports neither


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(_modules())
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    run = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_package_and_the_cli_import_no_torch():
    code = ("import sys\nfor m in sys.argv[1:]:\n    __import__(m)\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    run = subprocess.run([sys.executable, "-c", code, *TORCH_FREE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def _function_body_imports(path: Path) -> list[tuple[int, str]]:
    """(line, source) of import statements inside functions that carry no comment on their line."""
    source = path.read_text()
    lines = source.splitlines()
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom) and "#" not in lines[node.end_lineno - 1]:
                out.append((node.lineno, lines[node.lineno - 1].strip()))
    return out


def test_every_function_body_import_says_why_it_is_lazy():
    files = [*_modules().values(), *ALSO_CHECKED]
    uncommented = {str(p.relative_to(ROOT)): found for p in files if (found := _function_body_imports(p))}
    assert not uncommented
