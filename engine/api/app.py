"""The HTTP API: `create_app(engine, settings, ...)` builds a FastAPI app over one Engine.

The app holds no I/O of its own beyond HTTP: snapshots come from engine/api/sources.py,
analyses from the shared `Engine` (its cache and single-flight, so N identical requests
are one fan-out, and with QUORUM_CACHE_URL one fan-out across replicas), notifications
from engine/api/notify.py. `Engine.analyze` is synchronous, so every analysis runs in a
worker thread; a client that goes away abandons only its own wait, never the run that
others (or the cache) are waiting for.
"""

import asyncio
import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from engine.api import sources
from engine.api.alerts import AlertPayloadError, Claims, RedisClaims, parse_payload
from engine.api.auth import BearerAuth
from engine.api.desk import AlertDesk
from engine.api.metrics import ApiMetrics
from engine.api.settings import ApiSettings, scrub
from engine.records import AnalysisResult
from engine.redact import redact_url
from engine.run.runner import ProgressEvent, ProgressFn, RunSettings
from engine.service import Engine
from engine.sources import snapshot as snapshots
from engine.sources.snapshot import Snapshot
from engine.store import history as histories
from engine.store.redis_store import RedisResultCache

RUN_ID = re.compile(r"^[0-9a-f]{1,64}$")
SNAPSHOT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": "object", "description":
        "a snapshot (docs/contract.md, `python -m engine snapshot`)"}}},
}  # fmt: skip


