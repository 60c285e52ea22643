"""The README's architecture map lists every module of engine/ and ui/: a newcomer finds
the room for a change from it, so a module added without a line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _map() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Architecture\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Architecture section has no map"
    return str(blocks[0])


def _modules(package: str) -> list[str]:
    root = REPO / package
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    )


def test_every_module_is_on_the_map() -> None:
    text = _map()
    missing = []
    for package in ("engine", "ui"):
        for module in _modules(package):
            name = Path(module).name
            folder = str(Path(module).parent)
            # a module in a subpackage may be named on its folder's line instead
            named = re.search(rf"(?<![\w/]){re.escape(name)}\b", text) or (
                folder != "." and f"{folder}/" in text and Path(module).stem in text
            )
            if not named:
                missing.append(f"{package}/{module}")
    assert not missing, f"not on README's architecture map: {missing}"


def test_the_map_names_no_module_that_is_gone() -> None:
    text = _map()
    known = {Path(m).name for p in ("engine", "ui") for m in _modules(p)} | {"app.py"}
    named = set(re.findall(r"\b([a-z_]+\.py)\b", text))
    assert named <= known, f"on the map but not in the tree: {sorted(named - known)}"
