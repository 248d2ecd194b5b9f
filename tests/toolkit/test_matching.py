"""GitHub's cache matching rules and LRU eviction (pure): a table and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.toolkit.matching import Entry, evict, match

MAIN, FEAT = "refs/heads/main", "refs/heads/feat"


def _e(i: int, key: str, scope: str = FEAT, version: str = "v1", created: float = 0.0) -> Entry:
    return Entry(i, key, version, scope, 10, created or float(i), created or float(i))


ENTRIES = [
    _e(1, "npm-linux-aaa"),
    _e(2, "npm-linux-bbb"),
    _e(3, "npm-linux-ccc", version="v2"),
    _e(4, "npm-linux-zzz", scope=MAIN),
    _e(5, "npm-mac-aaa", scope=MAIN),
    _e(6, "npm-linux-aaa", scope=MAIN),
]


@pytest.mark.parametrize(
    ("key", "restore", "version", "scopes", "want"),
    [
        ("npm-linux-aaa", [], "v1", [FEAT, MAIN], 1),  # exact key in own branch first
        ("npm-linux-aaa", [], "v1", [MAIN], 6),  # only the default branch readable
        ("npm-linux-", [], "v1", [FEAT, MAIN], 2),  # prefix of key: newest
        ("npm-linux-xxx", ["npm-linux-"], "v1", [FEAT, MAIN], 2),  # restore key, newest
        ("npm-linux-xxx", ["npm-linux-aaa", "npm-"], "v1", [FEAT], 1),  # restore keys in order
        ("npm-linux-ccc", [], "v1", [FEAT], None),  # version must match
        ("npm-linux-ccc", [], "v2", [FEAT], 3),
        ("npm-mac-", ["npm-"], "v1", [FEAT, MAIN], 2),  # own branch's restore key beats main
        ("npm-mac-", [], "v1", [FEAT, MAIN], 5),  # falls back to the default branch
        ("npm-mac-aaa", [], "v1", ["refs/heads/other"], None),  # other branches: unseen
        ("yarn", ["pip"], "v1", [FEAT, MAIN], None),
    ],
)
def test_match_table(
    key: str, restore: list[str], version: str, scopes: list[str], want: int | None
) -> None:
    found = match(ENTRIES, key, restore, version, scopes)
    assert (found.id if found else None) == want


keys = st.text(alphabet="ab-", min_size=1, max_size=5)
entries = st.lists(
    st.builds(
        Entry,
        st.integers(1, 10**6),
        keys,
        st.sampled_from(["v1", "v2"]),
        st.sampled_from([MAIN, FEAT, "refs/heads/x"]),
        st.integers(0, 100),
        st.floats(0, 1000),
        st.floats(0, 1000),
    ),  # fmt: skip
    max_size=12,
    unique_by=lambda e: e.id,
)


@given(entries, keys, st.lists(keys, max_size=3), st.sampled_from(["v1", "v2"]))
def test_match_properties(es: list[Entry], key: str, restore: list[str], version: str) -> None:
    found = match(es, key, restore, version, [FEAT, MAIN])
    if found is None:  # nothing usable matched any key
        assert not any(
            e.version == version and e.scope in (FEAT, MAIN) and e.key.startswith(k)
            for e in es for k in (key, *restore)
        )  # fmt: skip
        return
    assert found.version == version and found.scope in (FEAT, MAIN)
    assert any(found.key.startswith(k) for k in (key, *restore))
    exact = [e for e in es if e.key == key and e.version == version and e.scope == found.scope]
    if exact:
        assert found.key == key
    if found.scope == MAIN:  # the own branch had nothing for any key
        assert not any(
            e.scope == FEAT and e.version == version and e.key.startswith(k)
            for e in es for k in (key, *restore)
        )  # fmt: skip


@given(entries, st.integers(0, 600))
def test_evict_properties(es: list[Entry], limit: int) -> None:
    gone = evict(es, limit)
    kept = [e for e in es if e not in gone]
    assert sum(e.size for e in kept) <= limit or not kept
    assert sum(e.size for e in kept) <= limit
    if gone:  # least recently used go first: every kept one was used no earlier
        last = max((e.last_used, e.created_at, e.id) for e in gone)
        assert all((e.last_used, e.created_at, e.id) >= last for e in kept)
        # and no more than needed: without the last one removed, the rest would not fit
        assert sum(e.size for e in kept) + gone[-1].size > limit


def test_evict_keeps_recently_used() -> None:
    es = [Entry(1, "a", "v", MAIN, 50, 1, 9), Entry(2, "b", "v", MAIN, 50, 2, 3),
          Entry(3, "c", "v", MAIN, 50, 3, 5)]  # fmt: skip
    assert [e.id for e in evict(es, 100)] == [2]
    assert [e.id for e in evict(es, 0)] == [2, 3, 1]
    assert evict(es, 150) == []
