"""The API against its own OpenAPI description (``/openapi.json`` of a live server),
with schemathesis generating requests for every operation: no answer is a 5xx, every
status code, content type and body is one the description declares.

GETs (and the cancel POST, harmless on kept runs) are called with a write token;
submitting and rerunning with a read token (their 403 checked against the schema):
generated submissions would boot VMs. Examples per operation are bounded so that the
whole module takes well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.live import ApiServer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip
EXAMPLES = 25
SUBMITTING = {("POST", "/api/v1/runs"), ("POST", "/api/v1/runs/{run_id}/rerun")}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(Path(tmp_path_factory.mktemp("schema")))
    for n in range(3):
        server.keep_exec(["echo", str(n)], "success" if n else "failure", lines=3)
    try:
        yield server
    finally:
        server.stop()


def test_every_operation_matches_its_description(srv: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for op in operations:
        token = srv.read if (op.method.upper(), op.path) in SUBMITTING else srv.write
        _exercise(srv.url, op, {"Authorization": f"Bearer {token}"})


def _exercise(url: str, op: Any, headers: dict[str, str]) -> None:
    """Call ``op`` with up to EXAMPLES generated requests, checking every answer."""

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    call()
