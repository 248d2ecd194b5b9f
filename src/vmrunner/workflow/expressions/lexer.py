"""Tokens of a ``${{ }}`` expression, read the way GitHub's engine reads them.

:func:`tokenize` never raises: a malformed lexeme (``=2``, ``'unterminated``, ``0xZ``,
``b@r``) becomes an ``UNEXPECTED`` token that the parser reports when it reaches it, so
errors come out in source order, as on GitHub.

Rules worth knowing:

* a lexeme runs until a boundary character (``( [ ) ] , . ! > < = & |`` or whitespace);
  numbers may also contain ``.``;
* ``.`` starts a number at the start of the expression and after ``(``, ``[``, ``,`` or an
  operator; anywhere else it is the dereference operator;
* ``true``, ``false``, ``null``, ``NaN`` and ``Infinity`` are literals (case-sensitive)
  except right after ``.``, where every identifier is a property name;
* strings are single-quoted; ``''`` inside one is a quote.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .coerce import is_space, parse_number
from .nodes import LiteralValue


class T(Enum):
    """Token types."""

    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    DOT = "."
    COMMA = ","
    STAR = "*"
    NOT = "!"
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    AND = "&&"
    OR = "||"
    LITERAL = "literal"
    IDENT = "identifier"
    UNEXPECTED = "unexpected"
    EOF = "end"


@dataclass(frozen=True, slots=True)
class Token:
    """A token: its type, its raw text, its 0-based offset and, for literals, its value."""

    type: T
    text: str
    pos: int
    value: LiteralValue = None


BOUNDARY = frozenset("([)],.!><=&|")
OPERATORS = frozenset({T.NOT, T.EQ, T.NE, T.LT, T.LE, T.GT, T.GE, T.AND, T.OR})
_NUMBER_MAY_FOLLOW = OPERATORS | {T.COMMA, T.LPAREN, T.LBRACKET}
_KEYWORDS: dict[str, LiteralValue] = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": math.nan,
    "Infinity": math.inf,
}
_SINGLE = {"[": T.LBRACKET, "]": T.RBRACKET, "(": T.LPAREN, ")": T.RPAREN, ",": T.COMMA}
_SINGLE["*"] = T.STAR
# operator first char -> (second char, two-char type, one-char type or None if illegal)
_DOUBLE = {
    "!": ("=", T.NE, T.NOT),
    "=": ("=", T.EQ, None),
    "<": ("=", T.LE, T.LT),
    ">": ("=", T.GE, T.GT),
    "&": ("&", T.AND, None),
    "|": ("|", T.OR, None),
}


def is_boundary(char: str) -> bool:
    """True for the characters that end a number or identifier."""
    return char in BOUNDARY or is_space(char)


def is_identifier(text: str) -> bool:
    """GitHub's legal keyword: ``[A-Za-z_][A-Za-z0-9_-]*`` (ASCII only)."""
    if not text or not (text[0].isascii() and (text[0].isalpha() or text[0] == "_")):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_-") for c in text[1:])


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.tokens: list[Token] = []

    def last(self) -> T | None:
        return self.tokens[-1].type if self.tokens else None

    def run(self) -> list[Token]:
        while self.i < len(self.src):
            char = self.src[self.i]
            if is_space(char):
                self.i += 1
            else:
                self.tokens.append(self.read(char))
        self.tokens.append(Token(T.EOF, "", len(self.src)))
        return self.tokens

    def read(self, char: str) -> Token:
        start = self.i
        if char in _SINGLE:
            self.i += 1
            return Token(_SINGLE[char], char, start)
        if char in _DOUBLE:
            return self.read_operator(char)
        if char == "'":
            return self.read_string()
        if char == "." and self.last() is not None and self.last() not in _NUMBER_MAY_FOLLOW:
            self.i += 1
            return Token(T.DOT, char, start)
        if char in ".+-" or (char.isascii() and char.isdigit()):
            return self.read_number()
        return self.read_word()

    def read_operator(self, char: str) -> Token:
        start = self.i
        second, double, single = _DOUBLE[char]
        if self.src.startswith(second, start + 1):
            self.i += 2
            return Token(double, char + second, start)
        if single is not None:
            self.i += 1
            return Token(single, char, start)
        return Token(T.UNEXPECTED, self.scan(lambda c: not is_boundary(c)), start)

    def scan(self, keep_going: Callable[[str], bool]) -> str:
        """Consume the current character and then while ``keep_going(char)``."""
        start = self.i
        self.i += 1
        while self.i < len(self.src) and keep_going(self.src[self.i]):
            self.i += 1
        return self.src[start : self.i]

    def read_number(self) -> Token:
        start = self.i
        text = self.scan(lambda c: c == "." or not is_boundary(c))
        value = parse_number(text)
        if math.isnan(value):
            return Token(T.UNEXPECTED, text, start)
        return Token(T.LITERAL, text, start, value)

    def read_word(self) -> Token:
        start = self.i
        text = self.scan(lambda c: not is_boundary(c))
        if not is_identifier(text):
            return Token(T.UNEXPECTED, text, start)
        if self.last() is not T.DOT and text in _KEYWORDS:
            return Token(T.LITERAL, text, start, _KEYWORDS[text])
        return Token(T.IDENT, text, start)

    def read_string(self) -> Token:
        start = self.i
        chars: list[str] = []
        i = start + 1
        while i < len(self.src):
            if self.src[i] == "'":
                if not self.src.startswith("'", i + 1):
                    self.i = i + 1
                    return Token(T.LITERAL, self.src[start : self.i], start, "".join(chars))
                i += 1
            chars.append(self.src[i])
            i += 1
        self.i = len(self.src)
        return Token(T.UNEXPECTED, self.src[start:], start)


def tokenize(src: str) -> list[Token]:
    """All tokens of ``src``, ending with an ``EOF`` token at ``len(src)``. Never raises."""
    return _Lexer(src).run()
