"""How often ``vmrunner check`` agrees with GitHub's own parser (``@actions/workflow-parser``
from tests/node, installed by scripts/bootstrap.sh), on the three sets of
tests/workflow/test_differential.py: the corpus, the workflow-parser conformance cases
and the Hypothesis-generated workflows. Prints figures; asserts nothing. Usage::

    .venv/bin/python bench/check_agreement.py

"Agree": both accept, or both reject with errors on the same lines. "Explained": agree
once the differences documented in test_differential.py are taken out.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from datafiles import corpus_files, parser_case_files
from vmrunner.workflow.check import check_text
from workflow.github_parser import Request, github_parse
from workflow.test_differential import (
    CONFORMANCE_DISAGREEMENTS,
    SERVER_ONLY,
    _check_like,
    _corpus_request,
    _generated,
    compare,
    explain,
)
from workflow.test_parser_conformance import load_case, run_case


def _show(name: str, agree: int, total: int, note: str = "") -> None:
    print(f"{name:<14} {agree:>5} / {total:<5} agree  ({agree / total:6.1%}){note}")


def main() -> None:
    requests = [_corpus_request(p) for p in corpus_files()]
    github = github_parse(requests)
    agree = sum(compare(g, _check_like(r), r.name) for r, g in zip(requests, github, strict=True))
    _show("corpus", agree, len(requests))

    cases = [load_case(p) for p in parser_case_files()]
    github = github_parse(
        [Request(c.filename, c.workflow, c.called, bool(c.called)) for c in cases]
    )
    same = [compare(g, run_case(c), c.filename) for c, g in zip(cases, github, strict=True)]
    documented = SERVER_ONLY | set(CONFORMANCE_DISAGREEMENTS)
    rest = [s for c, s in zip(cases, same, strict=True) if c.name not in documented]
    _show("conformance", sum(same), len(cases), f"; {sum(rest)} / {len(rest)} of the cases "
          "GitHub's TypeScript parser runs itself")  # fmt: skip

    texts = _generated()
    github = github_parse([Request("w.yml", t) for t in texts])
    verdicts = [
        explain(g, check_text(t, "w.yml"), "w.yml") for t, g in zip(texts, github, strict=True)
    ]
    rejected = sum(1 for g in github if g)
    explained = sum(v.explained for v in verdicts)
    _show("generated", sum(v.agree for v in verdicts), len(texts),
          f"; {explained} once documented rules are taken out; GitHub rejects {rejected}")  # fmt: skip


if __name__ == "__main__":
    main()
