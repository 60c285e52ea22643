"""The engine's imports form a DAG: no module imports one that (indirectly) imports it back.

`make lint` runs import-linter's contracts from pyproject.toml (the layers and a no-circle
contract between siblings). This test checks the finer grain those contracts leave out:
module to module, function-local imports included (grimp reads every import statement,
so a circle hidden inside a function still counts).
"""

from __future__ import annotations

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
