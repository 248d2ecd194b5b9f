"""The dashboard in a real browser: Playwright driving Debian's chromium against a real
``vmrunner serve --workers 0`` (its own VMRUNNER_HOME). Runs are kept and executed by
this test process through the service layer (``harness.DrivenRun``): the test appends
each line of a run's live log and finishes it when it chooses, so every check waits for
something the browser must show -- no timed assertions.

Screenshots go to ``$VMRUNNER_TEST_ARTIFACTS`` (else the test's tmp dir); their paths
are printed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.harness import DashboardServer, DrivenRun, workflow_doc
from vmrunner.learning import Observation
from vmrunner.services.learning import open_learning

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 60_000  # the longest any one awaited change may take on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    srv = DashboardServer(tmp_path_factory.mktemp("dashboard") / "state")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = os.environ.get("VMRUNNER_TEST_ARTIFACTS")
    d = Path(where) / "dashboard" if where else tmp_path / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def shot(page: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def logged_in(browser: Any, server: DashboardServer, token: str, path: str = "/") -> Any:
    """A fresh browser context logged in with ``token`` (through the login form), at ``path``."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.url}{path}")
    assert "/login" in page.url  # not logged in: sent to the login page
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(f"{server.url}{path}")
    return page


def test_the_runs_list_updates_when_a_run_finishes(
    server: DashboardServer, browser: Any, artifacts: Path
) -> None:
    run = DrivenRun(server.settings, "list updates")
    page = logged_in(browser, server, server.read)
    row = f'tr[data-run="{run.id}"]'
    page.wait_for_selector(f'{row}[data-status="running"]')
    page.evaluate("window.__noReload = true")
    shot(page, artifacts, "runs-list-running")
    run.finish("success")
    run.result()
    page.wait_for_selector(f'{row}[data-status="success"]')
    assert page.evaluate("window.__noReload") is True  # the same document: no reload
    assert page.text_content(f"{row} .status") == "success"
    shot(page, artifacts, "runs-list-finished")
    page.goto(f"{server.url}/?status=running")  # a filter: the finished run is not listed
    assert page.query_selector(row) is None
    page.context.close()


def test_the_run_page_shows_the_live_log_as_it_arrives(
    server: DashboardServer, browser: Any, artifacts: Path
) -> None:
    run = DrivenRun(server.settings, "live log")
    page = logged_in(browser, server, server.read, f"/runs/{run.id}")
    assert page.query_selector("#cancel") is None  # a read token: no cancel button
    hostile = "\x1b[31mred <script>window.__pwned = 1</script> & <img src=x>\x1b[0m plain"
    run.line(hostile)
    page.wait_for_selector("#log .line >> nth=0")
    first = page.query_selector("#log .line")
    assert first is not None
    assert first.text_content() == "red <script>window.__pwned = 1</script> & <img src=x> plain"
    assert first.query_selector("span.ansi-fg-1") is not None
    assert first.query_selector("script, img") is None
    for n in range(2, 6):  # each line shows while the run is still running
        run.line(f"step {n} of 5")
        page.wait_for_selector(f"#log .line:nth-child({n})")
        assert server.services.get(run.id).status == "running"
    assert page.text_content("#run-status") == "running"
    shot(page, artifacts, "run-live-log")
    run.finish("failure", tail="\x1b[1;31mFAILED\x1b[0m test_x: assert 1 == 2")
    run.result()
    page.wait_for_selector('#log[data-state="ended"]')
    page.wait_for_selector('#summary[data-status="failure"]')
    assert page.get_attribute("#log", "data-final") == "failure"
    assert page.text_content("#failed-tail") == "FAILED test_x: assert 1 == 2"
    assert page.query_selector("#failed-tail span.ansi-bold.ansi-fg-1") is not None
    lines = [e.text_content() for e in page.query_selector_all("#log .line")]
    assert lines[1:] == [f"step {n} of 5" for n in range(2, 6)]
    assert page.evaluate("window.__pwned === undefined")
    shot(page, artifacts, "run-finished")
    page.context.close()


