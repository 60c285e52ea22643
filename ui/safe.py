"""Model output is untrusted: make it inert before any renderer sees it.

`md` is for `st.markdown` and friends (which also interpret Streamlit's own directives:
`:red[...]`, `$math$`, emoji shortcodes). CommonMark lets any ASCII punctuation be
backslash-escaped, so escaping all of it leaves no emphasis, heading, list, link, image,
autolink, code span, HTML tag, entity, table or directive: the text renders literally.

`plotly` is for chart labels and hover text, which plotly reads as a small HTML subset.
Both start from `clean`, the engine's sanitiser (`engine/sanitize.py`) on one line.
"""

from __future__ import annotations

import html
import re
import string
import sys

from engine import sanitize

_PUNCTUATION = frozenset(string.punctuation)
# GFM turns bare URLs, `www.` names and e-mail addresses into links *after* escapes are
# resolved, so escaping cannot stop it; an invisible word joiner breaks each pattern.
_AUTOLINK = re.compile(
    r"(?<=[hH][tT][tT][pP]:)(?=//)|(?<=[hH][tT][tT][pP][sS]:)(?=//)|(?<=[wW]{3})(?=\.)|(?=@)"
)
_WORD_JOINER = "\u2060"


def clean(text: object, *, limit: int | None = 2000) -> str:
    """Text on one line, made safe by the engine's one sanitiser (`engine/sanitize.py`:
    valid Unicode, no control or escape characters, whitespace runs collapsed), capped."""
    return sanitize.line(text, limit=sys.maxsize if limit is None else limit)


def md(text: object, *, limit: int | None = 2000) -> str:
    """`text` as Markdown that renders exactly as the characters it contains.

    Newlines are collapsed too: a line break would let text start a heading, a list item
    or an indented code block, and insight text is one paragraph anyway.
    """
    inert = _AUTOLINK.sub(_WORD_JOINER, clean(text, limit=limit))
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in inert)


def plotly(text: object, *, limit: int | None = 300) -> str:
    """`text` for plotly labels and hover templates: tags and entities shown, not parsed."""
    return html.escape(clean(text, limit=limit), quote=True)


# The engine's messages name its command-line flags; the dashboard's fields are labelled
# otherwise. Longest first, so "--server-slots N" wins over "--server-slots".
UI_WORDS: tuple[tuple[str, str], ...] = (
    ("use --server-slots N", "set the sidebar's Server slots to N"),
    ("--server-slots / quorum.toml", "the sidebar's Server slots / quorum.toml"),
    ("--server-slots", "Server slots"),
    ("--agent-timeout", "Per-agent timeout (s)"),
    ("--degraded-ttl", "Degraded result TTL (s)"),
    ("--max-concurrency", "max concurrency"),
    (
        "base-url: required for the openai backend",
        "Server URL: required for an OpenAI-compatible server",
    ),
    ("--base-url", "Server URL"),
    ("base-url", "Server URL"),
)


def ui_words(text: object) -> str:
    """`text` with the engine's flag names replaced by the labels of the dashboard's fields."""
    out = str(text)
    for flag, label in UI_WORDS:
        out = out.replace(flag, label)
    return out
