"""Error signatures: masking, line choice, Unicode safety and clustering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.learning import cluster
from vmrunner.learning.signature import (
    MAX_LINE_CHARS,
    MAX_LINES,
    decode,
    mask,
    pick_lines,
    signature,
    template_key,
)

MASKS = [
    ("took 123 ms", "took <num> ms"),
    ("at 2024-05-01T10:20:30.123Z failed", "at <ts> failed"),
    ("at 10:20:30 failed", "at <ts> failed"),
    ("id 123e4567-e89b-12d3-a456-426614174000 gone", "id <uuid> gone"),
    ("open /var/lib/app/data.db: denied", "open <path>: denied"),
    ("open C:\\Users\\me\\x.txt failed", "open <path> failed"),
    ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
    ("segfault at 0x7ffd1234", "segfault at <hex>"),
    ("container 3f2a9b1c4d5e exited", "container <hex> exited"),
    ("GET https://pypi.org/simple/foo/ 404", "GET <url> <num>"),
    ("No module named 'a'", "No module named 'a'"),  # words are kept: clustering merges them
    ("python3 test_x86_64.py", "python3 test_x86_64.py"),  # digits inside words kept
    ("tests/test_x.py::test_y", "tests/test_x.py::test_y"),  # a relative test id is kept
    ("a   b\tc", "a b c"),
]

PICKS = [
    # the exception line, not the traceback boilerplate or the first line
    (
        "Collecting foo\nTraceback (most recent call last):\n"
        "  File \"/x/y.py\", line 3, in <module>\nModuleNotFoundError: No module named 'a'",
        ["ModuleNotFoundError: No module named 'a'"],
    ),
    # several informative lines, in output order, at most MAX_LINES
    (
        "step 1\nERROR: first problem\nnoise\nERROR: second problem\nfatal: third\nerror: fourth",
        ["ERROR: second problem", "fatal: third", "error: fourth"],
    ),
    # nothing reads like an error: the last line
    ("compiling\nlinking\ndone", ["done"]),
    # warnings lose to errors
    ("warning: deprecated thing\nerror: real problem", ["error: real problem"]),
    # pytest and npm shapes
    ("E   assert 1 == 2\n=== 1 failed ===", ["E   assert 1 == 2", "=== 1 failed ==="]),
    (
        "npm ERR! code ELIFECYCLE\nnpm ERR! errno 1",
        ["npm ERR! code ELIFECYCLE", "npm ERR! errno 1"],
    ),
    # other languages
    ("Ошибка: файл не найден", ["Ошибка: файл не найден"]),
    ("致命的なエラー: 接続できません", ["致命的なエラー: 接続できません"]),
]


@pytest.mark.parametrize(("line", "expected"), MASKS)
def test_mask(line: str, expected: str) -> None:
    assert mask(line) == expected


@pytest.mark.parametrize(("output", "expected"), PICKS)
def test_pick_lines(output: str, expected: list[str]) -> None:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    assert pick_lines(lines) == [ln.strip() for ln in expected]


def test_empty_output_uses_the_exit_code() -> None:
    assert signature(b"", 137).template == "(no output) exit 137"
    assert signature("  \n\n", 2).template == "(no output) exit 2"


def test_ansi_and_progress_bars_are_cleaned() -> None:
    out = "\x1b[31mERROR\x1b[0m: boom\ndownload 10%\rdownload 100%\n"
    assert decode(out).splitlines()[0] == "ERROR: boom"
    assert signature(out, 1).template == "ERROR: boom"


NON_ASCII = [
    "Ошибка: файл /var/lib/данные/конфиг.yml не найден (код 42)".encode(),
    "エラー: 接続に失敗しました id=deadbeef1234 🚀".encode(),
    "error: naïve café ☕ failed".encode()[:-3] + b"\xe2\x98",  # cut mid-character
    b"error: \xff\xfe invalid bytes \xc3",
    "fatal: 💥" * 500,  # long: cut by characters, not bytes
]


@pytest.mark.parametrize("output", NON_ASCII)
def test_non_ascii_is_safe(output: str | bytes) -> None:
    sig = signature(output, 1)
    assert sig.template
    assert all(len(line) <= MAX_LINE_CHARS for line in sig.template.splitlines())
    sig.template.encode("utf-8")  # round-trips: no lone surrogates
    assert len(template_key(sig.template)) == 40


def test_non_ascii_masks_and_keeps_words() -> None:
    sig = signature("Ошибка: файл /var/lib/данные/конфиг.yml не найден (код 42)".encode(), 1)
    assert sig.template == "Ошибка: файл <path> не найден (код <num>)"


def test_same_problem_same_template() -> None:
    a = signature("2024-01-01 10:00:01 ERROR request 4f3a2b1c9d failed after 12 ms", 1)
    b = signature("2024-06-30 23:59:59 ERROR request 9e8d7c6b5a failed after 3400 ms", 1)
    assert a.template == b.template
    assert a.key == b.key


@given(st.one_of(st.text(max_size=3000), st.binary(max_size=3000)), st.integers(-255, 255))
def test_signature_never_raises(output: str | bytes, code: int) -> None:
    sig = signature(output, code)
    assert 0 < len(sig.template.splitlines()) <= MAX_LINES
    sig.template.encode("utf-8")


CLUSTERS = [
    # (a, b, same signature?)
    ("No module named 'a'", "No module named 'b'", True),
    (
        "ModuleNotFoundError: No module named 'numpy'",
        "ModuleNotFoundError: No module named 'x'",
        True,
    ),
    ("error: file foo not found", "error: file bar not found", True),
    ("error: foo", "error: bar", False),  # too little in common
    ("Killed", "Killed", True),
    ("No module named 'a'", "Permission denied: 'a' here", False),  # different first token
    ("error: x\nfatal: y", "error: x fatal: y", False),  # line structure differs
]


@pytest.mark.parametrize(("a", "b", "same"), CLUSTERS)
def test_clustering(a: str, b: str, same: bool) -> None:
    ta, tb = cluster.tokens(a), cluster.tokens(b)
    matched = cluster.bucket(ta) == cluster.bucket(tb) and cluster.best_match(tb, [(1, ta)]) == 1
    assert matched is same


def test_merge_generalises_and_keeps_matching() -> None:
    a, b = cluster.tokens("No module named 'a'"), cluster.tokens("No module named 'b'")
    merged = cluster.merge(a, b)
    assert cluster.detokenise(merged) == "No module named <*>"
    assert cluster.similarity(merged, cluster.tokens("No module named 'zzz'")) == 1.0


def test_best_match_prefers_the_most_similar() -> None:
    toks = cluster.tokens("a b c d e")
    cands = [(1, cluster.tokens("a b x y e")), (2, cluster.tokens("a b c y e"))]
    assert cluster.best_match(toks, cands) == 2


def test_merge_rejects_different_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        cluster.merge(("a",), ("a", "b"))
