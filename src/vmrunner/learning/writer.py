"""The write path: one transaction per batch of observations.

Inside the transaction: failure templates are resolved to clustered signatures
(an exact template seen before is a single lookup; a new one is compared with the
signatures of its bucket and merged into the best match or created), observation
rows are inserted, and every aggregate table gets one upsert per key. The
signature cache is only updated after the commit, so a rolled-back attempt leaves
no stale entries. Does not compute anything the pure modules can (see ``batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    case,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from vmrunner.learning import cluster, models
from vmrunner.learning.batch import Prepared, aggregate, job_run_rows
from vmrunner.learning.results import RecordSummary
from vmrunner.learning.store import Store

CHUNK = 2000
MAX_CACHE = 200_000
BUCKET_CANDIDATES = 200


def _insert(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


_COMPILED: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {}


def execute_many(
    conn: Connection,
    name: str,
    build: Callable[[], ClauseElement],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Run the statement ``build()`` for every row, compiled once per dialect and ``name``.

    Bypasses SQLAlchemy's per-row parameter processing (the rows are plain values
    already), which is most of the cost of a large ``executemany``.
    """
    if not rows:
        return
    key = (conn.dialect.name, name)
    if key not in _COMPILED:
        compiled = build().compile(dialect=conn.dialect)
        assert isinstance(compiled, SQLCompiler)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        _COMPILED[key] = (compiled.string, order)
    sql, order = _COMPILED[key]
    for chunk in _chunks(rows):
        if order is None:
            params = chunk
        elif len(order) == 1:
            params = [(r[order[0]],) for r in chunk]
        else:
            params = list(map(itemgetter(*order), chunk))
        conn.exec_driver_sql(sql, params)


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(rows), size):
        yield list(rows[i : i + size])


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Plain inserts of ``rows`` (every row has the same keys)."""
    if not rows:
        return
    names = tuple(rows[0])

    def build() -> ClauseElement:
        return table.insert().values({n: bindparam(n) for n in names})

    execute_many(conn, f"insert:{table.name}:{','.join(names)}", build, rows)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    add: Sequence[str] = (),
    least: Sequence[str] = (),
    greatest: Sequence[str] = (),
    fill_if: Mapping[str, str] | None = None,
) -> None:
    """Insert ``rows``, or on a key conflict add the ``add`` columns, keep the smaller
    ``least`` and larger ``greatest`` values, and replace ``fill_if`` columns that
    still hold their placeholder value. Every row has the same keys."""
    if not rows:
        return
    names = tuple(rows[0])
    fills = dict(fill_if or {})

    def build() -> ClauseElement:
        stmt = _insert(conn.dialect.name, table).values({n: bindparam(n) for n in names})
        ex, col = stmt.excluded, table.c
        set_: dict[str, Any] = {c: col[c] + ex[c] for c in add}
        set_ |= {c: case((ex[c] < col[c], ex[c]), else_=col[c]) for c in least}
        set_ |= {c: case((ex[c] > col[c], ex[c]), else_=col[c]) for c in greatest}
        set_ |= {
            c: case((col[c] == literal_column(f"'{v}'"), ex[c]), else_=col[c])
            for c, v in fills.items()
        }
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_)

    name = f"upsert:{table.name}:{','.join(names)}:{add}:{least}:{greatest}:{sorted(fills)}"
    execute_many(conn, name, build, rows)


def _insert_ignore(conn: Connection, table: Table, row: Mapping[str, Any], key: str) -> None:
    stmt = _insert(conn.dialect.name, table).on_conflict_do_nothing(index_elements=[key])
    conn.execute(stmt, [dict(row)])


class SignatureResolver:
    """Maps failure templates to clustered signature ids; caches exact templates."""

    def __init__(self, threshold: float = cluster.DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._cache: dict[str, int] = {}

    def remember(self, aliases: Mapping[str, int]) -> None:
        """Add committed template-to-signature mappings to the cache."""
        if len(self._cache) + len(aliases) > MAX_CACHE:
            self._cache.clear()
        self._cache.update(aliases)

    def resolve(self, conn: Connection, prepared: Sequence[Prepared]) -> tuple[dict[str, int], int]:
        """Set ``signature_id`` on failing rows; returns the new aliases and the number of
        signatures created."""
        keys = {p.signature.key for p in prepared if p.signature is not None}
        known = {k: self._cache[k] for k in keys if k in self._cache}
        known |= self._lookup_aliases(conn, keys - known.keys())
        fresh: dict[str, int] = {}
        created = 0
        for p in prepared:
            if p.signature is None:
                continue
            key = p.signature.key
            if key not in known:
                sig_id, new = self._cluster_or_create(conn, p, key)
                known[key] = fresh[key] = sig_id
                created += new
            p.row["signature_id"] = known[key]
        return fresh, created

    @staticmethod
    def _lookup_aliases(conn: Connection, keys: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        alias = models.signature_aliases
        ordered = sorted(keys)
        for i in range(0, len(ordered), 500):
            q = select(alias.c.template_key, alias.c.signature_id).where(
                alias.c.template_key.in_(ordered[i : i + 500])
            )
            found.update({k: int(v) for k, v in conn.execute(q)})
        return found

    def _cluster_or_create(self, conn: Connection, p: Prepared, key: str) -> tuple[int, int]:
        assert p.signature is not None
        sigs = models.signatures
        toks = cluster.tokens(p.signature.template)
        bucket = cluster.bucket(toks)
        rows = conn.execute(
            select(sigs.c.id, sigs.c.template)
            .where(sigs.c.bucket == bucket)
            .order_by(sigs.c.n.desc(), sigs.c.id)
            .limit(BUCKET_CANDIDATES)
        ).all()
        templates = {int(r.id): cluster.tokens(r.template) for r in rows}
        match = cluster.best_match(toks, templates.items(), self.threshold)
        created = 0
        if match is not None:
            merged = cluster.merge(templates[match], toks)
            if merged != templates[match]:
                conn.execute(
                    update(sigs)
                    .where(sigs.c.id == match)
                    .values(template=cluster.detokenise(merged))
                )
            sig_id = match
        else:
            ts = p.row["ts"]
            new = {
                "key": key,
                "bucket": bucket,
                "template": p.signature.template,
                "example": p.signature.excerpt,
                "n": 0,
                "first_ts": ts,
                "last_ts": ts,
            }
            _insert_ignore(conn, sigs, new, "key")
            sig_id = int(conn.execute(select(sigs.c.id).where(sigs.c.key == key)).scalar_one())
            created = 1
        _insert_ignore(
            conn,
            models.signature_aliases,
            {"template_key": key, "signature_id": sig_id},
            "template_key",
        )
        return sig_id, created


def _signature_deltas(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    sig: dict[int, dict[str, Any]] = {}
    ctx: dict[tuple[Any, ...], dict[str, Any]] = {}
    cmd: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        sid, ts = r["signature_id"], r["ts"]
        if sid is None:
            continue
        s = sig.setdefault(sid, {"sid": sid, "d": 0, "first": ts, "last": ts})
        s["d"] += 1
        s["first"], s["last"] = min(s["first"], ts), max(s["last"], ts)
        c = ctx.setdefault(
            (sid, r["repo"], r["workflow"], r["job"]), {"n": 0, "first_ts": ts, "last_ts": ts}
        )
        c["n"] += 1
        c["first_ts"], c["last_ts"] = min(c["first_ts"], ts), max(c["last_ts"], ts)
        m = cmd.setdefault((r["norm"], sid), {"n": 0, "last_ts": ts})
        m["n"] += 1
        m["last_ts"] = max(m["last_ts"], ts)
    ctx_rows = [
        {"signature_id": k[0], "repo": k[1], "workflow": k[2], "job": k[3], **ctx[k]}
        for k in sorted(ctx)
    ]
    cmd_rows = [{"cmd": k[0], "signature_id": k[1], **cmd[k]} for k in sorted(cmd)]
    return [sig[k] for k in sorted(sig)], ctx_rows, cmd_rows


def _write_signature_stats(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    sig_rows, ctx_rows, cmd_rows = _signature_deltas(rows)
    if sig_rows:
        s = models.signatures
        stmt = (
            update(s)
            .where(s.c.id == bindparam("sid"))
            .values(
                n=s.c.n + bindparam("d"),
                first_ts=case(
                    (bindparam("first") < s.c.first_ts, bindparam("first")), else_=s.c.first_ts
                ),
                last_ts=case(
                    (bindparam("last") > s.c.last_ts, bindparam("last")), else_=s.c.last_ts
                ),
            )
        )
        conn.execute(stmt, sig_rows)
    upsert(
        conn,
        models.sig_contexts,
        ctx_rows,
        ("signature_id", "repo", "workflow", "job"),
        add=("n",),
        least=("first_ts",),
        greatest=("last_ts",),
    )
    upsert(
        conn,
        models.cmd_signatures,
        cmd_rows,
        ("cmd", "signature_id"),
        add=("n",),
        greatest=("last_ts",),
    )


def _write_aggregates(conn: Connection, prepared: Sequence[Prepared]) -> None:
    rows = [p.row for p in prepared]
    d = aggregate(rows)
    upsert(
        conn,
        models.cmd_stats,
        d.cmd_stats,
        ("repo", "cmd"),
        add=("n", "ok", "dur_sum"),
        least=("first_ts",),
        greatest=("last_ts", "dur_max"),
    )
    upsert(conn, models.family_stats, d.family_stats, ("family",), add=("n", "ok"))
    upsert(conn, models.edge_stats, d.edge_stats, ("repo", "prev", "cmd"), add=("n", "ok"))
    upsert(
        conn, models.commit_stats, d.commit_stats, ("repo", "commit_sha", "cmd"), add=("n", "ok")
    )
    upsert(
        conn,
        models.job_runs,
        job_run_rows(prepared),
        ("run_id", "job"),
        add=("n_steps", "n_failed"),
        least=("started_ts",),
        greatest=("ended_ts",),
        fill_if={"env": "{}"},
    )
    _write_signature_stats(conn, rows)


def record(
    store: Store, resolver: SignatureResolver, prepared: Sequence[Prepared]
) -> RecordSummary:
    """Store ``prepared`` observations and their aggregates in one transaction."""
    if not prepared:
        return RecordSummary(recorded=0, failures=0, new_signatures=0)

    def tx(conn: Connection) -> tuple[dict[str, int], int]:
        fresh, created = resolver.resolve(conn, prepared)
        insert_rows(conn, models.observations, [p.row for p in prepared])
        _write_aggregates(conn, prepared)
        return fresh, created

    fresh, created = store.write(tx)
    resolver.remember(fresh)
    failures = sum(1 for p in prepared if p.signature is not None)
    return RecordSummary(recorded=len(prepared), failures=failures, new_signatures=created)
