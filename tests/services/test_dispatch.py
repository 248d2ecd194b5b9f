"""plan_delivery: GitHub's own example payloads (npm @octokit/webhooks-examples), pointed
at a local repository, decided on exactly as ``vmrunner run`` decides."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gitsource import Source, url_template
from vmrunner.errors import UserInputError
from vmrunner.github.repos import RepoCache
from vmrunner.runner.context import git_info
from vmrunner.services.dispatch import DeliveryPlan, LoadError, WorkUnit, plan_delivery
from vmrunner.services.planning import plan_run
from vmrunner.services.runrequest import RunRequest

REPO = "octo/hello"
ZERO = "0" * 40
EXAMPLES = (Path(__file__).resolve().parents[1] / "node" / "node_modules" / "@octokit"
            / "webhooks-examples" / "api.github.com" / "index.json")  # fmt: skip
WF = ".github/workflows/"

PASS = """name: Passing
on:
  push:
    branches: [main, topic]
  pull_request:
jobs:
  ok:
    name: It works
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
  matrix:
    name: m ${{ matrix.n }}
    strategy: {matrix: {n: [1, 2]}}
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
"""
FAIL = "on: push\njobs:\n  bad:\n    runs-on: ubuntu-latest\n    steps: [{run: exit 1}]\n"
DOCS = """name: Docs
on:
  push: {paths: ['docs/**']}
  pull_request: {paths: ['docs/**']}
jobs: {build: {runs-on: ubuntu-latest, steps: [{run: "true"}]}}
"""
RELEASE = "on: {push: {tags: ['v*']}}\njobs: {rel: {runs-on: ubuntu-latest, steps: [{run: x}]}}\n"
CLOSED = """on: {pull_request: {types: [closed]}}
jobs: {tidy: {runs-on: ubuntu-latest, steps: [{run: x}]}}
"""
DEPLOY = """name: Deploy
on:
  workflow_dispatch:
    inputs:
      target: {type: string, default: staging}
concurrency:
  group: deploy-${{ inputs.target }}-${{ github.ref_name }}-${{ vars.REGION }}
  cancel-in-progress: true
jobs: {go: {runs-on: ubuntu-latest, steps: [{run: "true"}]}}
"""
WORKFLOWS = {"pass.yml": PASS, "fail.yml": FAIL, "docs.yml": DOCS, "release.yaml": RELEASE,
             "closed.yml": CLOSED, "deploy.yml": DEPLOY}  # fmt: skip


def examples(
    event: str, action: str | None = None, where: Callable[[dict[str, Any]], bool] = bool
) -> dict[str, Any]:
    """The first of GitHub's example payloads of ``event`` (with ``action``, and ``where``
    true of it), a copy."""
    found = [e["examples"] for e in json.loads(EXAMPLES.read_text()) if e["name"] == event]
    chosen = [p for p in found[0] if action in (None, p.get("action")) and where(p)]
    assert chosen, f"no {event} {action} example in {EXAMPLES}"
    return copy.deepcopy(chosen[0])


def put(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in ``data``; the key must be in GitHub's example (we replace, not invent)."""
    *parents, last = path.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    assert isinstance(data, list) or last in data, f"{path} is not in the example"
    data[int(last) if isinstance(data, list) else last] = value


def example(
    event: str, action: str | None, where: Callable[[dict[str, Any]], bool] = bool,
    **values: Any,
) -> dict[str, Any]:  # fmt: skip
    """GitHub's example with its repository made ours and ``values`` (``a__b=v`` sets
    ``a.b``) in place."""
    payload = examples(event, action, where)
    put(payload, "repository.full_name", REPO)
    put(payload, "repository.name", REPO.split("/")[1])
    for key, value in values.items():
        put(payload, key.replace("__", "."), value)
    return payload


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path / "srv", REPO)


@pytest.fixture
def shas(source: Source) -> dict[str, str]:
    """main: c1 (workflows) -> c2 (src/app.py) -> c3 (docs/guide.md); feature from c2:
    f1 (src/x.py); tag v1 at c2."""
    c1 = source.commit({WF + name: text for name, text in WORKFLOWS.items()} | {"README": "r"})
    c2 = source.commit({"src/app.py": "x"})
    f1 = source.commit({"src/x.py": "y"}, branch="feature")
    c3 = source.commit({"docs/guide.md": "g"}, branch="main")
    source.tag("v1", c2)
    return {"c1": c1, "c2": c2, "c3": c3, "f1": f1}


@pytest.fixture
def repos(tmp_path: Path, shas: dict[str, str]) -> RepoCache:
    return RepoCache(tmp_path / "cache", url_template(tmp_path / "srv"))


