"""The dashboard's Prometheus source: the sidebar's URL and instance picker, and the
Live page's fetch line, warnings and "what changed since the last snapshot".

Credentials typed into the URL are moved out of the text box as soon as it changes
(kept in session state for that exact URL, sent by httpx, never drawn again); a bearer
token comes from $QUORUM_PROMETHEUS_TOKEN or secrets.toml `prometheus_token`.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from engine.sources import prometheus as prom
from engine.sources.changes import changes
from engine.sources.snapshot import Snapshot, SnapshotError
from ui import render, safe

URL_ENV = "QUORUM_PROMETHEUS_URL"  # pre-fills the URL (demos, the browser test)
DEFAULT_URL = "http://127.0.0.1:9090"
TARGETS_TTL_S = 30  # how long the instance list is reused across reruns
_URL_KEY = "prom_url"
_CREDENTIALS_KEY = "prom_credentials"  # {bare url: (user, password)}, never rendered


@dataclass(frozen=True)
class PromSource:
    """What the sidebar chose: where, which target, which queries."""

    endpoint: prom.Endpoint
    settings: prom.PromSettings
    instance: str
    job: str = ""

    @property
    def label(self) -> str:
        return f"Prometheus {self.instance}"

    def read(self) -> prom.PromReading:
        return prom.read_snapshot(
            self.endpoint, self.settings, instance=self.instance, job=self.job
        )


def _token() -> tuple[str | None, str | None]:
    token, where = prom.bearer_token()  # the environment first
    if token:
        return token, where
    try:
        value = st.secrets.get(prom.SECRETS_KEY)
    except (FileNotFoundError, KeyError, tomllib.TOMLDecodeError, st.errors.StreamlitAPIException):
        return None, None  # no secrets.toml at all: no token
    return (
        (value.strip(), "secrets.toml")
        if isinstance(value, str) and value.strip()
        else (None, None)
    )


def _move_credentials_out_of_the_url() -> None:
    raw = str(st.session_state.get(_URL_KEY, ""))
    try:
        endpoint = prom.Endpoint.parse(raw)
    except SnapshotError:
        return  # the sidebar shows the error on this run
    if endpoint.username or endpoint.password:
        saved = dict(st.session_state.get(_CREDENTIALS_KEY, {}))
        saved[endpoint.url] = (endpoint.username, endpoint.password)
        st.session_state[_CREDENTIALS_KEY] = saved
        st.session_state[_URL_KEY] = endpoint.url


@st.cache_data(
    ttl=TARGETS_TTL_S,
    show_spinner=False,
    max_entries=16,
    hash_funcs={prom.Endpoint: lambda e: hash((e.url, e.username, e.password, e.token))},
)
def _targets(endpoint: prom.Endpoint, timeout_s: float) -> list[prom.Target]:
    with prom.PrometheusClient(endpoint, timeout_s=timeout_s, budget_s=2 * timeout_s) as client:
        try:
            return client.targets()
        except prom.QueryError as exc:
            raise prom.PrometheusError("prometheus", endpoint.scrub(str(exc))) from None


def sidebar(settings_path: Path) -> tuple[PromSource | None, SnapshotError | None]:
    """URL, token status, instance picker. (source, None) or (None, what is wrong)."""
    try:
        settings = prom.load_settings(settings_path)
    except SnapshotError as exc:
        st.error(safe.md(exc), icon=":material/error:")
        return None, exc
    if _URL_KEY not in st.session_state:
        st.session_state[_URL_KEY] = settings.url or os.environ.get(URL_ENV, "") or DEFAULT_URL
        _move_credentials_out_of_the_url()  # a URL from quorum.toml may carry them too
    st.text_input(
        "Prometheus URL",
        key=_URL_KEY,
        on_change=_move_credentials_out_of_the_url,
        help="http(s)://host:9090. Credentials in the URL are used, then hidden.",
    )
    token, token_source = _token()
    try:
        endpoint = prom.Endpoint.parse(str(st.session_state[_URL_KEY]), token=token)
    except SnapshotError as exc:
        st.error(safe.md(exc), icon=":material/error:")
        return None, exc
    user, password = st.session_state.get(_CREDENTIALS_KEY, {}).get(endpoint.url, (None, None))
    endpoint = prom.Endpoint(endpoint.url, user, password, token)
    auth = (
        f"bearer token from {token_source}"
        if token_source
        else ("user and password from the URL (hidden)" if user or password else "none")
    )
    st.caption(safe.md(f"Credentials: {auth}"))
    try:
        targets = _targets(endpoint, settings.timeout_s)
    except prom.PrometheusError as exc:
        st.error(safe.md(exc), icon=":material/cloud_off:")
        return None, exc
    if not targets:
        return None, SnapshotError("prometheus", "the server has no active targets")
    names = [t.instance for t in targets]
    by_name = {t.instance: t for t in targets}
    preferred = settings.instance if settings.instance in by_name else names[0]
    instance = st.selectbox(
        "Instance",
        names,
        index=names.index(preferred),
        format_func=lambda n: by_name[n].label,
        key="prom_instance",
        help="The server's active targets; node_exporters first.",
    )
    job = by_name[instance].job if instance in by_name else settings.job
    return PromSource(endpoint, settings, instance, job), None


def reading_panel(reading: prom.PromReading, previous: Snapshot | None) -> None:
    """Last fetch, the warnings, and what changed since the previous snapshot."""
    age = max(0.0, time.time() - reading.fetched_at)
    fetched = time.strftime("%H:%M:%S", time.localtime(reading.fetched_at))
    st.caption(
        safe.md(
            f"Prometheus {reading.target.instance} ({reading.target.job}) · "
            f"last fetch {fetched} ({age:.0f} s ago) · {len(reading.queries)} field queries"
        )
    )
    lines = list(prom.iter_warnings(reading))
    if lines:
        st.warning(
            "  \n".join(safe.md(line, limit=400) for line in lines),
            icon=":material/help:",
        )
    if previous is None:
        st.caption("First snapshot from this source in this session.")
        return
    moved = changes(previous, reading.snapshot)
    if not moved:
        st.caption(
            "Unchanged since the last snapshot (same quantised values): the analysis is "
            "served from the cache."
        )
        return
    parts = [
        f"{c.spec.label} {render.format_value(c.spec, c.before)} → {render.format_value(c.spec, c.after)}"
        for c in moved
    ]
    st.markdown(safe.md("Changed since the last snapshot: " + "; ".join(parts)))
