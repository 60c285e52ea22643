"""No secret is stored or shown: with an API key (environment, `.streamlit/secrets.toml`) and a
server URL carrying user:password, the secrets reach the server — and appear nowhere in the
cache, the history, the exports, the `-v` logs or the page.

The chaos server quotes the credentials back in an error body for one agent (as real
servers do: "Incorrect API key provided: sk-..."), so the scrubbing is exercised too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.backends.http import strip_credentials, url_secrets
from engine.redact import redact_url
from engine.store.history import History, to_csv, to_json
from tests.support.browser import RUN_TIMEOUT_MS, assert_no_errors, open_page, wait_idle
from tests.support.chaos_server import ECHO_SECRETS, ChaosServer
from tests.support.dashboard import dashboard

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parent.parent
ENV_KEY = "sk-quorum-ENVKEY-7f3a9c"
TOML_KEY = "sk-quorum-TOMLKEY-51d2e8"
URL_USER = "quser"
URL_PASSWORD = "PaSs-URLSECRET-99"


def secrets_of(*keys: str) -> list[str]:
    basic = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
    return [*keys, URL_PASSWORD, basic]


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@")


def files_under(root: Path) -> Iterable[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes()


def assert_absent(secrets: list[str], places: Iterable[tuple[str, str | bytes]]) -> int:
    """No secret in any place; returns how many places were searched."""
    searched = 0
    for where, content in places:
        data = content.encode() if isinstance(content, str) else content
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} found in {where}"
        searched += 1
    return searched


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "QUORUM_DATA_DIR": str(data_dir),
        "OPENAI_API_KEY": ENV_KEY,
    }
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_keeps_the_key_and_url_password_out_of_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    outputs: list[tuple[str, str | bytes]] = []
    with ChaosServer({"SecurityAnalyst": ECHO_SECRETS}) as server:
        common = ["--scenario", "cpu-saturation", "--model", "m", "-v"]
        runs = {
            "openai --json": ["analyze", "--backend", "openai", "--json"],
            "openai text (cache hit)": ["analyze", "--backend", "openai"],
            "openai compare": ["compare", "--backend", "openai", "--json"],
            "ollama --json": ["analyze", "--backend", "ollama", "--json"],
        }
        for name, args in runs.items():
            url = server.url + ("/v1" if "openai" in name else "")
            done = cli(data_dir, *args, *common, "--base-url", with_credentials(url))
            assert done.returncode == 0, f"{name}: {done.stderr}"
            outputs += [(f"{name} stdout", done.stdout), (f"{name} stderr (-v log)", done.stderr)]
        # The secrets were really used: the key (OpenAI; it wins over URL credentials) and
        # the URL's credentials (Ollama: HTTP Basic) reached the server.
        basic = "Basic " + secrets_of()[-1]
        assert server.authorization == {f"Bearer {ENV_KEY}", basic}, server.authorization
    assert any("INFO" in text or "agent" in text for _, text in outputs)  # -v did log
    first = json.loads(outputs[0][1])
    echoed = next(a for a in first["agents"] if a["name"] == "SecurityAnalyst")
    assert "Incorrect credentials provided" in echoed["error"]  # the echo happened…

    history = History(data_dir / "history.jsonl").load()
    assert len(history) >= 5
    exports = [("history export JSON", to_json(history)), ("history export CSV", to_csv(history))]
    searched = assert_absent(
        secrets_of(ENV_KEY), [*outputs, *exports, *files_under(data_dir)]
    )  # …and was scrubbed everywhere
    assert searched >= 12
    assert any(name.startswith("cache") for name, _ in files_under(data_dir))


@pytest.mark.e2e
def test_dashboard_keeps_the_secrets_toml_key_and_url_password_off_the_page(
    page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(f'openai_api_key = "{TOML_KEY}"\n')
    with ChaosServer({"SecurityAnalyst": ECHO_SECRETS}) as llm:
        env = {
            "HOME": str(home),
            "QUORUM_BACKEND": "openai",
            "OPENAI_BASE_URL": with_credentials(llm.url + "/v1"),
            "QUORUM_LOG_LEVEL": "DEBUG",
        }
        with dashboard(tmp_path, env) as server:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
            main = page.get_by_test_id("stMain")
            badges = main.locator(".stMarkdownBadge")
            expect(badges.filter(has_text="4/5 agents").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
            expect(page.get_by_text("API key: set (from secrets.toml)")).to_be_visible()
            assert_no_errors(page, errors)
            pages: list[tuple[str, str | bytes]] = [
                ("live page HTML", page.content()),
                ("live page text", page.inner_text("body")),
            ]

            open_page(page, "History", "History")
            with page.expect_download() as download_info:
                main.get_by_role("button", name="Download JSON").click()
            exported = Path(download_info.value.path()).read_bytes()
            assert b"SecurityAnalyst" in exported
            pages += [("history page HTML", page.content()), ("history download", exported)]
            log = server.stderr.read_bytes()
        assert f"Bearer {TOML_KEY}" in llm.authorization, llm.authorization

    # The server quoted the credentials back, and what was stored says so, scrubbed.
    assert (
        b"Incorrect credentials provided: Bearer ***"
        in (server.data_dir / "history.jsonl").read_bytes()
    )
    places: list[tuple[str, str | bytes]] = [*pages, ("streamlit log", log)]
    places += files_under(server.data_dir)
    assert assert_absent(secrets_of(TOML_KEY), places) >= 6


@pytest.mark.parametrize(
    ("url", "shown", "stripped"),
    [
        ("http://h:1/v1", "http://h:1/v1", "http://h:1/v1"),
        ("http://u:p%40ss@h:1/v1", "http://***@h:1/v1", "http://h:1/v1"),
        ("https://token@h/api", "https://***@h/api", "https://h/api"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str, stripped: str) -> None:
    assert redact_url(url) == shown
    assert strip_credentials(url) == stripped


def test_url_secrets_cover_the_password_as_written_decoded_and_as_basic_auth() -> None:
    found = set(url_secrets("http://u:p%40ss@h:1"))
    assert found == {"p%40ss", "p@ss", base64.b64encode(b"u:p@ss").decode()}
    assert url_secrets("http://h:1") == []
    assert "tok" in url_secrets("https://tok@h")  # a bare token is a secret too
