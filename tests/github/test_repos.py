"""RepoCache against real local git repositories (file://) and a loopback HTTP server."""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitsource import Source, git, url_template
from vmrunner.errors import ConfigError, UserInputError
from vmrunner.github.repos import FetchError, RepoCache, redact, split_repo, valid_ref
from vmrunner.runner.context import git_info

REPO = "octo/hello"
TOKEN = "ghs_S3cretT0kenValue0123456789"


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path / "srv", REPO)


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "cache", url_template(tmp_path / "srv"))


@pytest.fixture
def history(source: Source) -> dict[str, str]:
    """main: c1 -> c2; feature: c1 -> f1; tags light (c1) and v2 (annotated, c2)."""
    c1 = source.commit({"README": "one\n", ".github/workflows/ci.yml": "on: push\n"})
    f1 = source.commit({"src/feature.py": "x = 1\n"}, branch="feature")
    c2 = source.commit({"README": "two\n", "docs/a.md": "a\n"}, branch="main")
    source.tag("light", c1)
    source.tag("v2", c2, annotated=True)
    return {"c1": c1, "c2": c2, "f1": f1}


@pytest.mark.parametrize(
    ("want", "expected"),
    [
        ("main", "c2"), ("feature", "f1"), ("light", "c1"), ("v2", "c2"),
        ("refs/heads/feature", "f1"), ("refs/tags/v2", "c2"), ("refs/tags/light", "c1"),
        ("<c1>", "c1"), ("<f1>", "f1"),
    ],
)  # fmt: skip
def test_fetch_resolves_what_is_wanted_to_a_commit(
    cache: RepoCache, history: dict[str, str], want: str, expected: str
) -> None:
    want = history[want[1:-1]] if want.startswith("<") else want
    sha = cache.fetch(REPO, want)
    assert sha == history[expected]
    assert cache.has_commit(REPO, sha)
    assert cache.mirror(REPO) == cache.root / "octo" / "hello.git"


def test_a_branch_wins_over_a_tag_of_the_same_name(
    cache: RepoCache, source: Source, history: dict[str, str]
) -> None:
    source.tag("feature", history["c1"])
    assert cache.fetch(REPO, "feature") == history["f1"]
    assert cache.fetch(REPO, "refs/tags/feature") == history["c1"]


def test_a_moved_branch_is_fetched_again(cache: RepoCache, source: Source) -> None:
    first = source.commit({"a": "1"})
    assert cache.fetch(REPO, "main") == first
    second = source.commit({"a": "2"})
    assert cache.fetch(REPO, "main") == second


@pytest.mark.parametrize(
    ("repo", "want", "message"),
    [
        (REPO, "v9", f"{REPO} has no ref or commit v9"),
        (REPO, "refs/heads/nope", f"{REPO} has no ref or commit refs/heads/nope"),
        (REPO, "a" * 40, f"{REPO} has no ref or commit {'a' * 40}"),
        ("octo/missing", "main", "no repository octo/missing at file://"),
        ("octo/missing", "b" * 40, "no repository octo/missing at file://"),
    ],
)
def test_unknown_refs_and_repositories_are_user_errors_naming_them(
    cache: RepoCache, history: dict[str, str], repo: str, want: str, message: str
) -> None:
    with pytest.raises(UserInputError) as err:
        cache.fetch(repo, want)
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_cached_sha_needs_no_source(
    cache: RepoCache, source: Source, history: dict[str, str]
) -> None:
    assert cache.fetch(REPO, history["c2"]) == history["c2"]
    source.bare.rename(source.bare.with_name("moved.git"))
    assert cache.fetch(REPO, history["c2"]) == history["c2"]  # no network
    assert cache.fetch(REPO, history["c1"]) == history["c1"]  # its parent came along
    with pytest.raises(UserInputError, match="no repository octo/hello"):
        cache.fetch(REPO, "main")  # a branch is always asked for: it may have moved
    with pytest.raises(UserInputError, match="no repository octo/hello"):
        cache.fetch(REPO, history["f1"])  # not fetched before


def test_fetched_commits_are_pinned_against_gc(cache: RepoCache, history: dict[str, str]) -> None:
    cache.fetch(REPO, history["f1"])
    git("-C", str(cache.mirror(REPO)), "gc", "-q", "--prune=now")
    assert cache.has_commit(REPO, history["f1"])