def push(ref: str, before: str, after: str, commits: Sequence[str] = ()) -> dict[str, Any]:
    payload = example("push", None, ref=ref, before=before, after=after, deleted=False)
    template = examples("push", where=lambda p: bool(p["commits"]))["commits"][0]
    payload["commits"] = [{**template, "id": c} for c in commits]
    return payload


def pull(action: str, head: str, base: str, head_ref: str = "feature") -> dict[str, Any]:
    return example("pull_request", action, pull_request__head__sha=head,
                   pull_request__head__ref=head_ref, pull_request__base__sha=base,
                   pull_request__base__ref="main", pull_request__head__repo__full_name=REPO,
                   pull_request__base__repo__full_name=REPO)  # fmt: skip


def units(plan: DeliveryPlan) -> list[str]:
    return sorted(u.workflow.removeprefix(WF) for u in plan.units)


def skipped(plan: DeliveryPlan) -> dict[str, str]:
    return {f.removeprefix(WF): reason for f, reason in plan.not_triggered}


Case = Callable[[dict[str, str]], tuple[str, dict[str, Any]]]
CASES: list[tuple[str, Case, list[str], dict[str, str]]] = [
    ("push to main: src changed",
     lambda s: ("push", push("refs/heads/main", s["c1"], s["c2"])),
     ["fail.yml", "pass.yml"],
     {"docs.yml": "no changed file matches paths ['docs/**']",
      "release.yaml": "branch 'main' was pushed but only tag filters are defined",
      "closed.yml": "does not run on 'push'", "deploy.yml": "does not run on 'push'"}),
    ("push to main: docs changed",
     lambda s: ("push", push("refs/heads/main", s["c2"], s["c3"])),
     ["docs.yml", "fail.yml", "pass.yml"], {}),
    ("push of a new branch: from the oldest pushed commit's parent",
     lambda s: ("push", push("refs/heads/topic", ZERO, s["f1"], [s["f1"]])),
     ["fail.yml", "pass.yml"], {"docs.yml": "no changed file matches paths"}),
    ("push to a branch the filter leaves out",
     lambda s: ("push", push("refs/heads/feature", s["c2"], s["f1"])),
     ["fail.yml"], {"pass.yml": "branch 'feature' does not match ['main', 'topic']"}),
    ("push of a tag",
     lambda s: ("push", push("refs/tags/v1", ZERO, s["c2"])),
     ["docs.yml", "fail.yml", "release.yaml"],  # paths filters do not apply to tags
     {"pass.yml": "tag 'v1' was pushed but only branch filters are defined"}),
    ("pull_request opened: paths against the merge base, not the base's head",
     lambda s: ("pull_request", pull("opened", s["f1"], s["c3"])),
     ["pass.yml"],
     {"docs.yml": "pull_request: no changed file matches paths ['docs/**']",
      "closed.yml": "activity type 'opened' is not in the types ['closed']"}),
    ("pull_request synchronize", lambda s: ("pull_request", pull("synchronize", s["f1"], s["c3"])),
     ["pass.yml"], {}),
    ("check_suite rerequested: the push again",
     lambda s: ("check_suite", example("check_suite", "rerequested", check_suite__head_sha=s["c2"],
                                       check_suite__head_branch="main", check_suite__before=s["c1"],
                                       check_suite__after=s["c2"])),
     ["fail.yml", "pass.yml"], {"docs.yml": "no changed file matches"}),
    ("check_run rerequested: only its workflow",
     lambda s: ("check_run", example("check_run", "rerequested", check_run__head_sha=s["c2"],
                                     check_run__external_id=WF + "fail.yml#bad",
                                     check_run__check_suite__head_branch="main")),
     ["fail.yml"], {}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "case", "expected", "reasons"), CASES, ids=[c[0] for c in CASES])
def test_what_a_delivery_triggers(
    repos: RepoCache, shas: dict[str, str], name: str, case: Case, expected: list[str],
    reasons: dict[str, str],
) -> None:  # fmt: skip
    event, payload = case(shas)
    plan = plan_delivery(event, payload, repos)
    assert (plan.ignored, plan.errors, plan.repo) == (None, (), REPO)
    assert units(plan) == expected
    for workflow, reason in reasons.items():
        assert reason in skipped(plan)[workflow]
    assert not set(units(plan)) & set(skipped(plan))


def test_a_push_plans_the_passing_and_the_failing_workflow(
    repos: RepoCache, shas: dict[str, str]
) -> None:
    plan = plan_delivery("push", push("refs/heads/main", shas["c1"], shas["c2"]), repos)
    assert (plan.event, plan.sha, plan.ref, plan.branch) == (
        "push",
        shas["c2"],
        "refs/heads/main",
        "main",
    )
    by_path = {u.workflow: u for u in plan.units}
    assert by_path[WF + "pass.yml"] == WorkUnit(
        WF + "pass.yml", "Passing", (("ok", "It works"), ("matrix", "m ${{ matrix.n }}")),
        f"{REPO}/main/{WF}pass.yml", False,
    )  # fmt: skip
    assert by_path[WF + "fail.yml"] == WorkUnit(
        WF + "fail.yml", WF + "fail.yml", (("bad", "bad"),), f"{REPO}/main/{WF}fail.yml", False
    )
    assert plan.payload["after"] == shas["c2"]


