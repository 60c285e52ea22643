"""Several LLM hosts as configured: `[[endpoints]]` in quorum.toml and `--base-url` repeated.

Bad entries give one line naming the field; the CLI and the Settings page run against
real simulated servers on loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.backends.endpoints import EndpointSpec, endpoints_section, parse_endpoints
from engine.cli import main
from engine.redact import redact_url
from engine.service import BackendConfig
from engine.simulator import SimConfig, SimulatedOllamaServer
from tests.support.app_test import new_app, page_script
from tests.support.simulated import SPECIALIST_NAMES, closed_port_url, served


@pytest.fixture
def two_servers() -> Iterator[tuple[SimulatedOllamaServer, SimulatedOllamaServer]]:
    config = SimConfig(profile="gpu", num_parallel=3, time_scale=0.01)
    with SimulatedOllamaServer(config) as first, SimulatedOllamaServer(config) as second:
        yield first, second


@pytest.fixture
def cli_servers(
    two_servers: tuple[SimulatedOllamaServer, SimulatedOllamaServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[SimulatedOllamaServer, SimulatedOllamaServer]:
    """Two servers, and the CLI's data (history) in a temp dir."""
    monkeypatch.setenv("QUORUM_DATA_DIR", str(tmp_path))
    return two_servers


def test_endpoint_tables_are_read_with_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPU2_KEY", "sk-gpu2")
    toml = tmp_path / "quorum.toml"
    toml.write_text(
        '[[endpoints]]\nkind = "ollama"\nurl = "http://gpu1:11434/"\nslots = 2\n\n'
        '[[endpoints]]\nkind = "openai"\nurl = "http://gpu2:8000/v1"\n'
        'model = "meta-llama/Llama-3.1-8B-Instruct"\nslots = "auto"\napi_key_env = "GPU2_KEY"\n'
    )
    first, second = endpoints_section(toml)
    assert first == EndpointSpec("ollama", url="http://gpu1:11434", slots=2)
    assert second.slots is None and second.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert second.api_key() == "sk-gpu2"
    assert "sk-gpu2" not in repr(second) and "sk-gpu2" not in json.dumps(second.to_dict())
    assert EndpointSpec.from_dict(second.to_dict()) == second

    config = BackendConfig(kind="ollama", endpoints=(first, second))
    assert config.pooled
    ollama, openai = config.members()
    assert (ollama.server_slots, openai.api_key) == (2, "sk-gpu2")
    assert openai.model == "meta-llama/Llama-3.1-8B-Instruct" and ollama.model == config.model
    assert "sk-gpu2" not in config.fingerprint() and "sk-gpu2" not in repr(config)


