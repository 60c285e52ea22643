"""Every backend kind, registered once: its name, its label, how it is built and asked for
its slots, and what its server reports.

Shaped like simonw/llm's model registry, without entry points: a kind is one `BackendSpec`
passed to `register`; the engine, the CLI, the endpoints' reader, the report and the
dashboard look a kind up here (`spec(kind)`) or read its attributes, instead of comparing
its name. Adding a kind is one `register(...)` here (and its sidebar widgets, ui/sidebar.py).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from engine.backends.base import Backend
from engine.backends.ollama import OLLAMA as OLLAMA  # the kind names, re-exported
from engine.backends.ollama import SIMULATED as SIMULATED
from engine.backends.ollama import OllamaBackend, ollama_base_url
from engine.backends.openai_compat import OPENAI as OPENAI
from engine.backends.openai_compat import OpenAICompatBackend
from engine.backends.server_slots import ServerSlots
from engine.backends.slot_probe import probe_slots


@dataclass(frozen=True)
class ClientOptions:
    """How a backend's HTTP client is set up: size its pool to the fan-out."""

    api_key: str | None = field(default=None, repr=False)  # never logged or shown
    timeout_s: float = 300.0
    max_connections: int = 16
    transport: httpx.AsyncBaseTransport | None = None


# A new backend for the server at a URL; call it inside the event loop that uses it.
BuildBackend = Callable[[str, ClientOptions], Backend]


class ProbeSlots(Protocol):
    """How many requests the server at `base_url` runs at once (never raises)."""

    def __call__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Awaitable[ServerSlots]: ...


@dataclass(frozen=True)
class BackendSpec:
    """One backend kind."""

    name: str  # what --backend, [[endpoints]] kind and results say
    label: str  # the dashboard's name for it
    build: BuildBackend
    probe_slots: ProbeSlots
    # Where its server is when no URL is given (None: it needs one, or it is the simulator).
    default_url: Callable[[], str] | None = None
    needs_base_url: bool = False
    url_example: str = "http://host:8000/v1"  # shown when a needed URL is missing
    # The embedded simulated server: without a URL the engine starts one (and knows its
    # slots from its own SimConfig); every answer from it is labelled simulated.
    simulator: bool = False
    # Its `prompt_tokens` is the whole prompt, cached prefix included (OpenAI's `usage`),
    # not only the evaluated tokens (Ollama's `prompt_eval_count`): docs/contract.md.
    prompt_tokens_include_cached: bool = False
    # Said when the model is not among the server's models (None: nothing to suggest).
    missing_model_hint: str | None = None


BACKENDS: dict[str, BackendSpec] = {}


def register(backend: BackendSpec) -> BackendSpec:
    if backend.name in BACKENDS:
        raise ValueError(f"backend {backend.name!r}: registered twice")
    BACKENDS[backend.name] = backend
    return backend


def kinds() -> tuple[str, ...]:
    """Every registered kind, in the order registered (the first is the default)."""
    return tuple(BACKENDS)


def spec(kind: object, where: str = "backend") -> BackendSpec:
    """The kind's spec; a ValueError of one line naming `where` for an unknown one."""
    if isinstance(kind, str) and kind in BACKENDS:
        return BACKENDS[kind]
    got = "missing" if kind is None else f"got {kind!r}"
    raise ValueError(f"{where}: must be one of {', '.join(kinds())}, {got}")


def _ollama(simulated: bool) -> BuildBackend:
    def build(url: str, options: ClientOptions) -> Backend:
        # Ollama's API takes no key: options.api_key is not sent.
        return OllamaBackend(
            url, simulated=simulated, timeout_s=options.timeout_s,
            max_connections=options.max_connections, transport=options.transport,
        )  # fmt: skip

    return build


def _openai(url: str, options: ClientOptions) -> Backend:
    return OpenAICompatBackend(
        url, api_key=options.api_key, timeout_s=options.timeout_s,
        max_connections=options.max_connections, transport=options.transport,
    )  # fmt: skip


register(
    BackendSpec(SIMULATED, "Simulated Ollama", _ollama(simulated=True), probe_slots, simulator=True)
)
register(
    BackendSpec(
        OLLAMA, "Ollama", _ollama(simulated=False),
        # Ollama does not report its slots: assume 1 and learn them (slot_probe.py).
        functools.partial(probe_slots, learns=True),
        default_url=ollama_base_url, missing_model_hint="pull it first",
    )
)  # fmt: skip
register(
    BackendSpec(
        OPENAI, "OpenAI-compatible", _openai, probe_slots,
        needs_base_url=True, prompt_tokens_include_cached=True,
    )
)  # fmt: skip
DEFAULT_KIND = SIMULATED  # no LLM out of the box: the embedded simulated Ollama
