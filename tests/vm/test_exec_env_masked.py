"""``exec --env`` values may be secrets: the learning store keeps them as ``***``, also where
they appear in the command line or the failing command's output."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import vmrunner

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

SECRET = "s3cr3t-Tok3n-4711"


def _learning_rows(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        rows = [
            repr(row)
            for t in tables
            if t.startswith("learn_")
            for row in conn.execute(f'select * from "{t}"')  # table names come from the schema
        ]
    finally:
        conn.close()
    return "\n".join(rows)


def test_exec_env_values_are_masked_in_the_learning_store(
    vm_env: dict[str, str], state_dir: Path
) -> None:
    script = f'echo "value is $MY_SETTING" >&2; echo {SECRET}; exit 3'
    proc = vmrunner(
        ["exec", "--accel", "tcg", "--quiet", "--env", f"MY_SETTING={SECRET}", "--",
         "sh", "-c", script],
        vm_env,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert SECRET.encode() in proc.stdout  # the user's own terminal shows the output
    rows = _learning_rows(state_dir / "vmrunner.db")
    assert "learn_" not in rows and "value is" in rows  # the failing output was learned
    assert SECRET not in rows
    assert '"MY_SETTING": "***"' in rows
