"""Table tests for the lexer: token types, raw text, values and offsets."""

from __future__ import annotations

import math

import pytest

from vmrunner.workflow.expressions.lexer import T, tokenize


def shape(src: str) -> list[tuple[str, str]]:
    return [(tok.type.name, tok.text) for tok in tokenize(src)[:-1]]


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("", []),
        ("  \t\n ", []),
        ("a.b", [("IDENT", "a"), ("DOT", "."), ("IDENT", "b")]),
        ("a.true", [("IDENT", "a"), ("DOT", "."), ("IDENT", "true")]),
        ("true", [("LITERAL", "true")]),
        ("True", [("IDENT", "True")]),
        ("a[*]", [("IDENT", "a"), ("LBRACKET", "["), ("STAR", "*"), ("RBRACKET", "]")]),
        ("a.*.b", [("IDENT", "a"), ("DOT", "."), ("STAR", "*"), ("DOT", "."), ("IDENT", "b")]),
        ("!a != b", [("NOT", "!"), ("IDENT", "a"), ("NE", "!="), ("IDENT", "b")]),
        (
            "a<=b>=c<d>e==f",
            [
                ("IDENT", "a"),
                ("LE", "<="),
                ("IDENT", "b"),
                ("GE", ">="),
                ("IDENT", "c"),
                ("LT", "<"),
                ("IDENT", "d"),
                ("GT", ">"),
                ("IDENT", "e"),
                ("EQ", "=="),
                ("IDENT", "f"),
            ],
        ),
        ("a&&b||c", [("IDENT", "a"), ("AND", "&&"), ("IDENT", "b"), ("OR", "||"), ("IDENT", "c")]),
        (
            "f(1, 'x')",
            [
                ("IDENT", "f"),
                ("LPAREN", "("),
                ("LITERAL", "1"),
                ("COMMA", ","),
                ("LITERAL", "'x'"),
                ("RPAREN", ")"),
            ],
        ),
        ("(x).y", [("LPAREN", "("), ("IDENT", "x"), ("RPAREN", ")"), ("DOT", "."), ("IDENT", "y")]),
        ("'a'.b", [("LITERAL", "'a'"), ("DOT", "."), ("IDENT", "b")]),
        ("[.5]", [("LBRACKET", "["), ("LITERAL", ".5"), ("RBRACKET", "]")]),
        ("1 == .5", [("LITERAL", "1"), ("EQ", "=="), ("LITERAL", ".5")]),
        ("a-b_c", [("IDENT", "a-b_c")]),
        ("=2 x", [("UNEXPECTED", "=2"), ("IDENT", "x")]),
        ("&", [("UNEXPECTED", "&")]),
        ("b@r", [("UNEXPECTED", "b@r")]),
        ("'open", [("UNEXPECTED", "'open")]),
        ("1-2", [("UNEXPECTED", "1-2")]),
        ("-Inf", [("UNEXPECTED", "-Inf")]),
        ("..x/y.z", [("UNEXPECTED", "..x/y.z")]),
        ("😊 x", [("UNEXPECTED", "😊"), ("IDENT", "x")]),
        ("a\u00a0b", [("IDENT", "a"), ("IDENT", "b")]),
    ],
)
def test_tokens(src: str, expected: list[tuple[str, str]]) -> None:
    assert shape(src) == expected


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("1", 1.0),
        ("-2.5", -2.5),
        ("+1", 1.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("1.2e+2", 120.0),
        ("1E-1", 0.1),
        ("0xfF", 255.0),
        ("0o17", 15.0),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("'it''s'", "it's"),
        ("''", ""),
        ("'}}'", "}}"),
        ("null", None),
        ("false", False),
    ],
)
def test_literal_values(src: str, value: object) -> None:
    (token, eof) = tokenize(src)
    assert token.type is T.LITERAL
    assert token.value == value and type(token.value) is type(value)
    assert eof.type is T.EOF and eof.pos == len(src)


def test_nan_literal() -> None:
    value = tokenize("NaN")[0].value
    assert isinstance(value, float) and math.isnan(value)


def test_offsets() -> None:
    assert [tok.pos for tok in tokenize(" a  == 'b'")] == [1, 4, 7, 10]


@pytest.mark.parametrize("src", ["0x", "0X1F", "0b11", "-0xFF", "0xFZ", "1e", "1_000", "+", "."])
def test_malformed_numbers_are_unexpected(src: str) -> None:
    assert tokenize(src)[0].type is T.UNEXPECTED
