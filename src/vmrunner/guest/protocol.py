"""The host's codec for the guest channel: request frames out, typed messages in.

The wire format is specified once, in the docstring of :mod:`vmrunner.guest.agent`
(the agent must stay a single standard-library file, so it cannot import this).
This module is pure: no I/O, no clock. It encodes request frames and decodes the
agent's frames into frozen dataclasses, raising :class:`ProtocolError` with a
message that names what was wrong; no ``dict[str, Any]`` leaves it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from vmrunner.errors import ChannelError, ProtocolError

PROTOCOL_VERSION = 1
MAX_HEADER = 1 << 20
MAX_BODY = 1 << 20
MAX_FRAME = MAX_HEADER + MAX_BODY
MIN_FRAME = len(b'{"op":""}\n')
LENGTH = struct.Struct(">I")
MAX_INT = 1 << 63
"""Integers in a frame header lie strictly between -MAX_INT and MAX_INT."""


def _no_constant(name: str) -> object:
    raise ProtocolError(f"frame header holds {name}: numbers must be finite")


class GuestOpError(ChannelError):
    """The agent could not carry out a request (a transfer, settime, seed); says why.

    Not raised for commands that fail: those are :class:`ExecResult` values.
    """


@dataclass(frozen=True, slots=True)
class Hello:
    """The agent's greeting, sent unprompted when it has opened the channel."""

    proto: int
    agent_version: str
    uptime_s: float
    kernel: str
    pid: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a ping."""

    id: int


@dataclass(frozen=True, slots=True)
class Ok:
    """A request (put, settime, seed, shutdown) succeeded."""

    id: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A request was refused or failed in the guest."""

    id: int
    message: str


@dataclass(frozen=True, slots=True)
class Output:
    """A chunk of a running command's stdout or stderr."""

    id: int
    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class Exited:
    """How a command ended (see ``ExecResult`` for the meaning of the fields)."""

    id: int
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    error: str | None


@dataclass(frozen=True, slots=True)
class Data:
    """A chunk of a tar stream being copied out."""

    id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The end of a tar stream being copied out."""

    id: int


Reply: TypeAlias = Pong | Ok | Failed | Output | Exited | Data | End
Message: TypeAlias = Hello | Reply


def encode_frame(header: Mapping[str, object], body: bytes = b"") -> bytes:
    """One frame, ready to write. Raises ValueError when it would break the limits."""
    head = json.dumps(header, separators=(",", ":")).encode() + b"\n"
    if len(head) > MAX_HEADER:
        raise ValueError(f"frame header of {len(head)} bytes exceeds {MAX_HEADER}")
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    return LENGTH.pack(len(head) + len(body)) + head + body


def check_length(length: int) -> None:
    """Reject a frame length prefix before reading that many bytes."""
    if length > MAX_FRAME:
        raise ProtocolError(f"frame length {length} exceeds the limit of {MAX_FRAME} bytes")
    if length < MIN_FRAME:
        raise ProtocolError(f"frame length {length} is too short to hold a header")


def decode_payload(payload: bytes) -> Message:
    """Decode one frame (the bytes after its length prefix) into a typed message."""
    end = payload.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        limit = min(len(payload), MAX_HEADER)
        raise ProtocolError(f"frame header has no newline in its first {limit} bytes")
    body = payload[end + 1 :]
    if len(body) > MAX_BODY:
        raise ProtocolError(f"frame body of {len(body)} bytes exceeds the limit of {MAX_BODY}")
    try:
        raw = json.loads(payload[:end], parse_constant=_no_constant)
    except ValueError as exc:
        raise ProtocolError(f"frame header is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError(f"frame header must be a JSON object, not {type(raw).__name__}")
    op = raw.get("op")
    if not isinstance(op, str):
        raise ProtocolError(f"frame header has no string 'op' field: {_show(raw)}")
    parse = _PARSERS.get(op)
    if parse is None:
        raise ProtocolError(f"unknown op {op!r} from the agent")
    if body and op not in _BODY_OPS:
        raise ProtocolError(f"{op!r} frame carries an unexpected body of {len(body)} bytes")
    return parse(_Fields(op, raw), body)


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Fields:
    """Typed access to a header's fields; each getter raises a precise ProtocolError."""

    def __init__(self, op: str, raw: dict[str, object]) -> None:
        self.op = op
        self.raw = raw

    def _bad(self, key: str, want: str) -> ProtocolError:
        got = _show(self.raw[key]) if key in self.raw else "nothing"
        return ProtocolError(f"{self.op!r} frame: field {key!r} must be {want}, got {got}")

    def id(self) -> int:
        value = self.integer("id")
        if value <= 0:
            raise self._bad("id", "a positive integer")
        return value

    def integer(self, key: str) -> int:
        value = self.raw.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, "an integer")
        if not -MAX_INT < value < MAX_INT:
            raise self._bad(key, "an integer of at most 63 bits")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.raw.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self.raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)  # a huge int overflows to inf
            if math.isfinite(number):
                return number
        raise self._bad(key, "a finite number")

    def boolean(self, key: str) -> bool:
        value = self.raw.get(key)
        if isinstance(value, bool):
            return value
        raise self._bad(key, "a boolean")

    def string(self, key: str) -> str:
        value = self.raw.get(key)
        if isinstance(value, str):
            return value
        raise self._bad(key, "a string")

    def opt_string(self, key: str) -> str | None:
        return None if self.raw.get(key) is None else self.string(key)


def _hello(f: _Fields, body: bytes) -> Hello:
    return Hello(
        f.integer("proto"),
        f.string("agent"),
        f.number("uptime"),
        f.string("kernel"),
        f.integer("pid"),
    )


def _exited(f: _Fields, body: bytes) -> Exited:
    return Exited(
        f.id(),
        f.opt_integer("exit_code"),
        f.opt_integer("signal"),
        f.boolean("timed_out"),
        f.number("duration_s"),
        f.opt_string("error"),
    )


_BODY_OPS = frozenset({"stdout", "stderr", "data"})
_PARSERS: dict[str, Callable[[_Fields, bytes], Message]] = {
    "hello": _hello,
    "pong": lambda f, body: Pong(f.id()),
    "ok": lambda f, body: Ok(f.id()),
    "error": lambda f, body: Failed(f.id(), f.string("message")),
    "stdout": lambda f, body: Output(f.id(), "stdout", body),
    "stderr": lambda f, body: Output(f.id(), "stderr", body),
    "exit": _exited,
    "data": lambda f, body: Data(f.id(), body),
    "end": lambda f, body: End(f.id()),
}
