"""The fake GitHub itself: it must refuse what GitHub would refuse, or the tests that
rely on its ``violations`` being empty prove nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import APP_ID, TOKEN, AppKey
from .fake import FakeGitHub
from .openapi import convert, spec

SHA = "e" * 40


def call(
    fake: FakeGitHub, method: str, path: str, body: Any = None, auth: str = f"token {TOKEN}"
) -> httpx.Response:
    return httpx.request(
        method, fake.url + path, json=body, headers={"authorization": auth}, timeout=10
    )


def app_jwt(private_pem: str, issuer: str = APP_ID) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": issuer,
        "iat": now - dt.timedelta(seconds=60),
        "exp": now + dt.timedelta(minutes=9),
    }
    return jwt.encode(claims, private_pem, algorithm="RS256")


BAD = [
    ("a state GitHub does not know", "POST", f"/repos/octo/r/statuses/{SHA}",
     {"state": "passed", "context": "c"}, "body state"),
    ("a status without a state", "POST", f"/repos/octo/r/statuses/{SHA}", {"context": "c"},
     "'state' is a required property"),
    ("a check run without head_sha", "POST", "/repos/octo/r/check-runs", {"name": "x"},
     "'head_sha' is a required property"),
    ("a completed update without conclusion", "PATCH", "/repos/octo/r/check-runs/5",
     {"status": "completed"}, "body"),
    ("a summary over 65,535 characters", "POST", "/repos/octo/r/check-runs",
     {"name": "x", "head_sha": SHA, "output": {"title": "t", "summary": "s" * 65536}}, "output/summary"),
    ("51 annotations in one request", "PATCH", "/repos/octo/r/check-runs/5",
     {"output": {"title": "t", "summary": "s", "annotations": [
         {"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"}] * 51}},
     "output/annotations"),
    ("a check run id that is not a number", "PATCH", "/repos/octo/r/check-runs/abc",
     {"status": "in_progress"}, "path check_run_id"),
    ("no body where one is required", "POST", f"/repos/octo/r/statuses/{SHA}", None,
     "the request body is required"),
    ("an undeclared query parameter", "GET", "/app/hook/deliveries?page_size=3", None,
     "query parameter 'page_size' is not declared"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "path", "body", "why"), BAD, ids=[b[0] for b in BAD])
def test_the_fake_refuses_invalid_requests(
    github_fake: FakeGitHub, name: str, method: str, path: str, body: Any, why: str
) -> None:
    answer = call(github_fake, method, path, body)
    assert answer.status_code == 422
    assert len(github_fake.violations) == 1 and why in github_fake.violations[0]
    github_fake.violations.clear()  # expected here; every other test must leave none


def test_the_fake_refuses_unknown_operations_and_bad_credentials(
    github_fake: FakeGitHub, github_app_key: AppKey
) -> None:
    assert call(github_fake, "POST", "/repos/octo/r/not-an-endpoint", {}).status_code == 404
    status = {"state": "success"}
    assert (
        call(
            github_fake, "POST", f"/repos/octo/r/statuses/{SHA}", status, auth="token nope"
        ).status_code
        == 401
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()  # fmt: skip
    assert (
        call(
            github_fake, "GET", "/app/hook/deliveries", auth=f"Bearer {app_jwt(forged)}"
        ).status_code
        == 401
    )
    wrong_app = app_jwt(github_app_key.private_pem, issuer="1")
    assert (
        call(github_fake, "GET", "/app/hook/deliveries", auth=f"Bearer {wrong_app}").status_code
        == 401
    )
    assert (
        call(github_fake, "GET", "/app/hook/deliveries", auth=f"token {TOKEN}").status_code == 401
    )
    assert len(github_fake.violations) == 5
    github_fake.violations.clear()
    good = app_jwt(github_app_key.private_pem)
    assert call(github_fake, "GET", "/app/hook/deliveries", auth=f"Bearer {good}").json() == []
    assert github_fake.statuses("octo/r", SHA) == []


def test_valid_requests_get_answers_that_fit_the_response_schemas(github_fake: FakeGitHub) -> None:
    made = call(github_fake, "POST", f"/repos/octo/r/statuses/{SHA}",
                {"state": "success", "context": "c", "target_url": None})  # fmt: skip
    assert made.status_code == 201 and made.json()["state"] == "success"
    run = call(
        github_fake, "POST", "/repos/octo/r/check-runs", {"name": "x", "head_sha": SHA}
    ).json()
    assert run["status"] == "queued" and run["head_sha"] == SHA
    updated = call(github_fake, "PATCH", f"/repos/octo/r/check-runs/{run['id']}",
                   {"conclusion": "success"}).json()  # fmt: skip
    assert (updated["status"], updated["conclusion"]) == ("completed", "success")
    assert github_fake.violations == []  # the fake's answers validated against GitHub's schemas


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"type": "string", "nullable": True}, None, True),
        ({"type": "string"}, None, False),
        ({"type": "string", "enum": ["a"], "nullable": True}, None, True),
        ({"allOf": [{"type": "object"}], "nullable": True}, None, True),
        ({"allOf": [{"type": "object"}], "nullable": True}, 3, False),
        ({"$ref": "#/components/schemas/simple-user"}, {"login": "x"}, False),
    ],
)
def test_openapi_conversion(schema: dict[str, Any], value: Any, valid: bool) -> None:
    assert (spec().errors(convert(schema), value) == []) is valid