FETCHER = """
import sys
from pathlib import Path
from vmrunner.github.repos import RepoCache
cache = RepoCache(Path(sys.argv[1]), sys.argv[2])
print(cache.fetch("octo/hello", sys.argv[3]))
"""


def test_concurrent_fetches_from_several_processes(tmp_path: Path, history: dict[str, str]) -> None:
    wants = ["main", "feature", "v2", "light", history["c1"], history["f1"]] * 2
    argv = [sys.executable, "-c", FETCHER, str(tmp_path / "cache"), url_template(tmp_path / "srv")]
    procs = [
        subprocess.Popen([*argv, w], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in wants
    ]
    results = [p.communicate(timeout=120) for p in procs]  # reaps every one
    assert [p.returncode for p in procs] == [0] * len(wants), [e for _, e in results]
    expected = [history[k] for k in ("c2", "f1", "c2", "c1", "c1", "f1")] * 2
    assert [out.decode().strip() for out, _ in results] == expected
    mirror = RepoCache(tmp_path / "cache", "").mirror(REPO)
    git("-C", str(mirror), "fsck", "--no-progress")
    assert sorted(p.name for p in mirror.parent.iterdir()) == ["hello.git", "hello.lock"]


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b/c", "..", "a/..", "../..", "a/.", "/a/b", "a", "a/", "/b", "-x/y", "a/b c",
     "a\\b/c", "a/b\n", "ow.ner/x", "a/" + "n" * 101, "o" * 40 + "/x", "", "a/b/../../c"],
)  # fmt: skip
def test_crafted_repository_names_are_refused(tmp_path: Path, name: str) -> None:
    cache = RepoCache(tmp_path / "cache", url_template(tmp_path / "srv"))
    with pytest.raises(UserInputError, match="invalid repository name"):
        cache.fetch(name, "main")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "want", ["-x", "--upload-pack=touch /tmp/p", "a..b", "a b", "refs/heads/../x", "x:y", "a~1",
             "HEAD^", "x.lock", "a//b", "", "a/", ".hidden", "a@{1}", "x*"],
)  # fmt: skip
def test_crafted_refs_are_refused(cache: RepoCache, history: dict[str, str], want: str) -> None:
    with pytest.raises(UserInputError, match="invalid ref"):
        cache.fetch(REPO, want)


@given(st.text(max_size=60))
def test_an_accepted_name_never_leads_out_of_the_cache(name: str) -> None:
    cache = RepoCache(Path("/cache"), "file:///srv/{owner}/{repo}.git")
    try:
        owner, repo = split_repo(name)
    except UserInputError:
        return
    mirror = cache.mirror(name)
    assert mirror.resolve().parent.parent == Path("/cache/git")
    assert mirror.name == f"{repo}.git" and mirror.parent.name == owner


@pytest.mark.parametrize(
    ("text", "ok"),
    [("main", True), ("feature/x-1", True), ("refs/pull/12/head", True), ("v1.2.3", True),
     ("a" * 40, True), ("-main", False), ("a..b", False), ("a\x00b", False), ("a b", False)],
)  # fmt: skip
def test_valid_ref(text: str, ok: bool) -> None:
    assert valid_ref(text) is ok


def test_a_url_template_with_other_placeholders_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="github_git_url"):
        RepoCache(tmp_path, "https://{host}/{owner}/{repo}").fetch(REPO, "main")


def test_urls_in_messages_lose_their_credentials() -> None:
    assert (
        redact("https://x-access-token:abc@github.com/o/r.git") == "https://***@github.com/o/r.git"
    )
    assert redact("file:///srv/o/r.git") == "file:///srv/o/r.git"


def test_changed_files_two_and_three_dot(cache: RepoCache, history: dict[str, str]) -> None:
    c1, c2, f1 = history["c1"], history["c2"], history["f1"]
    cache.fetch(REPO, c2), cache.fetch(REPO, f1)
    assert cache.changed_files(REPO, c1, c2) == ("README", "docs/a.md")
    assert cache.changed_files(REPO, c2, f1) == ("README", "docs/a.md", "src/feature.py")
    assert cache.changed_files(REPO, c2, f1, merge_base=True) == ("src/feature.py",)
    assert cache.changed_files(REPO, "0" * 40, c1) == (".github/workflows/ci.yml", "README")
    assert cache.parent(REPO, c2) == c1 and cache.parent(REPO, c1) is None
    assert cache.merge_base(REPO, c2, f1) == c1