def test_no_file_or_no_endpoints_means_one_server(tmp_path: Path) -> None:
    assert endpoints_section(tmp_path / "absent.toml") == ()
    (tmp_path / "q.toml").write_text("[cache]\nttl = 5\n")
    assert endpoints_section(tmp_path / "q.toml") == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"kind": "ollama"}, "endpoints: must be an array of tables ([[endpoints]])"),
        ([{"url": "http://a"}], "endpoints[1].kind: must be one of simulated, ollama, openai, missing"),
        ([{"kind": "vllm", "url": "http://a"}], "endpoints[1].kind: must be one of simulated, ollama, openai, got 'vllm'"),
        ([{"kind": "openai"}], "endpoints[1].url: required for kind openai (e.g. http://host:8000/v1)"),
        ([{"kind": "ollama", "url": "gpu1:11434"}], "endpoints[1].url: must be an http:// or https:// URL with a host"),
        ([{"kind": "ollama", "url": "http://h:port"}], "endpoints[1].url: the port must be a number from 0 to 65535"),
        ([{"kind": "ollama", "url": 11434}], "endpoints[1].url: must be a string, got int"),
        ([{"kind": "ollama", "url": "http://a", "slots": 0}], "endpoints[1].slots: must be 'auto' or a whole number ≥ 1, got 0"),
        ([{"kind": "ollama", "url": "http://a", "slots": "many"}], "endpoints[1].slots: must be 'auto' or a whole number ≥ 1, got 'many'"),
        ([{"kind": "ollama", "url": "http://a", "model": ""}], "endpoints[1].model: must be a non-empty string, got ''"),
        ([{"kind": "ollama", "url": "http://a", "api_key_env": "A-B"}], "endpoints[1].api_key_env: must be an environment variable name"),
        ([{"kind": "ollama", "url": "http://a", "api_key_env": "QUORUM_TEST_UNSET"}], "endpoints[1].api_key_env: $QUORUM_TEST_UNSET is not set"),
        ([{"kind": "ollama", "url": "http://a", "slot": 2}], "endpoints[1].slot: unknown field (known: kind, url, model, slots, api_key_env)"),
        ([{"kind": "ollama", "url": "http://a"}, {"kind": "ollama", "url": "http://a/"}], "endpoints[2].url: the same server as endpoints[1]"),
        ([{"kind": "simulated"}, {"kind": "simulated"}], "endpoints[2].url: the same server as endpoints[1]"),
        ([{"kind": "ollama", "url": "http://a"}, "http://b"], "endpoints[2]: must be a table with kind, url, model, slots, api_key_env"),
    ],
)  # fmt: skip
def test_bad_entries_name_the_field_in_one_line(
    entries: Any, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUORUM_TEST_UNSET", raising=False)
    with pytest.raises(ValueError) as caught:
        parse_endpoints(entries)
    assert str(caught.value) == message


def test_a_password_in_a_url_is_never_echoed() -> None:
    with pytest.raises(ValueError) as caught:
        parse_endpoints([{"kind": "ollama", "url": "ftp://user:hunter2@h"}])
    assert "hunter2" not in str(caught.value)
    assert redact_url("https://user:hunter2@h:8443/v1") == "https://***@h:8443/v1"
    config = BackendConfig(
        kind="ollama",
        endpoints=(
            EndpointSpec("ollama", url="https://user:hunter2@h:8443"),
            EndpointSpec("ollama", url="http://other:11434"),
        ),
    )
    assert "hunter2" not in config.url()


def test_a_bad_toml_file_is_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "quorum.toml"
    toml.write_text("[[endpoints]\n")
    with pytest.raises(ValueError, match=r"quorum.toml: invalid TOML \(Expected .\]\]. at the end"):
        endpoints_section(toml)


def _argv(*urls: str) -> list[str]:
    argv = ["analyze", "--scenario", "cpu-saturation", "--no-cache", "--json"]
    argv += ["--sim-time-scale", "0.01", "--agent-timeout", "20", "--grace", "20"]
    for url in urls:
        argv += ["--base-url", url]
    return argv


def test_base_url_repeated_spreads_agents_over_the_servers(
    cli_servers: tuple[SimulatedOllamaServer, SimulatedOllamaServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = cli_servers
    assert main([*_argv(first.url, second.url), "--server-slots", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["agents_participated"] == 5
    assert data["server_slots"] == 6 and data["backend"]["url"] == f"{first.url}, {second.url}"
    assert served(first) and served(second) and served(first) | served(second) == SPECIALIST_NAMES


def test_a_dead_endpoint_on_the_command_line_is_a_warning(
    cli_servers: tuple[SimulatedOllamaServer, SimulatedOllamaServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = closed_port_url()
    alive, _ = cli_servers
    assert main(_argv(dead, alive.url)) == 0
    captured = capsys.readouterr()
    # one warning; the other lines are the progress, one per finished agent
    (warning,) = [ln for ln in captured.err.splitlines() if not ln.startswith("quorum: ")]
    assert warning.startswith(f"warning: endpoint {dead} unreachable, skipped: ")
    assert json.loads(captured.out)["agents_participated"] == 5
    assert served(alive) == SPECIALIST_NAMES

    assert main(_argv(dead, closed_port_url())) == 1  # none left: an error, no run
    assert capsys.readouterr().err.splitlines()[-1] == "error: no LLM endpoint is reachable"


def test_endpoints_from_quorum_toml_and_their_errors_on_the_cli(
    cli_servers: tuple[SimulatedOllamaServer, SimulatedOllamaServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = cli_servers
    toml = Path(os.environ["QUORUM_DATA_DIR"]) / "quorum.toml"
    toml.write_text(
        f'[[endpoints]]\nkind = "simulated"\nurl = "{first.url}"\nslots = 3\n\n'
        f'[[endpoints]]\nkind = "simulated"\nurl = "{second.url}"\nslots = 2\n'
    )
    assert main([*_argv(), "--roster", str(toml)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["server_slots"] == 5 and data["agents_participated"] == 5
    assert served(first) | served(second) == SPECIALIST_NAMES

    toml.write_text('[[endpoints]]\nkind = "simulated"\nurl = "http://x"\nslots = -1\n')
    assert main([*_argv(), "--roster", str(toml)]) == 2
    err = capsys.readouterr().err
    assert err == "error: endpoints[1].slots: must be 'auto' or a whole number ≥ 1, got -1\n"
    # --backend (or --base-url) on the command line wins over the file.
    assert main([*_argv(), "--roster", str(toml), "--backend", "simulated"]) == 0


def test_a_bad_repeated_base_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_argv("http://a:1", "not a url")) == 2
    err = capsys.readouterr().err
    assert err == "error: --base-url[2].url: must be an http:// or https:// URL with a host\n"


def test_settings_page_shows_each_endpoint_s_health_and_slots(
    two_servers: tuple[SimulatedOllamaServer, SimulatedOllamaServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    first, _ = two_servers
    dead = closed_port_url()
    at = new_app(monkeypatch, tmp_path, backend="endpoints")
    (tmp_path / "no-roster.toml").write_text(
        f'[[endpoints]]\nkind = "simulated"\nurl = "{first.url}"\nslots = 3\n\n'
        f'[[endpoints]]\nkind = "ollama"\nurl = "{dead}"\n'
    )
    at.run()
    at.switch_page(page_script("settings")).run()
    assert not at.exception
    rows = [
        {str(k): str(v) for k, v in r.items()} for r in at.dataframe[2].value.to_dict("records")
    ]
    alive, down = rows
    assert (alive["endpoint"], down["endpoint"]) == (first.url, dead)
    assert (alive["reachable"], down["reachable"]) == ("yes", "no")
    assert alive["slots"] == "3" and alive["slots from"].startswith("configured")
    assert "llama3.1:8b" in alive["models"]
    assert down["slots"] == "1" and "OLLAMA_NUM_PARALLEL" in down["slots from"]
    assert "cannot reach" in down["error"]
    assert any("spread over 2 endpoints" in c.value and "4 in all" in c.value for c in at.caption)
    assert any(c.value.startswith("◐ 1 of 2 endpoints reachable") for c in at.sidebar.caption)
