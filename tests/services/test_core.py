"""The run life cycle of the service layer, with real stores and real processes: kept
from acceptance, cancelled from another process, Ctrl-C, harness errors, and runs whose
process was killed marked interrupted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vmrunner.config import Settings, load_settings
from vmrunner.errors import ImageError, RunNotFoundError
from vmrunner.results import validate_result
from vmrunner.results.exec import ExecDocument
from vmrunner.services.core import RunHandle, Services


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Settings:
    env = {**os.environ, "VMRUNNER_HOME": str(tmp_path / "state"), "VMRUNNER_DATABASE_URL": db_url}
    return load_settings(env=env)


def _doc(run_id: str, status: str, message: str = "") -> dict[str, Any]:
    errors = [{"kind": "cancelled" if status == "cancelled" else "harness", "message": message}]
    return ExecDocument(run_id, status, 1.0, 2.0, ["sleep", "9"], "debian", exit_status=125,
                        errors=errors if message else []).to_dict()  # fmt: skip


def test_a_run_is_kept_with_its_document_and_result_file(cfg: Settings) -> None:
    with Services(cfg) as services:
        handle = services.accept("exec", {"argv": ["true"]}, title="true")
        assert services.get(handle.id).status == "queued"

        async def body(h: RunHandle) -> dict[str, Any]:
            assert services.get(h.id).status == "running"
            return _doc(h.id, "success")

        doc = asyncio.run(services.execute(handle, body, lambda s, m: _doc(handle.id, s, m)))
        rec = services.get(handle.id)
    assert rec.status == "success" and rec.document == doc and validate_result(doc) == []
    assert json.loads((handle.dir / "result.json").read_text()) == doc
    assert rec.logs["output"] == str(handle.dir / "output.log")


def test_cancel_from_another_services_object_ends_the_run_cancelled(cfg: Settings) -> None:
    with Services(cfg) as services, Services(cfg) as other:
        handle = services.accept("exec", {}, title="sleep")
        cleaned: list[str] = []

        async def body(h: RunHandle) -> dict[str, Any]:
            try:
                await asyncio.sleep(300)
            finally:
                cleaned.append("vm gone")
            raise AssertionError("not reached")

        async def main() -> dict[str, Any]:
            run = asyncio.ensure_future(
                services.execute(handle, body, lambda s, m: _doc(handle.id, s, m))
            )
            while services.get(handle.id).status != "running":
                await asyncio.sleep(0.05)
            await asyncio.to_thread(other.cancel, handle.id)
            return await asyncio.wait_for(run, 30)

        doc = asyncio.run(main())
        rec = other.get(handle.id)
    assert cleaned == ["vm gone"]
    assert doc["status"] == rec.status == "cancelled"
    assert "cancelled on request" in doc["errors"][0]["message"]


def test_ctrl_c_keeps_the_run_cancelled_and_propagates(cfg: Settings) -> None:
    with Services(cfg) as services:
        handle = services.accept("exec", {}, title="sleep")

        async def body(h: RunHandle) -> dict[str, Any]:
            await asyncio.sleep(300)
            return {}

        async def main() -> None:
            run = asyncio.ensure_future(
                services.execute(handle, body, lambda s, m: _doc(handle.id, s, m))
            )
            await asyncio.sleep(0.3)
            run.cancel()
            await run

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main())
        rec = services.get(handle.id)
    assert rec.status == "cancelled" and "Ctrl-C" in rec.document["errors"][0]["message"]  # type: ignore[index]


def test_a_harness_error_is_kept_as_error_and_raised(cfg: Settings) -> None:
    with Services(cfg) as services:
        handle = services.accept("exec", {}, title="x")

        async def body(h: RunHandle) -> dict[str, Any]:
            raise ImageError("the image is corrupt")

        with pytest.raises(ImageError):
            asyncio.run(services.execute(handle, body, lambda s, m: _doc(handle.id, s, m)))
        rec = services.get(handle.id)
    assert rec.status == "error"
    assert rec.document["errors"] == [{"kind": "harness", "message": "the image is corrupt"}]  # type: ignore[index]


ACCEPT_AND_HANG = textwrap.dedent(
    """
    import os, sys, time
    from vmrunner.config import load_settings
    from vmrunner.services.core import Services
    services = Services(load_settings())
    handle = services.accept(sys.argv[1], {"argv": ["sleep", "1"], "config": "r.yml",
                                          "flavor": "debian"}, title="doomed")
    services.runs.start(handle.id)
    print(handle.id, flush=True)
    time.sleep(300)
    """
)


@pytest.mark.parametrize("kind", ["exec", "workflow", "systest"])
def test_a_run_whose_process_was_killed_is_marked_interrupted(cfg: Settings, kind: str) -> None:
    env = {**os.environ, "VMRUNNER_HOME": str(cfg.state_dir), "VMRUNNER_DATABASE_URL": cfg.db_url}
    proc = subprocess.Popen([sys.executable, "-c", ACCEPT_AND_HANG, kind], env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    with Services(cfg) as services:
        assert services.reap_interrupted() == []  # alive: left alone
        assert services.get(run_id).status == "running"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert services.get(run_id).status == "running"  # nobody looked yet
        assert services.reap_interrupted() == [run_id]
        rec = services.get(run_id)
    assert rec.status == "error" and rec.document is not None
    assert validate_result(rec.document) == []
    assert rec.document["kind"] == kind and "interrupted" in rec.document["errors"][0]["message"]


def test_unknown_runs_are_bad_input(cfg: Settings) -> None:
    with Services(cfg) as services:
        for call in (services.get, services.cancel, services.log_files):
            with pytest.raises(RunNotFoundError, match="no run 'x42'"):
                call("x42")
