"""Untrusted text made safe once, where it enters Quorum.

Text enters from three sides: an LLM server (answers, error bodies, the Consolidator's
verdict: `engine/run/call.py` and `engine/run/warmup.py`), a snapshot (`engine/sources/snapshot.py`:
its host and source), and storage written by another process or an older version
(`AnalysisResult.from_dict`: the cache, Redis, the history). Each passes through here
once; everything downstream (the CLI, the dashboard, history, exports, any notifier)
can then print, encode and store it without a second thought.

What "safe" means here:
- valid Unicode: a surrogate pair split across two JSON escapes is joined, a lone
  surrogate (`"\\ud800"` is valid JSON, but no encoder can write it) becomes U+FFFD;
- no terminal control: ANSI/VT escape sequences are removed whole (ESC and its
  parameters, so no `[31m` residue is left), as are C0/C1 control characters, DEL and
  the bidi overrides and isolates that make text read differently from what it is;
- line breaks: `text` keeps `\\n` and `\\t` (a model may answer in paragraphs; CR, CRLF
  and U+2028/U+2029 become `\\n`, so a CR cannot overwrite a terminal line); `line`
  turns every whitespace run into one space and keeps only printable characters (no
  zero-width or private-use ones either), for names, errors and one-line fields;
- capped length, with "…" where it was cut.

Rendering escapes (Markdown, plotly's HTML subset) are the renderer's job: `ui/safe.py`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

TEXT_LIMIT = 4000  # one string of model text (an observation is a paragraph)
LINE_LIMIT = 1000  # one line: an error message, a name
_ELLIPSIS = "…"

_SURROGATE = re.compile("[\ud800-\udfff]")
# ECMA-48 sequences: CSI (ESC [ … final byte), OSC/DCS/SOS/PM/APC strings up to BEL or
# ST, and the remaining two-character escapes (ESC + one byte from 0x20-0x7e).
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
)
_LINE_BREAK = re.compile("\r\n|[\r\u2028\u2029\x0b\x0c\x85]")
# Tab and newline stay; every other C0/C1 control, DEL, and the bidi embeddings,
# overrides and isolates ("Trojan Source", CVE-2021-42574) go.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


def text(value: object, *, limit: int = TEXT_LIMIT) -> str:
    """`value` as safe multi-line text (newlines and tabs kept), at most `limit` characters."""
    raw = value if isinstance(value, str) else str(value)
    if _SURROGATE.search(raw):
        # UTF-16 round trip: a valid high+low pair becomes its character, a lone half U+FFFD.
        raw = raw.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    clean = _CONTROL.sub("", _LINE_BREAK.sub("\n", _ESCAPE.sub("", raw)))
    return _cap(clean, limit)


def line(value: object, *, limit: int = LINE_LIMIT) -> str:
    """`value` as safe text on one line: every whitespace run one space, trimmed, capped."""
    raw = text(value, limit=max(limit * 4, limit))
    if not raw.isprintable():  # a name or a message needs no invisible formatting either
        raw = "".join(ch for ch in raw if ch.isprintable() or ch.isspace())
    return _cap(_WHITESPACE.sub(" ", raw).strip(), limit)


def tree(value: Any, *, limit: int = TEXT_LIMIT, finite: bool = True) -> Any:
    """Parsed JSON with every string made safe (`text`), keys included; with `finite`,
    every non-finite float (JSON's NaN and Infinity extensions, or 1e400) made None."""
    if isinstance(value, str):
        return text(value, limit=limit)
    if isinstance(value, float):
        return value if math.isfinite(value) or not finite else None
    if isinstance(value, Mapping):
        return {
            line(k, limit=200) if isinstance(k, str) else k: tree(v, limit=limit, finite=finite)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [tree(v, limit=limit, finite=finite) for v in value]
    return value


def _cap(value: str, limit: int) -> str:
    if limit < 1:
        return ""
    return value if len(value) <= limit else value[: limit - 1] + _ELLIPSIS
