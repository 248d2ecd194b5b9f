"""``vmrunner systest`` bootstraps from the mirror the user configured (``debian_mirror``
in the config file), through the real CLI: a mirror on a closed loopback port makes the
build fail fast with a network error naming that mirror, never reaching deb.debian.org."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import vmrunner

pytestmark = [pytest.mark.vm]

MIRROR = "http://127.0.0.1:9/debian"  # the discard port: nothing listens, connect is refused
SECURITY = "http://127.0.0.1:9/debian-security"


def test_the_configured_mirror_is_where_the_build_fetches(
    vm_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'debian_mirror = "{MIRROR}"\ndebian_security_mirror = "{SECURITY}"\n')
    recipe = tmp_path / "plain.yml"
    recipe.write_text("name: t-mirror\n")  # no sources of its own: only the mirrors
    kept, out = tmp_path / "kept", tmp_path / "r.json"
    proc = vmrunner(
        ["systest", "--accel", "tcg", "--json", str(out), "--keep-artifacts", str(kept),
         str(recipe)],
        {**vm_env, "VMRUNNER_CONFIG": str(config)}, timeout=600,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert proc.returncode == 1, proc.stderr.decode()[-3000:]
    assert doc["failed_phase"] == "build"
    [err] = doc["errors"]
    assert err["kind"] == "network_error" and err["host"] == "127.0.0.1"
    assert err["url"].startswith(
        ("http://127.0.0.1:9/debian/", "http://127.0.0.1:9/debian-security/")
    )
    log = (kept / "build.log").read_text()  # mmdebstrap's (and apt's) own output
    assert "127.0.0.1:9/debian" in log and "deb.debian.org" not in log, log[-3000:]