def test_cancel_works_from_the_dashboard(
    server: DashboardServer, browser: Any, artifacts: Path
) -> None:
    run = DrivenRun(server.settings, "to cancel")
    run.line("waiting to be cancelled")
    page = logged_in(browser, server, server.write, f"/runs/{run.id}")
    page.wait_for_selector("#log .line")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{server.url}/runs/{run.id}/cancel", data={"csrf": "guess"},
                        cookies=cookies, follow_redirects=False)  # fmt: skip
    assert forged.status_code == 403  # no valid CSRF token: refused
    assert server.services.get(run.id).status == "running"
    shot(page, artifacts, "run-before-cancel")
    page.click("#cancel")
    page.wait_for_selector('#summary[data-status="cancelled"]')
    assert run.result()["status"] == "cancelled"
    assert server.services.get(run.id).status == "cancelled"
    page.wait_for_selector('#log[data-state="ended"]')
    assert page.query_selector("#cancel") is None
    shot(page, artifacts, "run-cancelled")
    page.context.close()


def _observations() -> list[Observation]:
    """Four runs of one job: ./configure -> make -> make test, which fails three times
    with one signature (a lesson), then passes once ``pip install -e .`` runs before it
    (the lesson's candidate fix), followed by make install."""
    at = datetime(2025, 1, 1, tzinfo=UTC)
    failing = [
        (2, f"E   assert {i} == {i + 1}\nFAILED tests/test_x.py::test_{i}") for i in range(3)
    ]
    seen = []
    for i, (code, out) in enumerate([*failing, (0, "")]):
        steps = ["./configure", "make", *(["pip install -e ."] if code == 0 else []), "make test",
                 "make install"]  # fmt: skip
        prev = None
        for step, cmd in enumerate(steps):
            rc = code if cmd == "make test" else 0
            seen.append(Observation(cmd, rc, 1.0, at.replace(day=i + 1), f"seed-{i}", job="build",
                                    step=step, repo="octo/demo", workflow="ci", commit=f"c{i}",
                                    prev_command=prev, output=out if rc else ""))  # fmt: skip
            prev = cmd
            if rc != 0:
                break
    return seen


def test_the_learning_page_shows_the_graph(
    server: DashboardServer, browser: Any, artifacts: Path
) -> None:
    with open_learning(server.settings) as svc:
        svc.record(_observations())
        related = svc.related("make test").to_dict()
    page = logged_in(browser, server, server.read, "/learning?command=make%20test")
    page.wait_for_selector("#graph svg.command-graph")
    commands = {n.get_attribute("data-node") for n in page.query_selector_all("#graph g.node")}
    expected = {"cmd:make test"} | {f"cmd:{r['command']}" for r in related["before"]}
    expected |= {f"cmd:{r['command']}" for r in related["after"]}
    expected |= {f"cmd:{c}" for c in related["usual_sequence"]}
    assert {c for c in commands if c and c.startswith("cmd:")} == expected
    assert {"cmd:./configure", "cmd:make", "cmd:make install"} <= expected
    assert any(c and c.startswith("sig:") for c in commands)  # the failure signature
    assert re.search(r"assert", page.text_content("#graph") or "")
    assert "pip install -e ." in (page.text_content(".lesson") or "")  # the candidate fix
    shot(page, artifacts, "learning-graph")
    page.context.close()


def _finished_queued_workflow(server: DashboardServer) -> str:
    """A workflow run the server's queue ran and finished (so it can be queued again)."""
    from vmrunner.store.queue import ItemSpec, Queue

    svc, sha = server.services, "a" * 40
    run_id = svc.runs.create("workflow", {"jobs": [["build", "build"]]}, title="ci on main",
                             repo="octo/demo", branch="main", sha=sha, queued=True)  # fmt: skip
    queue = Queue(svc.store)
    queue.enqueue(ItemSpec(run_id, "octo/demo", sha, "refs/heads/main", "main",
                           ".github/workflows/ci.yml", "ci", "push", {}, "ci-main"))  # fmt: skip
    (item,) = queue.claim("test-worker")
    svc.runs.start(run_id)
    svc.runs.finish(run_id, "success", workflow_doc(run_id, "success", time.time() - 2))
    assert queue.finish(item.id, item.fence)
    return run_id


def test_rerun_queues_the_workflow_again(
    server: DashboardServer, browser: Any, artifacts: Path
) -> None:
    old = _finished_queued_workflow(server)
    page = logged_in(browser, server, server.write, f"/runs/{old}")
    page.click("#rerun")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    new = page.url.rsplit("/", 1)[1]
    assert new != old
    page.wait_for_selector('#summary[data-status="queued"]')
    assert server.services.get(new).request["rerun_of"] == old
    page.goto(f"{server.url}/")
    page.wait_for_selector(f'.queue a[href="/runs/{new}"]')  # pending in its group
    shot(page, artifacts, "runs-list-queue")
    page.context.close()