def test_read_file_and_workflow_paths(cache: RepoCache, source: Source) -> None:
    sha = source.commit({
        ".github/workflows/a.yml": "on: push\n", ".github/workflows/b.yaml": "on: push\n",
        ".github/workflows/notes.txt": "x", ".github/workflows/sub/c.yml": "on: push\n",
    })  # fmt: skip
    (source.work / ".github" / "workflows" / "link.yml").symlink_to("/etc/passwd")
    sha = source.commit({})
    cache.fetch(REPO, sha)
    assert cache.workflow_paths(REPO, sha) == [
        ".github/workflows/a.yml",
        ".github/workflows/b.yaml",
    ]
    assert cache.read_file(REPO, sha, ".github/workflows/b.yaml") == b"on: push\n"
    with pytest.raises(UserInputError, match=r"has no file nope\.yml"):
        cache.read_file(REPO, sha, "nope.yml")
    with pytest.raises(UserInputError, match="fetch it first"):
        cache.read_file(REPO, "c" * 40, "README")


def test_checkout_is_a_working_tree_git_info_reads(
    tmp_path: Path, cache: RepoCache, source: Source, history: dict[str, str]
) -> None:
    dest = cache.checkout(REPO, history["c1"], tmp_path / "co")
    info = git_info(dest)
    assert (info.sha, info.repository, info.branch) == (history["c1"], REPO, None)
    assert (dest / "README").read_text() == "one\n"
    source.bare.rename(source.bare.with_name("gone.git"))
    shutil.rmtree(cache.mirror(REPO))  # the checkout does not borrow the mirror's objects
    assert git("-C", str(dest), "log", "--format=%H", "-1") == history["c1"]


# -- over HTTP on loopback: the token goes in git's environment, as a header -------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []
    status = 404

    def do_GET(self) -> None:
        type(self).seen.append(
            {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
        )
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_git(request: pytest.FixtureRequest) -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": [], "status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{owner}}/{{repo}}.git", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` wrapper first on PATH that logs every argv (one per line) and runs git."""
    real = shutil.which("git")
    assert real is not None
    bindir, log = tmp_path / "bin", tmp_path / "argv.log"
    bindir.mkdir()
    wrapper = bindir / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


@pytest.mark.parametrize(("http_git", "error"), [(404, UserInputError), (500, FetchError)],
                         indirect=["http_git"])  # fmt: skip
def test_the_token_goes_as_a_header_through_the_environment_never_argv(
    tmp_path: Path, http_git: tuple[str, type[_Recorder]], argv_log: Path, error: type[Exception]
) -> None:
    template, handler = http_git
    cache = RepoCache(tmp_path / "cache", template, TOKEN)
    with pytest.raises(error) as err:
        cache.fetch(REPO, "main")
    assert REPO in str(err.value) and TOKEN not in str(err.value)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert handler.seen, "git never asked the server"
    assert all(seen.get("authorization") == f"Basic {basic}" for seen in handler.seen)
    logged = argv_log.read_text()
    assert "ls-remote" in logged  # the wrapper did see git's argv
    assert TOKEN not in logged and basic not in logged
    on_disk = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert on_disk and not any(basic.encode() in p.read_bytes() for p in on_disk)
    assert not any(TOKEN.encode() in p.read_bytes() for p in on_disk)
    assert TOKEN not in repr(cache)


def test_without_a_token_no_authorization_is_sent(tmp_path: Path) -> None:
    handler = type("Handler", (_Recorder,), {"seen": [], "status": 404})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cache = RepoCache(
            tmp_path / "cache", f"http://127.0.0.1:{server.server_address[1]}/{{owner}}/{{repo}}"
        )
        with pytest.raises(UserInputError, match="no repository octo/hello"):
            cache.fetch(REPO, "main")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert handler.seen and not any("authorization" in seen for seen in handler.seen)


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as sock:  # listens, never accepts: git waits for an answer
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        template = f"http://127.0.0.1:{sock.getsockname()[1]}/{{owner}}/{{repo}}.git"
        cache = RepoCache(tmp_path / "cache", template, TOKEN, timeout=2)
        with pytest.raises(FetchError, match="timed out"):
            cache.fetch(REPO, "main")
