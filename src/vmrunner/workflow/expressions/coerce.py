"""Values and GitHub's coercion rules.

Values are JSON-ish Python objects: ``None``, ``bool``, ``int``/``float`` (a number; ``bool``
is never a number), ``str``, a sequence (``list``/``tuple``: an array) or a ``Mapping`` (an
object). Numbers behave as IEEE doubles, as on GitHub, whatever Python type carries them.

The rules are those of GitHub's expression engine (actions/runner), checked against
GitHub's own conformance vectors:

* truthiness: ``null``, ``false``, ``0``, ``-0``, ``NaN`` and ``''`` are falsy, the rest
  (including every array and object) truthy;
* to number: ``null`` 0, booleans 0/1, strings parsed after trimming whitespace (``''`` is
  0; decimal, ``0x`` hex, ``0o`` octal, ``Infinity``; anything else ``NaN``), arrays and
  objects ``NaN``;
* to string: ``null`` ``''``, ``true``/``false``, numbers with 15 significant digits
  (``1``, ``0.5``, ``1E+15``, ``NaN``, ``Infinity``), arrays ``Array``, objects ``Object``;
* ``==`` is JavaScript's loose equality without object coercion: different kinds meet as
  numbers, strings compare case-insensitively, arrays and objects only equal themselves;
* ``<``, ``<=``, ``>``, ``>=`` coerce the same way and are false whenever a ``NaN``, array
  or object is involved.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from .errors import ExpressionError

Kind = Literal["Null", "Boolean", "Number", "String", "Array", "Object"]

_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_OCTAL = re.compile(r"0o[0-7]+\Z")
_EXTRA_SPACE = frozenset("\t\n\v\f\r\x85")


def kind_of(value: Any) -> Kind:
    """The expression kind of a Python value; raises ExpressionError for other types."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, Mapping):
        return "Object"
    if isinstance(value, list | tuple):
        return "Array"
    raise ExpressionError(f"unsupported value of type {type(value).__name__} in an expression")


def is_primitive(value: Any) -> bool:
    """True for null, booleans, numbers and strings."""
    return kind_of(value) not in ("Array", "Object")


def is_space(char: str) -> bool:
    """Whitespace as .NET's ``Char.IsWhiteSpace`` (what GitHub trims and skips)."""
    return char in _EXTRA_SPACE or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def trim(text: str) -> str:
    """``text`` without leading and trailing :func:`is_space` characters."""
    start, end = 0, len(text)
    while start < end and is_space(text[start]):
        start += 1
    while end > start and is_space(text[end - 1]):
        end -= 1
    return text[start:end]


def _int_to_float(number: int) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def parse_number(text: str) -> float:
    """A string as GitHub reads it as a number; ``NaN`` when it is not one."""
    text = trim(text)
    if not text:
        return 0.0
    if _DECIMAL.match(text):
        return float(text.replace("Infinity", "inf"))
    if _HEX.match(text):
        return _int_to_float(int(text[2:], 16))
    if _OCTAL.match(text):
        return _int_to_float(int(text[2:], 8))
    return math.nan


def number_value(value: int | float) -> float:
    """A Python number as the double GitHub would hold."""
    return _int_to_float(value) if isinstance(value, int) else value


def to_number(value: Any) -> float:
    """Coerce any value to a number (see the module docstring)."""
    kind = kind_of(value)
    if kind == "Null":
        return 0.0
    if kind == "Boolean":
        return 1.0 if value else 0.0
    if kind == "Number":
        return number_value(value)
    if kind == "String":
        return parse_number(value)
    return math.nan


def to_bool(value: Any) -> bool:
    """Truthiness (see the module docstring)."""
    kind = kind_of(value)
    if kind == "Null":
        return False
    if kind == "Boolean":
        return bool(value)
    if kind == "Number":
        number = number_value(value)
        return not (number == 0 or math.isnan(number))
    if kind == "String":
        return bool(value)
    return True


