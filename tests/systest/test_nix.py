"""The NixOS flavour with Debian's nix-bin (Nix 2.8), for real, without the internet:
evaluation errors with file and line, a substituter or source on a closed port of
127.0.0.1 as a network error that stops the build at once, and the internal-json reader."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from vmrunner.systest import nix

NIX = shutil.which("nix")
pytestmark = pytest.mark.skipif(
    NIX is None, reason="nix-bin is not installed (scripts/bootstrap.sh installs it)"
)

FLAKE = """{
  outputs = { self }: {
    nixosConfigurations.fetches = {
      extendModules = _: {
        config.system.build.vm = derivation {
          name = "vm"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "exit 1" ];
          src = builtins.fetchurl "http://127.0.0.1:9/src.tar.gz";
        };
      };
    };
    nixosConfigurations.builds = {
      extendModules = _: {
        config.system.build.vm = derivation {
          name = "vm-fails"; system = "x86_64-linux"; builder = "/bin/sh";
          args = [ "-c" "echo step one; echo it broke >&2; exit 1" ];
        };
      };
    };
    nixosConfigurations.broken = {
      extendModules = _: {
        config.system.build.vm = { a = 1; }.b;
      };
    };
  };
}
"""


@pytest.fixture
def flake(tmp_path: Path) -> Path:
    d = tmp_path / "flake"
    d.mkdir()
    (d / "flake.nix").write_text(FLAKE)
    return d


def build(flake: Path, host: str, tmp: Path, substituters: str = "") -> tuple[nix.NixBuild, float]:
    """Build HOST's VM; the sandbox is off so that the toy builders can use the host's /bin/sh."""
    module = nix.write_module(tmp)
    argv = nix.build_argv(str(NIX), nix.vm_expr(str(flake), host, module), substituters=substituters,
                          single_user=nix._single_user(), options=(("sandbox", "false"),))  # fmt: skip
    started = time.monotonic()
    res = asyncio.run(nix.nix_build(argv, timeout=120))
    return res, time.monotonic() - started


def test_eval_error_names_file_and_line(flake: Path, tmp_path: Path) -> None:
    res, _ = build(flake, "broken", tmp_path)
    assert res.error is not None and res.error.kind == "eval_error"
    assert res.error.details["file"] == "flake.nix"
    assert res.error.details["line"] == 21
    assert "attribute 'b' missing" in res.error.message


def test_unreachable_source_is_a_network_error_at_once(flake: Path, tmp_path: Path) -> None:
    res, took = build(flake, "fetches", tmp_path)
    assert res.error is not None and res.error.kind == "network_error", res
    assert res.error.details["url"] == "http://127.0.0.1:9/src.tar.gz"
    assert res.error.details["host"] == "127.0.0.1"
    assert "retrying" not in res.log_tail  # one download attempt: no retry
    assert took < 15, f"took {took:.1f} s: retried?"


def test_unreachable_substituter_stops_the_build(flake: Path, tmp_path: Path) -> None:
    res, took = build(flake, "builds", tmp_path, substituters="http://127.0.0.1:9")
    assert res.error is not None and res.error.kind == "network_error", res
    assert res.error.details["url"] == "http://127.0.0.1:9/nix-cache-info"
    assert str(res.error.details["fetching"]).startswith("binary cache (substituter)")
    assert "building" not in res.log_tail  # stopped before building anything
    assert "retrying" not in res.log_tail
    assert took < 15


def test_builder_failure_carries_the_build_log(flake: Path, tmp_path: Path) -> None:
    res, _ = build(flake, "builds", tmp_path)
    assert res.error is not None and res.error.kind == "build_error", res
    assert str(res.error.details["derivation"]).endswith("-vm-fails.drv")
    assert "step one" in str(res.error.details["log_tail"])


def test_argv_is_fail_fast() -> None:
    argv = nix.build_argv("nix", "EXPR", substituters="")
    joined = " ".join(argv)
    assert "--option download-attempts 1" in joined and "--log-format internal-json" in joined
    assert (
        "--option connect-timeout 5" in joined and "--option stalled-download-timeout 10" in joined
    )
    assert argv[-2:] == ["--expr", "EXPR"]


def test_vm_expr_extends_the_configuration_with_the_agent_module(tmp_path: Path) -> None:
    expr = nix.vm_expr(str(tmp_path), "web", Path("/tmp/m.nix"))
    assert f'builtins.getFlake "path:{tmp_path}"' in expr
    assert '.nixosConfigurations."web"' in expr and "extendModules" in expr
    assert expr.endswith(".config.system.build.vm")
    assert nix.flake_ref("github:me/cfg") == "github:me/cfg"
    assert "systemd.services.vmrunner-agent" in nix.AGENT_MODULE
    assert "virtualisation.graphics = false;" in nix.AGENT_MODULE


LINES = [
    '@nix {"action":"start","fields":["/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-y.drv","",1,1],"id":7,"level":3,"text":"building","type":105}',
    '@nix {"action":"result","fields":["hello from the builder"],"id":7,"type":101}',
    "not json at all",
    "@nix {broken",
    '@nix {"action":"msg","column":3,"file":"/nix/store/9rp3msq4lagil6slcccvgmsswcfyj445-source/a.nix","level":0,"line":4,"msg":"\\u001b[31;1merror:\\u001b[0m attribute x missing"}',
]


def test_internal_json_reader() -> None:
    reader = nix.NixLogReader()
    assert not any(reader.feed(line) for line in LINES)
    assert reader.build_logs == {
        "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-y.drv": ["hello from the builder"]
    }
    assert reader.plain == ["not json at all", "@nix {broken"]
    err = reader.classify()
    assert (err.kind, err.details["file"], err.details["line"], err.details["column"]) == (
        "eval_error",
        "a.nix",
        4,
        3,
    )
    stop = '@nix {"action":"msg","level":1,"msg":"warning: unable to download \'http://127.0.0.1:9/x\': Couldn\'t connect to server (7)"}'
    assert reader.feed(stop) is True
    assert reader.network == ("http://127.0.0.1:9/x", "Couldn't connect to server")


def test_event_parse_rejects_non_objects() -> None:
    assert nix.NixEvent.parse("@nix [1]") is None
    assert nix.NixEvent.parse(json.dumps({"x": 1})) is None
