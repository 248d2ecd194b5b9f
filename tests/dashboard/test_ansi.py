"""ANSI colours to HTML: table-driven cases, and properties over any text (hypothesis):
the only markup in the output is the renderer's own spans, and the visible text is the
input's text with escape sequences and control characters removed."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.dashboard.ansi import LineRenderer, Style, ansi_to_html, apply_sgr, nearest16

E = "\x1b"
OWN_TAG = re.compile(r'<span class="ansi-[a-z0-9-]+(?: ansi-[a-z0-9-]+)*">|</span>')

CASES = [
    ("plain", "plain"),
    ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
    ('"quoted" \'single\'', "&quot;quoted&quot; &#x27;single&#x27;"),
    (f"{E}[31mred{E}[0m", '<span class="ansi-fg-1">red</span>'),
    (f"{E}[1;32mok{E}[m done", '<span class="ansi-bold ansi-fg-2">ok</span> done'),
    (f"{E}[91;44mx", '<span class="ansi-fg-9 ansi-bg-4">x</span>'),
    (f"{E}[103mx{E}[49my", '<span class="ansi-bg-11">x</span>y'),
    (f"{E}[38;5;196mx", '<span class="ansi-fg-9">x</span>'),  # 256-colour red
    (f"{E}[38;2;0;0;0mx", '<span class="ansi-fg-0">x</span>'),  # true-colour black
    (f"{E}[4mu{E}[24mv", '<span class="ansi-underline">u</span>v'),
    (f"{E}[2K{E}[1Gcleared", "cleared"),  # cursor moves dropped
    (f"{E}]0;title{E}\\text", "text"),  # OSC title dropped
    (f"{E}]8;;https://x.example{E}\\link{E}]8;;{E}\\", "link"),  # no hyperlinks from guests
    ("progress 10%\rprogress 100%", "progress 100%"),
    (f"done{E}[32m\r{E}[0m", "done"),  # nothing visible after the return: the text stays
    (f"{E}[32m10%\r20%\r", '<span class="ansi-fg-2">20%</span>'),  # earlier parts' colours apply
    ("windows line\r", "windows line"),
    ("bell\x07 nul\x00 del\x7f", "bell nul del"),
    (f"{E}[31m<script>alert(1)</script>", '<span class="ansi-fg-1">&lt;script&gt;alert(1)&lt;/script&gt;</span>'),
    (f"{E}[31mred\nstill red{E}[0m", '<span class="ansi-fg-1">red</span>\n<span class="ansi-fg-1">still red</span>'),
    (f"{E}[{'9' * 5000}mx", "x"),  # absurd parameters: no crash, no colour
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_ansi_to_html(text: str, expected: str) -> None:
    assert ansi_to_html(text) == expected


@pytest.mark.parametrize(
    ("params", "style"),
    [
        ("", Style()),
        ("0", Style()),
        ("1;2;3;4", Style(bold=True, dim=True, italic=True, underline=True)),
        ("1;2;22", Style()),
        ("31;39", Style()),
        ("38;5", Style()),  # malformed: ignored
        ("38;5;8", Style(fg=8)),
        ("48;5;232", Style(bg=0)),
        ("48;2;255;255;255", Style(bg=15)),
    ],
)
def test_apply_sgr(params: str, style: Style) -> None:
    assert apply_sgr(Style(), params) == style


def test_the_line_renderer_carries_the_style_across_lines() -> None:
    r = LineRenderer()
    assert r.feed(f"{E}[33mwarn") == '<span class="ansi-fg-3">warn</span>'
    assert r.feed("more") == '<span class="ansi-fg-3">more</span>'
    assert r.feed(f"{E}[0mplain") == "plain"


def test_nearest16_maps_the_palette_onto_itself() -> None:
    palette = [(0, 0, 0), (205, 0, 0), (0, 205, 0), (255, 255, 255)]
    assert [nearest16(*c) for c in palette] == [0, 1, 2, 15]


def _markup_free(rendered: str) -> str:
    return OWN_TAG.sub("", rendered)


@given(st.text())
def test_no_markup_but_its_own_spans(text: str) -> None:
    rendered = ansi_to_html(text)
    rest = _markup_free(rendered)
    assert "<" not in rest and ">" not in rest and '"' not in rest
    for entity in re.findall(r"&[^;]*;?", rest):
        assert entity in ("&lt;", "&gt;", "&amp;", "&quot;", "&#x27;"), entity


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_text_without_controls_survives_intact(text: str) -> None:
    assert html.unescape(_markup_free(ansi_to_html(text))) == text


PIECES = ["x", "<", "&", "\x1b[31m", "\x1b[0m", "\x1b[1;4m", "\x1b]0;t\x07", "\r", "\n"]


@given(st.lists(st.sampled_from(PIECES)))
def test_escapes_are_removed_and_the_rest_kept(parts: list[str]) -> None:
    text = "".join(parts)
    plain = re.sub(r"\x1b\[[0-9;]*m|\x1b\]0;t\x07", "", text)
    visible = "\n".join(
        next((part for part in reversed(line.split("\r")) if part), "")
        for line in plain.split("\n")
    )
    assert html.unescape(_markup_free(ansi_to_html(text))) == visible
    spans = re.findall(r"<span|</span>", ansi_to_html(text))
    assert spans.count("<span") == spans.count("</span>")
