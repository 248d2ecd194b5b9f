"""Trigger filters: GitHub's documented examples and the filter pattern cheat sheet."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import UserInputError
from vmrunner.workflow.triggers import (
    EventInfo,
    TriggerError,
    compile_pattern,
    matches_filter,
    split_ref,
    triggered,
)

# (patterns, matching values, non-matching values) from "Filter pattern cheat sheet"
REF_PATTERNS: list[tuple[list[str], list[str], list[str]]] = [
    (["feature/*"], ["feature/my-branch", "feature/your-branch"], ["feature/a/b", "feature"]),
    (
        ["feature/**"],
        ["feature/beta-a/my-branch", "feature/your-branch", "feature/mona/the/octocat"],
        ["features/x", "feature"],
    ),
    (
        ["main", "releases/mona-the-octocat"],
        ["main", "releases/mona-the-octocat"],
        ["mainx", "Main"],
    ),
    (["*"], ["main", "releases"], ["all/the/branches"]),
    (["**"], ["all/the/branches", "every/tag", "main"], []),
    (["*feature"], ["mona-feature", "feature", "ver-10-feature"], ["feature-x", "a/feature"]),
    (["v2*"], ["v2", "v2.0", "v2.9"], ["v1", "v20/x"]),
    (["v[12].[0-9]+.[0-9]+"], ["v1.10.1", "v2.0.0"], ["v3.0.0", "v1.0", "v1..1", "v1.a.1"]),
    (["[CB]at", "[1-2]00"], ["Cat", "Bat", "100", "200"], ["cat", "300", "Bat1"]),
    (["v1.?0"], ["v1.0", "v10"], ["v1.00", "v1x0"]),
    (["a+b"], ["ab", "aab", "aaaab"], ["b", "a+b"]),
    (["\\*star"], ["*star"], ["xstar"]),
    (["\\!bang"], ["!bang"], ["bang"]),
    (["a.b"], ["a.b"], ["axb"]),
    (["?x", "+y"], ["?x", "+y"], ["x", "y"]),
    # negation: order matters, the last matching pattern wins
    (
        ["releases/**", "!releases/**-alpha"],
        ["releases/10", "releases/beta/mona"],
        ["releases/10-alpha"],
    ),
    (["!releases/**-alpha", "releases/**"], ["releases/10", "releases/10-alpha"], ["main"]),
    (["*", "!main", "ma*"], ["main", "dev"], ["a/b"]),
    (["!main"], [], ["main", "dev"]),
]

PATH_PATTERNS: list[tuple[list[str], list[str], list[str]]] = [
    (["*"], ["README.md", "server.rb"], ["lib/x.rb"]),
    (["*.jsx?"], ["page.js", "page.jsx"], ["page.jsxx", "a/page.js"]),
    (["**"], ["all/the/files.md"], []),
    (["*.js"], ["app.js", "index.js"], ["js/index.js"]),
    (["**.js"], ["index.js", "js/index.js", "src/js/app.js"], ["index.jsx"]),
    (["docs/*"], ["docs/README.md", "docs/file.txt"], ["docs/mona/octocat.txt"]),
    (["docs/**"], ["docs/README.md", "docs/mona/octocat.txt"], ["README.md", "mydocs/x"]),
    (
        ["docs/**/*.md"],
        ["docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"],
        ["docs/a.txt", "x/docs/a.md"],
    ),
    (
        ["**/docs/**"],
        ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"],
        ["mydocs/x", "docs"],
    ),
    (["**/README.md"], ["README.md", "js/README.md"], ["js/README.js", "xREADME.md"]),
    (["**/*src/**"], ["a/src/app.js", "my-src/code/js/app.js"], ["src.js", "a/srcx/app.js"]),
    (["**/*-post.md"], ["my-post.md", "path/their-post.md"], ["post.md"]),
    (
        ["**/migrate-*.sql"],
        ["migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"],
        ["migrate.sql", "db/migrate-a/b.sql"],
    ),
    (["*.md", "!README.md"], ["hello.md"], ["README.md", "docs/hello.md"]),
    (["*.md", "!README.md", "README*"], ["hello.md", "README.md", "README.doc"], ["docs/hello.md"]),
]


@pytest.mark.parametrize(("patterns", "good", "bad"), REF_PATTERNS + PATH_PATTERNS)
def test_filter_patterns(patterns: list[str], good: list[str], bad: list[str]) -> None:
    for value in good:
        assert matches_filter(patterns, value), value
    for value in bad:
        assert not matches_filter(patterns, value), value


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("!", "empty"),
        ("a[]", "empty brackets"),
        ("a[bc", "missing closing"),
        ("[a-]", "may hold only"),
        ("[-a]", "may hold only"),
        ("[a.b]", "may hold only"),
        ("[a-Z]", "may hold only"),
        ("[z-a]", "reversed"),
        ("abc\\", "nothing to escape"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(TriggerError, match=message) as info:
        compile_pattern(pattern)
    assert isinstance(info.value, UserInputError)


@given(st.text(alphabet="ab/.-_*?+![]\\09", max_size=12), st.text(alphabet="ab/.-_09", max_size=12))
def test_patterns_never_crash(pattern: str, value: str) -> None:
    try:
        matches_filter([pattern], value)
    except TriggerError:
        pass


@given(st.text(alphabet="ab/.-_09", min_size=1, max_size=12))
def test_literal_patterns_match_only_themselves(value: str) -> None:
    assert matches_filter([value], value)
    assert not matches_filter([value], value + "x")
    assert matches_filter(["**"], value)


def push(ref: str, files: list[str] | None = None) -> EventInfo:
    return EventInfo(ref=ref, changed_files=files)


def pr(
    base: str | None, action: str | None = "opened", files: list[str] | None = None
) -> EventInfo:
    return EventInfo(base_ref=base, action=action, changed_files=files)


CASES: list[tuple[str, Any, str, EventInfo, bool]] = [
    # on: forms
    ("string", "push", "push", push("refs/heads/main"), True),
    ("string other", "push", "pull_request", pr("main"), False),
    ("list", ["push", "fork"], "fork", EventInfo(), True),
    ("list other", ["push", "fork"], "issues", EventInfo(action="opened"), False),
    ("mapping null", {"push": None}, "push", push("refs/tags/v1"), True),
    ("mapping empty", {"push": {}}, "push", push("refs/heads/x"), True),
    (
        "dispatch",
        {"workflow_dispatch": {"inputs": {"a": {}}}},
        "workflow_dispatch",
        EventInfo(),
        True,
    ),
    ("call", {"workflow_call": None}, "workflow_call", EventInfo(), True),
    # types and defaults
    ("pr default opened", {"pull_request": None}, "pull_request", pr("main"), True),
    ("pr default synchronize", "pull_request", "pull_request", pr("main", "synchronize"), True),
    ("pr default closed", {"pull_request": None}, "pull_request", pr("main", "closed"), False),
    ("pr default labeled", ["pull_request"], "pull_request", pr("main", "labeled"), False),
    ("prt default closed", "pull_request_target", "pull_request_target", pr("m", "closed"), False),
    (
        "pr types closed",
        {"pull_request": {"types": ["closed"]}},
        "pull_request",
        pr("m", "closed"),
        True,
    ),
    (
        "pr types excl",
        {"pull_request": {"types": ["closed"]}},
        "pull_request",
        pr("m", "opened"),
        False,
    ),
    (
        "pr types str",
        {"pull_request": {"types": "closed"}},
        "pull_request",
        pr("m", "closed"),
        True,
    ),
    ("pr action unknown", "pull_request", "pull_request", pr("main", None), True),
    ("issues default all", {"issues": None}, "issues", EventInfo(action="labeled"), True),
    (
        "issues types",
        {"issues": {"types": ["opened"]}},
        "issues",
        EventInfo(action="labeled"),
        False,
    ),
    ("label types", {"label": {"types": ["created"]}}, "label", EventInfo(action="created"), True),
    (
        "release types",
        {"release": {"types": ["published"]}},
        "release",
        EventInfo(action="created"),
        False,
    ),
    (
        "repository_dispatch types",
        {"repository_dispatch": {"types": ["on-demand-test"]}},
        "repository_dispatch",
        EventInfo(action="on-demand-test"),
        True,
    ),
    # push branches / tags
    ("push branches main", {"push": {"branches": ["main"]}}, "push", push("refs/heads/main"), True),
    (
        "push branches other",
        {"push": {"branches": ["main"]}},
        "push",
        push("refs/heads/dev"),
        False,
    ),
    ("push bare ref", {"push": {"branches": ["main"]}}, "push", push("main"), True),
    ("branches only, tag", {"push": {"branches": ["**"]}}, "push", push("refs/tags/v1"), False),
    ("tags only, branch", {"push": {"tags": ["**"]}}, "push", push("refs/heads/main"), False),
    (
        "tags-ignore only, branch",
        {"push": {"tags-ignore": ["v*"]}},
        "push",
        push("refs/heads/m"),
        False,
    ),
    ("tags v2", {"push": {"tags": ["v2", "v1.*"]}}, "push", push("refs/tags/v1.9.1"), True),
    ("tags no", {"push": {"tags": ["v2", "v1.*"]}}, "push", push("refs/tags/v3"), False),
    (
        "both, tag",
        {"push": {"branches": ["main"], "tags": ["v*"]}},
        "push",
        push("refs/tags/v1"),
        True,
    ),
    (
        "both, branch",
        {"push": {"branches": ["main"], "tags": ["v*"]}},
        "push",
        push("refs/heads/main"),
        True,
    ),
    (
        "no ref filter, tag",
        {"push": {"paths": ["src/**"]}},
        "push",
        push("refs/tags/v1", ["a"]),
        True,
    ),
    (
        "other ref, filters",
        {"push": {"branches": ["**"]}},
        "push",
        push("refs/pull/1/merge"),
        False,
    ),
    ("other ref, no filters", {"push": {}}, "push", push("refs/pull/1/merge"), True),
    ("unknown ref", {"push": {"branches": ["main"]}}, "push", EventInfo(), True),
    ("empty branches", {"push": {"branches": []}}, "push", push("refs/heads/main"), False),
    (
        # docs: "Example: Including branches and tags"
        "docs include branches",
        {"push": {"branches": ["main", "mona/octocat", "releases/**"], "tags": ["v2", "v1.*"]}},
        "push",
        push("refs/heads/releases/10"),
        True,
    ),
    (
        "docs include branches no",
        {"push": {"branches": ["main", "mona/octocat", "releases/**"], "tags": ["v2", "v1.*"]}},
        "push",
        push("refs/heads/mona/other"),
        False,
    ),
    (
        # docs: "Example: Excluding branches and tags"
        "docs exclude",
        {
            "push": {
                "branches-ignore": ["mona/octocat", "releases/**-alpha"],
                "tags-ignore": ["v2", "v1.*"],
            }
        },
        "push",
        push("refs/heads/releases/beta/3-alpha"),
        False,
    ),
    (
        "docs exclude passes",
        {
            "push": {
                "branches-ignore": ["mona/octocat", "releases/**-alpha"],
                "tags-ignore": ["v2", "v1.*"],
            }
        },
        "push",
        push("refs/heads/releases/10"),
        True,
    ),
    (
        "docs exclude tag",
        {
            "push": {
                "branches-ignore": ["mona/octocat", "releases/**-alpha"],
                "tags-ignore": ["v2", "v1.*"],
            }
        },
        "push",
        push("refs/tags/v1.9"),
        False,
    ),
    (
        "docs exclude tag passes",
        {
            "push": {
                "branches-ignore": ["mona/octocat", "releases/**-alpha"],
                "tags-ignore": ["v2", "v1.*"],
            }
        },
        "push",
        push("refs/tags/v3"),
        True,
    ),
    (
        # docs: "Example: Including and excluding branches" (negation)
        "docs negation alpha",
        {"push": {"branches": ["releases/**", "!releases/**-alpha"]}},
        "push",
        push("refs/heads/releases/10-alpha"),
        False,
    ),
    (
        "docs negation beta",
        {"push": {"branches": ["releases/**", "!releases/**-alpha"]}},
        "push",
        push("refs/heads/releases/10-beta"),
        True,
    ),
    (
        "ignore with un-ignore",
        {"push": {"branches-ignore": ["feature/**", "!feature/keep"]}},
        "push",
        push("refs/heads/feature/keep"),
        True,
    ),
    # pull_request branches match the base branch
    (
        # docs: "Running your pull_request workflow based on the head or base branch"
        "pr base main",
        {"pull_request": {"branches": ["main", "releases/**"]}},
        "pull_request",
        pr("main"),
        True,
    ),
    (
        "pr base refs",
        {"pull_request": {"branches": ["main"]}},
        "pull_request",
        pr("refs/heads/main"),
        True,
    ),
    (
        "pr base other",
        {"pull_request": {"branches": ["main", "releases/**"]}},
        "pull_request",
        pr("feature"),
        False,
    ),
    (
        "pr base negated",
        {"pull_request": {"branches": ["releases/**", "!releases/**-alpha"]}},
        "pull_request",
        pr("releases/10-alpha"),
        False,
    ),
    (
        "pr base ignore",
        {"pull_request": {"branches-ignore": ["mona/octocat"]}},
        "pull_request",
        pr("mona/octocat"),
        False,
    ),
    ("pr base unknown", {"pull_request": {"branches": ["main"]}}, "pull_request", pr(None), True),
    (
        "prt base",
        {"pull_request_target": {"branches": ["main"], "types": ["closed"]}},
        "pull_request_target",
        pr("main", "closed"),
        True,
    ),
    (
        "merge_group",
        {"merge_group": {"branches": ["main"]}},
        "merge_group",
        pr("dev", "checks_requested"),
        False,
    ),
    # paths
    (
        # docs: "Example: Including paths"
        "paths js",
        {"push": {"paths": ["**.js"]}},
        "push",
        push("refs/heads/main", ["README.md", "src/app.js"]),
        True,
    ),
    (
        "paths none",
        {"push": {"paths": ["**.js"]}},
        "push",
        push("refs/heads/main", ["README.md"]),
        False,
    ),
    ("paths empty change", {"push": {"paths": ["**"]}}, "push", push("refs/heads/main", []), False),
    ("paths unknown", {"push": {"paths": ["**.js"]}}, "push", push("refs/heads/main", None), True),
    (
        "paths tag push",
        {"push": {"paths": ["**.js"]}},
        "push",
        push("refs/tags/v1", ["README.md"]),
        True,
    ),
    (
        # docs: "Example: Excluding paths"
        "paths-ignore docs only",
        {"push": {"paths-ignore": ["docs/**"]}},
        "push",
        push("refs/heads/main", ["docs/a.md", "docs/b/c.md"]),
        False,
    ),
    (
        "paths-ignore mixed",
        {"push": {"paths-ignore": ["docs/**"]}},
        "push",
        push("refs/heads/main", ["docs/a.md", "src/a.py"]),
        True,
    ),
    (
        # docs: "Example: Including and excluding paths"
        "paths negation only docs",
        {"push": {"paths": ["sub-project/**", "!sub-project/docs/**"]}},
        "push",
        push("refs/heads/main", ["sub-project/docs/readme.md"]),
        False,
    ),
    (
        "paths negation with code",
        {"push": {"paths": ["sub-project/**", "!sub-project/docs/**"]}},
        "push",
        push("refs/heads/main", ["sub-project/docs/readme.md", "sub-project/app.js"]),
        True,
    ),
    (
        "paths-ignore un-ignored",
        {"push": {"paths-ignore": ["docs/**", "!docs/api/**"]}},
        "push",
        push("refs/heads/main", ["docs/api/x.md"]),
        True,
    ),
    (
        "branches and paths both needed",
        {"push": {"branches": ["main"], "paths": ["src/**"]}},
        "push",
        push("refs/heads/main", ["docs/x"]),
        False,
    ),
    (
        "branches and paths both pass",
        {"push": {"branches": ["main"], "paths": ["src/**"]}},
        "push",
        push("refs/heads/main", ["src/x"]),
        True,
    ),
    (
        "pr paths",
        {"pull_request": {"paths": ["src/**"]}},
        "pull_request",
        pr("main", files=["docs/a"]),
        False,
    ),
    (
        "pr paths pass",
        {"pull_request": {"paths": ["src/**"]}},
        "pull_request",
        pr("main", files=["src/a"]),
        True,
    ),
    # schedule, workflow_run
    ("schedule any", {"schedule": [{"cron": "0 0 * * *"}]}, "schedule", EventInfo(), True),
    (
        "schedule cron",
        {"schedule": [{"cron": "0 0 * * *"}]},
        "schedule",
        EventInfo(schedule="0 0 * * *"),
        True,
    ),
    (
        "schedule other",
        {"schedule": [{"cron": "0 0 * * *"}]},
        "schedule",
        EventInfo(schedule="5 4 * * *"),
        False,
    ),
    (
        "workflow_run",
        {"workflow_run": {"workflows": ["Build"], "types": ["completed"], "branches": ["main"]}},
        "workflow_run",
        EventInfo(workflow="Build", action="completed", ref="main"),
        True,
    ),
    (
        "workflow_run other workflow",
        {"workflow_run": {"workflows": ["Build"]}},
        "workflow_run",
        EventInfo(workflow="Deploy", action="completed"),
        False,
    ),
    (
        "workflow_run branch",
        {"workflow_run": {"workflows": ["Build"], "branches-ignore": ["canary"]}},
        "workflow_run",
        EventInfo(workflow="Build", action="completed", ref="canary"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("on", "event_name", "event", "matched"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_triggered(on: Any, event_name: str, event: EventInfo, matched: bool) -> None:
    decision = triggered(on, event_name, event)
    assert decision.matched is matched, decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("on", "event", "reason"),
    [
        (
            {"push": {"branches": ["main"]}},
            push("refs/heads/dev"),
            "branch 'dev' does not match ['main']",
        ),
        ({"push": {"tags": ["v*"]}}, push("refs/heads/dev"), "only tag filters"),
        ({"push": {"branches-ignore": ["d*"]}}, push("refs/heads/dev"), "ignored by"),
        ({"push": {"paths-ignore": ["*"]}}, push("refs/heads/m", ["a"]), "every changed file"),
        ({"pull_request": None}, pr("main", "closed"), "not in the default types"),
    ],
)
def test_reasons(on: Any, event: EventInfo, reason: str) -> None:
    event_name = next(iter(on))
    decision = triggered(on, event_name, event)
    assert not decision.matched
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("on", "message"),
    [
        (
            {"push": {"branches": ["a"], "branches-ignore": ["b"]}},
            "both 'branches' and 'branches-ignore'",
        ),
        ({"push": {"tags": ["a"], "tags-ignore": ["b"]}}, "both 'tags'"),
        ({"push": {"paths": ["a"], "paths-ignore": ["b"]}}, "both 'paths'"),
        ({"push": {"branches": [1]}}, "list of strings"),
        ({"push": {"branches": ["[]"]}}, "empty brackets"),
        ({"push": {"paths": ["a["]}, "pull_request": None}, "missing closing"),
        ({"pull_request": {"paths": ["a"], "paths-ignore": ["b"]}}, "both 'paths'"),
        (42, "'on' must be"),
        ([1], "'on' must list"),
    ],
)
def test_invalid_on(on: Any, message: str) -> None:
    """Errors do not depend on the event: an invalid workflow is invalid for all."""
    for event_name, event in [
        ("push", push("refs/tags/v1", ["x"])),
        ("pull_request", pr("main", "closed")),
    ]:
        with pytest.raises(TriggerError, match=message):
            triggered(on, event_name, event)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/heads/main", ("branch", "main")),
        ("refs/heads/feature/x", ("branch", "feature/x")),
        ("refs/tags/v1", ("tag", "v1")),
        ("main", ("branch", "main")),
        ("refs/pull/1/merge", (None, "refs/pull/1/merge")),
    ],
)
def test_split_ref(ref: str, expected: tuple[str | None, str]) -> None:
    assert split_ref(ref) == expected


files = st.lists(st.sampled_from(["a.py", "docs/x.md", "src/b.js", "README.md"]), max_size=4)
pattern_lists = st.lists(
    st.sampled_from(["**", "*.md", "!README.md", "docs/**", "!**.js", "src/**"]), max_size=4
)


@given(files, pattern_lists)
def test_paths_is_any_and_paths_ignore_is_all(changed: list[str], patterns: list[str]) -> None:
    event = push("refs/heads/main", changed)
    included = triggered({"push": {"paths": patterns}}, "push", event).matched
    not_ignored = triggered({"push": {"paths-ignore": patterns}}, "push", event).matched
    assert included == any(matches_filter(patterns, f) for f in changed)
    assert not_ignored == (not all(matches_filter(patterns, f) for f in changed))
