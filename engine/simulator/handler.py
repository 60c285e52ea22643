"""The simulated server's HTTP side: Ollama's API (and llama.cpp's `/props`, `/slots`,
`/health` in llama.cpp mode) over a TimingModel (engine/simulator/model.py).

Enough of Ollama's API (`/api/chat` and `/api/generate`, streaming and not,
`/api/version`, `/api/tags`, `/api/ps`) that Ollama clients work unchanged. Both completion
endpoints share one timing model and one answer: `/api/generate`'s `prompt` is read like
`/api/chat`'s last user message, and its optional `system` counts towards the prompt
tokens like a system message. Every response says it is simulated (version suffix, model
family). `prompt_eval_count` counts the evaluated tokens only (as Ollama's does), and the
final report adds `prompt_cache_count`, the reused ones.

`/api/generate` omits the `context` token array (no client here continues from one). A
client that disconnects ends its request (checked before every wait), queued,
prefilling or decoding, streamed or not.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from engine.simulator.answers import MALFORMED, answer_for_prompt, token_pieces
from engine.simulator.config import VERSION
from engine.simulator.model import ClientGone, Prefill, RequestGone, TimingModel, answer_tokens

# The final report's count of prompt tokens reused from the slot's KV cache. Ollama
# reports only the evaluated ones (prompt_eval_count); this extension lets a client show
# the split. Real Ollama omits it; llama.cpp's server reports it as `timings.cache_n`.
CACHED_COUNT_FIELD = "prompt_cache_count"
LLAMA_CTX_PER_SLOT = 4096  # what llama_props mode reports as each slot's n_ctx
_MIDSTREAM_TOKENS = 3  # tokens the `error-midstream` fault sends before its error line
_MAX_BODY = 32 * 1024 * 1024
_REFUSALS = {"busy": (503, "server busy"), "error": (500, "simulated internal error")}


class Connections:
    """The server's open connections, so that stopping can close idle keep-alive ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

    def opened(self, conn: socket.socket) -> None:
        with self._lock:
            if self._closed:  # accepted just as close_all() took its list
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            else:
                self._open.add(conn)

    def ended(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._open)
        for conn in conns:  # idle keep-alive connections would otherwise still be served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of parallel connects

    def __init__(self, address: tuple[str, int], model: TimingModel) -> None:
        self.model = model
        self.connections = Connections()
        self.started_at = now_iso()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exception(), OSError):  # a hang-up is routine; a bug is not
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class _Answer:
    """One completion's reply, decided before any timing: its token pieces and shape."""

    model: str
    pieces: list[str]
    done_reason: str
    stream: bool
    generate: bool  # /api/generate's shape, else /api/chat's
    fault: str | None

    def line(self, content: str, done: bool = False, done_reason: str = "") -> bytes:
        return _line(_message(self.model, content, done, done_reason, generate=self.generate))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-simulated"
    sys_version = ""
    disable_nagle_algorithm = True  # token lines must not wait for the client's delayed ACK

    @property
    def http(self) -> SimHTTPServer:
        return cast(SimHTTPServer, self.server)

    @property
    def sim(self) -> TimingModel:
        """The server's timing model (its `model` would read as the LLM's name)."""
        return self.http.model

    def setup(self) -> None:
        super().setup()
        self.http.connections.opened(self.connection)

    def finish(self) -> None:
        self.http.connections.ended(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # an embedded backend must not write to the dashboard's stderr

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        self.sim.stats.add(path=path)
        endpoint = {"/api/chat": self._chat, "/api/generate": self._generate}.get(path)
        if endpoint is None:
            self.close_connection = True  # its body is unread
            self._send(404, b"404 page not found", "text/plain")
            return
        try:
            endpoint()
        except (RequestGone, OSError):
            self.close_connection = True

    def _route(self, head: bool) -> None:
        path = self.path.split("?")[0]
        sim = self.sim
        sim.stats.add(path=path)
        if path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8", head)
        elif path == "/api/version":
            self._json(200, {"version": VERSION}, head)
        elif path == "/api/tags":
            tags = [
                {**_model_details(m), "modified_at": self.http.started_at}
                for m in sim.config.models
            ]
            self._json(200, {"models": tags}, head)
        elif path == "/api/ps":
            self._json(200, {"models": self._loaded_models()}, head)
        elif sim.config.llama_props and path in ("/props", "/slots", "/health"):
            self._json(200, self._llama_state(path), head)
        else:
            self._send(404, b"404 page not found", "text/plain", head)

    def _loaded_models(self) -> list[dict[str, Any]]:
        return [
            {**_model_details(name), "expires_at": now_iso(expires)}
            for name, expires in self.sim.loaded_models()
        ]

    def _llama_state(self, path: str) -> Any:
        """llama.cpp's `/props` (its `total_slots` is `--parallel`), `/slots` (one object
        per slot, `is_processing` while it works) and `/health`, in llama.cpp's shapes."""
        if path == "/health":
            return {"status": "ok"}
        config = self.sim.config
        if path == "/props":
            return {
                "total_slots": config.slots,
                "default_generation_settings": {"n_ctx": LLAMA_CTX_PER_SLOT},
                "model_path": f"simulated/{config.profile}.gguf",
                "build_info": VERSION,
            }
        return [
            {"id": i, "n_ctx": LLAMA_CTX_PER_SLOT, "is_processing": busy}
            for i, busy in enumerate(self.sim.slots_busy())
        ]

    def _send(self, status: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Mapping[str, Any], head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", head)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _read_body(self) -> dict[str, Any] | None:
        """The request's JSON object, or None after answering 400."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length <= 0 or length > _MAX_BODY:
            self.close_connection = True  # a body we did not read would poison keep-alive
            self._json(400, {"error": "missing or oversized request body (Content-Length)"})
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._json(400, {"error": f"invalid JSON body: {exc}"})
            return None
        if not isinstance(body, dict):
            self._json(400, {"error": "request body must be a JSON object"})
            return None
        return body

    def _model_of(self, body: Mapping[str, Any]) -> str | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._json(400, {"error": "model is required"})
            return None
        return model

    def _chat(self) -> None:
        t0 = time.monotonic()
        body = self._read_body()
        if body is None or (model := self._model_of(body)) is None:
            return
        messages = body.get("messages", [])
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages
        ):
            self._json(400, {"error": "messages must be a list of {role, content} objects"})
            return
        # Ollama answers an empty conversation by loading the model and nothing else.
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        prompt = "".join(m.get("content", "") for m in messages)
        self._complete(t0, body, model, user if messages else None, prompt, generate=False)

    def _generate(self) -> None:
        t0 = time.monotonic()
        body = self._read_body()
        if body is None or (model := self._model_of(body)) is None:
            return
        prompt, system = body.get("prompt", ""), body.get("system", "")
        if not isinstance(prompt, str) or not isinstance(system, str):
            self._json(400, {"error": "prompt and system must be strings"})
            return
        # Ollama answers an empty prompt by loading the model and nothing else.
        self._complete(t0, body, model, prompt or None, system + prompt, generate=True)

    def _complete(
        self,
        t0: float,
        body: Mapping[str, Any],
        model: str,
        user: str | None,
        prompt: str,
        *,
        generate: bool,
    ) -> None:
        """One completion for either endpoint: `user` is what is answered (None: only load
        the model), `prompt` everything the model reads (for the prefill time)."""
        agent = self.headers.get("X-Quorum-Agent") or ""
        self.sim.stats.add(agent=agent)
        fault = self.sim.fault_for(agent)
        if fault in ("busy", "error", "notfound") or not self.sim.knows(model):
            status, error = _REFUSALS.get(fault or "", (404, f"model '{model}' not found"))
            self._json(status, {"error": error})
            return
        role, kind, text = answer_for_prompt(user) if user is not None else ("load", "load", "")
        rng = self.sim.rng(agent or role)
        answer = self._answer(body, model, kind, text, rng.uniform(-1, 1), generate, fault)
        gone: ClientGone = functools.partial(_peer_closed, self.connection)
        with self.sim.model_in_use(model, rng, gone) as load_s:
            if kind == "load":
                self._json(200, _message(model, "", True, "load", generate=generate))
                return
            served = self._serve(answer, prompt, gone)
        if served is not None:
            prefill, decode_s = served
            self._finish(answer, t0, load_s, prefill, decode_s)

    def _answer(
        self, body: Mapping[str, Any], model: str, kind: str, text: str, draw: float,
        generate: bool, fault: str | None,
    ) -> _Answer:  # fmt: skip
        """The reply's pieces (one a token, `num_predict` at most) and shape."""
        text = MALFORMED if fault == "malformed" else text
        pieces = token_pieces(text, answer_tokens(self.sim.profile, kind, text, draw))
        options = body.get("options")
        num_predict = options.get("num_predict") if isinstance(options, dict) else None
        done_reason = "stop"
        if isinstance(num_predict, int) and 0 < num_predict < len(pieces):
            pieces, done_reason = pieces[:num_predict], "length"
        stream = body.get("stream", True) is not False
        return _Answer(model, pieces, done_reason, stream, generate, fault)

    def _serve(
        self, answer: _Answer, prompt: str, gone: ClientGone
    ) -> tuple[Prefill, float] | None:
        """In a slot: read the prompt, write the tokens on schedule. (the prefill, decode
        seconds), or None when the answer already ended with its error."""
        with self.sim.slot(prompt, gone) as lease:
            if answer.fault == "hang":
                if answer.stream:
                    self._start_stream()
                    self._chunk(answer.line(answer.pieces[0]))
                self.sim.hold(gone)
                raise RequestGone
            prefill = self.sim.prefill(lease, gone, slow=answer.fault == "slow")
            if answer.stream:
                self._start_stream()
            decode_s = self._decode(answer, gone)
        return None if decode_s is None else (prefill, decode_s)

    def _decode(self, answer: _Answer, gone: ClientGone) -> float | None:
        """Emit the tokens on schedule; seconds taken, or None if it failed midstream."""
        pieces, fail = answer.pieces, answer.fault == "error-midstream"
        start, sent = time.monotonic(), 0
        for upto in self.sim.decode(len(pieces), gone, slow=answer.fault == "slow"):
            # Everything due by now goes in one write (see TimingModel.decode).
            lines = [answer.line(p) for p in pieces[sent:upto] if p]
            if fail and upto >= _MIDSTREAM_TOKENS:
                error = {"error": "simulated runner failure: unexpected EOF"}
                if not answer.stream:
                    self._json(500, error)
                    return None
                self._chunk(b"".join([*lines, _line(error)]))
                self._end_chunks()
                return None
            if answer.stream and lines:
                self._chunk(b"".join(lines))
            sent = upto
        return time.monotonic() - start

    def _finish(
        self, answer: _Answer, t0: float, load_s: float, prefill: Prefill, decode_s: float
    ) -> None:
        """The final object, with Ollama's durations and counts."""
        content = "" if answer.stream else "".join(answer.pieces)
        final = _message(answer.model, content, True, answer.done_reason, generate=answer.generate)
        metrics = {
            "total_duration": _ns(time.monotonic() - t0),
            "load_duration": _ns(load_s),
            "prompt_eval_count": prefill.evaluated,
            "prompt_eval_duration": _ns(prefill.seconds),
            "eval_count": len(answer.pieces),
            "eval_duration": _ns(decode_s),
        }
        final.update({k: v for k, v in metrics.items() if v})  # Go's omitempty, as Ollama does
        if self.sim.config.prefix_cache:  # an extension: Ollama does not say how much it reused
            final[CACHED_COUNT_FIELD] = prefill.cached
        if answer.stream:
            self._chunk(_line(final))
            self._end_chunks()
        else:
            self._json(200, final)


def _message(
    model: str, content: str, done: bool = False, done_reason: str = "", *, generate: bool = False
) -> dict[str, Any]:
    """One response object: `/api/chat` wraps the text in `message`, `/api/generate` sends
    it as `response`."""
    out: dict[str, Any] = {"model": model, "created_at": now_iso()}
    if generate:
        out["response"] = content
    else:
        out["message"] = {"role": "assistant", "content": content}
    out["done"] = done
    if done_reason:
        out["done_reason"] = done_reason
    return out


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _peer_closed(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _model_details(model: str) -> dict[str, Any]:
    found = re.search(r"(\d+(?:\.\d+)?)b\b", model.split(":")[-1])
    params = float(found.group(1)) if found else 8.0
    return {
        "name": model,
        "model": model,
        "size": round(params * 0.61e9),  # Q4_K_M is ≈ 4.9 bits per weight
        "digest": hashlib.sha256(model.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "simulated",
            "families": ["simulated"],
            "parameter_size": f"{params:.1f}B",
            "quantization_level": "Q4_K_M",
        },
    }
