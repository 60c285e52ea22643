"""Several LLM hosts: `[[endpoints]]` tables in quorum.toml, or `--base-url` given more than once.

    [[endpoints]]
    kind = "ollama"                  # a kind of engine/backends/registry.py: simulated | ollama | openai
    url = "http://gpu1:11434"
    slots = 2                        # auto (default) | N — OLLAMA_NUM_PARALLEL there

    [[endpoints]]
    kind = "openai"
    url = "http://gpu2:8000/v1"
    model = "meta-llama/Llama-3.1-8B-Instruct"   # its name for the run's model (optional)
    api_key_env = "GPU2_API_KEY"                 # the env var holding its key (optional)

Entries are numbered from 1 in errors (`endpoints[2].url: ...`), one line each. This module
only reads and checks; `engine/service.py` turns the entries into backends and
`engine/backends/pool.py` spreads the agents over them.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine import config
from engine.backends.registry import spec as backend_spec
from engine.backends.server_slots import parse_slots_setting

ENDPOINT_FIELDS = ("kind", "url", "model", "slots", "api_key_env")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class EndpointSpec:
    """One LLM host as configured. The API key itself is never held here: only the name
    of the environment variable that holds it."""

    kind: str
    url: str | None = None  # None: the kind's default ($OLLAMA_HOST), or the embedded server
    model: str | None = None  # None: the run's model
    slots: int | None = None  # None: auto (ask the server; Ollama: learn them)
    api_key_env: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointSpec:
        return parse_endpoint(0, data)

    def api_key(self) -> str | None:
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    @property
    def embedded(self) -> bool:
        """The embedded simulated server (no URL): its settings are the run's SimConfig."""
        return self.url is None and backend_spec(self.kind).simulator


def parse_endpoint(number: int, table: Mapping[str, Any]) -> EndpointSpec:
    """One `[[endpoints]]` table (number: its place, from 1, for the error message)."""
    where = f"endpoints[{number}]" if number else "endpoint"
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: must be a table with {', '.join(ENDPOINT_FIELDS)}")
    for name in table:
        if name not in ENDPOINT_FIELDS:
            raise ValueError(f"{where}.{name}: unknown field (known: {', '.join(ENDPOINT_FIELDS)})")
    kind = backend_spec(table.get("kind"), f"{where}.kind").name
    url = _url(where, table.get("url"), kind)
    model = table.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValueError(f"{where}.model: must be a non-empty string, got {model!r}")
    try:
        slots = parse_slots_setting(table.get("slots"))
    except ValueError as exc:
        raise ValueError(f"{where}.slots: {str(exc).removeprefix('server slots: ')}") from None
    env = table.get("api_key_env")
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise ValueError(f"{where}.api_key_env: must be an environment variable name")
        if not os.environ.get(env):
            raise ValueError(f"{where}.api_key_env: ${env} is not set")
    return EndpointSpec(
        kind=kind,
        url=url,
        model=model.strip() if isinstance(model, str) else None,
        slots=slots,
        api_key_env=env,
    )


def _url(where: str, value: Any, kind: str) -> str | None:
    if value is None:
        known = backend_spec(kind)
        if known.needs_base_url:
            raise ValueError(f"{where}.url: required for kind {kind} (e.g. {known.url_example})")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}.url: must be a string, got {type(value).__name__}")
    split = urllib.parse.urlsplit(value.strip())
    if split.scheme not in ("http", "https") or not split.hostname:
        # The value is not echoed: a URL may carry a password.
        raise ValueError(f"{where}.url: must be an http:// or https:// URL with a host")
    try:
        split.port  # noqa: B018 — raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{where}.url: the port must be a number from 0 to 65535") from None
    return value.strip().rstrip("/")


def parse_endpoints(entries: Any) -> tuple[EndpointSpec, ...]:
    """The `endpoints` array of quorum.toml, checked as a whole (no two on one URL)."""
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ValueError("endpoints: must be an array of tables ([[endpoints]])")
    specs = tuple(parse_endpoint(n, table) for n, table in enumerate(entries, start=1))
    seen: dict[tuple[str, str | None], int] = {}
    for number, spec in enumerate(specs, start=1):
        place = (spec.kind if spec.url is None else "", spec.url)
        if place in seen:
            raise ValueError(
                f"endpoints[{number}].url: the same server as endpoints[{seen[place]}]"
            )
        seen[place] = number
    return specs


def endpoints_section(path: str | Path | None) -> tuple[EndpointSpec, ...]:
    """The `[[endpoints]]` of quorum.toml; () when the file or the array is absent."""
    data = config.read(path)
    if "endpoints" not in data:
        return ()
    return parse_endpoints(data["endpoints"])


def from_urls(
    kind: str, urls: Sequence[str], *, slots: int | None, api_key_env: str | None
) -> tuple[EndpointSpec, ...]:
    """`--base-url` given several times: one endpoint per URL, all of `--backend`'s kind."""
    table: list[dict[str, Any]] = []
    for url in urls:
        entry: dict[str, Any] = {"kind": kind, "url": url, "slots": slots}
        if api_key_env and os.environ.get(api_key_env):
            entry["api_key_env"] = api_key_env  # optional on the CLI, as for one URL
        table.append(entry)
    try:
        return parse_endpoints(table)
    except ValueError as exc:
        # On the command line the entries are `--base-url` values, numbered the same way.
        raise ValueError(str(exc).replace("endpoints[", "--base-url[", 2)) from None