def test_a_pull_request_whose_paths_do_not_match_plans_nothing(
    source: Source, repos: RepoCache, shas: dict[str, str]
) -> None:
    head = source.commit({"src/only.py": "z", WF + "pass.yml": None, WF + "closed.yml": None},
                         branch="lonely")  # fmt: skip
    plan = plan_delivery("pull_request", pull("opened", head, shas["c3"], "lonely"), repos)
    assert plan.units == () and plan.errors == () and plan.ignored is None
    assert skipped(plan)["docs.yml"] == "pull_request: no changed file matches paths ['docs/**']"
    assert plan.sha == head and plan.ref == "refs/pull/2/merge" and plan.branch == "lonely"


def test_default_group_of_a_pull_request_is_its_merge_ref(
    repos: RepoCache, shas: dict[str, str]
) -> None:
    plan = plan_delivery("pull_request", pull("opened", shas["f1"], shas["c3"]), repos)
    assert [u.group for u in plan.units] == [f"{REPO}/refs/pull/2/merge/{WF}pass.yml"]


@pytest.mark.parametrize(
    ("inputs", "vars", "group"),
    [({"target": "prod"}, {"REGION": "eu"}, "deploy-prod-main-eu"),
     ({}, {}, "deploy-staging-main-")],
)  # fmt: skip
def test_workflow_dispatch_runs_the_named_workflow_in_its_concurrency_group(
    repos: RepoCache, shas: dict[str, str], inputs: dict[str, str], vars: dict[str, str],
    group: str,
) -> None:  # fmt: skip
    payload = example("workflow_dispatch", None, ref="refs/heads/main",
                      workflow=WF + "deploy.yml", inputs=inputs)  # fmt: skip
    plan = plan_delivery("workflow_dispatch", payload, repos, vars)
    assert plan.sha == shas["c3"] and plan.not_triggered == ()
    assert [(u.workflow_name, u.group, u.cancel_in_progress) for u in plan.units] == [
        ("Deploy", group, True)
    ]
    assert plan.payload["inputs"] == inputs and plan.payload["workflow"] == WF + "deploy.yml"


def test_workflow_dispatch_of_a_workflow_that_is_not_there(
    repos: RepoCache, shas: dict[str, str]
) -> None:
    payload = example("workflow_dispatch", None, ref="refs/heads/main", workflow=WF + "gone.yml")
    plan = plan_delivery("workflow_dispatch", payload, repos)
    assert plan.units == () and plan.not_triggered == ((WF + "gone.yml", "no such workflow"),)


def test_check_run_of_a_pull_request_runs_as_the_pull_request(
    repos: RepoCache, shas: dict[str, str]
) -> None:
    payload = example("check_run", "rerequested", check_run__head_sha=shas["f1"],
                      check_run__external_id=WF + "pass.yml#ok",
                      check_run__check_suite__head_branch="feature")  # fmt: skip
    payload["check_run"]["pull_requests"] = [
        {**pr, "number": 7, "head": {**pr["head"], "ref": "feature", "sha": shas["f1"]},
         "base": {**pr["base"], "ref": "main", "sha": shas["c3"]}}
        for pr in examples("check_suite", "rerequested")["check_suite"]["pull_requests"]
    ]  # fmt: skip
    plan = plan_delivery("check_run", payload, repos)
    assert (plan.event, plan.ref, units(plan)) == (
        "pull_request",
        "refs/pull/7/merge",
        ["pass.yml"],
    )


@pytest.mark.parametrize(
    ("event", "build", "ignored"),
    [("pull_request", lambda s: pull("closed", s["f1"], s["c3"]),
      "pull_request action 'closed' is not run"),
     ("push", lambda s: example("push", None, where=lambda p: p["deleted"]),
      "push deleting tag simple-tag"),
     ("push", lambda s: push("refs/heads/main", s["c2"], ZERO), "push deleting branch main"),
     ("check_suite", lambda s: example("check_suite", "completed"),
      "check_suite action 'completed' is not run"),
     ("check_run", lambda s: example("check_run", "rerequested"),
      "check run 'randscape' is not vmrunner's (external_id '')"),
     ("issues", lambda s: {"action": "opened", "repository": {"full_name": REPO}},
      "event 'issues' starts no workflow")],
)  # fmt: skip
def test_deliveries_that_start_nothing_say_why(
    repos: RepoCache, shas: dict[str, str], event: str, build: Callable[[dict[str, str]], Any],
    ignored: str,
) -> None:  # fmt: skip
    plan = plan_delivery(event, build(shas), repos)
    assert plan.ignored == ignored
    assert plan.units == () and plan.repo == REPO


