"""The schema document: SchemaStore's ``github-workflow`` JSON schema, as vendored in the
installed ``check-jsonschema`` wheel, adjusted by :func:`apply_overlays` to what GitHub
itself accepts.

The file is found without importing ``check_jsonschema`` (whose import loads its whole
command line, click and jsonschema included: a few hundred milliseconds): only the
package's location is looked up.
"""

from __future__ import annotations

import functools
import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

SCHEMA_PACKAGE = "check_jsonschema"
SCHEMA_RESOURCE = "builtin_schemas/vendor/github-workflows.json"


@functools.cache
def _schema_text() -> str:
    """The vendored schema's text, read once per process."""
    spec = find_spec(SCHEMA_PACKAGE)
    for location in (spec and spec.submodule_search_locations) or ():
        path = Path(location) / SCHEMA_RESOURCE
        if path.is_file():
            return path.read_text("utf-8")
    # Not a plain directory (a zip, say) or not installed: importlib.resources finds it
    # (importing the package) or raises ModuleNotFoundError. Rare, so imported here.
    from importlib import resources

    return resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_RESOURCE).read_text("utf-8")


def load_schema() -> dict[str, Any]:
    """The vendored schema with :func:`apply_overlays` applied (a fresh copy each call)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return apply_overlays(schema)


# ---- overlays: where SchemaStore's schema and GitHub disagree ---------------------

_EXPRESSION = {"$ref": "#/definitions/expressionSyntax"}
_ANNOTATIONS = {"$comment", "description", "default", "markdownDescription", "examples"}


def _normalise(node: Any, in_step: bool = False) -> Any:
    """Make the schema mean what its authors meant, recursively (returns the new node).

    * ``oneOf`` becomes ``anyOf``, except the step's own ``oneOf`` (``uses`` vs ``run``);
    * keywords beside a ``$ref`` (which draft-07 ignores, so event ``types`` and
      ``workflow_dispatch`` inputs would go unchecked) are kept, beside it in an ``allOf``;
    * annotations (descriptions, comments, defaults) are dropped.
    """
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _ANNOTATIONS and not isinstance(value, dict | list):
            continue
        key = "anyOf" if key == "oneOf" and not in_step else key
        out[key] = _normalise(value, in_step=key == "step")
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}, out]}
    return out


def apply_overlays(schema: dict[str, Any]) -> dict[str, Any]:
    """Adjust the schema to what GitHub's own parser accepts; returns the new schema.

    Each change is backed by a case in GitHub's workflow-parser conformance suite or by
    real workflows that GitHub runs (the corpus). Does not loosen anything else.
    """
    defs = schema["definitions"]
    events = schema["properties"]["on"]["oneOf"][2]["properties"]
    # Null is a value: matrix entries (yaml-schema-null) and env values (coercion-to-string).
    defs["configuration"]["oneOf"].append({"type": "null"})
    defs["env"]["oneOf"][0]["additionalProperties"]["oneOf"].append({"type": "null"})
    # workflow_dispatch ignores unknown keys (on-workflow_dispatch-unknown-keys-ignored); an
    # input may be null and its type defaults to string (on-workflow_dispatch-inputs).
    events["workflow_dispatch"]["oneOf"][1].pop("additionalProperties", None)
    dispatch_input = defs["workflowDispatchInput"]
    dispatch_input["type"] = ["object", "null"]
    dispatch_input["oneOf"] += [{"type": "null"}, {"type": "object", "not": {"required": ["type"]}}]
    # A declared workflow_call secret may be null (reusable-workflow-job-basic).
    call = events["workflow_call"]["oneOf"][1]["properties"]
    call["secrets"]["patternProperties"]["^[_a-zA-Z][a-zA-Z0-9_-]*$"]["type"] = ["object", "null"]
    # Jobs may set cancel-timeout-minutes (job-cancel-timeout-minutes).
    defs["normalJob"]["properties"]["cancel-timeout-minutes"] = {
        "oneOf": [{"type": "number"}, _EXPRESSION]
    }
    # `strategy:` needs no matrix (fail-fast or max-parallel alone; real workflows do it).
    for job in ("normalJob", "reusableWorkflowCallJob"):
        defs[job]["properties"]["strategy"].pop("required", None)
    # A snapshot may carry an `if` and a wildcard version like 1.* (job-snapshot-mapping).
    snapshot = defs["snapshot"]["oneOf"][1]
    snapshot["properties"]["if"] = {"type": ["boolean", "number", "string"]}
    snapshot["properties"]["version"] = {"type": "string", "pattern": r"^\d+(\.(\d+|\*))*$"}
    # The image_version event (on-event-config-image-version-*).
    events["image_version"] = {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {"names": {}, "versions": {}, "types": {}},
                "additionalProperties": False,
            },
        ]
    }
    # Container credentials have exactly two keys (job-container-invalid-credentials).
    for name in ("jobContainer", "serviceContainer"):
        defs[name]["properties"]["credentials"]["additionalProperties"] = False
    normalised: dict[str, Any] = _normalise(schema)
    return normalised
