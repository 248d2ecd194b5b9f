"""The flags an older guest node gets so that the official toolkit's clients run on it
(node 18 lacks the global ``crypto`` that the Azure blob client of ``@actions/artifact``
and ``@actions/cache`` calls; the VM test runs them on Debian 12's node 18)."""

from __future__ import annotations

import pytest

from vmrunner.runner.node_actions import node_flags


@pytest.mark.parametrize(
    ("version", "flags"),
    [
        ("v18.20.4\n", ["--experimental-global-webcrypto"]),
        ("v17.9.1", ["--experimental-global-webcrypto"]),
        ("v16.20.2", []),  # has no such flag
        ("v20.11.0", []),  # global already
        ("v24.0.1", []),
        ("", []),
    ],
)
def test_node_flags(version: str, flags: list[str]) -> None:
    assert node_flags(version) == flags