@pytest.mark.parametrize(
    ("event", "drop", "field"),
    [("push", "after", "after"), ("push", "ref", "ref"),
     ("push", "repository", "repository.full_name"),
     ("pull_request", "pull_request.head.sha", "pull_request.head.sha"),
     ("pull_request", "pull_request.base", "pull_request.base.sha"),
     ("workflow_dispatch", "workflow", "workflow"), ("workflow_dispatch", "ref", "ref"),
     ("check_suite", "check_suite.head_sha", "check_suite.head_sha")],
)  # fmt: skip
def test_a_payload_missing_a_field_names_it(
    repos: RepoCache, shas: dict[str, str], event: str, drop: str, field: str
) -> None:
    payloads = {
        "push": push("refs/heads/main", shas["c1"], shas["c2"]),
        "pull_request": pull("opened", shas["f1"], shas["c3"]),
        "workflow_dispatch": example("workflow_dispatch", None, workflow=WF + "deploy.yml"),
        "check_suite": example("check_suite", "rerequested", check_suite__head_branch="main"),
    }
    payload = payloads[event]
    *parents, last = drop.split(".")
    holder = payload
    for key in parents:
        holder = holder[key]
    del holder[last]
    with pytest.raises(UserInputError, match=f"the {event} payload has no '{field}'"):
        plan_delivery(event, payload, repos)


def test_an_unknown_ref_is_a_user_error(repos: RepoCache, shas: dict[str, str]) -> None:
    payload = example("workflow_dispatch", None, ref="refs/heads/nope", workflow=WF + "deploy.yml")
    with pytest.raises(UserInputError, match=f"{REPO} has no ref or commit refs/heads/nope"):
        plan_delivery("workflow_dispatch", payload, repos)


BROKEN = {
    "yaml.yml": ("on: push\njobs:\n  x: {runs-on: a, steps: [{run: x}]\n", 4, "YAML syntax error"),
    "schema.yml": ("on: push\njobs:\n  x:\n    runs-onn: a\n    steps: [{run: x}]\n", 4,
                   "Unexpected value 'runs-onn'"),
    "group.yml": ("on: push\nconcurrency:\n  group: ${{ fromJSON('{') }}\n"
                  "jobs: {x: {runs-on: a, steps: [{run: x}]}}\n", 3, "concurrency: Error parsing fromJson"),
}  # fmt: skip


def test_invalid_workflows_are_load_errors_and_the_others_still_plan(
    tmp_path: Path, source: Source, repos: RepoCache, shas: dict[str, str]
) -> None:
    after = source.commit({WF + name: text for name, (text, _, _) in BROKEN.items()})
    plan = plan_delivery("push", push("refs/heads/main", shas["c3"], after), repos)
    assert units(plan) == ["fail.yml", "pass.yml"]
    errors = {e.workflow.removeprefix(WF): e for e in plan.errors}
    assert sorted(errors) == sorted(BROKEN)
    for name, (_, line, message) in BROKEN.items():
        assert isinstance(errors[name], LoadError)
        assert errors[name].line == line and message in errors[name].message, errors[name]
        assert (
            str(tmp_path) not in errors[name].message
            and "vmrunner-dispatch" not in errors[name].workflow
        )


@pytest.mark.parametrize(
    ("event", "build"),
    [("push", lambda s: push("refs/heads/main", s["c1"], s["c2"])),
     ("push", lambda s: push("refs/tags/v1", s["c1"], s["c2"])),
     ("pull_request", lambda s: pull("opened", s["f1"], s["c3"]))],
)  # fmt: skip
def test_the_dispatcher_decides_as_vmrunner_run_does(
    tmp_path: Path, repos: RepoCache, shas: dict[str, str], event: str,
    build: Callable[[dict[str, str]], dict[str, Any]],
) -> None:  # fmt: skip
    payload = build(shas)
    plan = plan_delivery(event, payload, repos)
    checkout = repos.checkout(REPO, plan.sha, tmp_path / "checkout")
    (tmp_path / "event.json").write_text(json.dumps(payload))
    req = RunRequest(checkout, event=event, event_path=tmp_path / "event.json")
    files = sorted((checkout / WF).iterdir())
    local = plan_run(req, git_info(checkout), files, {})
    assert sorted({j.workflow for j in local.jobs}) == sorted(u.workflow for u in plan.units)
    assert sorted(local.not_triggered) == sorted(plan.not_triggered)
