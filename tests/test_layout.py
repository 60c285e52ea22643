"""The tests' own layout: a test module never imports another test module, nor conftest
(what several share lives in tests/support/; fixtures come from tests/conftest.py, which
pytest loads), and tests/ holds only test modules at its top level."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TOP_LEVEL_ALLOWED = {"__init__.py", "conftest.py"}


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The test modules an import statement loads, dotted (a relative one keeps its dots)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _names_a_test_module(alias.name)]
    base = "." * node.level + (node.module or "")
    if _names_a_test_module(base):
        return [base]
    # `from tests import test_x` loads the module tests.test_x
    children = (f"{base.rstrip('.')}.{alias.name}" for alias in node.names)
    return [name for name in children if _names_a_test_module(name)]


def _names_a_test_module(dotted: str) -> bool:
    parts = dotted.split(".")
    if dotted.startswith("."):
        parts = [p for p in parts if p]
    elif parts[0] == "tests":
        parts = parts[1:]
    else:
        return False  # outside tests/
    return any(p.startswith("test_") or p == "conftest" for p in parts)


def imports_of_test_modules(source: str) -> list[str]:
    """The modules `source` imports that are test modules or conftest."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += _imported(node)
    return found


def test_the_check_sees_every_way_of_importing_a_test_module() -> None:
    # Built from a placeholder so that a grep for such imports finds none in this file.
    source = """
import tests.{t}pool
from tests.{t}app_live import new_app
from tests import {t}timeline
from .{t}history import a_result
from tests.conftest import skip_loudly
def inside() -> None:
    from tests.{t}integration import simulated
""".format(t="test_")
    assert imports_of_test_modules(source) == [
        "tests.test_pool",
        "tests.test_app_live",
        "tests.test_timeline",
        ".test_history",
        "tests.conftest",
        "tests.test_integration",
    ]
    allowed = (
        "import pytest\nfrom tests.support.fakes import FakeBackend\nfrom tests import support\n"
    )
    assert imports_of_test_modules(allowed) == []


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if "__pycache__" not in path.parts
        and (found := imports_of_test_modules(path.read_text(encoding="utf-8")))
    }
    assert not offenders, (
        f"imports of test modules (move what they share to tests/support/): {offenders}"
    )


def test_tests_top_level_holds_only_test_modules() -> None:
    strays = sorted(
        p.name
        for p in TESTS.glob("*.py")
        if not p.name.startswith("test_") and p.name not in TOP_LEVEL_ALLOWED
    )
    assert not strays, f"helpers belong in tests/support/, not tests/: {strays}"
