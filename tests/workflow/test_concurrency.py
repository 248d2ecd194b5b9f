"""The concurrency-group state machine: scenarios as tables, plus invariants."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.workflow.concurrency import ConcurrencyState, Decision, Group, admit, finish

# Each step: ("admit", group, run, cancel_in_progress, expected Decision)
#         or ("finish", group, run, expected promoted run)
# and the expected groups afterwards as {group: (running, pending, cancelling)}.
Step = tuple[Any, ...]
SCENARIOS: list[tuple[str, list[Step]]] = [
    (
        "free group starts now, finishing frees it",
        [
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("finish", "g", "r1", None, {}),
        ],
    ),
    (
        "busy group: pending, promoted on finish",
        [
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", False, Decision(False), {"g": ("r1", "r2", False)}),
            ("finish", "g", "r1", "r2", {"g": ("r2", None, False)}),
            ("finish", "g", "r2", None, {}),
        ],
    ),
    (
        "a newer pending run cancels the older pending one",
        [
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", False, Decision(False), {"g": ("r1", "r2", False)}),
            ("admit", "g", "r3", False, Decision(False, ("r2",)), {"g": ("r1", "r3", False)}),
            ("finish", "g", "r2", None, {"g": ("r1", "r3", False)}),  # already gone
            ("finish", "g", "r1", "r3", {"g": ("r3", None, False)}),
        ],
    ),
    (
        "cancel-in-progress cancels the running run; the new one waits for it to end",
        [
            ("admit", "g", "r1", True, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", True, Decision(False, ("r1",)), {"g": ("r1", "r2", True)}),
            ("finish", "g", "r1", "r2", {"g": ("r2", None, False)}),
        ],
    ),
    (
        "cancel-in-progress cancels both running and pending, each once",
        [
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", False, Decision(False), {"g": ("r1", "r2", False)}),
            ("admit", "g", "r3", True, Decision(False, ("r1", "r2")), {"g": ("r1", "r3", True)}),
            ("admit", "g", "r4", True, Decision(False, ("r3",)), {"g": ("r1", "r4", True)}),
            ("admit", "g", "r5", False, Decision(False, ("r4",)), {"g": ("r1", "r5", True)}),
            ("finish", "g", "r1", "r5", {"g": ("r5", None, False)}),
        ],
    ),
    (
        "the new run's setting decides: false keeps the running run",
        [
            ("admit", "g", "r1", True, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", False, Decision(False), {"g": ("r1", "r2", False)}),
        ],
    ),
    (
        "group names are case-insensitive; groups are independent",
        [
            (
                "admit",
                "Deploy-Prod",
                "r1",
                False,
                Decision(True),
                {"deploy-prod": ("r1", None, False)},
            ),
            (
                "admit",
                "other",
                "r2",
                True,
                Decision(True),
                {"deploy-prod": ("r1", None, False), "other": ("r2", None, False)},
            ),
            (
                "admit",
                "deploy-PROD",
                "r3",
                True,
                Decision(False, ("r1",)),
                {"deploy-prod": ("r1", "r3", True), "other": ("r2", None, False)},
            ),
            (
                "finish",
                "DEPLOY-prod",
                "r1",
                "r3",
                {"deploy-prod": ("r3", None, False), "other": ("r2", None, False)},
            ),
        ],
    ),
    (
        "withdrawing the pending run frees its slot",
        [
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("admit", "g", "r2", False, Decision(False), {"g": ("r1", "r2", False)}),
            ("finish", "g", "r2", None, {"g": ("r1", None, False)}),
            ("finish", "g", "r1", None, {}),
        ],
    ),
    (
        "finishing an unknown run or group changes nothing",
        [
            ("finish", "g", "r1", None, {}),
            ("admit", "g", "r1", False, Decision(True), {"g": ("r1", None, False)}),
            ("finish", "g", "zz", None, {"g": ("r1", None, False)}),
        ],
    ),
]


def _groups(state: ConcurrencyState) -> dict[str, tuple[str, str | None, bool]]:
    return {k.lower(): (g.running, g.pending, g.cancelling) for k, g in state.groups.items()}


@pytest.mark.parametrize("steps", [s[1] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_scenarios(steps: list[Step]) -> None:
    state = ConcurrencyState()
    for step in steps:
        if step[0] == "admit":
            _, group, run, cancel, decision, groups = step
            state, got = admit(state, group, run, cancel)
            assert got == decision
            assert got.pending is not got.start_now
        else:
            _, group, run, promoted, groups = step
            state, got_promoted = finish(state, group, run)
            assert got_promoted == promoted
        assert _groups(state) == groups


def test_state_is_immutable() -> None:
    empty = ConcurrencyState()
    one, _ = admit(empty, "g", "r1")
    two, _ = admit(one, "g", "r2")
    assert empty.groups == {}
    assert one.group("G") == Group("r1")
    assert two.group("g") == Group("r1", "r2")
    with pytest.raises(TypeError):
        one.groups["x"] = Group("r9")  # type: ignore[index]


def test_admitting_a_run_twice_is_a_bug() -> None:
    state, _ = admit(ConcurrencyState(), "g", "r1")
    with pytest.raises(ValueError, match="already in concurrency group"):
        admit(state, "g", "r1")
    state, _ = admit(state, "g", "r2")
    with pytest.raises(ValueError, match="already"):
        admit(state, "g", "r2", True)


operations = st.lists(
    st.tuples(
        st.sampled_from(["admit", "finish"]), st.sampled_from(["a", "B", "b"]), st.booleans()
    ),
    max_size=40,
)


@given(operations)
def test_invariants(ops: list[tuple[str, str, bool]]) -> None:
    """At most one run per group at a time; every admitted run is started or cancelled
    exactly once, never both; nothing is lost."""
    state = ConcurrencyState()
    running: dict[str, str] = {}
    started: list[str] = []
    cancelled_pending: list[str] = []
    counter = 0
    for op, group, cancel in ops:
        key = group.lower()
        if op == "admit":
            counter += 1
            run = f"r{counter}"
            was = state.group(group)
            state, decision = admit(state, group, run, cancel)
            if decision.start_now:
                assert key not in running
                running[key] = run
                started.append(run)
            for victim in decision.cancelled:
                if was is not None and victim == was.pending:
                    cancelled_pending.append(victim)
                else:
                    assert victim == running[key]
        elif key in running:
            state, promoted = finish(state, group, running.pop(key))
            if promoted is not None:
                running[key] = promoted
                started.append(promoted)
    pending = [g.pending for g in state.groups.values() if g.pending]
    assert len(started) == len(set(started))
    assert not set(started) & set(cancelled_pending)
    assert sorted(started + cancelled_pending + pending) == sorted(
        f"r{i}" for i in range(1, counter + 1)
    )
    assert {k.lower(): g.running for k, g in state.groups.items()} == running
