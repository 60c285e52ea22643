"""engine/store imports one way: state → the stores (disk, history, redis_store) → base.

A circle between them would only show in some import orders (whichever module Python
starts first gets a half-initialised partner), so each module is imported first in a
fresh interpreter; and the rule itself is read from the source, function-local imports
included, so a circle cannot hide inside a function either."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STORE = REPO / "engine" / "store"
MODULES = sorted(p.stem for p in STORE.glob("*.py") if p.stem != "__init__")
# What each module may import of engine.store (the layers, bottom up).
ALLOWED = {
    "base": set(),
    "disk": {"base"},
    "history": {"base"},
    "redis_store": {"base"},
    "state": {"base", "disk", "history", "redis_store"},
}


def _engine_imports(path: Path) -> list[tuple[str, bool]]:
    """Every engine module `path` imports, and whether the import sits inside a function."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
                found.extend((n, inner) for n in names if n.startswith("engine."))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("engine."))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_every_store_module_has_a_layer() -> None:
    assert sorted(ALLOWED) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_store_modules_import_only_the_layers_below(module: str) -> None:
    imports = _engine_imports(STORE / f"{module}.py")
    store = {
        name.removeprefix("engine.store.").split(".")[0]
        for name, _ in imports
        if name.startswith("engine.store.")
    }
    assert store & set(MODULES) <= ALLOWED[module]
    hidden = [name for name, in_function in imports if in_function]
    assert hidden == [], f"engine/store/{module}.py imports inside a function: {hidden}"


def test_the_redactor_imports_nothing_of_engine() -> None:
    assert _engine_imports(REPO / "engine" / "redact.py") == []


@pytest.mark.parametrize("module", [*(f"engine.store.{m}" for m in MODULES), "engine.redact"])
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # The module first, then every other store module: with a circle, whichever of the
    # pair starts first fails on the other's names.
    rest = [f"engine.store.{m}" for m in MODULES if f"engine.store.{m}" != module]
    code = "; ".join(f"import {name}" for name in [module, *rest])
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
