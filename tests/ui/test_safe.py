"""ui.safe: model text reaches Markdown and plotly inert."""

from __future__ import annotations

import re
import string

import pytest
from streamlit.testing.v1 import AppTest

from ui import safe

HOSTILE = [
    "[click me](javascript:alert(1))",
    "![pixel](https://evil.example/track.png)",
    "<img src=x onerror=alert(1)>",
    "<script>alert('x')</script>",
    "&lt;b&gt; entity",
    "# Heading\n- list item\n1. ordered",
    "**bold** _it_ ~~strike~~ `code`",
    ":red[coloured] :material/warning: $x^2$",
    "    indented code",
    "<https://autolink.example>",
    "| a | b |\n|---|---|",
    "back\\slash \\[escaped\\]",
]


def unescape(text: str) -> str:
    """What CommonMark shows for backslash-escaped punctuation."""
    return re.sub(r"\\([" + re.escape(string.punctuation) + "])", r"\1", text)


@pytest.mark.parametrize("text", HOSTILE)
def test_every_punctuation_character_is_escaped(text: str) -> None:
    out = safe.md(text)
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert out[i + 1] in string.punctuation, (text, out, i)
            i += 2
            continue
        assert out[i] not in string.punctuation, (text, out, i)
        i += 1


@pytest.mark.parametrize("text", HOSTILE)
def test_escaping_round_trips_to_the_same_characters(text: str) -> None:
    # (the invisible word joiners that stop GFM's bare-URL links aside)
    assert unescape(safe.md(text)).replace("\u2060", "") == safe.clean(text)


def test_no_markup_survives() -> None:
    out = safe.md("see [docs](http://x) <b>now</b> ![i](y)")
    assert "](" not in out
    assert "<b>" not in out
    assert "![" not in out
    assert out.startswith("see \\[docs\\]\\(http\\:\u2060\\/\\/x\\)")


def test_bare_urls_and_addresses_cannot_become_links() -> None:
    # GFM links these after escapes are resolved; a word joiner breaks each pattern.
    out = safe.md("HTTPS://a.example www.b.example c@d.example")
    assert "\u2060\\/\\/a" in out and "www\u2060\\.b" in out and "c\u2060\\@d" in out


def test_newlines_and_control_characters_are_flattened() -> None:
    out = safe.clean("line one\n\n# two\r\n\tthree\x00\u202e")
    assert out == "line one # two three"
    assert "\n" not in safe.md("a\n- b")


def test_long_text_is_capped() -> None:
    assert len(safe.clean("x" * 5000, limit=100)) == 100
    assert safe.clean("x" * 5000, limit=100).endswith("…")


def test_plotly_text_shows_tags_instead_of_parsing_them() -> None:
    assert safe.plotly("<b>Agent</b> & co") == "&lt;b&gt;Agent&lt;/b&gt; &amp; co"
    assert "<" not in safe.plotly('<a href="javascript:x">x</a>')


def test_insight_cards_render_hostile_model_text_as_plain_text() -> None:
    def script() -> None:
        from engine.records import Insight
        from ui import render

        render.insight_cards(
            [
                Insight(
                    title="[Click](http://evil.example) <script>x</script>",
                    observation="<img src=x onerror=alert(1)> **boom**",
                    recommendations=["![p](http://evil.example/p.png)", "# rm -rf /"],
                    severity="HIGH",
                    confidence=90,
                    agents=["<b>Agent</b>"],
                    metrics=["cpu_util_pct", "[fake](x)"],
                )
            ]
        )

    at = AppTest.from_function(script, default_timeout=30).run()
    assert not at.exception
    # Our own badges (":red-badge[HIGH]") are markup on purpose; the rest carries model text.
    bodies = [m.value for m in at.markdown if "-badge[" not in m.value]
    bodies += [c.value for c in at.caption]
    joined = "\n".join(bodies)
    assert "Click" in joined and "evil" in joined  # shown…
    # …and inert: no link, image or tag opens without a backslash in front of it.
    assert "](" not in joined
    assert not re.search(r"(?<!\\)[<\[!]", joined)
    assert not any(m.proto.allow_html for m in at.markdown)
    assert not any(c.proto.allow_html for c in at.caption)


def test_engine_flag_names_become_the_dashboard_field_labels() -> None:
    from ui.safe import ui_words

    assert ui_words("if the server sets OLLAMA_NUM_PARALLEL=N, use --server-slots N") == (
        "if the server sets OLLAMA_NUM_PARALLEL=N, set the sidebar's Server slots to N"
    )
    assert ui_words("base-url: required for the openai backend (e.g. http://h/v1)") == (
        "Server URL: required for an OpenAI-compatible server (e.g. http://h/v1)"
    )
    assert ui_words("configured (--server-slots / quorum.toml)") == (
        "configured (the sidebar's Server slots / quorum.toml)"
    )
