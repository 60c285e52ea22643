"""quorum.toml is read one way for every section."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import config


def test_no_file_is_an_empty_config(tmp_path: Path) -> None:
    assert config.read(None) == {} and config.read(tmp_path / "absent.toml") == {}
    assert config.table(tmp_path / "absent.toml", "server") == {}


def test_tables_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "quorum.toml"
    path.write_text("server = 3\n[cache]\nttl = 5\n")
    assert config.table(path, "cache") == {"ttl": 5}
    assert config.table(path, "prometheus") == {}
    with pytest.raises(config.ConfigError, match=r"quorum.toml: \[server\] must be a table$"):
        config.table(path, "server")
    path.write_text("[cache\n")
    with pytest.raises(config.ConfigError, match=r"quorum.toml: invalid TOML \(") as info:
        config.read(path)
    assert "\n" not in str(info.value)
