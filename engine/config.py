"""quorum.toml: one reader for every section (agents, server, cache, prometheus, endpoints).

Each module owns the meaning of its own table; this one only reads the file, so a
missing file, an unreadable one and invalid TOML read the same everywhere.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """quorum.toml cannot be read; str() names the file and why, in one line."""


def read(path: str | Path | None) -> dict[str, Any]:
    """The whole file as a dict; {} when there is no path or no file."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def table(path: str | Path | None, name: str) -> dict[str, Any]:
    """The `[name]` table ({} when absent); ConfigError when it is not a table."""
    value = read(path).get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value
