"""Matrix expansion: GitHub's documented worked examples as tables, plus properties."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import UserInputError
from vmrunner.workflow.matrix import (
    MAX_JOBS,
    MatrixError,
    expand_matrix,
    job_display_name,
    same_value,
    strategy_context,
)

CASES: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]]]] = [
    ("no matrix", None, [{}]),
    (
        # docs: "Using a single-dimension matrix"
        "single dimension",
        {"version": [10, 12, 14]},
        [{"version": 10}, {"version": 12}, {"version": 14}],
    ),
    (
        # docs: "Using a multi-dimension matrix" (last key varies fastest)
        "multi dimension",
        {"os": ["ubuntu-22.04", "ubuntu-20.04"], "version": [10, 12, 14]},
        [
            {"os": "ubuntu-22.04", "version": 10},
            {"os": "ubuntu-22.04", "version": 12},
            {"os": "ubuntu-22.04", "version": 14},
            {"os": "ubuntu-20.04", "version": 10},
            {"os": "ubuntu-20.04", "version": 12},
            {"os": "ubuntu-20.04", "version": 14},
        ],
    ),
    (
        # docs: "Example: Expanding configurations" (the fruit/animal/color example)
        "fruit animal color",
        {
            "fruit": ["apple", "pear"],
            "animal": ["cat", "dog"],
            "include": [
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"},
            ],
        },
        [
            {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
            {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
            {"fruit": "pear", "animal": "cat", "color": "pink"},
            {"fruit": "pear", "animal": "dog", "color": "green"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    ),
    (
        # docs: "Example: Expanding configurations" (os/node with npm)
        "os node npm",
        {
            "os": ["windows-latest", "ubuntu-latest"],
            "node": [14, 16],
            "include": [{"os": "windows-latest", "node": 16, "npm": 6}],
        },
        [
            {"os": "windows-latest", "node": 14},
            {"os": "windows-latest", "node": 16, "npm": 6},
            {"os": "ubuntu-latest", "node": 14},
            {"os": "ubuntu-latest", "node": 16},
        ],
    ),
    (
        # docs: "Example: Adding configurations"
        "adding configurations",
        {
            "os": ["windows-latest", "ubuntu-latest"],
            "node": [14, 16],
            "include": [{"os": "windows-latest", "node": 17}],
        },
        [
            {"os": "windows-latest", "node": 14},
            {"os": "windows-latest", "node": 16},
            {"os": "ubuntu-latest", "node": 14},
            {"os": "ubuntu-latest", "node": 16},
            {"os": "windows-latest", "node": 17},
        ],
    ),
    (
        # docs: include-only matrix
        "include only",
        {
            "include": [
                {"site": "production", "datacenter": "site-a"},
                {"site": "staging", "datacenter": "site-b"},
            ]
        },
        [
            {"site": "production", "datacenter": "site-a"},
            {"site": "staging", "datacenter": "site-b"},
        ],
    ),
    (
        # docs: "Excluding matrix configurations" (12 - 1 - 2 = 9 jobs)
        "exclude partial match",
        {
            "os": ["macos-latest", "windows-latest"],
            "version": [12, 14, 16],
            "environment": ["staging", "production"],
            "exclude": [
                {"os": "macos-latest", "version": 12, "environment": "production"},
                {"os": "windows-latest", "version": 16},
            ],
        },
        [
            {"os": "macos-latest", "version": 12, "environment": "staging"},
            {"os": "macos-latest", "version": 14, "environment": "staging"},
            {"os": "macos-latest", "version": 14, "environment": "production"},
            {"os": "macos-latest", "version": 16, "environment": "staging"},
            {"os": "macos-latest", "version": 16, "environment": "production"},
            {"os": "windows-latest", "version": 12, "environment": "staging"},
            {"os": "windows-latest", "version": 12, "environment": "production"},
            {"os": "windows-latest", "version": 14, "environment": "staging"},
            {"os": "windows-latest", "version": 14, "environment": "production"},
        ],
    ),
    (
        "exclude with objects compares deeply",
        {
            "os": ["ubuntu", "macos"],
            "node": [{"version": 14, "env": "x"}, {"version": 16}],
            "exclude": [{"os": "macos", "node": {"version": 14, "env": "x"}}],
        },
        [
            {"os": "ubuntu", "node": {"version": 14, "env": "x"}},
            {"os": "ubuntu", "node": {"version": 16}},
            {"os": "macos", "node": {"version": 16}},
        ],
    ),
    (
        "exclude with a partial object does not match",
        {"node": [{"version": 14, "env": "x"}], "exclude": [{"node": {"version": 14}}]},
        [{"node": {"version": 14, "env": "x"}}],
    ),
    (
        "include adds back an excluded combination",
        {
            "os": ["a", "b"],
            "v": [1, 2],
            "exclude": [{"os": "b", "v": 2}],
            "include": [{"os": "b", "v": 2, "extra": True}],
        },
        [
            {"os": "a", "v": 1},
            {"os": "a", "v": 2},
            {"os": "b", "v": 1},
            {"os": "b", "v": 2, "extra": True},
        ],
    ),
    (
        "include matching lists and objects deeply",
        {
            "cfg": [[1, 2], {"a": [1]}],
            "include": [{"cfg": {"a": [1]}, "tag": "obj"}, {"cfg": [1, 2], "tag": "list"}],
        },
        [{"cfg": [1, 2], "tag": "list"}, {"cfg": {"a": [1]}, "tag": "obj"}],
    ),
    (
        "include is type strict",
        {"v": [16, True], "include": [{"v": "16", "x": 1}, {"v": 1, "y": 2}]},
        [{"v": 16}, {"v": True}, {"v": "16", "x": 1}, {"v": 1, "y": 2}],
    ),
    (
        "later include overwrites an added value, never an original one",
        {"a": [1], "include": [{"b": 1}, {"b": 2}, {"a": 1, "b": 3}, {"a": 2, "b": 4}]},
        [{"a": 1, "b": 3}, {"a": 2, "b": 4}],
    ),
    (
        "everything excluded leaves only includes",
        {"a": [1, 2], "exclude": [{"a": 1}, {"a": 2}], "include": [{"a": 3}, {"b": 1}]},
        [{"a": 3}, {"b": 1}],
    ),
    ("everything excluded", {"a": [1], "exclude": [{"a": 1}]}, []),
    ("null include and exclude", {"a": [1], "include": None, "exclude": None}, [{"a": 1}]),
]


@pytest.mark.parametrize(("matrix", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_expand_matrix(matrix: dict[str, Any] | None, expected: list[dict[str, Any]]) -> None:
    assert expand_matrix(matrix) == expected
    # key order matters for display names: originals first, then added keys
    assert [list(job) for job in expand_matrix(matrix)] == [list(job) for job in expected]


ERRORS: list[tuple[Any, str]] = [
    ({}, "at least one vector"),
    ({"include": []}, "at least one vector"),
    ({"exclude": [{"a": 1}]}, "at least one vector"),
    ({"os": []}, "Matrix vector 'os' does not contain any values"),
    ({"os": "ubuntu"}, "Matrix vector 'os' must be a list"),
    ({"os": {"a": 1}}, "Matrix vector 'os' must be a list"),
    ({"os": ["a"], "exclude": [{"arch": "x"}]}, "exclude key 'arch' does not match"),
    ({"os": ["a"], "include": {"a": 1}}, "'include' must be a list"),
    ({"os": ["a"], "include": ["x"]}, "'include' entries must be mappings"),
    ({"os": ["a"], "exclude": "x"}, "'exclude' must be a list"),
    (["a"], "must be a mapping"),
    ({"a": list(range(16)), "b": list(range(17))}, "272 jobs"),
    ({"a": list(range(257))}, "257 jobs"),
    ({"a": list(range(1000)), "exclude": [{"a": 0}]}, "more than 256 jobs"),
    ({f"k{i}": list(range(10)) for i in range(7)}, "10000000 jobs"),
    ({"a": list(range(256)), "include": [{"a": 999}]}, "257 jobs"),
]


@pytest.mark.parametrize(("matrix", "message"), ERRORS)
def test_expand_matrix_errors(matrix: Any, message: str) -> None:
    with pytest.raises(MatrixError, match=message) as info:
        expand_matrix(matrix)
    assert isinstance(info.value, UserInputError)


def test_limit_counts_after_exclude() -> None:
    matrix = {"a": list(range(300)), "exclude": [{"a": n} for n in range(44)]}
    assert len(expand_matrix(matrix)) == MAX_JOBS


def test_results_are_copies() -> None:
    matrix = {"node": [{"v": [1]}]}
    jobs = expand_matrix(matrix)
    jobs[0]["node"]["v"].append(2)
    assert matrix == {"node": [{"v": [1]}]}


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (16, 16.0, True),
        (16, "16", False),
        (1, True, False),
        (0, False, False),
        (None, None, True),
        (None, "", False),
        ([1, [2]], [1, [2]], True),
        ([1, 2], [2, 1], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ("A", "a", False),
    ],
)
def test_same_value(a: Any, b: Any, equal: bool) -> None:
    assert same_value(a, b) is equal
    assert same_value(b, a) is equal


vector_values = st.lists(st.integers(0, 3) | st.sampled_from(["x", "y"]), min_size=1, max_size=3)
vectors = st.dictionaries(st.sampled_from(["a", "b", "c"]), vector_values, min_size=1)


@given(vectors)
def test_product_size_and_order(matrix: dict[str, list[Any]]) -> None:
    jobs = expand_matrix(matrix)
    assert jobs == [
        dict(zip(matrix, combo, strict=True)) for combo in itertools.product(*matrix.values())
    ]


@given(
    vectors,
    st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 3), max_size=2)),
)
def test_exclude_removes_exactly_matching(
    matrix: dict[str, list[Any]], exclude: list[dict[str, Any]]
) -> None:
    exclude = [e for e in exclude if set(e) <= set(matrix)]
    jobs = expand_matrix({**matrix, "exclude": exclude})
    for job in jobs:
        assert not any(all(same_value(job[k], v) for k, v in e.items()) for e in exclude)
    assert len(jobs) <= len(expand_matrix(matrix))


@given(
    vectors,
    st.lists(st.dictionaries(st.sampled_from(["a", "d", "e"]), st.integers(0, 3), max_size=2)),
)
def test_include_never_changes_original_values(
    matrix: dict[str, list[Any]], include: list[dict[str, Any]]
) -> None:
    originals = expand_matrix(matrix)
    jobs = expand_matrix({**matrix, "include": include})
    for original, job in zip(originals, jobs, strict=False):
        assert {k: job[k] for k in original} == original
    assert len(originals) <= len(jobs) <= len(originals) + len(include)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 4), {"fail-fast": True, "job-index": 0, "job-total": 4, "max-parallel": 4}),
        ((3, 4, False, 2), {"fail-fast": False, "job-index": 3, "job-total": 4, "max-parallel": 2}),
    ],
)
def test_strategy_context(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    assert strategy_context(*args).to_context() == expected


@pytest.mark.parametrize(("args"), [(4, 4), (-1, 4), (0, 0), (0, 2, True, 0)])
def test_strategy_context_rejects_bad_arguments(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match=r"job index|max_parallel"):
        strategy_context(*args)


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("build", {"os": "ubuntu", "node": 18}, "build (ubuntu, 18)"),
        ("build", {}, "build"),
        ("test", {"py": 3.10, "ok": True, "x": None}, "test (3.1, true, )"),
        ("t", {"os": "windows-latest", "node": 16, "npm": 6}, "t (windows-latest, 16, 6)"),
        ("t", {"cfg": {"os": "ubuntu", "py": [3, "3.12"]}}, "t (ubuntu, 3, 3.12)"),
    ],
)
def test_job_display_name(name: str, values: dict[str, Any], expected: str) -> None:
    assert job_display_name(name, values) == expected
