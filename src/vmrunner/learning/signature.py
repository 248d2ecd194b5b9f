"""Error signatures: a masked template of the most informative lines of a failure.

``signature(output, exit_code)`` turns the tail of a failing command's output into a
short template that is the same for the same problem:

1. **Decode safely.** Bytes are decoded as UTF-8 with replacement (never cut in the
   middle of a character); text is NFC-normalised; ANSI escapes and control
   characters are removed; for ``\\r``-rewritten lines (progress bars) only the last
   segment counts. Only the last ``TAIL_LINES`` lines are looked at.
2. **Score lines.** A line scores high when it reads like an error: an exception
   line (``ValueError: …``), ``error``/``fatal``/``panic``/``failed``/``denied``/
   ``not found``/``no such``/``cannot``/``timed out``/``Killed`` and their usual
   spellings in a few languages (``Fehler``, ``erreur``, ``ошибка``, ``错误``,
   ``エラー``), pytest's ``E  `` lines, ``npm ERR!``. Boilerplate scores low
   (``Traceback (most recent call last):``, ``File "…", line N``, warnings,
   separators). Later lines win ties: the cause is usually near the end.
3. **Pick** the ``MAX_LINES`` best lines (not just the first), kept in output order.
4. **Mask** variable parts: URLs, timestamps, UUIDs, paths, IP addresses, hex ids
   (``0x…`` and 7+-character hex words with a digit), and numbers become
   ``<url>``, ``<ts>``, ``<uuid>``, ``<path>``, ``<ip>``, ``<hex>``, ``<num>``.
   Each line is cut to ``MAX_LINE_CHARS`` characters (characters, not bytes).
5. With no line at all, the template is ``(no output) exit <code>``.

Similar templates are then clustered (``cluster.py``), so that ``No module named
'a'`` and ``No module named 'b'`` become one signature. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

TAIL_LINES = 200
MAX_LINES = 3
MAX_LINE_CHARS = 200
MAX_INPUT_CHARS = 64_000

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Fault)\b:?")
_STRONG = re.compile(
    r"\b(?:error|errors|fatal|panic(?:ked)?|exception|segmentation fault|core dumped|killed"
    r"|abort(?:ed)?|traceback|assert(?:ion)?(?:error)?|undefined reference|permission denied"
    r"|no such file|not found|cannot|can't|could not|couldn't|unable to|refused|timed? ?out"
    r"|failed|failure|fehler|erreur|ошибка|не найден)\b|错误|エラー|npm ERR!|^E {2,}|^FAILED\b",
    re.IGNORECASE,
)
_WEAK = re.compile(
    r"\b(?:warn(?:ing)?|deprecat\w*|invalid|missing|denied|unknown|exit(?:ed)?)\b", re.I
)
_BOILERPLATE = re.compile(
    r"^(?:Traceback \(most recent call last\):|During handling of the above exception"
    r"|The above exception was the direct cause|File \".*\", line \d+|\s*\^+\s*$"
    r"|[-=_*#~.\s]{3,}$|\+ |Error: Process completed with exit code)",
)
_THREE_LETTERS = re.compile(r"[^\W\d_](?:.*?[^\W\d_]){2}")
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s'\"<>]+", re.I), "<url>"),
    (
        re.compile(
            r"\b\d{4}[-/]\d{2}[-/]\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2})?)?\b|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
        ),
        "<ts>",
    ),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (
        re.compile(r"(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:[/\\][^\s/\\'\":,()\[\]<>]+){2,}[/\\]?"),
        "<path>",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![\w<])[-+]?\d+(?:[.,]\d+)*"), "<num>"),
)


@dataclass(frozen=True)
class Signature:
    """A failure's template and the lines it was built from.

    ``key`` is a stable hash of ``template``; ``excerpt`` is the chosen lines
    before masking (for showing a person an example).
    """

    template: str
    excerpt: str

    @property
    def key(self) -> str:
        return template_key(self.template)


def template_key(template: str) -> str:
    """A stable 40-character hash of a template (UTF-8, never fails)."""
    return hashlib.sha1(template.encode("utf-8", "surrogatepass")).hexdigest()


def decode(output: str | bytes) -> str:
    """Text of ``output``: bytes decoded as UTF-8 with replacement, NFC, no ANSI/controls."""
    if isinstance(output, bytes):
        output = output[-MAX_INPUT_CHARS * 4 :].decode("utf-8", errors="replace")
    text = output[-MAX_INPUT_CHARS:]
    text = unicodedata.normalize("NFC", _ANSI.sub("", text))
    return _CONTROL.sub("", text)


def tail_lines(text: str) -> list[str]:
    """The last ``TAIL_LINES`` non-empty lines, each reduced to its last ``\\r`` segment."""
    lines = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r").rsplit("\r", 1)[-1].strip()
        if line:
            lines.append(line)
    return lines[-TAIL_LINES:]


def score_line(line: str) -> float:
    """How much ``line`` reads like the cause of a failure (higher is better, may be < 0)."""
    if _BOILERPLATE.match(line):
        return -1.0
    score = 0.0
    if _EXCEPTION_LINE.match(line):
        score += 3.0
    if _STRONG.search(line):
        score += 2.0
    if _WEAK.search(line):
        score += 0.5
    if not _THREE_LETTERS.search(line):
        score -= 1.0
    return score


def mask(line: str) -> str:
    """``line`` with variable parts masked, cut to ``MAX_LINE_CHARS`` characters."""
    for pattern, placeholder in _MASKS:
        line = pattern.sub(placeholder, line)
    line = " ".join(line.split())
    return line[:MAX_LINE_CHARS]


def pick_lines(lines: list[str]) -> list[str]:
    """The ``MAX_LINES`` most informative lines in output order (the last line if none scores)."""
    n = len(lines)
    scored = [(score_line(ln) + 0.5 * i / max(n, 1), i) for i, ln in enumerate(lines)]
    best = sorted((s for s in scored if s[0] >= 1.0), reverse=True)[:MAX_LINES]
    if not best:
        return lines[-1:]
    return [lines[i] for _, i in sorted(best, key=lambda s: s[1])]


def signature(output: str | bytes, exit_code: int) -> Signature:
    """The signature of a failure with ``output`` (stdout and stderr tail) and ``exit_code``.

    Never raises on any input, including invalid UTF-8 and non-ASCII text.
    """
    picked = pick_lines(tail_lines(decode(output)))
    templates: list[str] = []
    for line in picked:
        masked = mask(line)
        if masked and masked not in templates:
            templates.append(masked)
    if not templates:
        return Signature(template=f"(no output) exit {exit_code}", excerpt="")
    excerpt = "\n".join(ln[: MAX_LINE_CHARS * 2] for ln in picked)
    return Signature(template="\n".join(templates), excerpt=excerpt)
