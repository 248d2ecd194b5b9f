"""``hashFiles(...)``, computed in the guest against the workspace the steps see.

Expressions are evaluated synchronously, the guest is asynchronous: so before a step's
expressions are evaluated, :func:`collect_patterns` finds every ``hashFiles`` call in the
step (arguments evaluated against the step's contexts), :func:`compute_hashes` runs
:data:`HASH_SCRIPT` once in the guest for the missing ones, and the results are served
from a cache by :class:`HashCache` (a ``Functions.hash_files``). A call whose arguments
could not be known ahead is an :class:`ExpressionError`, not a guess. The cache lives for
one step only: ``run_step`` calls :meth:`HashCache.invalidate` once a step has run, since
the step may have changed the workspace (the next step hashes it afresh, as GitHub does).

The algorithm is the runner's: each pattern is a glob relative to ``GITHUB_WORKSPACE``
(``*``, ``?``, ``[...]``, ``**``; a pattern matching a directory matches the files below
it; dot files are matched), a ``!`` pattern excludes what earlier patterns included (the
last matching pattern wins), only regular files inside the workspace count, sorted by
path; the hash is the hex SHA-256 of the concatenated SHA-256 digests of the files, and
the empty string when no file matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmrunner.runner.guest import Guest
from vmrunner.vm.machine import ExecOptions
from vmrunner.workflow.expressions import ExpressionError, Functions, parse, to_string
from vmrunner.workflow.expressions.evaluator import evaluate_node
from vmrunner.workflow.expressions.nodes import Call, Node, walk
from vmrunner.workflow.expressions.template import find_expressions
from vmrunner.workflow.loader import MappingNode, ScalarNode, SequenceNode
from vmrunner.workflow.loader import Node as YamlNode

# argv: workspace, then one JSON list of patterns per line on stdin; prints one hash a line.
HASH_SCRIPT = r"""
import hashlib, json, os, re, sys
ws = os.path.realpath(sys.argv[1])
def rx(pat):
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i): out += "(?:.*/)?"; i += 3; continue
        if pat.startswith("**", i): out += ".*"; i += 2; continue
        if c == "*": out += "[^/]*"
        elif c == "?": out += "[^/]"
        elif c == "[" and pat.find("]", i + 2) > 0:
            j = pat.find("]", i + 2); body = pat[i + 1:j]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"; i = j
        else: out += re.escape(c)
        i += 1
    return re.compile(out + "(?:/.*)?\\Z", re.S)
files = []
for root, dirs, names in os.walk(ws):
    dirs.sort()
    for n in names:
        p = os.path.join(root, n)
        if os.path.isfile(p):
            files.append(p)
files.sort()
for line in sys.stdin:
    rules = []
    for pat in json.loads(line):
        pat = pat.strip()
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        if not pat: continue
        full = os.path.normpath(pat if pat.startswith("/") else os.path.join(ws, pat))
        rules.append((neg, rx(full)))
    digest, found = hashlib.sha256(), False
    for p in files:
        keep = False
        for neg, r in rules:
            if r.match(p): keep = not neg
        if keep:
            with open(p, "rb") as f: digest.update(hashlib.sha256(f.read()).digest())
            found = True
    print(digest.hexdigest() if found else "")
"""


def _expressions(node: YamlNode | None, raw: bool = False) -> Iterable[Node]:
    """Every parsed expression in a YAML node (``raw``: the scalar is itself one)."""
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        texts = [inner for _, _, inner in find_expressions(node.value)]
        if raw and not texts and node.value.strip():
            texts = [node.value]
        for text in texts:
            try:
                yield parse(text)
            except ExpressionError:
                continue
    elif isinstance(node, SequenceNode):
        for item in node.items:
            yield from _expressions(item)
    elif isinstance(node, MappingNode):
        for key, value in node.pairs:
            yield from _expressions(value, raw=key.text == "if")


def collect_patterns(
    node: YamlNode | None, contexts: Mapping[str, Any], functions: Functions
) -> set[tuple[str, ...]]:
    """The pattern lists of every ``hashFiles`` call in ``node`` whose arguments evaluate
    now (the others are left out: evaluating them later fails clearly)."""
    found: set[tuple[str, ...]] = set()
    for expr in _expressions(node):
        for call in walk(expr):
            if isinstance(call, Call) and call.name.lower() == "hashfiles":
                try:
                    args = [to_string(evaluate_node(a, contexts, functions)) for a in call.args]
                except ExpressionError:
                    continue
                found.add(tuple(args))
    return found


@dataclass
class HashCache:
    """The hashes computed for the step being run; ``lookup`` is a ``Functions.hash_files``.
    Emptied by :meth:`invalidate` after every step, so no hash outlives the step it was
    computed for."""

    hashes: dict[tuple[str, ...], str] = field(default_factory=dict)

    def lookup(self, patterns: list[str]) -> str:
        key = tuple(patterns)
        if key not in self.hashes:
            raise ExpressionError(
                f"hashFiles({', '.join(map(repr, patterns))}): its arguments could not be "
                "evaluated before the step ran"
            )
        return self.hashes[key]

    async def compute(self, guest: Guest, workspace: str, wanted: set[tuple[str, ...]]) -> None:
        """Hash every pattern list of ``wanted`` not cached yet, in one guest command.
        Raises ``ExpressionError`` when the guest cannot (no python3)."""
        import json

        missing = sorted(wanted - self.hashes.keys())
        if not missing:
            return
        stdin = "".join(json.dumps(list(m)) + "\n" for m in missing).encode()
        res = await guest.execute(
            ["python3", "-c", HASH_SCRIPT, workspace], ExecOptions(stdin=stdin, timeout=600)
        )
        lines = res.stdout.decode("utf-8", "replace").splitlines()
        if not res.ok or len(lines) != len(missing):
            err = res.stderr.decode("utf-8", "replace").strip()[-500:]
            raise ExpressionError(f"hashFiles() failed in the VM (exit {res.status}): {err}")
        self.hashes.update(zip(missing, lines, strict=True))

    def invalidate(self) -> None:
        """Forget every hash (a step may have changed the workspace)."""
        self.hashes.clear()
