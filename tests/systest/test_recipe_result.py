"""Recipe loading and validation (FILE:LINE errors), the result document, its schema, text and JUnit."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest
from jsonschema import Draft202012Validator

from vmrunner.results import RESULT_SCHEMA
from vmrunner.systest.junit import to_junit
from vmrunner.systest.recipe import RecipeInvalidError, load_text, recipe_schema
from vmrunner.systest.result import SystestError, SystestResult, render_text

GOOD = """name: web
packages: [nginx]
sources: ["deb http://127.0.0.1:9/debian bookworm main"]
files:
  - {path: /etc/motd, content: "hi\\n", mode: "0600", owner: "alice:alice"}
users: [alice, {name: bob, groups: [sudo], shell: /bin/sh}]
units:
  - {name: hello.service, content: "[Service]\\nExecStart=/bin/true\\n", mask: false}
  - {name: getty@tty1.service, mask: true}
run: ["echo hi > /etc/hi"]
checks:
  - unit_active: nginx.service
  - port_open: 80
  - command: "curl -fsS http://127.0.0.1/"
  - file_contains: {path: /etc/motd, text: hi}
  - journal_lacks: "segfault"
"""


def test_good_recipe_converts() -> None:
    r = load_text(GOOD, "web.yml")
    img = r.image
    assert img.name == "systest-web" and img.suite == "bookworm"
    assert "nginx" in img.all_packages() and img.extra_sources == (
        "deb http://127.0.0.1:9/debian bookworm main",
    )
    assert img.files[0].mode == 0o600 and img.files[0].owner == "alice:alice"
    assert [u.name for u in img.users] == ["alice", "bob"] and img.users[1].groups == ("sudo",)
    assert img.units[1].mask and img.run == ("echo hi > /etc/hi",)
    assert [c.kind for c in r.checks] == [
        "unit_active",
        "port_open",
        "command",
        "file_contains",
        "journal_lacks",
    ]
    assert r.checks[3].text == "hi" and r.checks[1].line == 13


def test_layers_change_the_digest_but_not_the_base() -> None:
    a = load_text("name: a\n").image
    b = load_text('name: a\nrun: ["true"]\n').image
    assert a.digest() != b.digest() and a.base_digest() == b.base_digest()


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment"),
    [
        ("packages: [x]\n", 1, 1, "'name' is a required property"),
        ("name: Bad Name\n", 1, 7, "does not match"),
        ("name: a\nchecks:\n  - port_open: 70000\n", 3, 16, "maximum"),
        (
            "name: a\nchecks:\n  - file_contains: {path: /x}\n",
            3,
            5,
            "'text' is a required property",
        ),
        ("name: a\nchecks:\n  - bogus: 1\n", 3, 5, "not valid under any"),
        ("name: a\nunits:\n  - name: nounit\n", 3, 11, "does not match"),
        (
            "name: a\nfiles:\n  - path: /x\n    content: y\n    mode: 755x\n",
            5,
            11,
            "does not match",
        ),
        ("name: a\nsurprise: 1\n", 1, 1, "Additional properties"),
        ("name: [a\n", 2, 1, "YAML"),
        ("- a\n", 1, 1, "mapping"),
    ],
)
def test_invalid_recipes_name_line_and_column(
    text: str, line: int, col: int, fragment: str
) -> None:
    with pytest.raises(RecipeInvalidError) as exc:
        load_text(text, "r.yml")
    first = exc.value.problems[0]
    assert (first.line, first.col) == (line, col), exc.value
    assert fragment in first.message
    assert str(exc.value).startswith(f"r.yml:{line}:{col}: ")


def test_recipe_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(recipe_schema())
    Draft202012Validator.check_schema(RESULT_SCHEMA)


def failed_result() -> SystestResult:
    r = SystestResult(id="abc", config="web.yml", flavor="debian", started_at=1000.0, accel="tcg")
    for i, name in enumerate(("preflight", "build", "install", "boot")):
        ph = r.phase(name)
        ph.status, ph.started_at, ph.finished_at = "passed", 1000.0 + i, 1001.0 + i
    boot = r.phase("boot")
    boot.status = "timeout"
    r.errors.append(SystestError("boot_timeout", "did not boot", "boot",
                                 {"pending_units": ["hang.service"], "active_units": ["a.service"],
                                  "failed_units": [], "console_tail": "line"}))  # fmt: skip
    r.finished_at, r.status = 1010.0, "timeout"
    return r


def test_result_document_validates_and_renders() -> None:
    doc = failed_result().to_dict()
    validator = Draft202012Validator(
        RESULT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors(doc)) == []
    assert doc["failed_phase"] == "boot" and doc["started_at"].endswith("Z")
    assert doc["phases"][4] == {**doc["phases"][4], "status": "skipped", "started_at": None}
    text = render_text(doc)
    assert "TIMEOUT" in text and "[boot] boot_timeout: did not boot" in text
    assert "pending_units: hang.service" in text


def test_envelope_validates_against_the_one_published_schema() -> None:
    """``vmrunner schema result`` publishes one schema for run and systest documents."""
    from vmrunner.results import validate_result

    doc = failed_result().to_dict()
    assert validate_result(doc) == []
    bad = copy.deepcopy(doc)
    bad["phases"][0]["status"] = "success"  # a job status, not a phase status
    assert validate_result(bad) != []
    bad = copy.deepcopy(doc)
    bad["errors"][0]["kind"] = "no_such_kind"
    assert validate_result(bad) != []


def test_junit() -> None:
    root = ET.fromstring(to_junit(failed_result().to_dict()))
    assert root.get("tests") == "5" and root.get("failures") == "1" and root.get("skipped") == "1"
    boot = next(c for c in root if c.get("name") == "boot")
    failure = boot.find("failure")
    assert failure is not None and failure.get("type") == "boot_timeout"


def test_checks_file_for_the_nixos_flavour() -> None:
    from vmrunner.systest.recipe import load_checks_text

    checks = load_checks_text(
        "checks:\n  - unit_active: nginx.service\n  - port_open: 80\n"
        "  - file_contains: {path: /etc/motd, text: hi}\n",
        "c.yml",
    )
    assert [(c.kind, c.arg, c.line) for c in checks] == [
        ("unit_active", "nginx.service", 2), ("port_open", "80", 3), ("file_contains", "/etc/motd", 4)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("checks:\n  - unit_active: nginx.service\n  - port_open: no\n", 3, "port_open"),
        ("name: web\nchecks: []\n", 1, "Additional properties"),
        ("checks:\n  - reboot: now\n", 2, "checks.0"),
        ("- unit_active: a.service\n", 1, "mapping"),
        ("checks: [\n", 2, "YAML"),
    ],
)
def test_bad_checks_file_names_the_line(text: str, line: int, fragment: str) -> None:
    from vmrunner.systest.recipe import RecipeInvalidError, load_checks_text

    with pytest.raises(RecipeInvalidError) as info:
        load_checks_text(text, "c.yml")
    problem = info.value.problems[0]
    assert problem.line == line and fragment in problem.message, info.value.problems
