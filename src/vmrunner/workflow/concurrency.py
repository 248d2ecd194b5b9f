"""GitHub's ``concurrency`` groups as a pure, immutable state machine.

Per group (names compared case-insensitively, as on GitHub) there is at most one
*running* run and at most one *pending* run:

* A run admitted to a free group starts now.
* A run admitted to a busy group becomes the pending run; an older pending run is
  cancelled (it never starts).
* With ``cancel-in-progress: true`` the running run is cancelled too. It keeps the group
  until it has actually finished (cancelling takes time, and two runs of one group must
  never overlap), so the new run is pending until :func:`finish` reports the old one.
* When the running run finishes, the pending run (if any) is promoted and starts.

The same machine serves workflow-level and job-level concurrency; the caller namespaces
group names if it wants them apart. Does not evaluate the ``group`` expression, and does
not cancel anything itself: it tells the caller which run ids to cancel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .expressions.coerce import fold


@dataclass(frozen=True, slots=True)
class Group:
    """One group's slots. ``cancelling`` is true once the running run was cancelled."""

    running: str
    pending: str | None = None
    cancelling: bool = False


@dataclass(frozen=True, slots=True)
class ConcurrencyState:
    """Every busy group, keyed by folded group name. Never mutated: operations return a
    new state."""

    groups: Mapping[str, Group] = field(default_factory=lambda: MappingProxyType({}))

    def group(self, name: str) -> Group | None:
        """The slots of group ``name`` (any case), or None when it is free."""
        return self.groups.get(group_key(name))

    def _with(self, name: str, group: Group | None) -> ConcurrencyState:
        groups = dict(self.groups)
        if group is None:
            groups.pop(group_key(name), None)
        else:
            groups[group_key(name)] = group
        return replace(self, groups=MappingProxyType(groups))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with an admitted run, and which older runs to cancel (oldest first)."""

    start_now: bool
    cancelled: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """The run waits in the group until :func:`finish` promotes it."""
        return not self.start_now


def group_key(name: str) -> str:
    """The case-insensitive identity of a group name."""
    return fold(name)


def admit(
    state: ConcurrencyState, group: str, run_id: str, cancel_in_progress: bool = False
) -> tuple[ConcurrencyState, Decision]:
    """Admit ``run_id`` to ``group``. Raises ValueError if it is already in the group
    (a caller bug). Does not look at other groups."""
    current = state.group(group)
    if current is None:
        return state._with(group, Group(running=run_id)), Decision(start_now=True)
    if run_id in (current.running, current.pending):
        raise ValueError(f"run {run_id!r} is already in concurrency group {group!r}")
    cancelled: list[str] = []
    if cancel_in_progress and not current.cancelling:
        cancelled.append(current.running)
    if current.pending is not None:
        cancelled.append(current.pending)
    cancelling = current.cancelling or cancel_in_progress
    new_group = Group(running=current.running, pending=run_id, cancelling=cancelling)
    return state._with(group, new_group), Decision(start_now=False, cancelled=tuple(cancelled))


def finish(state: ConcurrencyState, group: str, run_id: str) -> tuple[ConcurrencyState, str | None]:
    """Record that ``run_id`` finished (or was withdrawn) and return the run to start now.

    Finishing the running run promotes the pending one; finishing the pending run (for
    example cancelled by the user before it started) just frees its slot. A run that is
    not in the group (such as a pending run already cancelled by :func:`admit`) changes
    nothing.
    """
    current = state.group(group)
    if current is None:
        return state, None
    if run_id == current.running:
        if current.pending is None:
            return state._with(group, None), None
        return state._with(group, Group(running=current.pending)), current.pending
    if run_id == current.pending:
        return state._with(group, replace(current, pending=None)), None
    return state, None
