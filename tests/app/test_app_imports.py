"""app/ imports the planner and its own modules at module level; a function-body import is a
deliberate lazy one and says why on its line (the dashboard's streamlit, the profiler's torch, a
console the tests swap)."""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def test_every_function_body_import_in_app_says_why():
    bad = []
    for path in APP.rglob("*.py"):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for f in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(f):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                        not any("#" in ln for ln in lines[node.lineno - 1:node.end_lineno]):
                    bad.append(f"app/{path.relative_to(APP)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, "\n".join(bad)
