"""ANSI colour codes in log text rendered as HTML ``<span>`` elements, everything else
escaped: guest output is hostile, so the only markup in the result is what this module
writes (``<span class="ansi-...">`` and ``</span>``, class names from a fixed set).

SGR codes rendered: reset (0), bold (1), dim (2), italic (3), underline (4), their
resets (22, 23, 24), the 8 and 8 bright foreground and background colours (30-37,
90-97, 40-47, 100-107), defaults (39, 49), and 256-colour / true-colour codes
(38;5;n, 38;2;r;g;b and the 48 forms) quantised to the nearest of the 16 colours (so
no inline styles are needed: the dashboard's Content-Security-Policy forbids them).
Every other escape sequence (cursor moves, OSC titles and hyperlinks) is dropped; so
are control characters other than tab. Of a line's parts separated by carriage returns
only the last with visible text is shown (a progress bar's latest state). Pure code, no I/O.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace

# CSI ... final byte, OSC ... BEL/ST, and any other two-byte escape.
_ESCAPE = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The 16 colours as RGB (xterm's defaults), for quantising 256-colour and RGB codes.
_PALETTE = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
    (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0),
    (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
)  # fmt: skip
_CUBE = (0, 95, 135, 175, 215, 255)


@dataclass(frozen=True)
class Style:
    """The SGR state: colours are 0-15 (8-15 bright) or None (the default)."""

    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> str:
        """The CSS classes of this style ("" for the default style)."""
        names = [n for n, on in (("ansi-bold", self.bold), ("ansi-dim", self.dim),
                                 ("ansi-italic", self.italic), ("ansi-underline", self.underline)) if on]  # fmt: skip
        if self.fg is not None:
            names.append(f"ansi-fg-{self.fg}")
        if self.bg is not None:
            names.append(f"ansi-bg-{self.bg}")
        return " ".join(names)


PLAIN = Style()


def nearest16(r: int, g: int, b: int) -> int:
    """The index (0-15) of the palette colour nearest to ``(r, g, b)``."""
    return min(
        range(16),
        key=lambda i: sum((a - c) ** 2 for a, c in zip(_PALETTE[i], (r, g, b), strict=True)),
    )


def _xterm256(n: int) -> int:
    """A 256-colour index as one of the 16 colours."""
    if n < 16:
        return n
    if n < 232:
        n -= 16
        return nearest16(_CUBE[n // 36], _CUBE[(n // 6) % 6], _CUBE[n % 6])
    level = 8 + 10 * (n - 232)
    return nearest16(level, level, level)


def _extended(codes: list[int], i: int) -> tuple[int | None, int]:
    """The colour of a ``38;...``/``48;...`` code starting at ``codes[i]`` and how many
    codes it used (None when malformed)."""
    if i + 1 < len(codes) and codes[i + 1] == 5 and i + 2 < len(codes):
        return _xterm256(min(codes[i + 2], 255)), 3
    if i + 1 < len(codes) and codes[i + 1] == 2 and i + 4 < len(codes):
        r, g, b = (min(c, 255) for c in codes[i + 2 : i + 5])
        return nearest16(r, g, b), 5
    return None, len(codes) - i


_FLAGS = {1: ("bold", True), 2: ("dim", True), 3: ("italic", True), 4: ("underline", True),
          22: ("bold", False), 23: ("italic", False), 24: ("underline", False)}  # fmt: skip


def _code(param: str) -> int:
    """One SGR parameter as a number (malformed or absurdly long: 0)."""
    return int(param) if param.isascii() and param.isdigit() and len(param) <= 5 else 0


def _colour(style: Style, foreground: bool, colour: int | None) -> Style:
    return replace(style, fg=colour) if foreground else replace(style, bg=colour)


def apply_sgr(style: Style, params: str) -> Style:
    """``style`` after the SGR codes ``params`` (``"1;31"``; empty means reset)."""
    codes = [_code(p) for p in params.split(";")] if params else [0]
    i = 0
    while i < len(codes):
        code, used = codes[i], 1
        if code == 0:
            style = PLAIN
        elif code in _FLAGS:
            name, on = _FLAGS[code]
            style = replace(style, **{name: on, **({"dim": False} if code == 22 else {})})
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style = replace(style, fg=code - 30 if code < 90 else code - 82)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style = replace(style, bg=code - 40 if code < 100 else code - 92)
        elif code in (39, 49):
            style = _colour(style, code == 39, None)
        elif code in (38, 48):
            colour, used = _extended(codes, i)
            if colour is not None:
                style = _colour(style, code == 38, colour)
        i += used
    return style


def _text(raw: str) -> str:
    return html.escape(_CONTROL.sub("", raw), quote=True)


def _span(style: Style, text: str) -> str:
    if not text:
        return ""
    cls = style.classes()
    return f'<span class="{cls}">{text}</span>' if cls else text


def _render(segment: str, style: Style, emit: bool) -> tuple[str, Style]:
    """``segment`` as HTML (or only its effect on the style, when not ``emit``)."""
    out, pos = [], 0
    for m in _ESCAPE.finditer(segment):
        if emit:
            out.append(_span(style, _text(segment[pos : m.start()])))
        if m.group(2) == "m":
            style = apply_sgr(style, m.group(1) or "")
        pos = m.end()
    if emit:
        out.append(_span(style, _text(segment[pos:])))
    return "".join(out), style


def _visible(segment: str) -> bool:
    return bool(_CONTROL.sub("", _ESCAPE.sub("", segment)))


def render_line(line: str, style: Style = PLAIN) -> tuple[str, Style]:
    """One line (no newline) as HTML, starting in ``style``; and the style at its end.
    Of the parts a carriage return separates, only the last one with visible text is
    shown (a progress bar's latest state); the others' colour codes still apply."""
    parts = line.split("\r")
    shown = max((i for i, p in enumerate(parts) if _visible(p)), default=len(parts) - 1)
    html_out = ""
    for i, part in enumerate(parts):
        rendered, style = _render(part, style, emit=i == shown)
        html_out = rendered if i == shown else html_out
    return html_out, style


def ansi_to_html(text: str) -> str:
    """Multi-line ``text`` as HTML (lines joined by ``\\n``; the style carries over)."""
    lines, style = [], PLAIN
    for line in text.split("\n"):
        rendered, style = render_line(line, style)
        lines.append(rendered)
    return "\n".join(lines)


class LineRenderer:
    """Renders the lines of one stream in order, carrying the style from line to line."""

    def __init__(self) -> None:
        self.style = PLAIN

    def feed(self, line: str) -> str:
        rendered, self.style = render_line(line, self.style)
        return rendered
