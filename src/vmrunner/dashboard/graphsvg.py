"""The command graph around one command, as SVG text drawn on the server.

Input: what ``LearningService.related(command).to_dict()`` returns -- the commands
usually run ``before`` and ``after`` it (with counts and success rates) and the
failure signatures it ``failed_with``. The graph (networkx) has one node per distinct
command (a command seen both before and after is one node with two edges) and one per
signature. Layout, in columns: the commands before on the left, the command in the
middle, the commands only seen after on the right, its failure signatures under it.
Every label is XML-escaped; long ones are shortened, with the whole text in a
``<title>``. No script, no external reference.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import networkx as nx

COL_W, ROW_H, BOX_W, BOX_H, MARGIN = 300, 56, 240, 34, 20
MAX_LABEL = 34


def _command(g: Any, command: str, column: int, first: bool = False) -> str:
    """Add (once) the node of ``command`` in ``column``; its id."""
    node = f"cmd:{command}"
    if node not in g:
        g.add_node(node, kind="command", label=command, column=column, first=first)
    return node


def build_graph(related: Mapping[str, Any]) -> Any:
    """The ``nx.DiGraph`` of ``related`` (see the module's docstring): node ids
    ``cmd:<command>`` and ``sig:<id>``; attributes ``kind`` (centre, command, signature),
    ``label``, ``column`` (0 the centre, negative before it, positive after) and
    ``first`` (on the usual sequence, drawn on the top row); edge attribute ``n``."""
    g = nx.DiGraph()
    centre = str(related.get("normalised") or related.get("command") or "")
    me = f"cmd:{centre}"
    g.add_node(me, kind="centre", label=centre, column=0, first=True)
    seq = [str(c) for c in related.get("usual_sequence") or ()]
    at = seq.index(centre) if centre in seq else -1
    for i, command in enumerate(seq if at >= 0 else ()):
        if command != centre:
            _command(g, command, i - at, first=True)
    for a, b in itertools.pairwise(seq) if at >= 0 else ():
        if a != b:
            g.add_edge(f"cmd:{a}", f"cmd:{b}", n=0)
    for key, column in (("before", -1), ("after", 1)):
        for row in related.get(key) or ():
            if str(row["command"]) == centre:
                continue
            node = _command(g, str(row["command"]), column)
            edge = (node, me) if key == "before" else (me, node)
            g.add_edge(*edge, n=int(row.get("count", 0)))
    for row in related.get("failed_with") or ():
        node = f"sig:{row['signature_id']}"
        g.add_node(node, kind="signature", label=str(row.get("template", "")), column=None)
        g.add_edge(me, node, n=int(row.get("count", 0)))
    return g


def layout(g: Any) -> dict[str, tuple[float, float]]:
    """The centre of each node's box: command columns side by side from left to right
    (the usual sequence on the top row, the other neighbours under it), the failure
    signatures in a row under everything, starting under the centre command."""
    columns: dict[int, list[str]] = {}
    sigs = []
    for node, data in g.nodes(data=True):
        if data["column"] is None:
            sigs.append(node)
        else:
            columns.setdefault(int(data["column"]), []).append(node)
    low = min(columns)
    pos: dict[str, tuple[float, float]] = {}
    for col, nodes in columns.items():
        nodes.sort(key=lambda n: (not g.nodes[n]["first"], n))
        for i, node in enumerate(nodes):
            pos[node] = (MARGIN + BOX_W / 2 + (col - low) * COL_W, MARGIN + BOX_H / 2 + i * ROW_H)
    rows = max(len(nodes) for nodes in columns.values())
    for i, node in enumerate(sorted(sigs)):
        x = MARGIN + BOX_W / 2 + (i - low) * COL_W
        pos[node] = (x, MARGIN + BOX_H / 2 + (rows + 0.6) * ROW_H)
    return pos


_NOT_XML = re.compile("[^\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _label(text: str) -> str:
    """``text`` as XML character data on one line: tabs and line breaks become spaces,
    other characters XML cannot hold U+FFFD."""
    return escape(_NOT_XML.sub("\ufffd", re.sub(r"[\t\n\r]+", " ", text)))


def node_text(node: str) -> str:
    """A node id as the text of its ``data-node`` attribute, one-to-one: backslashes
    doubled, and the characters an attribute cannot keep as they are (controls, tab,
    line breaks) written ``\\uNNNN``."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", node.replace("\\", "\\\\"))


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _node_svg(node: str, data: Mapping[str, Any], x: float, y: float) -> str:
    label = str(data["label"])
    return (f'<g class="node {data["kind"]}" data-node="{escape(node_text(node), {chr(34): "&quot;"})}">'
            f"<title>{_label(label)}</title>"
            f'<rect x="{x - BOX_W / 2:.1f}" y="{y - BOX_H / 2:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle">{_label(_short(label))}</text></g>')  # fmt: skip


def _edge_svg(a: tuple[float, float], b: tuple[float, float], n: int) -> str:
    (x1, y1), (x2, y2) = a, b
    if abs(y2 - y1) > abs(x2 - x1):  # below: from the bottom edge to the top edge
        y1, y2 = y1 + BOX_H / 2, y2 - BOX_H / 2
    else:
        x1, x2 = (x1 + BOX_W / 2, x2 - BOX_W / 2) if x2 > x1 else (x1 - BOX_W / 2, x2 + BOX_W / 2)
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    return (f'<g class="edge"><line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'marker-end="url(#arrow)"/><text x="{mx:.1f}" y="{my - 4:.1f}" '
            f'text-anchor="middle">{f"{n}×" if n else ""}</text></g>')  # fmt: skip


def render_svg(related: Mapping[str, Any]) -> str:
    """The SVG document (text) of the graph around ``related``'s command."""
    g = build_graph(related)
    pos = layout(g)
    width = max(x for x, _ in pos.values()) + BOX_W / 2 + MARGIN
    height = max(y for _, y in pos.values()) + BOX_H / 2 + MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="command-graph" role="img" '
             f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>']  # fmt: skip
    parts += [_edge_svg(pos[a], pos[b], int(d.get("n", 0))) for a, b, d in g.edges(data=True)]
    parts += [_node_svg(n, d, *pos[n]) for n, d in g.nodes(data=True)]
    parts.append("</svg>")
    return "".join(parts)