@dataclass
class InFlight:
    """Which analyses this process is running now, to tell a single-flight join (a
    request that waited for an identical one) from a plain cache hit."""

    _counts: Counter[tuple[str, bool]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def enter(self, key: tuple[str, bool]) -> Iterator[bool]:
        with self._lock:
            joined = self._counts[key] > 0
            self._counts[key] += 1
        try:
            yield joined
        finally:
            with self._lock:
                self._counts[key] -= 1
                if not self._counts[key]:
                    del self._counts[key]


@dataclass
class ApiState:
    engine: Engine
    settings: ApiSettings
    defaults: RunSettings
    source: sources.SnapshotSource
    metrics: ApiMetrics
    flights: InFlight = field(default_factory=InFlight)
    live: sources.LiveSampler = field(default_factory=sources.LiveSampler)
    # Streams whose client left: their analyses run on (others may wait for them).
    background: set[asyncio.Future[Any]] = field(default_factory=set)

    def analyze(
        self,
        snapshot: Snapshot,
        run: RunSettings,
        refresh: bool = False,
        progress: ProgressFn | None = None,
    ) -> AnalysisResult:
        """Blocking: the Engine's lookup or run, then the metrics of what was served."""
        key = (self.engine.cache_key(snapshot, run), refresh)
        with self.flights.enter(key) as joined:
            result = self.engine.analyze(snapshot, run, refresh=refresh, progress=progress)
        self.metrics.observe(result, joined=joined)
        return result

    def link(self, run_id: str) -> str:
        return f"{self.settings.dashboard_url.rstrip('/')}/?run={run_id}"


def create_app(
    engine: Engine,
    settings: ApiSettings,
    *,
    defaults: RunSettings | None = None,
    source: sources.SnapshotSource | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """The API over `engine`: `defaults` are the run settings a request does not give,
    `source` the snapshot a request does not name (this host's, unless told)."""
    state = ApiState(
        engine, settings, defaults or RunSettings(), source or sources.SnapshotSource(),
        metrics or ApiMetrics(),
        live=sources.LiveSampler(engine.cache.ttl_s if engine.cache else sources.LIVE_MAX_AGE_S),
    )  # fmt: skip
    desk = AlertDesk(
        settings, state.metrics,
        read_snapshot=lambda instance, job: sources.read_prometheus(
            settings.prometheus, instance, job),
        analyze=lambda snapshot: state.analyze(snapshot, state.defaults),
        link=state.link,
        shared=_shared_claims(engine),
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await desk.start()
        try:
            yield
        finally:
            await desk.stop()

    app = FastAPI(
        title="Quorum",
        summary="Five LLM agents analyse a system-metrics snapshot in parallel",
        max_body_size=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.quorum = state
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sources.SourceError, _source_error)
    _analysis_routes(app, state)
    _history_routes(app, state)
    _ops_routes(app, state)
    _alert_routes(app, desk)
    return app


def _shared_claims(engine: Engine) -> Claims | None:
    """The alert dedupe window in Redis when the cache is there (shared by replicas)."""
    cache = engine.cache
    return RedisClaims(cache.link, cache.prefix) if isinstance(cache, RedisResultCache) else None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's list of errors as the CLI's one line: `field: what is wrong, got X`."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    name = str(first.get("loc", ["request"])[-1])
    got = f", got {first['input']!r}" if "input" in first and first["input"] is not None else ""
    return JSONResponse({"detail": f"{name}: {first.get('msg', 'invalid')}{got}"[:400]}, 422)


async def _source_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sources.SourceError)
    secrets = request.app.state.quorum.settings.secrets
    return JSONResponse({"detail": scrub(str(exc), secrets)}, exc.status)


def _run_settings(state: ApiState) -> Callable[..., RunSettings]:
    def run_settings(
        mode: str | None = None,
        quorum: int | None = None,
        grace: float | None = Query(None, description="seconds stragglers get after quorum"),
        overlap: bool | None = None,
        agent_timeout: float | None = Query(None, description="seconds"),
        deadline: float | None = Query(None, description="whole-run deadline, seconds"),
        max_concurrency: int | None = None,
        consolidation: str | None = Query(None, description="compact or full"),
    ) -> RunSettings:
        given: dict[str, Any] = {
            "mode": mode, "quorum": quorum, "grace_s": grace, "overlap": overlap,
            "agent_timeout_s": agent_timeout, "deadline_s": deadline,
            "max_concurrency": max_concurrency, "consolidation": consolidation,
        }  # fmt: skip
        try:
            return replace(state.defaults, **{k: v for k, v in given.items() if v is not None})
        except ValueError as exc:  # RunSettings' own message, as the CLI prints it
            raise HTTPException(422, str(exc)) from None

    return run_settings


def _request_snapshot(state: ApiState) -> Callable[..., Any]:
    async def request_snapshot(
        scenario: str | None = Query(None, description=", ".join(snapshots.SCENARIOS)),
        source: str | None = Query(None, description="live or prometheus"),
        instance: str = Query("", description="with source=prometheus: the node_exporter"),
        job: str = Query("", description="with source=prometheus: the target's job"),
        refresh: bool = False,
    ) -> Snapshot:
        chosen = sources.choose(state.source, scenario, source, instance, job)
        return await run_in_threadpool(
            lambda: sources.load(chosen, state.settings.prometheus, state.live, fresh=refresh)
        )

    return request_snapshot


def _analysis_routes(app: FastAPI, state: ApiState) -> None:
    RunDep = Annotated[RunSettings, Depends(_run_settings(state))]
    SnapDep = Annotated[Snapshot, Depends(_request_snapshot(state))]
    Refresh = Annotated[bool, Query(description="skip the cache lookup, store the new run")]

    async def insights(snap: SnapDep, run: RunDep, refresh: Refresh = False) -> JSONResponse:
        """An analysis of the chosen snapshot: the JSON contract (docs/contract.md)."""
        return _result_response(await run_in_threadpool(state.analyze, snap, run, refresh))

    app.get("/api/insights", summary="Analyse a scenario, this host or a Prometheus target")(
        insights
    )
    app.get("/api/insights/autogen", summary="The plan's URL: an alias of /api/insights")(insights)

    @app.post("/api/analyze", openapi_extra={"requestBody": SNAPSHOT_BODY})
    async def analyze(request: Request, run: RunDep, refresh: Refresh = False) -> JSONResponse:
        """Analyse the snapshot in the body (at most 1 MiB, read with the cap enforced)."""
        try:
            snap = snapshots.parse_json(await request.body(), source="api")
        except snapshots.SnapshotError as exc:
            raise HTTPException(422, f"snapshot {exc}") from None
        return _result_response(await run_in_threadpool(state.analyze, snap, run, refresh))

    @app.get("/api/analyze/stream", response_class=EventSourceResponse)
    async def stream(
        snap: SnapDep, run: RunDep, refresh: Refresh = False
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-Sent Events: queued, started, tokens, finished (per agent, as the run
        goes), then `result` (the contract) or `error`. A cache hit or a request that
        joins a running analysis gets only `result`."""
        async for event in _progress_events(state, snap, run, refresh):
            yield event


def _result_response(result: AnalysisResult) -> JSONResponse:
    headers = {"X-Quorum-Run-Id": result.run_id, "X-Quorum-Cache": _cache_word(result)}
    return JSONResponse(result.to_dict(), headers=headers)


def _cache_word(result: AnalysisResult) -> str:
    return "hit" if result.cache.hit else "miss"


async def _progress_events(
    state: ApiState, snap: Snapshot, run: RunSettings, refresh: bool
) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()

    def progress(event: ProgressEvent) -> None:  # called in the engine's thread
        loop.call_soon_threadsafe(queue.put_nowait, event)

    task = asyncio.ensure_future(run_in_threadpool(state.analyze, snap, run, refresh, progress))
    state.background.add(task)  # held until done, whether or not the client stays
    task.add_done_callback(state.background.discard)
    task.add_done_callback(lambda _: queue.put_nowait(None))
    while (event := await queue.get()) is not None:
        yield ServerSentEvent(event=event.kind, data=asdict(event))
    try:
        result = task.result()
    except Exception as exc:  # the engine raised: say so on the stream, one line
        detail = scrub(f"{type(exc).__name__}: {exc}", state.settings.secrets)
        yield ServerSentEvent(event="error", data={"detail": detail[:400]})
        return
    yield ServerSentEvent(event="result", data=result.to_dict(), id=result.run_id)


def _history_routes(app: FastAPI, state: ApiState) -> None:
    @app.get("/api/runs")
    def runs(limit: Annotated[int, Query(ge=1, le=2000)] = 50) -> dict[str, Any]:
        """The newest runs first, one summary row each, with the run's dashboard link."""
        history = state.engine.history
        results = history.load(limit) if history is not None else []
        rows = [histories.row(r, state.settings.dashboard_url) for r in results]
        return {"runs": rows, "history": history.where if history is not None else None}

    @app.get("/api/runs/{run_id}")
    def run(run_id: str) -> JSONResponse:
        """One run from the history: the JSON contract."""
        if not RUN_ID.match(run_id):
            raise HTTPException(422, f"run_id: must be a hex run id, got {run_id[:80]!r}")
        history = state.engine.history
        for result in history.load() if history is not None else []:
            if result.run_id == run_id:
                return JSONResponse(result.to_dict(), headers={"Link": state.link(run_id)})
        raise HTTPException(404, f"run_id: no run {run_id!r} in the history")


def _ops_routes(app: FastAPI, state: ApiState) -> None:
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """The LLM backend (reachable?) and the cache and history (degraded?); 503 when
        the backend cannot be reached. No token needed."""
        return _health(state)

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Quorum's own metrics in Prometheus' exposition format."""
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _health(state: ApiState) -> JSONResponse:
    engine = state.engine
    if engine.backend.pooled:
        statuses = engine.endpoint_statuses()
        reachable = any(s.reachable for _, s in statuses)
        error = "; ".join(f"{url}: {s.error}" for url, s in statuses if not s.reachable)
    else:
        status = engine.server_status()
        reachable, error = status.reachable, status.error or ""
    cache, history = engine.cache, engine.history
    stats = cache.stats() if cache is not None else None
    body = {
        "status": "ok" if reachable else "down",
        "backend": {"kind": engine.backend.kind, "url": redact_url(engine.backend.url()),
                    "simulated": engine.backend.simulated, "reachable": reachable,
                    "error": scrub(error, state.settings.secrets) or None},
        "cache": None if cache is None or stats is None else {
            "kind": stats.kind, "where": stats.directory, "degraded": cache.degraded},
        "history": None if history is None else {"where": history.where,
                                                 "degraded": history.degraded},
    }  # fmt: skip
    if reachable and ((cache and cache.degraded) or (history and history.degraded)):
        body["status"] = "degraded"
    return JSONResponse(body, 200 if reachable else 503)


def _alert_routes(app: FastAPI, desk: AlertDesk) -> None:
    @app.post("/api/alertmanager", status_code=202)
    async def alertmanager(request: Request) -> JSONResponse:
        """Alertmanager's webhook (payload version 4). Answers at once (202 with what was
        queued, deduplicated, resolved); each new firing alert is analysed in the
        background from Prometheus and sent to the notifiers. 503 when the queue is full
        (Alertmanager then retries)."""
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise HTTPException(422, "payload: not valid JSON") from None
        try:
            batch = parse_payload(data)
        except AlertPayloadError as exc:
            raise HTTPException(422, str(exc)) from None
        counts = desk.accept(batch)
        return JSONResponse(counts, 503 if counts["dropped"] else 202)
