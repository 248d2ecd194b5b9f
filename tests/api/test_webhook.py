"""Webhook intake: the signature and envelope rules (table and property tests), then a
real ``vmrunner serve`` (uvicorn on 127.0.0.1) taking good, forged, oversized,
malformed, repeated and unknown deliveries, with the store checked after each."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.github.webhook import WebhookError, parse, sign, verify
from vmrunner.store.deliveries import DeliveryStore
from vmrunner.store.engine import open_store

SECRET = b"It's a Secret to Everybody"
# Real payloads: npm @octokit/webhooks-examples (installed by scripts/bootstrap.sh).
EXAMPLES = (Path(__file__).resolve().parents[1] / "node" / "node_modules" / "@octokit"
            / "webhooks-examples" / "api.github.com" / "index.json")  # fmt: skip


def examples(event: str) -> list[dict[str, Any]]:
    """GitHub's example payloads of ``event``."""
    found = [e["examples"] for e in json.loads(EXAMPLES.read_text()) if e["name"] == event]
    assert found and found[0], f"no {event} examples in {EXAMPLES}"
    return list(found[0])


PUSH = examples("push")[0]


def test_githubs_documented_example_signature_verifies() -> None:
    # docs.github.com, "Validating webhook deliveries": secret and payload with the known digest
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(SECRET, b"Hello, World!") == expected
    verify(SECRET, b"Hello, World!", expected)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("sha1=" + "0" * 40, "unsupported signature algorithm 'sha1'"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha256=", "does not match"),
        ("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "unsupported"),
    ],
)
def test_bad_signatures_are_401(header: str | None, why: str) -> None:
    with pytest.raises(WebhookError, match=why) as info:
        verify(SECRET, b"Hello, World!", header)
    assert info.value.status == 401


@given(st.binary(max_size=512), st.binary(min_size=1, max_size=64), st.integers(0, 511))
def test_any_changed_byte_breaks_the_signature(body: bytes, secret: bytes, at: int) -> None:
    header = sign(secret, body)
    verify(secret, body, header)
    if body:
        i = at % len(body)
        forged = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(WebhookError):
            verify(secret, forged, header)


@pytest.mark.parametrize(
    ("delivery", "event", "body", "why"),
    [
        (None, "push", b"{}", "X-GitHub-Delivery"),
        ("d1", None, b"{}", "X-GitHub-Event"),
        ("x" * 65, "push", b"{}", "X-GitHub-Delivery"),
        ("d1", "push", b"{not json", "not JSON"),
        ("d1", "push", b"\xff\xfe", "not JSON"),
        ("d1", "push", b"[1, 2]", "not a JSON object"),
    ],
)
def test_bad_envelopes_are_400(
    delivery: str | None, event: str | None, body: bytes, why: str
) -> None:
    with pytest.raises(WebhookError, match=why) as info:
        parse(delivery, event, body)
    assert info.value.status == 400


@pytest.mark.parametrize("event", ["push", "pull_request", "workflow_dispatch", "ping", "star"])
def test_the_envelope_of_githubs_example_payloads(event: str) -> None:
    for n, payload in enumerate(examples(event)):
        env = parse(f"d{n}", event, json.dumps(payload).encode())
        repo = payload.get("repository")
        assert env.repo == (repo["full_name"] if repo else None)
        assert env.action == payload.get("action")
        assert env.known is (event != "star")


# ---- a real server -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, state: Path) -> None:
        self.state, self.port = state, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "VMRUNNER_HOME": str(state),
            "VMRUNNER_WEBHOOK_SECRET": SECRET.decode(),
            # the examples' repositories are fetched from here, where there are none
            "VMRUNNER_GITHUB_GIT_URL": f"file://{state}/no-git/{{owner}}/{{repo}}.git",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmrunner", "serve", "--port", str(self.port), "--workers", "0"],
            env=env, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the server never answered /healthz")

    def post(self, event: str, body: bytes, delivery: str, signature: str | None = "auto",
             **headers: str) -> httpx.Response:  # fmt: skip
        sent = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, **headers}
        if signature == "auto":
            sent["X-Hub-Signature-256"] = sign(SECRET, body)
        elif signature is not None:
            sent["X-Hub-Signature-256"] = signature
        return httpx.post(f"{self.url}/webhook", content=body, headers=sent, timeout=30)

    def deliveries(self) -> DeliveryStore:
        return DeliveryStore(open_store(f"sqlite:///{self.state / 'vmrunner.db'}"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "state")
    try:
        yield srv
    finally:
        srv.kill()


PROCESSED = ("received", "processing", "error")
"""A kept push whose repository cannot be fetched: waiting, being planned, or failed."""


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_signed_push_is_kept_before_the_202(server: Server) -> None:
    r = server.post("push", _json(PUSH), "d-push")
    assert r.status_code == 202 and r.json() == {"delivery": "d-push", "status": "received"}
    kept = server.deliveries().get("d-push")
    assert kept is not None and json.loads(kept.payload) == PUSH
    # kept, then taken by the scheduler, whose fetch finds no such repository here
    assert kept.status in PROCESSED, kept
    assert (kept.event, kept.repo, kept.copies) == ("push", PUSH["repository"]["full_name"], 1)


def test_a_delivery_replayed_ten_times_is_kept_once(server: Server) -> None:
    codes = [server.post("push", _json(PUSH), "d-again").status_code for _ in range(11)]
    assert codes == [202] + [200] * 10
    store = server.deliveries()
    assert store.count() == 1 and store.get("d-again").copies == 11  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("signature", "extra"),
    [
        (None, {}),
        ("sha256=" + "0" * 64, {}),
        (None, {"X-Hub-Signature": "sha1=" + "0" * 40}),
        ("sha1=" + "0" * 40, {}),
    ],
    ids=["missing", "forged", "sha1-header-only", "wrong-algorithm"],
)
def test_unsigned_or_forged_deliveries_are_401_and_not_kept(
    server: Server, signature: str | None, extra: dict[str, str]
) -> None:
    r = server.post("push", _json(PUSH), "d-forged", signature=signature, **extra)
    assert r.status_code == 401 and r.json()["error"]["kind"] == "webhook"
    assert server.deliveries().count() == 0


def test_oversized_malformed_and_unknown_deliveries(server: Server) -> None:
    big = b'{"x": "' + b"a" * (25 * 1024 * 1024) + b'"}'
    r = server.post("push", big, "d-big")
    assert r.status_code == 413 and "over" in r.json()["error"]["message"]
    r = server.post("push", b"{oops", "d-bad")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
    r = server.post("star", _json(examples("star")[0]), "d-star")
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = server.post("ping", _json(examples("ping")[0]), "d-ping")
    assert r.status_code == 200 and r.json()["status"] == "pong"
    store = server.deliveries()
    assert store.get("d-big") is None and store.get("d-bad") is None
    assert [d.id for d in store.with_status("ignored")] == ["d-star", "d-ping"]
    assert "Traceback" not in r.text


def test_a_delivery_acknowledged_before_kill_9_is_still_kept(server: Server) -> None:
    r = server.post("push", _json(PUSH), "d-crash")
    assert r.status_code == 202
    server.kill()
    kept = server.deliveries().get("d-crash")
    assert kept is not None and kept.status in PROCESSED
