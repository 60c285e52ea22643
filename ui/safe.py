"""Model output is untrusted: make it inert before any renderer sees it.

`md` is for `st.markdown` and friends (which also interpret Streamlit's own directives:
`:red[...]`, `$math$`, emoji shortcodes). CommonMark lets any ASCII punctuation be
backslash-escaped, so escaping all of it leaves no emphasis, heading, list, link, image,
autolink, code span, HTML tag, entity, table or directive: the text renders literally.

`plotly` is for chart labels and hover text, which plotly reads as a small HTML subset.
"""

from __future__ import annotations

import html
import re
import string

_PUNCTUATION = frozenset(string.punctuation)
# C0/C1 control characters (other than tab/newline) and the bidi overrides that can make
# text read differently from what it is.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
# GFM turns bare URLs, `www.` names and e-mail addresses into links *after* escapes are
# resolved, so escaping cannot stop it; an invisible word joiner breaks each pattern.
_AUTOLINK = re.compile(
    r"(?<=[hH][tT][tT][pP]:)(?=//)|(?<=[hH][tT][tT][pP][sS]:)(?=//)|(?<=[wW]{3})(?=\.)|(?=@)"
)
_WORD_JOINER = "\u2060"


def clean(text: object, *, limit: int | None = 2000) -> str:
    """Text on one line: control characters dropped, whitespace runs collapsed, capped."""
    flat = _SPACES.sub(" ", _INVISIBLE.sub("", str(text))).strip()
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat


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
