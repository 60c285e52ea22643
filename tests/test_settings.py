"""engine/settings.py: one locator for quorum.toml, one loader for what it, the environment
and the secrets say; the CLI, the API and the dashboard all build from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import cli, options
from engine import settings as settings_module
from engine.run.agents import Roster
from engine.settings import DEFAULT_CONFIG_FILE, Settings, SettingsError
from engine.store.state import StateConfig
from ui.context import CONTEXT_KEY, Context

REPO = Path(__file__).resolve().parent.parent


def model_of(roster: Roster, name: str) -> str | None:
    return {a.name: a.model for a in roster.specialists}[name]


FILE = """\
[agents.CostOptimizer]
model = "qwen2.5:3b"
[server]
slots = 3
[cache]
ttl = 120
degraded_ttl = 30
lease = 4
[[endpoints]]
kind = "ollama"
url = "http://127.0.0.1:9"
slots = 2
"""


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "quorum.toml"
    path.write_text(FILE)
    return path


def test_the_file_then_the_environment_then_the_command_line(toml: Path) -> None:
    defaults = Settings.load(env={"QUORUM_CONFIG": str(toml.with_name("absent.toml"))})
    assert defaults.errors == {} and defaults.server_slots is None and defaults.endpoints == ()
    assert defaults.state_config() == StateConfig()

    loaded = Settings.load(env={"QUORUM_CONFIG": str(toml)})
    assert (loaded.config_path, loaded.config_source) == (toml, "$QUORUM_CONFIG")
    assert loaded.server_slots == 3 and [e.slots for e in loaded.endpoints] == [2]
    assert model_of(loaded.roster, "CostOptimizer") == "qwen2.5:3b"
    assert loaded.state_config() == StateConfig(ttl_s=120, degraded_ttl_s=30, lease_s=4)
    # The environment over the file, the command line over both.
    env = {"QUORUM_CONFIG": str(toml), "QUORUM_CACHE_URL": "redis://env:6379/0"}
    toml.write_text(FILE.replace("lease = 4", 'lease = 4\nurl = "redis://file:6379/0"'))
    assert Settings.load(env={"QUORUM_CONFIG": str(toml)}).cache_url == "redis://file:6379/0"
    assert Settings.load(env=env).state_config(ttl_s=7) == StateConfig(
        url="redis://env:6379/0", ttl_s=7, degraded_ttl_s=30, lease_s=4
    )
    other = toml.with_name("other.toml")
    other.write_text("[server]\nslots = 5\n")
    flagged = Settings.load(env=env, config=other)
    assert (flagged.config_source, flagged.server_slots) == ("--config", 5)


def test_the_default_is_the_repository_root_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "quorum.toml").write_text("[server]\nslots = 0\n")  # wrong, if it were read
    monkeypatch.chdir(tmp_path)
    loaded = Settings.load(env={})
    assert loaded.config_path == DEFAULT_CONFIG_FILE == REPO / "quorum.toml"
    assert loaded.config_source == "default" and "server" not in loaded.errors
    # A relative name is relative to `cwd` when one is given.
    relative = Settings.load(env={"QUORUM_CONFIG": "quorum.toml"}, cwd=tmp_path)
    assert relative.config_path == tmp_path / "quorum.toml"
    assert relative.errors["server"].endswith(
        "server.slots: must be 'auto' or a whole number ≥ 1, got 0"
    )


def test_quorum_roster_still_works_and_warns_once(
    toml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())
    for _ in range(3):
        loaded = Settings.load(env={"QUORUM_ROSTER": str(toml)})
        assert (loaded.config_source, loaded.server_slots) == ("$QUORUM_ROSTER", 3)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: $QUORUM_ROSTER is deprecated: use $QUORUM_CONFIG"]
    both = Settings.load(env={"QUORUM_ROSTER": str(toml), "QUORUM_CONFIG": "/nonexistent.toml"})
    assert both.config_source == "$QUORUM_CONFIG" and both.server_slots is None


def test_a_wrong_table_is_kept_apart_and_raised_only_where_it_is_used(toml: Path) -> None:
    toml.write_text(FILE.replace("slots = 3", 'slots = "many"').replace("ttl = 120", "ttl = true"))
    loaded = Settings.load(env={"QUORUM_CONFIG": str(toml)})
    assert set(loaded.errors) == {"server", "cache"}
    assert loaded.errors["cache"] == f"{toml}: cache.ttl: must be a float"
    assert model_of(loaded.roster, "CostOptimizer") == "qwen2.5:3b"  # the rest still read
    loaded.check("agents", "endpoints")
    with pytest.raises(SettingsError, match=r"server\.slots: must be 'auto' or a whole number"):
        loaded.check()
    missing = Settings.load(env={}, config=toml.with_name("typo.toml"))
    with pytest.raises(SettingsError, match=r"typo\.toml: cannot read \(No such file"):
        missing.check("agents")


def test_secrets_come_from_the_environment_then_the_secrets_table(tmp_path: Path) -> None:
    secrets = {"openai_api_key": "sk-file", "api_token": " tok "}
    loaded = Settings.load(env={"OPENAI_API_KEY": "sk-env"}, secrets=secrets)
    assert (loaded.openai_api_key.value, loaded.openai_api_key.source) == (
        "sk-env",
        "OPENAI_API_KEY",
    )
    assert (loaded.api_token.value, loaded.api_token.source) == ("tok", "secrets.toml")
    assert loaded.webhook_url.value is None and "sk-env" not in repr(loaded)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('prometheus_token = "p"\n')
    assert Settings.load(env={}, cwd=tmp_path).prometheus_token.value == "p"


def test_the_cli_and_the_dashboard_build_the_same_objects_from_one_file(
    toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = cli.build_parser().parse_args(["analyze", "--config", str(toml)])
    from_cli = options.load_settings(args)
    backend = options.backend_config(args, from_cli)
    state = options.state_config(args, from_cli)
    roster_alias = cli.build_parser().parse_args(["analyze", "--roster", str(toml)])
    assert roster_alias.config == str(toml)

    monkeypatch.setenv("QUORUM_CONFIG", str(toml))
    monkeypatch.setenv("QUORUM_BACKEND", "endpoints")
    monkeypatch.setenv("QUORUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QUORUM_CACHE_URL", raising=False)
    at = AppTest.from_file(
        str(REPO / "tests" / "support" / "dashboard_app.py"), default_timeout=60
    ).run()
    assert not at.exception
    ctx = at.session_state[CONTEXT_KEY]
    assert isinstance(ctx, Context) and ctx.backend is not None
    assert ctx.backend.endpoints == backend.endpoints and backend.endpoints
    assert ctx.roster.fingerprint() == from_cli.roster.fingerprint()
    assert ctx.roster_path == from_cli.config_path == toml
    dashboard_state = StateConfig(
        url=ctx.cache_url, ttl_s=ctx.ttl_s, degraded_ttl_s=ctx.degraded_ttl_s, lease_s=ctx.lease_s
    )
    assert dashboard_state == state == StateConfig(ttl_s=120, degraded_ttl_s=30, lease_s=4)


def test_a_bad_table_is_one_line_from_the_cli(
    toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml.write_text("[cache]\nlease = -1\n")
    assert cli.main(["analyze", "--scenario", "healthy", "--config", str(toml)]) == 2
    assert capsys.readouterr().err == "error: lease: must be > 0 seconds, got -1\n"


def test_the_api_server_does_not_import_the_cli() -> None:
    code = "import sys, engine.api.serve; sys.exit('engine.cli' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
