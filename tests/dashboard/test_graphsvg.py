"""The command graph as SVG: valid XML, one node per distinct command (and per
signature), labels escaped, no script."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vmrunner.dashboard.graphsvg import build_graph, node_text, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _nodes(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)  # raises on anything but well-formed XML
    assert root.tag == f"{SVG}svg"
    return [g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()]


def _related(command: str, before: list[str], after: list[str], sigs: list[str],
             sequence: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"command": command, "normalised": command, "observations": 3,
            "usual_sequence": sequence or [],
            "before": [{"command": c, "count": i + 1, "success_rate": 1.0} for i, c in enumerate(before)],
            "after": [{"command": c, "count": i + 1, "success_rate": 0.5} for i, c in enumerate(after)],
            "failed_with": [{"signature_id": f"s{i}", "template": t, "count": 2} for i, t in enumerate(sigs)]}  # fmt: skip


def test_a_small_graph() -> None:
    related = _related("make test", ["make", "./configure"], ["make install"], ["E assert <num>"],
                       sequence=["./configure", "make", "make test", "make install"])  # fmt: skip
    nodes = _nodes(render_svg(related))
    ids = sorted(n.get("data-node") or "" for n in nodes)
    assert ids == ["cmd:./configure", "cmd:make", "cmd:make install", "cmd:make test", "sig:s0"]
    g = build_graph(related)
    assert g.has_edge("cmd:./configure", "cmd:make")  # from the usual sequence
    assert g.edges["cmd:make", "cmd:make test"]["n"] == 1
    assert g.has_edge("cmd:make test", "sig:s0")
    assert [n.get("class") for n in nodes if n.get("data-node") == "cmd:make test"] == [
        "node centre"
    ]


def test_a_command_seen_before_and_after_is_one_node() -> None:
    g = build_graph(_related("make", ["git pull"], ["git pull", "make"], []))
    assert sorted(g.nodes) == ["cmd:git pull", "cmd:make"]
    assert g.has_edge("cmd:git pull", "cmd:make") and g.has_edge("cmd:make", "cmd:git pull")


def test_hostile_labels_are_escaped() -> None:
    evil = '</text><script>alert(1)</script><text x="'
    svg = render_svg(_related(evil, [evil + "1"], [], ["<b>&amp;</b>"]))
    root = ET.fromstring(svg)
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    titles = [e.text for e in root.iter(f"{SVG}title")]
    assert evil in titles and "<b>&amp;</b>" in titles


WORDS = st.text(min_size=1, max_size=40)


@given(WORDS, st.lists(WORDS, max_size=6), st.lists(WORDS, max_size=6), st.lists(WORDS, max_size=4),
       st.lists(WORDS, max_size=5))  # fmt: skip
def test_one_node_per_command_and_signature(
    centre: str, before: list[str], after: list[str], sigs: list[str], sequence: list[str]
) -> None:
    seq = [*sequence[:2], centre, *sequence[2:]]
    svg = render_svg(_related(centre, before, after, sigs, seq))
    ids = [n.get("data-node") for n in _nodes(svg)]
    assert len(ids) == len(set(ids))
    commands = {node_text(f"cmd:{c}") for c in [centre, *before, *after, *seq]}
    assert {i for i in ids if i and i.startswith("cmd:")} == commands
    assert {i for i in ids if i and i.startswith("sig:")} == {f"sig:s{i}" for i in range(len(sigs))}
