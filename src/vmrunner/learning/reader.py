"""Point queries behind ``predict`` and ``related``: each is a handful of index lookups.

Every function takes an open connection and normalised inputs, and returns plain
values or result dataclasses; none writes, none reads the clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import Connection, false, func, select

from vmrunner.learning import models
from vmrunner.learning.batch import ALL_REPOS
from vmrunner.learning.predict import LevelCounts
from vmrunner.learning.results import Neighbour, SignatureRef

CO_FAILURE_RUNS = 100


def _counts(conn: Connection, level: str, key: str, stmt: object) -> LevelCounts:
    row = conn.execute(stmt).first()  # type: ignore[call-overload]
    n, ok = (int(row[0]), int(row[1])) if row else (0, 0)
    return LevelCounts(level=level, key=key, n=n, successes=ok)


def command_counts(conn: Connection, level: str, repo: str, norm: str) -> LevelCounts:
    """Runs and successes of ``norm`` in ``repo`` (``'*'``: everywhere), labelled ``level``."""
    t = models.cmd_stats
    stmt = select(t.c.n, t.c.ok).where(t.c.repo == repo, t.c.cmd == norm)
    return _counts(conn, level, repo if repo != ALL_REPOS else norm, stmt)


def _edge(conn: Connection, level: str, repo: str, prev: str, norm: str) -> LevelCounts:
    t = models.edge_stats
    stmt = select(t.c.n, t.c.ok).where(t.c.repo == repo, t.c.prev == prev, t.c.cmd == norm)
    key = f"{repo} after {prev}" if repo != ALL_REPOS else f"after {prev}"
    return _counts(conn, level, key, stmt)


def level_chain(
    conn: Connection, norm: str, fam: str, repo: str | None, prev: str | None
) -> list[LevelCounts]:
    """Counts for every context level of the back-off chain, most specific first."""
    chain: list[LevelCounts] = []
    if prev is not None:
        if repo is not None:
            chain.append(_edge(conn, "repo+after", repo, prev, norm))
        else:
            chain.append(_edge(conn, "after", ALL_REPOS, prev, norm))
    if repo is not None:
        chain.append(command_counts(conn, "repo", repo, norm))
    chain.append(command_counts(conn, "global", ALL_REPOS, norm))
    t = models.family_stats
    chain.append(_counts(conn, "family", fam, select(t.c.n, t.c.ok).where(t.c.family == fam)))
    return chain


def totals(conn: Connection) -> tuple[int, int]:
    """Total observations and successes (summed over the small family table)."""
    t = models.family_stats
    row = conn.execute(
        select(func.coalesce(func.sum(t.c.n), 0), func.coalesce(func.sum(t.c.ok), 0))
    )
    n, ok = row.one()
    return int(n), int(ok)


def _neighbours(rows: Sequence[tuple[str, int, int]]) -> tuple[Neighbour, ...]:
    return tuple(Neighbour(cmd, int(n), int(ok) / int(n) if n else 0.0) for cmd, n, ok in rows)


def before(conn: Connection, norm: str, repo: str, limit: int) -> tuple[Neighbour, ...]:
    """Commands that preceded ``norm`` most often (success rate is of ``norm`` after them)."""
    t = models.edge_stats
    stmt = (
        select(t.c.prev, t.c.n, t.c.ok)
        .where(t.c.repo == repo, t.c.cmd == norm)
        .order_by(t.c.n.desc(), t.c.prev)
        .limit(limit)
    )
    return _neighbours([(r[0], r[1], r[2]) for r in conn.execute(stmt)])


def after(conn: Connection, norm: str, repo: str, limit: int) -> tuple[Neighbour, ...]:
    """Commands that followed ``norm`` most often (success rate is of the follower)."""
    t = models.edge_stats
    stmt = (
        select(t.c.cmd, t.c.n, t.c.ok)
        .where(t.c.repo == repo, t.c.prev == norm)
        .order_by(t.c.n.desc(), t.c.cmd)
        .limit(limit)
    )
    return _neighbours([(r[0], r[1], r[2]) for r in conn.execute(stmt)])


def failed_with(conn: Connection, norm: str, limit: int) -> tuple[SignatureRef, ...]:
    """The signatures ``norm`` failed with, most frequent first."""
    cs, s = models.cmd_signatures, models.signatures
    stmt = (
        select(s.c.key, s.c.template, cs.c.n)
        .join(s, s.c.id == cs.c.signature_id)
        .where(cs.c.cmd == norm)
        .order_by(cs.c.n.desc(), s.c.key)
        .limit(limit)
    )
    return tuple(SignatureRef(short_id(k), tpl, int(n)) for k, tpl, n in conn.execute(stmt))


def co_failures(conn: Connection, norm: str, repo: str | None, limit: int) -> tuple[Neighbour, ...]:
    """Commands that also failed in the job runs where ``norm`` failed most recently.

    Looks at the last ``CO_FAILURE_RUNS`` failing runs of ``norm``; ``count`` is the
    number of those job runs in which the other command failed too, ``success_rate``
    is 0 by construction (they are failures) and kept for a uniform shape.
    """
    o = models.observations
    stmt = select(o.c.run_id, o.c.job).where(o.c.norm == norm, o.c.ok == false())
    if repo is not None:
        stmt = stmt.where(o.c.repo == repo)
    runs = conn.execute(stmt.order_by(o.c.ts.desc()).limit(CO_FAILURE_RUNS)).all()
    pairs = {(r[0], r[1]) for r in runs}
    if not pairs:
        return ()
    rows = [
        r
        for r in conn.execute(
            select(o.c.run_id, o.c.job, o.c.norm).where(
                o.c.run_id.in_(sorted({p[0] for p in pairs})), o.c.ok == false(), o.c.norm != norm
            )
        )
        if (r[0], r[1]) in pairs
    ]
    distinct = {(r[0], r[1], r[2]) for r in rows}
    counts = Counter(cmd for _, _, cmd in distinct)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return tuple(Neighbour(cmd, n, 0.0) for cmd, n in top)


def short_id(key: str) -> str:
    """The public id of a signature: the first 12 characters of its key."""
    return key[:12]
