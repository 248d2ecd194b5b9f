"""A systest result document as JUnit XML: one test case per phase (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def to_junit(doc: dict[str, Any]) -> str:
    """JUnit XML for ``doc`` (as ``SystestResult.to_dict`` made it): a ``testsuite`` named
    after the config, a ``testcase`` per phase; failed and timed-out phases carry a
    ``failure`` with their errors, skipped phases a ``skipped``."""
    phases = doc["phases"]
    failures = sum(p["status"] in ("failed", "timeout") for p in phases)
    skipped = sum(p["status"] == "skipped" for p in phases)
    suite = ET.Element("testsuite", name=f"systest {doc.get('config', '')}", tests=str(len(phases)),
                       failures=str(failures), errors="0", skipped=str(skipped),
                       time=f"{doc['duration_s']:.3f}", timestamp=doc["started_at"])  # fmt: skip
    for p in phases:
        case = ET.SubElement(suite, "testcase", classname=f"systest.{doc.get('flavor', '')}",
                             name=p["name"], time=f"{p['duration_s']:.3f}")  # fmt: skip
        if p["status"] in ("failed", "timeout"):
            errs = [e for e in doc["errors"] if e.get("phase") == p["name"]]
            first = errs[0] if errs else {"kind": p["status"], "message": p["status"]}
            fail = ET.SubElement(
                case, "failure", type=str(first["kind"]), message=str(first["message"])
            )
            fail.text = (
                "\n".join(f"{e['kind']}: {e['message']}" for e in errs)
                + "\n"
                + p.get("log_tail", "")
            )
        elif p["status"] == "skipped":
            ET.SubElement(case, "skipped")
        elif p.get("log_tail"):
            ET.SubElement(case, "system-out").text = p["log_tail"]
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )
