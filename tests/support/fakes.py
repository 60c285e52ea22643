"""A backend that queues canned answers per agent, for runner tests without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.backends.base import BackendError, ChatRequest, ChatResult, ServerStatus, TokenProgress
from engine.simulator import answer_for_prompt


@dataclass
class Script:
    """What one agent's call does: take `delay_s`, then answer, fail or hang."""

    delay_s: float = 0.0
    content: str | None = None  # None: the USE-method answer for the prompt's role
    error: str | None = None
    hang: bool = False


@dataclass
class FakeBackend:
    scripts: Mapping[str, Script] = field(default_factory=dict)
    kind: str = "fake"
    base_url: str = "fake://"
    simulated: bool = True
    calls: list[str] = field(default_factory=list)
    requests: list[ChatRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    closed: bool = False
    opened: bool = False
    in_flight: int = 0
    peak_in_flight: int = 0
    # Set once `expected_calls` calls have started, so a test can act mid-run without polling.
    expected_calls: int = 0
    all_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def chat(
        self, request: ChatRequest, on_tokens: TokenProgress | None = None
    ) -> ChatResult:
        script = self.scripts.get(request.agent, Script())
        self.calls.append(request.agent)
        self.requests.append(request)
        if self.expected_calls and len(self.calls) >= self.expected_calls:
            self.all_started.set()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if script.hang:
                await asyncio.Event().wait()
            # Stands in for the model's generation time, not a wait for a result.
            await asyncio.sleep(script.delay_s)
            if script.error:
                raise BackendError(script.error)
            if on_tokens is not None:
                on_tokens(1)
            content = script.content if script.content is not None else _answer(request.user)
            return ChatResult(
                content=content,
                ttft_s=script.delay_s / 2,
                queue_s=0.0,
                prefill_s=script.delay_s / 4,
                decode_s=script.delay_s * 3 / 4,
                prompt_tokens=len(request.user) // 4,
                output_tokens=len(content) // 4,
            )
        except asyncio.CancelledError:
            self.cancelled.append(request.agent)
            raise
        finally:
            self.in_flight -= 1

    async def status(self) -> ServerStatus:
        return ServerStatus(reachable=True, version="fake", models=["fake-model"])

    async def open(self) -> None:
        self.opened = True

    async def aclose(self) -> None:
        self.closed = True


def _answer(user: str) -> str:
    """What the simulated server would answer: the same rules, without HTTP."""
    return answer_for_prompt(user)[2]
