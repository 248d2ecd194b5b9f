"""``to_dict`` for the frozen result dataclasses: plain JSON types, recursively."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses to dicts, tuples to lists, datetimes to
    ISO 8601 strings, floats rounded to 6 places and NaN to ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [jsonable(v) for v in value]
    return value


class JsonMixin:
    """Gives a dataclass a ``to_dict()`` returning JSON-ready data."""

    def to_dict(self) -> dict[str, Any]:
        """This result as a dict of plain JSON types (for ``--json``, HTTP and MCP)."""
        data = jsonable(self)
        assert isinstance(data, dict)
        return data
