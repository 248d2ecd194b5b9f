"""Normalisation rules, one table row per rule (see ``normalise``'s docstring)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.learning.normalise import MAX_LEN, diff_key, family, normalise

SAME = [
    # versions pinned in arguments fall together
    ("pip install foo==1.2", "pip install foo==1.3"),
    ("pip install 'foo>=1.0,<2'", "pip install 'foo>=1.4,<3'"),
    ("npm install left-pad@1.3.0", "npm install left-pad@1.3.1"),
    ("docker run python:3.11-slim pytest", "docker run python:3.12-slim pytest"),
    ("curl -LO https://x.org/foo-1.2.3.tar.gz", "curl -LO https://x.org/foo-1.2.4.tar.gz"),
    ("nvm install v18.2.0", "nvm install v20.1.0"),
    # hashes and uuids
    ("git checkout 3f2a9b1c", "git checkout 9e8d7c6b"),
    ("docker pull img@sha256:0123456789abcdef01", "docker pull img@sha256:fedcba9876543210aa"),
    ("vm rm 123e4567-e89b-12d3-a456-426614174000", "vm rm 00000000-1111-2222-3333-444444444444"),
    # temporary paths and home directories
    ("pytest --basetemp=/tmp/pytest-of-u/pytest-3", "pytest --basetemp=/tmp/pytest-of-v/pytest-9"),
    ("cd /tmp/tmp.AbC12 && make", "cd /tmp/tmp.ZyX98 && make"),
    ("ls /home/alice/src", "ls /home/bob/src"),
    # numbers that are noise
    ("sleep 5", "sleep 10"),
    ("make -j8", "make -j2"),
    ("head -20 log", "head -5 log"),
    ("pytest --timeout=30", "pytest --timeout=60"),
    ("timeout 30s ./x", "timeout 5s ./x"),
    # messages, assignments, dates, program paths, whitespace, comments
    ('git commit -m "first"', 'git commit -m "second"'),
    ('echo "build 1 done"', 'echo "build 2 done"'),
    ("FOO=1 ./run.sh", "FOO=2 ./run.sh"),
    ("backup --since 2024-01-02", "backup --since 2025-12-31T10:00:00Z"),
    ("/usr/bin/python3 -m pytest", "python3 -m pytest"),
    ("make   test", "make test"),
    ("# setup\nmake test\n", "make test"),
    ("make \\\n  test", "make test"),
]

DIFFERENT = [
    ("pip install foo==1.2", "pip install bar==1.2"),
    ("pip install foo", "pip install foo==1.2"),
    ("python3 -m pytest", "python3.11 -m pytest"),  # the program is never masked
    ("gcc -O2 x.c", "gcc -O3 x.c"),  # digits inside a word are kept
    ("make test", "make build"),
    ("cargo test", "cargo test --release"),
    ("pytest tests/a", "pytest tests/b"),
]

EXACT = [
    ("pip install foo==1.2", "pip install foo==*"),
    ("pip install 'foo>=1,<2'", "pip install foo>=*,<*"),
    ("npm i @types/node@18.2.1", "npm i @types/node@*"),
    ("docker run python:3.11-slim", "docker run python:*"),
    ("git checkout 3f2a9b1c", "git checkout <hash>"),
    ("make -j8", "make -j<n>"),
    ("cmd 2>&1 | tee log.txt", "cmd 2>&1 | tee log.txt"),
    ("set -e\npip install x==1\n\npytest", "set -e; pip install x==*; pytest"),
    ("python3 -c 'import sys; print(1)'", "python3 -c 'import sys; print(1)'"),
    ("gcc -march=x86_64 utf8.c", "gcc -march=x86_64 utf8.c"),
    ("ls /tmp", "ls <tmp>"),
    ("", ""),
    ("# only a comment", ""),
]

FAMILIES = [
    ("python3 -c 'print(1)'", "python3 -c"),
    ("python3.11 -c 'print(1)'", "python3 -c"),
    ("/usr/bin/python3 -m pytest -x", "python3 -m pytest"),
    ("python -m pip install -U pip", "python -m pip install"),
    ("pip install foo==1.2", "pip install"),
    ("git clone https://x/y.git", "git clone"),
    ("cd sub && make -j4 test", "make test"),
    ("set -e\nnpm ci", "npm ci"),
    ("sudo apt-get install -y curl", "apt-get install"),
    ("FOO=1 ./run.sh --fast", "./run.sh"),
    ("ls -la", "ls"),
    ("pytest tests/", "pytest"),
    ("", ""),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_fall_together(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_stay_apart(a: str, b: str) -> None:
    assert normalise(a) != normalise(b)


@pytest.mark.parametrize(("command", "expected"), EXACT)
def test_exact_forms(command: str, expected: str) -> None:
    assert normalise(command) == expected


@pytest.mark.parametrize(("command", "expected"), FAMILIES)
def test_family(command: str, expected: str) -> None:
    assert family(command) == expected


def test_long_scripts_are_capped_but_stay_distinct() -> None:
    a = "python3 -c '" + "x = 1; " * 200 + "print(a)'"
    b = "python3 -c '" + "x = 1; " * 200 + "print(b)'"
    assert len(normalise(a)) <= MAX_LEN + 12
    assert normalise(a) != normalise(b)


def test_diff_key_keeps_versions_and_masks_tmp() -> None:
    assert diff_key("pip install foo==1.2") != diff_key("pip install foo==1.3")
    assert diff_key("cd /tmp/a1 &&  make") == diff_key("cd /tmp/b2 && make")


def test_unclosed_quote_does_not_raise() -> None:
    assert normalise("python3 -c \"print('x") != ""


@given(st.text(max_size=200))
def test_never_raises_and_is_bounded(command: str) -> None:
    result = normalise(command)
    assert isinstance(result, str)
    assert len(result) <= MAX_LEN + 12
    assert isinstance(family(command), str)
