"""The engine's imports form a DAG: no module imports one that (indirectly) imports it back;
and its functions stay short enough to read, or say why not.

`make lint` runs import-linter's contracts from pyproject.toml (the layers and a no-circle
contract between siblings). This test checks the finer grain those contracts leave out:
module to module, function-local imports included (grimp reads every import statement,
so a circle hidden inside a function still counts).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each module that can reach itself, with the shortest way round."""
    found: list[list[str]] = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                found.append([module, *back])
                break
    return found


def test_no_module_in_the_engine_imports_itself_back() -> None:
    graph = grimp.build_graph("engine")
    assert not circles(graph), "\n".join(" -> ".join(c) for c in circles(graph))


def test_the_check_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert circles(graph) == []
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert ["pkg.a", "pkg.b", "pkg.c", "pkg.a"] in circles(graph)


# --- functions a reader can hold in their head -------------------------------------------

MAX_LINES = 60
ROOT = Path(__file__).resolve().parent.parent


def long_functions(source: str) -> list[tuple[str, int]]:
    """Functions over MAX_LINES lines whose docstring does not say why ("Long: …")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES and "Long:" not in (ast.get_docstring(node) or ""):
                found.append((node.name, lines))
    return found


def test_no_function_in_the_engine_or_the_dashboard_is_long_without_a_reason() -> None:
    files = [*ROOT.glob("engine/**/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("pages/*.py")]
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted(files)
        if (found := long_functions(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"over {MAX_LINES} lines, no 'Long:' reason: {offenders}"


def test_the_length_check_counts_lines_and_reads_the_reason() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(f"def f() -> None:\n{body}\n") == [("f", MAX_LINES + 1)]
    reason = '    """Long: a table, one line per row."""\n'
    assert long_functions(f"def f() -> None:\n{reason}{body}\n") == []
    assert long_functions("def g() -> None:\n    pass\n") == []
