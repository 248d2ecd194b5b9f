"""Bearer tokens: the service (on SQLite and PostgreSQL) and ``vmrunner token``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import vmrunner
from vmrunner.config import load_settings
from vmrunner.errors import ConfigError, UserInputError
from vmrunner.services.core import Services
from vmrunner.services.tokens import (
    PREFIX,
    authenticate,
    create_token,
    digest,
    list_tokens,
    revoke_token,
)


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    env = {**os.environ, "VMRUNNER_HOME": str(tmp_path / "home"), "VMRUNNER_DATABASE_URL": db_url}
    with Services(load_settings(env=env)) as s:
        yield s


def test_create_authenticate_revoke(services: Services) -> None:
    reader, read_secret = create_token(services, "r", "read")
    writer, write_secret = create_token(services, None, "write")
    assert read_secret.startswith(PREFIX) and read_secret != write_secret
    assert writer.name == f"token-{writer.id}"
    got = authenticate(services, read_secret)
    assert got is not None and got.id == reader.id and got.last_used_at is not None
    assert (got.allows("read"), got.allows("write")) == (True, False)
    w = authenticate(services, write_secret)
    assert w is not None and w.allows("read") and w.allows("write")
    assert revoke_token(services, "r").revoked is True
    assert authenticate(services, read_secret) is None
    assert revoke_token(services, reader.id).revoked is True  # idempotent, by id too
    assert [(t.name, t.revoked) for t in list_tokens(services)] == [
        ("r", True),
        (writer.name, False),
    ]


def test_only_a_hash_is_kept(services: Services) -> None:
    _info, secret = create_token(services, "h", "read")
    with services.store.read() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM api_tokens")]
    assert not any(secret in str(v) for row in rows for v in row)
    assert any(digest(secret) in row for row in rows)


@pytest.mark.parametrize(
    ("name", "scope", "error"),
    [("x", "admin", ConfigError), ("", "read", ConfigError), ("y" * 256, "read", ConfigError)],
)
def test_bad_token_requests(services: Services, name: str, scope: str, error: type) -> None:
    with pytest.raises(error):
        create_token(services, name, scope)


def test_names_are_unique_and_unknown_tokens_cannot_be_revoked(services: Services) -> None:
    create_token(services, "dup", "read")
    with pytest.raises(ConfigError, match="exists already"):
        create_token(services, "dup", "write")
    with pytest.raises(UserInputError, match="no token"):
        revoke_token(services, "nope")


def test_nothing_but_the_secret_authenticates(tmp_path: Path) -> None:
    env = {**os.environ, "VMRUNNER_HOME": str(tmp_path / "home")}
    with Services(load_settings(env=env)) as services:
        info, secret = create_token(services, "only", "read")

        @settings(max_examples=60, deadline=None, database=None)
        @given(guess=st.one_of(st.text(max_size=80), st.text(max_size=60).map(lambda t: PREFIX + t),
                               st.just(secret[:-1]), st.just(secret + "x")))  # fmt: skip
        def check(guess: str) -> None:
            assert authenticate(services, guess) is None

        check()
        found = authenticate(services, secret)
        assert found is not None and found.id == info.id


def test_the_token_commands(vm_env: dict[str, str]) -> None:
    made = vmrunner(["token", "create", "--scope", "write", "--name", "ci", "--json"], vm_env)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["scope"] == "write" and created["token"].startswith(PREFIX)
    listed = json.loads(vmrunner(["token", "list", "--json"], vm_env).stdout)
    assert [(t["name"], t["revoked"]) for t in listed] == [("ci", False)]
    assert "token" not in listed[0]
    gone = vmrunner(["token", "revoke", created["id"], "--json"], vm_env)
    assert gone.returncode == 0 and json.loads(gone.stdout)["revoked"] is True
    bad = vmrunner(["token", "create", "--scope", "admin"], vm_env)
    assert bad.returncode == 125 and b"--scope must be read or write" in bad.stderr
    missing = vmrunner(["token", "revoke", "nope"], vm_env)
    assert missing.returncode == 125 and b"no token" in missing.stderr
