"""The developers' guide's sizes: no module over 500 lines, no function body over 60 lines
(docstrings excluded), in the layers feature_store, training, assets, pipelines and deploy."""

from __future__ import annotations

import ast
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
LAYERS = ("feature_store", "training", "assets", "pipelines", "deploy")
MAX_MODULE_LINES = 500
MAX_BODY_LINES = 60


def modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (REPO / layer).rglob("*.py"))


def long_bodies(source: str) -> list[tuple[str, int]]:
    """``(qualified name, body lines)`` of each function whose body, its docstring left out,
    spans more than :data:`MAX_BODY_LINES` lines."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    body = child.body
                    if ast.get_docstring(child) is not None:
                        body = body[1:]
                    if body:
                        lines = body[-1].end_lineno - body[0].lineno + 1  # type: ignore[operator]
                        if lines > MAX_BODY_LINES:
                            out.append((name, lines))
                visit(child, f"{name}.")

    visit(ast.parse(source), "")
    return out


def oversized() -> list[str]:
    found = []
    for path in modules():
        source = path.read_text()
        rel = path.relative_to(REPO)
        n = len(source.splitlines())
        if n > MAX_MODULE_LINES:
            found.append(f"{rel}: {n} lines")
        found.extend(f"{rel}:{name}: body of {lines} lines" for name, lines in long_bodies(source))
    return found


def test_the_measure_counts_bodies_without_docstrings() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY_LINES))
    doc = '    """' + "\n".join(["doc"] * 30) + '"""\n'
    assert long_bodies(f"def f():\n{doc}{body}\n") == []
    method = body.replace(chr(10), chr(10) + "    ")
    assert long_bodies(f"class C:\n    def g(self):\n    {method}\n        y = 1\n") == [("C.g", MAX_BODY_LINES + 1)]
    assert modules() and all(p.suffix == ".py" for p in modules())


def test_no_module_or_function_over_the_limits() -> None:
    assert oversized() == []
