"""The CLI with Redis state: selection by env or quorum.toml, one-line warnings, and the
URL's password nowhere: not in output, logs, the cache, the history or its exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from bench.plumbing import free_port
from bench.redis_server import PASSWORD
from engine.cli import main
from engine.store import history as exports
from engine.store.redis_store import RedisHistory

FAST = ["--scenario", "cpu-saturation", "--sim-time-scale", "0.01", "--sim-profile", "gpu"]


@pytest.fixture(autouse=True)
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's, for every test here, and no Redis URL from the environment."""
    monkeypatch.delenv("QUORUM_CACHE_URL", raising=False)
    return data_dir


def everything_in(url: str) -> bytes:
    """Every key and value in the Redis database, as raw bytes."""
    client = redis.Redis.from_url(url)
    out = b""
    try:
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"string":
                out += key + b"=" + client.get(key) + b"\n"
            elif kind == b"list":
                items = [bytes(item) for item in client.lrange(key, 0, -1)]  # type: ignore[arg-type]
                out += key + b"=" + b"\n".join(items) + b"\n"
            else:
                out += key + b":" + kind + b"\n"
    finally:
        client.close()
    return out


def test_the_password_is_nowhere(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    data_dir: Path,
) -> None:
    monkeypatch.setenv("QUORUM_CACHE_URL", redis_url)
    assert main(["analyze", *FAST, "--json", "-v"]) == 0
    first = capsys.readouterr()
    assert main(["analyze", *FAST, "-v"]) == 0
    second = capsys.readouterr()
    data = json.loads(first.out)
    assert data["cache"]["hit"] is False and data["cache"]["ttl_s"] == 300
    assert "cache hit" in second.out  # the second process-level call was served by Redis
    stored = everything_in(redis_url)
    assert b"quorum:result:" in stored and b"quorum:history" in stored
    history = RedisHistory(redis_url).load()
    assert len(history) == 2 and not list(data_dir.glob("history.jsonl"))
    for text in (
        first.out, first.err, second.out, second.err, caplog.text,
        stored.decode(errors="replace"), exports.to_json(history), exports.to_csv(history),
    ):  # fmt: skip
        assert PASSWORD not in text


def test_redis_down_at_start_is_one_line_and_the_run_goes_on(tmp_path: Path) -> None:
    """As a user runs it: a process of its own, so stderr is exactly what they see."""
    import os
    import subprocess
    import sys

    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {**os.environ, "QUORUM_CACHE_URL": url, "QUORUM_DATA_DIR": str(tmp_path)}
    env["QUORUM_CONFIG"] = str(tmp_path / "none.toml")
    done = subprocess.run(
        [sys.executable, "-m", "engine", "analyze", *FAST],
        capture_output=True, text=True, env=env, timeout=60, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # one warning line; the rest is the progress, one line per finished agent
    lines = [ln for ln in done.stderr.strip().splitlines() if not ln.startswith("quorum: ")]
    assert len(lines) == 1 and "unavailable" in lines[0] and "running uncached" in lines[0]
    assert "fresh run" in done.stdout and PASSWORD not in done.stdout + done.stderr


def test_cache_url_from_quorum_toml_and_bad_settings_are_field_errors(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "quorum.toml"
    toml.write_text(f'[cache]\nurl = "{redis_url}"\ndegraded_ttl = 30\n', encoding="utf-8")
    assert main(["analyze", *FAST, "--roster", str(toml), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["ttl_s"] == 300
    assert b"quorum:result:" in everything_in(redis_url)

    toml.write_text(f'[cache]\nurl = "http://:{PASSWORD}@example"\n', encoding="utf-8")
    assert main(["analyze", *FAST, "--roster", str(toml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cache url: must start with redis://") and PASSWORD not in err

    toml.write_text("[cache]\nttl = 'long'\n", encoding="utf-8")
    assert main(["analyze", *FAST, "--roster", str(toml)]) == 2
    assert "cache.ttl: must be a float" in capsys.readouterr().err

    assert main(["analyze", *FAST, "--degraded-ttl", "0"]) == 2
    assert "degraded-ttl: must be > 0" in capsys.readouterr().err


def test_degraded_ttl_option(capsys: pytest.CaptureFixture[str]) -> None:
    args = [*FAST, "--sim-fault", "SecurityAnalyst=error", "--degraded-ttl", "12"]
    assert main(["analyze", *args]) == 0
    assert "degraded result, cached only 12s" in capsys.readouterr().out
    assert main(["analyze", *args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"]["hit"] is True and data["cache"]["ttl_s"] == 12
