"""Property-based tests of the stream parsers: whatever a server sends, the NDJSON and SSE
decoders return content or raise their one-line protocol error — nothing else — and how
the bytes are split into reads never changes the answer."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends.ollama import OllamaStream, OllamaStreamError
from engine.backends.openai_compat import OpenAIStream, OpenAIStreamError
from engine.backends.streaming import LineSplitter, ProtocolError
from tests.support.chaos_server import ollama_chunk, ollama_final, openai_chunk, openai_final

LINES = st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["message", "content", "done", "error", "choices",
                                       "delta", "usage", "timings", "finish_reason", "x"]),
                      children, max_size=4),
    max_leaves=20,
)  # fmt: skip


def feed_all(stream: OllamaStream | OpenAIStream, lines: list[str]) -> None:
    try:
        for line in lines:
            stream.feed_line(line)
        stream.end()
    except ProtocolError as exc:
        assert "\n" not in str(exc) and str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=10))
def test_ndjson_decoder_takes_any_lines(lines: list[str]) -> None:
    feed_all(OllamaStream(), lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=10))
def test_sse_decoder_takes_any_lines(lines: list[str]) -> None:
    feed_all(OpenAIStream(), lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=6))
def test_ndjson_decoder_takes_any_json_objects(values: list[Any]) -> None:
    feed_all(OllamaStream(), [json.dumps(v) for v in values])


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=6))
def test_sse_decoder_takes_any_json_events(values: list[Any]) -> None:
    feed_all(OpenAIStream(), [line for v in values for line in (f"data: {json.dumps(v)}", "")])


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
@settings(max_examples=200, deadline=None)
@given(answer=st.text(min_size=1, max_size=200), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_how_reads_split_the_bytes_never_changes_the_answer(
    protocol: str, answer: str, cuts: list[int]
) -> None:
    pieces = [answer[i : i + 7] for i in range(0, len(answer), 7)]
    chunk, final = (
        (openai_chunk, openai_final) if protocol == "openai" else (ollama_chunk, ollama_final)
    )
    wire = b"".join(chunk(p) for p in pieces) + final(len(pieces))
    stream: OllamaStream | OpenAIStream = OpenAIStream() if protocol == "openai" else OllamaStream()
    splitter = LineSplitter()
    for read in split_at(wire, cuts):
        for line in splitter.feed(read):
            stream.feed_line(line)
    for line in splitter.end():
        stream.feed_line(line)
    stream.end()
    assert stream.result(None, 1.0).content == answer


def test_protocol_errors_are_the_backends_own_types() -> None:
    with pytest.raises(OllamaStreamError):
        OllamaStream().feed_line("{")
    sse = OpenAIStream()
    assert sse.feed_line("data: {") == ""  # an event is only dispatched at its blank line
    with pytest.raises(OpenAIStreamError):
        sse.feed_line("")
