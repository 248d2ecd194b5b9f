"""The command graph in networkx: loaded from the store's edge tables.

Nodes are ``"cmd:<normalised command>"`` (``kind="command"``) and ``"sig:<id>"``
(``kind="signature"``, with its ``template``). Edges are ``followed_by`` between
commands (``n`` transitions, ``ok`` of them followed by a success, ``fail`` the
rest) and ``failed_with`` from a command to a signature (``n``).

``load_graph`` loads a whole repository scope (for export and offline analysis);
``ego_graph`` loads only the few hops around one command, cheaply enough for a
query; ``usual_sequence`` walks such a graph. Reading only, no clock.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
from sqlalchemy import Connection, select

from vmrunner.learning import models
from vmrunner.learning.batch import ALL_REPOS
from vmrunner.learning.reader import short_id


def cmd_node(norm: str) -> str:
    return f"cmd:{norm}"


def _add_edge(g: Any, prev: str, cmd: str, n: int, ok: int) -> None:
    for node in (prev, cmd):
        g.add_node(cmd_node(node), kind="command", command=node)
    g.add_edge(cmd_node(prev), cmd_node(cmd), kind="followed_by", n=n, ok=ok, fail=n - ok)


def load_graph(conn: Connection, repo: str | None = None, min_count: int = 1) -> Any:
    """The whole graph for ``repo`` (``None``: every repository) as an ``nx.DiGraph``.

    Edges seen fewer than ``min_count`` times are left out. Loads every edge row of
    the scope: meant for export and analysis, not for per-request use.
    """
    g = nx.DiGraph()
    e = models.edge_stats
    scope = ALL_REPOS if repo is None else repo
    for prev, cmd, n, ok in conn.execute(
        select(e.c.prev, e.c.cmd, e.c.n, e.c.ok).where(e.c.repo == scope, e.c.n >= min_count)
    ):
        _add_edge(g, prev, cmd, int(n), int(ok))
    cs, s = models.cmd_signatures, models.signatures
    for cmd, key, template, n in conn.execute(
        select(cs.c.cmd, s.c.key, s.c.template, cs.c.n)
        .join(s, s.c.id == cs.c.signature_id)
        .where(cs.c.n >= min_count)
    ):
        if repo is not None and cmd_node(cmd) not in g:
            continue
        sig = f"sig:{short_id(key)}"
        g.add_node(cmd_node(cmd), kind="command", command=cmd)
        g.add_node(sig, kind="signature", template=template)
        g.add_edge(cmd_node(cmd), sig, kind="failed_with", n=int(n))
    return g


def ego_graph(conn: Connection, norm: str, repo: str, hops: int = 3, fanout: int = 3) -> Any:
    """The ``followed_by`` edges around the usual path through ``norm``.

    From ``norm``, follows the heaviest not yet visited edge up to ``hops`` times in
    each direction, loading the ``fanout`` heaviest edges of every node on the way
    (``2 * hops`` small queries at most).
    """
    e = models.edge_stats
    g = nx.DiGraph()
    g.add_node(cmd_node(norm), kind="command", command=norm)
    for forward in (True, False):
        near, far = (e.c.prev, e.c.cmd) if forward else (e.c.cmd, e.c.prev)
        node, seen = norm, {norm}
        for _ in range(hops):
            rows = conn.execute(
                select(far, e.c.n, e.c.ok)
                .where(e.c.repo == repo, near == node)
                .order_by(e.c.n.desc(), far)
                .limit(fanout)
            ).all()
            for other, n, ok in rows:
                prev, cmd = (node, other) if forward else (other, node)
                _add_edge(g, prev, cmd, int(n), int(ok))
            unseen = [r[0] for r in rows if r[0] not in seen]
            if not unseen:
                break
            node = unseen[0]
            seen.add(node)
    return g


def _walk(g: Any, start: str, forward: bool, hops: int) -> list[str]:
    path: list[str] = []
    seen = {start}
    node = start
    for _ in range(hops):
        edges = g.out_edges(node, data="n") if forward else g.in_edges(node, data="n")
        options = [
            (n, (v if forward else u)) for u, v, n in edges if (v if forward else u) not in seen
        ]
        if not options:
            break
        _, node = max(options, key=lambda o: (o[0], o[1]))
        seen.add(node)
        path.append(node)
    return path


def usual_sequence(g: Any, norm: str, hops: int = 3) -> tuple[str, ...]:
    """The most frequent path through ``norm``: greedy walks backward and forward along
    the heaviest ``followed_by`` edges, without revisiting a command."""
    start = cmd_node(norm)
    if start not in g:
        return (norm,)
    back = _walk(g, start, forward=False, hops=hops)[::-1]
    fwd = _walk(g, start, forward=True, hops=hops)
    return tuple(str(g.nodes[n]["command"]) for n in [*back, start, *fwd])
