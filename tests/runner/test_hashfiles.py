"""``hashFiles()`` sees the workspace as it is when each step starts: the cache of hashes
lives for one step only. Against the host guest of :mod:`.fakes` (real files, real hashing
script), so these run in seconds; test_hashfiles_vm.py does the same in a real VM."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from vmrunner.runner.hashfiles import HashCache
from vmrunner.workflow.expressions import ExpressionError

from .fakes import HostGuest
from .test_engine import _run


def github_hash(*contents: bytes) -> str:
    """GitHub's hashFiles: SHA-256 of the concatenated SHA-256 digests of the files."""
    return hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in contents)).hexdigest()


def test_a_later_step_sees_the_file_an_earlier_step_rewrote(tmp_path: Path) -> None:
    out = tmp_path / "hashes"
    wf = f"""
    on: push
    jobs:
      h:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - run: echo "${{{{ hashFiles('f.txt') }}}}" >> {out}
          - run: printf 'changed\\n' > f.txt
          - run: echo "${{{{ hashFiles('f.txt') }}}}" >> {out}
          - run: rm f.txt
          - run: echo "[${{{{ hashFiles('f.txt') }}}}]" >> {out}
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["h"].result == "success"
    # the repository's f.txt holds "x" (see test_engine._git_repo)
    assert out.read_text().splitlines() == [github_hash(b"x"), github_hash(b"changed\n"), "[]"]


def test_inside_a_composite_action_each_inner_step_hashes_afresh(tmp_path: Path) -> None:
    out = tmp_path / "hashes"
    action = tmp_path / "actions" / "me" / "act"
    action.mkdir(parents=True)
    (action / "action.yml").write_text(
        "runs:\n  using: composite\n  steps:\n"
        "    - run: printf one > g.txt\n      shell: bash\n"
        f"    - run: echo \"${{{{ hashFiles('g.txt') }}}}\" >> {out}\n      shell: bash\n"
        "    - run: printf two > g.txt\n      shell: bash\n"
        f"    - run: echo \"${{{{ hashFiles('g.txt') }}}}\" >> {out}\n      shell: bash\n"
    )
    wf = f"""
    on: push
    jobs:
      h:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - uses: me/act@v1
          - run: echo "${{{{ hashFiles('g.txt') }}}}" >> {out}
    """
    _env, summaries = _run(tmp_path, wf, actions_dirs=[tmp_path / "actions"])
    assert summaries["h"].result == "success"
    assert out.read_text().splitlines() == [github_hash(b"one"), *[github_hash(b"two")] * 2]


@pytest.mark.parametrize("invalidate", [True, False])
def test_the_cache_serves_its_hash_until_invalidated(tmp_path: Path, invalidate: bool) -> None:
    """The contract the step loop relies on: ``compute`` skips what is cached (so without
    ``invalidate`` a changed file keeps its old hash), ``invalidate`` forgets everything."""
    (tmp_path / "a.txt").write_bytes(b"before")
    cache, key = HashCache(), ("a.txt",)

    async def body() -> str:
        await cache.compute(HostGuest(), str(tmp_path), {key})  # type: ignore[arg-type]
        assert cache.lookup(list(key)) == github_hash(b"before")
        (tmp_path / "a.txt").write_bytes(b"after")
        if invalidate:
            cache.invalidate()
            with pytest.raises(ExpressionError, match="could not be evaluated"):
                cache.lookup(list(key))
        await cache.compute(HostGuest(), str(tmp_path), {key})  # type: ignore[arg-type]
        return cache.lookup(list(key))

    assert asyncio.run(body()) == github_hash(b"after" if invalidate else b"before")