def _format_digits(negative: bool, digits: str, exponent: int) -> str:
    """Render ``0.digits * 10**(exponent+1)`` as .NET's general format does: fixed point
    for exponents in [-5, 15), else ``d.dddE+XX``. ``digits`` has no trailing zeros."""
    sign = "-" if negative else ""
    if -5 < exponent < 15:
        if exponent < 0:
            return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
        whole, frac = digits[: exponent + 1], digits[exponent + 1 :]
        whole += "0" * (exponent + 1 - len(whole))
        return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}E{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _special(number: float) -> str | None:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    return None


def _render(number: float, text: str) -> str:
    """Render ``text`` (a decimal spelling of ``abs(number)``) in .NET's general format."""
    _, digit_tuple, exp = Decimal(text).as_tuple()
    digits = "".join(map(str, digit_tuple))
    exponent = len(digits) + int(exp) - 1
    return _format_digits(number < 0, digits.rstrip("0"), exponent)


def format_number(number: int | float) -> str:
    """A number as GitHub prints it: 15 significant digits (.NET ``G15``), ``-0`` as 0."""
    number = number_value(number)
    special = _special(number)
    if special is not None:
        return special
    return _render(number, f"{abs(number):.14e}")


def format_json_number(number: int | float) -> str:
    """A number as ``toJSON`` writes it: integers in full, others round-trippable."""
    number = number_value(number)
    special = _special(number)
    if special is not None:
        return special
    if number.is_integer() and abs(number) < 2.0**63:
        return str(int(number))
    return _render(number, repr(abs(number)))


def to_string(value: Any) -> str:
    """Coerce any value to a string (see the module docstring)."""
    kind = kind_of(value)
    if kind == "Null":
        return ""
    if kind == "Boolean":
        return "true" if value else "false"
    if kind == "Number":
        return format_number(value)
    if kind == "String":
        return str(value)
    return kind


def fold(text: str) -> str:
    """Case-fold like .NET ``OrdinalIgnoreCase``: each character to its simple upper case,
    except that the dotless ``ı`` stays itself. Length-preserving."""
    if text.isascii():
        return text.upper()
    out = []
    for char in text:
        upper = char.upper()
        out.append(upper if len(upper) == 1 and char != "\u0131" else char)
    return "".join(out)


def _utf16(text: str) -> bytes:
    return fold(text).encode("utf-16-be", "surrogatepass")


def compare_strings(left: str, right: str) -> int:
    """-1, 0 or 1: ordinal, case-insensitive comparison by UTF-16 code units."""
    a, b = _utf16(left), _utf16(right)
    return (a > b) - (a < b)


def _coerce(left: Any, right: Any) -> tuple[Kind, Any, Kind, Any]:
    """Bring two values to a common kind where GitHub would (loose equality rules)."""
    lkind, rkind = kind_of(left), kind_of(right)
    while lkind != rkind:
        if lkind == "Number" and rkind == "String":
            right, rkind = to_number(right), "Number"
        elif (lkind == "String" and rkind == "Number") or lkind in ("Boolean", "Null"):
            left, lkind = to_number(left), "Number"
        elif rkind in ("Boolean", "Null"):
            right, rkind = to_number(right), "Number"
        else:
            break
    return lkind, left, rkind, right


def loose_equals(left: Any, right: Any) -> bool:
    """GitHub's ``==``."""
    lkind, left, rkind, right = _coerce(left, right)
    if lkind != rkind:
        return False
    if lkind == "Null":
        return True
    if lkind == "Number":
        return bool(number_value(left) == number_value(right))
    if lkind == "String":
        return compare_strings(left, right) == 0
    if lkind == "Boolean":
        return bool(left == right)
    return left is right


def _greater(left: Any, right: Any) -> bool:
    lkind, left, rkind, right = _coerce(left, right)
    if lkind != rkind:
        return False
    if lkind == "Number":
        a, b = number_value(left), number_value(right)
        return not (math.isnan(a) or math.isnan(b)) and a > b
    if lkind == "String":
        return compare_strings(left, right) > 0
    if lkind == "Boolean":
        return bool(left) and not right
    return False


def compare(op: str, left: Any, right: Any) -> bool:
    """GitHub's ``<``, ``<=``, ``>`` and ``>=``; ``a <= b`` is ``a == b or a < b``."""
    if op in ("<", "<="):
        left, right = right, left
    return _greater(left, right) or (op in ("<=", ">=") and loose_equals(left, right))


def as_sequence(value: Any) -> Sequence[Any] | None:
    """The value as an array, or None when it is not one."""
    return value if isinstance(value, list | tuple) else None
