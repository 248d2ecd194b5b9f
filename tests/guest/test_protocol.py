"""The wire protocol: the codec, GuestChannel against fake peers, the agent against raw frames."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest

from vmrunner.errors import ChannelError, ProtocolError
from vmrunner.guest import agent, protocol
from vmrunner.guest.channel import GuestChannel
from vmrunner.guest.protocol import (
    LENGTH,
    Data,
    End,
    Exited,
    Failed,
    GuestOpError,
    Hello,
    Ok,
    Output,
    Pong,
    decode_payload,
    encode_frame,
)

from .harness import listening_socket, run, start_agent, stop

pytestmark = pytest.mark.timeout(60)  # each test takes well under a second or two

HELLO = {"op": "hello", "proto": 1, "agent": "t", "uptime": 1.5, "kernel": "k", "pid": 7}


def raw(header: bytes, body: bytes = b"") -> bytes:
    """A frame around an arbitrary header line (which may be malformed)."""
    return LENGTH.pack(len(header) + len(body)) + header + body


def test_agent_and_host_agree_on_the_constants() -> None:
    assert agent.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert agent.MAX_HEADER == protocol.MAX_HEADER
    assert agent.MAX_BODY == protocol.MAX_BODY


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        (HELLO, b"", Hello(1, "t", 1.5, "k", 7)),
        ({"op": "pong", "id": 3}, b"", Pong(3)),
        ({"op": "ok", "id": 3}, b"", Ok(3)),
        ({"op": "error", "id": 3, "message": "no"}, b"", Failed(3, "no")),
        ({"op": "stdout", "id": 3}, b"\x00\xff\n", Output(3, "stdout", b"\x00\xff\n")),
        ({"op": "stderr", "id": 3}, b"e", Output(3, "stderr", b"e")),
        (
            {"op": "exit", "id": 3, "exit_code": 0, "signal": None, "timed_out": False}
            | {"duration_s": 0.25, "error": None},
            b"",
            Exited(3, 0, None, False, 0.25, None),
        ),
        (
            {"op": "exit", "id": 3, "signal": 9, "timed_out": True, "duration_s": 2},
            b"",
            Exited(3, None, 9, True, 2.0, None),
        ),
        ({"op": "data", "id": 3}, b"tar", Data(3, b"tar")),
        ({"op": "end", "id": 3}, b"", End(3)),
    ],
)
def test_decode_gives_typed_messages(
    header: dict[str, object], body: bytes, expected: object
) -> None:
    frame = encode_frame(header, body)
    assert LENGTH.unpack(frame[:4])[0] == len(frame) - 4
    assert decode_payload(frame[4:]) == expected


def test_encode_refuses_oversized_frames() -> None:
    with pytest.raises(ValueError, match="body"):
        encode_frame({"op": "seed", "id": 1}, b"x" * (protocol.MAX_BODY + 1))
    with pytest.raises(ValueError, match="header"):
        encode_frame({"op": "exec", "id": 1, "script": "x" * protocol.MAX_HEADER})


# --- GuestChannel against a fake peer over a socket pair ---------------------------------

GOOD_HELLO = encode_frame(HELLO)

# (bytes the fake agent sends, whether a hello goes first, what the error must say)
MALFORMED = [
    (b"\xff\xff\xff\xff", True, "frame length 4294967295 exceeds the limit"),
    (LENGTH.pack(2) + b"{}", False, "frame length 2 is too short"),
    (raw(b"x" * 20), False, "no newline in its first 20 bytes"),
    (raw(b"{nope, not json}\n"), False, "not valid JSON"),
    (raw(b'{"op":"pong","id":1,"x":"\xff"}\n'), True, "not valid JSON"),
    (raw(b"[1, 2, 3]\n"), False, "must be a JSON object, not list"),
    (raw(b'{"id": 1}\n'), True, "no string 'op' field"),
    (raw(b'{"op": "bogus", "id": 1}\n'), True, "unknown op 'bogus'"),
    (
        encode_frame(HELLO | {"proto": "1"}),
        False,
        "'hello' frame: field 'proto' must be an integer",
    ),
    (encode_frame(HELLO | {"proto": 99}), False, "the agent speaks protocol 99"),
    (encode_frame({"op": "pong", "id": 1}), False, "pong frame before the agent's hello"),
    (encode_frame({"op": "pong", "id": 1}, b"xx"), True, "'pong' frame carries an unexpected body"),
    (encode_frame({"op": "exit", "id": 1}), True, "'exit' frame: field 'timed_out' must be"),
    (encode_frame({"op": "ok", "id": 0}), True, "field 'id' must be a positive integer, got 0"),
    (encode_frame({"op": "ok", "id": True}), True, "field 'id' must be an integer, got True"),
    (encode_frame({"op": "stdout"}, b"x"), True, "field 'id' must be an integer, got nothing"),
]


async def fake_agent() -> tuple[GuestChannel, asyncio.StreamWriter, asyncio.StreamReader]:
    """A GuestChannel whose other end the test writes by hand."""
    host_sock, peer_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = await asyncio.open_unix_connection(sock=host_sock)
    peer_reader, peer_writer = await asyncio.open_unix_connection(sock=peer_sock)
    return GuestChannel(reader, writer), peer_writer, peer_reader


async def read_request(peer: asyncio.StreamReader) -> tuple[dict[str, object], bytes]:
    length = LENGTH.unpack(await peer.readexactly(4))[0]
    header, _, body = (await peer.readexactly(length)).partition(b"\n")
    return json.loads(header), body


@pytest.mark.parametrize(("garbage", "hello_first", "message"), MALFORMED)
def test_malformed_frames_raise_protocol_error(
    garbage: bytes, hello_first: bool, message: str
) -> None:
    async def main() -> None:
        chan, peer, peer_in = await fake_agent()
        async with chan:
            if hello_first:
                peer.write(GOOD_HELLO)
                await chan.wait_hello(5)
                pending = asyncio.create_task(chan.ping(5))
                await read_request(peer_in)
            peer.write(garbage)
            with pytest.raises(ProtocolError, match=message):
                await (pending if hello_first else chan.wait_hello(5))
            with pytest.raises(ProtocolError, match=message):  # and later calls fail fast
                await chan.ping(5)
            peer.close()

    run(main)


def test_eof_fails_pending_requests_with_channel_error() -> None:
    async def main() -> None:
        chan, peer, peer_in = await fake_agent()
        async with chan:
            peer.write(GOOD_HELLO)
            await chan.wait_hello(5)
            pings = [asyncio.create_task(chan.ping(30)) for _ in range(3)]
            for _ in pings:
                await read_request(peer_in)
            peer.close()
            for ping in pings:
                with pytest.raises(ChannelError, match="closed by the guest") as info:
                    await ping
                assert not isinstance(info.value, ProtocolError)

    run(main)


def test_eof_inside_a_frame_is_a_channel_error() -> None:
    async def main() -> None:
        chan, peer, _ = await fake_agent()
        async with chan:
            peer.write(GOOD_HELLO[:10])
            peer.close()
            with pytest.raises(ChannelError, match="closed after 6 bytes of a frame"):
                await chan.wait_hello(5)

    run(main)


def test_no_request_before_hello_and_hello_times_out() -> None:
    async def main() -> None:
        chan, peer, _ = await fake_agent()
        async with chan:
            with pytest.raises(ChannelError, match="before the agent's hello"):
                await chan.ping(1)
            with pytest.raises(ChannelError, match=r"hello timed out after 0\.05 s"):
                await chan.wait_hello(0.05)
            peer.close()

    run(main)


def test_unanswered_request_times_out_and_late_reply_is_dropped() -> None:
    async def main() -> None:
        chan, peer, peer_in = await fake_agent()
        async with chan:
            peer.write(GOOD_HELLO)
            await chan.wait_hello(5)
            with pytest.raises(ChannelError, match=r"ping timed out after 0\.05 s"):
                await chan.ping(0.05)
            header, _ = await read_request(peer_in)
            peer.write(encode_frame({"op": "pong", "id": header["id"]}))  # too late: dropped
            task = asyncio.create_task(chan.ping(5))
            header, _ = await read_request(peer_in)
            peer.write(encode_frame({"op": "pong", "id": header["id"]}))
            assert await task >= 0
            peer.close()

    run(main)


def test_settime_seed_and_errors_from_the_agent() -> None:
    async def main() -> None:
        chan, peer, peer_in = await fake_agent()
        async with chan:
            peer.write(GOOD_HELLO)
            await chan.wait_hello(5)
            task = asyncio.create_task(chan.settime(1700000000.25, 5))
            header, _ = await read_request(peer_in)
            assert header == {"op": "settime", "id": header["id"], "epoch": 1700000000.25}
            peer.write(encode_frame({"op": "ok", "id": header["id"]}))
            await task
            task = asyncio.create_task(chan.seed(b"\x01\x02", 5))
            header, body = await read_request(peer_in)
            assert (header["op"], body) == ("seed", b"\x01\x02")
            peer.write(encode_frame({"op": "error", "id": header["id"], "message": "EPERM"}))
            with pytest.raises(GuestOpError, match="seed failed: EPERM"):
                await task
            peer.close()

    run(main)


def test_second_hello_fails_requests_in_flight() -> None:
    async def main() -> None:
        chan, peer, peer_in = await fake_agent()
        async with chan:
            peer.write(GOOD_HELLO)
            await chan.wait_hello(5)
            task = asyncio.create_task(chan.ping(5))
            await read_request(peer_in)
            peer.write(encode_frame(HELLO | {"pid": 8}))
            with pytest.raises(ChannelError, match="agent restarted"):
                await task
            assert chan.hello is not None and chan.hello.pid == 8
            peer.close()

    run(main)


# --- the agent against raw frames ----------------------------------------------------------


def exchange_with_agent(frames: list[bytes], replies: int) -> tuple[list[object], int, bytes]:
    """Send raw frames to a real agent; return its decoded replies, exit status, stderr."""

    async def main() -> tuple[list[object], int, bytes]:
        with listening_socket() as (listener, path):
            proc = start_agent(path)
            listener.setblocking(False)
            conn, _ = await asyncio.get_running_loop().sock_accept(listener)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            received: list[object] = []
            for _ in range(replies + 1):  # the hello, then the replies
                length = LENGTH.unpack(await reader.readexactly(4))[0]
                received.append(decode_payload(await reader.readexactly(length)))
                if len(received) == 1:
                    writer.write(b"".join(frames))
            writer.close()
            status = await asyncio.to_thread(proc.wait, 10)
            assert proc.stderr is not None
            err = proc.stderr.read()
            stop(proc)
            return received[1:], status, err

    return run(main)


def test_agent_answers_bad_requests_with_errors() -> None:
    frames = [
        encode_frame({"op": "frobnicate", "id": 1}),
        encode_frame({"op": "exec", "id": 2, "argv": ["true"], "script": "true"}),
        encode_frame({"op": "exec", "id": 3, "argv": "true"}),
        encode_frame({"op": "ping", "id": 4}),
    ]
    replies, status, _ = exchange_with_agent(frames, replies=4)
    assert replies == [
        Failed(1, "unknown op 'frobnicate'"),
        Failed(2, "exec: exactly one of 'argv' and 'script' is required"),
        Failed(3, "exec: field 'argv' must be a list of strings"),
        Pong(4),
    ]
    assert status == 0


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        (b"\x7f\xff\xff\xff", b"frame length 2147483647 exceeds"),
        (raw(b"not json\n"), b"frame header is not JSON"),
        (encode_frame({"op": "ping"}), b"'ping' frame without a positive integer 'id'"),
    ],
)
def test_agent_gives_up_on_a_broken_stream(garbage: bytes, message: bytes) -> None:
    _, status, err = exchange_with_agent([garbage], replies=0)
    assert status == 2
    assert message in err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("duration_s", "NaN", "NaN: numbers must be finite"),
        ("duration_s", "Infinity", "Infinity: numbers must be finite"),
        ("duration_s", "-Infinity", "-Infinity: numbers must be finite"),
        ("duration_s", "1e999", "must be a finite number"),
        ("exit_code", str(1 << 63), "an integer of at most 63 bits"),
    ],
)
def test_non_finite_or_huge_numbers_are_rejected(field: str, value: str, message: str) -> None:
    fields = {"exit_code": "0", "duration_s": "1.5", field: value}
    header = (
        '{"op":"exit","id":1,"signal":null,"timed_out":false,'
        f'"exit_code":{fields["exit_code"]},"duration_s":{fields["duration_s"]}}}\n'
    )
    with pytest.raises(ProtocolError, match=re.escape(message)):
        decode_payload(header.encode())


def test_a_request_queue_pauses_the_reader_past_its_high_water() -> None:
    from vmrunner.guest.channel import HIGH_WATER, _Queue
    from vmrunner.guest.protocol import Output

    async def scenario() -> list[bool]:
        queue = _Queue()
        seen = []
        chunk = Output(1, "stdout", b"x" * (1 << 20))
        for _ in range(HIGH_WATER >> 20):
            queue.put_nowait(chunk)
        seen.append(queue.room.is_set())  # exactly at the mark: still room
        queue.put_nowait(chunk)
        seen.append(queue.room.is_set())  # past it: the reader waits
        await queue.get()
        seen.append(queue.room.is_set())  # drained below: it goes on
        return seen

    assert asyncio.run(scenario()) == [True, False, True]
