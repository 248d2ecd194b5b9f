"""``vmrunner init github``: the files it writes, through the real CLI, checked with
``vmrunner check`` and read back; the Markdown summary step run on a real result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import vmrunner

FLOWS = ("copilot-setup-steps.yml", "vm-test.yml")


def init(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return vmrunner(["init", "github", "--dir", str(root), *args], dict(os.environ))


def load(path: Path) -> dict[Any, Any]:
    data = YAML(typ="safe").load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("flavor", ["debian", "nixos"])
def test_generated_workflows_pass_check_and_have_the_required_shape(
    tmp_path: Path, flavor: str
) -> None:
    proc = init(tmp_path, "--flavor", flavor)
    assert proc.returncode == 0, proc.stderr
    flows = tmp_path / ".github" / "workflows"
    check = vmrunner(["check", *(str(flows / n) for n in FLOWS)], dict(os.environ), cwd=tmp_path)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    setup = load(flows / "copilot-setup-steps.yml")
    assert list(setup["jobs"]) == ["copilot-setup-steps"]
    job = setup["jobs"]["copilot-setup-steps"]
    assert job["timeout-minutes"] <= 59
    steps = " ".join(json.dumps(s) for s in job["steps"])
    assert "actions/checkout" in steps and "/dev/kvm" not in steps and "99-kvm4all.rules" in steps
    assert "vmrunner image build debian" in steps and "actions/cache" in steps
    assert ("install-nix-action" in steps) == (flavor == "nixos")
    test = load(flows / "vm-test.yml")
    assert {"push", "pull_request"} <= set(test[True] if True in test else test["on"])
    assert test["concurrency"]["cancel-in-progress"] is False
    assert "github.head_ref || github.ref_name" in test["concurrency"]["group"]
    run = " ".join(json.dumps(s) for s in test["jobs"]["vm-test"]["steps"])
    assert '--accel \\"$ACCEL\\" --json result.json --junit junit.xml' in run
    assert "upload-artifact" in run and "GITHUB_STEP_SUMMARY" in run
    assert ("--flavor nixos --host vm" in run) == (flavor == "nixos")
    printed = proc.stdout.decode()
    config = json.loads(printed[printed.index("{") :])
    assert config["mcpServers"]["vmrunner"] == {"type": "local", "command": "vmrunner",
                                                "args": ["mcp"], "tools": ["*"]}  # fmt: skip


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "vm-test.yml").write_text("mine\n")
    proc = init(tmp_path)
    assert proc.returncode == 1 and b"--force" in proc.stderr
    assert (flows / "vm-test.yml").read_text() == "mine\n"
    assert not (flows / "copilot-setup-steps.yml").exists()
    assert init(tmp_path, "--force").returncode == 0
    assert "vmrunner systest systest.yml" in (flows / "vm-test.yml").read_text()
    assert init(tmp_path, "--flavor", "arch").returncode != 0


def test_the_summary_step_writes_markdown_from_a_real_result(tmp_path: Path) -> None:
    """The summary step's own script, on the result of a real (preflight-failing) systest."""
    env = {**os.environ, "VMRUNNER_HOME": str(tmp_path / "state")}
    (tmp_path / "systest.yml").write_text("name: t-sum\nbogus: 1\n")
    vmrunner(
        ["systest", "systest.yml", "--accel", "tcg", "--json", "result.json"], env, cwd=tmp_path
    )
    assert init(tmp_path).returncode == 0
    steps = load(tmp_path / ".github" / "workflows" / "vm-test.yml")["jobs"]["vm-test"]["steps"]
    [script] = [s["run"] for s in steps if s.get("name") == "Summarise the result"]
    summary = tmp_path / "summary.md"
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True,
                          env={**env, "GITHUB_STEP_SUMMARY": str(summary)}, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    md = summary.read_text()
    assert md.startswith("### VM test: failure") and "| preflight | failed |" in md
    assert "**preflight: recipe_invalid**" in md


@pytest.mark.parametrize("flavor", ["debian", "nixos"])
def test_generated_workflows_are_valid_for_githubs_own_parser(tmp_path: Path, flavor: str) -> None:
    """GitHub's TypeScript parser (npm @actions/workflow-parser, run with node) accepts
    both generated files as they are."""
    from workflow.github_parser import Request, github_parse

    assert init(tmp_path, "--flavor", flavor).returncode == 0
    flows = tmp_path / ".github" / "workflows"
    requests = [Request(name, (flows / name).read_text()) for name in FLOWS]
    assert github_parse(requests) == [[], []]
    # the parser is not one that accepts anything: a broken copy is rejected
    broken = (flows / "vm-test.yml").read_text().replace("runs-on:", "runs-onn:")
    assert github_parse([Request("broken.yml", broken)]) != [[]]
