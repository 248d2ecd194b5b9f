"""Check a loaded workflow's structure against GitHub's own workflow template schema.

The structural rules come from ``workflow-v1.0.json``, vendored from GitHub's npm package
``@actions/workflow-parser``, read by a port of GitHub's template reader
(:mod:`.template`): GitHub's messages, at GitHub's positions, plus a "did you mean" for
a misspelled key. :func:`validate_schema` is that check.

SchemaStore's ``github-workflow`` JSON schema (:mod:`.document`, the compiled fast path
:mod:`.fast` and the jsonschema explanations :mod:`.explain`) is what ``check`` used
before; it is no longer on its path, and kept only for the code and tests that still
use it directly. Importing this package imports neither jsonschema nor that schema.

Pure: no I/O beyond reading the packaged schema once.
"""

from __future__ import annotations

from vmrunner.workflow.loader import Node
from vmrunner.workflow.schema.document import (
    SCHEMA_PACKAGE,
    SCHEMA_RESOURCE,
    apply_overlays,
    load_schema,
)
from vmrunner.workflow.schema.fast import fast_is_valid
from vmrunner.workflow.schema.nodes import PathItem, SchemaProblem, key_pos, node_at, to_data
from vmrunner.workflow.schema.template import read_template

__all__ = [
    "SCHEMA_PACKAGE",
    "SCHEMA_RESOURCE",
    "PathItem",
    "SchemaProblem",
    "apply_overlays",
    "fast_is_valid",
    "key_pos",
    "load_schema",
    "node_at",
    "to_data",
    "validate_schema",
]


def validate_schema(root: Node) -> list[SchemaProblem]:
    """Every schema problem of the tree, in file order, one per offending node.

    Does not check anything the schema cannot express (``needs`` cycles, expression
    syntax, ids): see :mod:`vmrunner.workflow.validate`.
    """
    return read_template(root)
