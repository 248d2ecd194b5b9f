"""The failure taxonomy against recorded real outputs (Nix 2.8, apt/mmdebstrap, consoles)."""

from __future__ import annotations

import pytest

from datafiles import NIX_OUTPUTS
from vmrunner.systest import taxonomy as tx

FIXTURES = NIX_OUTPUTS
CACHE_INFO = "https://cache.nixos.org/nix-cache-info"
X_DRV = "/nix/store/7py1zfb8a4j4nn5ywc2c3y350crq66sj-x.drv"
Y_DRV = "/nix/store/dqip2z271shmfbdsbkpkmgyyhrjqdpq0-y.drv"
HELLO_DRV = "/nix/store/d4radnvdbjnplv51kcn7va24ds4wfhf0-hello.txt.drv"

# fixture -> (kind, fields that must match). Fail fast (FR-003a): the first failed
# download is the cause, even when Nix 2.8 only warned about it (c1: the substituter probe).
NIX_CASES: dict[str, tuple[str, dict[str, object]]] = {
    "a1-undefined-variable": ("eval_error", {"file": "«string»", "line": 1, "column": 15}),
    "a2-missing-attribute": ("eval_error", {"line": 1, "column": 1}),
    "a3-missing-attribute-nested": ("eval_error", {"line": 1, "column": 48}),
    "a4-missing-attribute-newcli": ("eval_error", {"line": 1}),
    "a5-type-error": ("eval_error", {"column": 5}),
    "a6-syntax-error": ("eval_error", {"line": 1, "column": 11}),
    "a7-throw": ("eval_error", {"file": None}),
    "a8-assert": ("eval_error", {"line": 1}),
    "a9-missing-attr-show-trace": ("eval_error", {"line": 1, "column": 12}),
    "a10-nixpkgs-path-missing": ("eval_error", {"column": 8}),
    "b1-prefetch-url-dns": ("network_error", {"url": CACHE_INFO, "host": "cache.nixos.org"}),
    "b1-prefetch-url-dns-run2": ("network_error", {"url": CACHE_INFO}),
    "b1-prefetch-url-dns-run3": ("network_error", {"url": CACHE_INFO}),
    "b2-builtins-fetchurl": ("network_error", {"host": "cache.nixos.org"}),
    "b3-builtins-fetchTarball": ("network_error", {"host": "github.com"}),
    "b4-prefetch-url-1-attempt": ("network_error", {"reason": "Couldn't resolve host name"}),
    "b5-fod-nix-build": ("network_error", {"url": CACHE_INFO}),
    "b6-fod-nix-build-newcli": ("network_error", {"url": CACHE_INFO}),
    "b7-fod-hash-mismatch-file-url": ("hash_mismatch", {"derivation": HELLO_DRV}),
    "b8-fod-hash-mismatch-newcli": (
        "hash_mismatch",
        {"got": "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM="},
    ),
    "b9-fetchurl-connect-refused": (
        "network_error",
        {
            "url": "http://127.0.0.1:9/none",
            "host": "127.0.0.1",
            "reason": "Couldn't connect to server",
        },
    ),
    "c1-build-exit1-nix-build": (
        "network_error",
        {"fetching": "binary cache (substituter) https://cache.nixos.org"},
    ),
    "c1-build-exit1-nix-build-run2": ("network_error", {"host": "cache.nixos.org"}),
    "c1-build-exit1-nix-build-run3": ("network_error", {"host": "cache.nixos.org"}),
    "c2-build-exit1-nix-build-nosubst": ("build_error", {"derivation": X_DRV, "package": "x"}),
    "c3-build-exit1-newcli": ("build_error", {"derivation": X_DRV}),
    "c4-build-logs-nix-build": (
        "build_error",
        {"derivation": Y_DRV, "log_tail": "building step 1\nsomething went wrong"},
    ),
    "c5-build-logs-newcli": (
        "build_error",
        {"derivation": Y_DRV, "log_tail": "building step 1\nsomething went wrong"},
    ),
    "c6-build-logs-newcli-L": (
        "build_error",
        {"derivation": Y_DRV, "log_tail": "building step 1\nsomething went wrong"},
    ),
    "c7-no-output-path": ("build_error", {"package": "z"}),
    "c8-exit1-keep-going-twice": ("build_error", {"derivation": Y_DRV}),
}


def test_every_recorded_fixture_has_a_case() -> None:
    assert {p.stem for p in FIXTURES.glob("*.txt")} == set(NIX_CASES)


@pytest.mark.parametrize("name", sorted(NIX_CASES))
def test_recorded_nix_output(name: str) -> None:
    kind, fields = NIX_CASES[name]
    err = tx.classify_nix((FIXTURES / f"{name}.txt").read_text())
    assert err.kind == kind, err
    for key, value in fields.items():
        assert err.details.get(key) == value, (key, err.details)


# Later Nix (2.19+) reports a failed builder differently; missing kvm from a real Nix 2.8 run.
NEW_GENERATION = """error: Cannot build '/nix/store/dqip2z271shmfbdsbkpkmgyyhrjqdpq0-y.drv'.
       Reason: builder failed with exit code 1.
       Output paths:
         /nix/store/abcd-y
       Last 2 log lines:
       > building step 1
       > something went wrong
       For full logs, run:
         nix log /nix/store/dqip2z271shmfbdsbkpkmgyyhrjqdpq0-y.drv
"""
MISSING_KVM = (
    "this derivation will be built:\n  /nix/store/raph77jxh8zcdqcman5ivgiwzzis1zs2-k.drv\n"
    "error: a 'x86_64-linux' with features {kvm, nixos-test} is required to build "
    "'/nix/store/raph77jxh8zcdqcman5ivgiwzzis1zs2-k.drv', but I am a 'x86_64-linux' with features {}\n"
)
FLAKE_EVAL = """error: attribute 'enable' missing

       at /nix/store/9rp3msq4lagil6slcccvgmsswcfyj445-source/hosts/web.nix:12:5:

           11|   services.nginx = {
           12|     enable = cfg.enable;
             |     ^
"""


def test_builder_failure_of_later_nix() -> None:
    err = tx.classify_nix(NEW_GENERATION)
    assert err.kind == "build_error" and err.details["derivation"] == Y_DRV
    assert err.details["log_tail"] == "building step 1\nsomething went wrong"


def test_missing_kvm_system_feature() -> None:
    err = tx.classify_nix(MISSING_KVM)
    assert err.kind == "kvm_unavailable"
    assert err.details["missing_features"] == ["kvm", "nixos-test"]


def test_missing_other_feature_is_a_build_error() -> None:
    err = tx.classify_nix(MISSING_KVM.replace("{kvm, nixos-test}", "{big-parallel}"))
    assert err.kind == "build_error"


def test_eval_error_in_a_flake_names_the_file_in_the_flake() -> None:
    err = tx.classify_nix(FLAKE_EVAL)
    assert (err.kind, err.details["file"], err.details["line"]) == (
        "eval_error",
        "hosts/web.nix",
        12,
    )


# ---- apt / mmdebstrap ------------------------------------------------------------------

APT_REFUSED = """I: running apt-get update...
Err:1 http://127.0.0.1:9/debian bookworm InRelease
  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)
Get:2 http://deb.debian.org/debian bookworm InRelease [151 kB]
Reading package lists...
E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)
E: Some index files failed to download. They have been ignored, or old ones used instead.
E: mmdebstrap failed to run
"""
APT_DNS = "Err:3 http://nope.invalid/debian bookworm InRelease\n  Temporary failure resolving 'nope.invalid'\n"
APT_NOPKG = "E: Unable to locate package no-such-pkg\nE: mmdebstrap failed to run\n"
APT_NOCAND = "E: Package 'foo' has no installation candidate\n"
APT_HASH = (
    "E: Failed to fetch http://deb.debian.org/debian/pool/main/f/foo.deb  Hash Sum mismatch\n"
)


@pytest.mark.parametrize(
    ("text", "kind", "fields"),
    [
        (
            APT_REFUSED,
            "network_error",
            {"url": "http://127.0.0.1:9/debian/dists/bookworm/InRelease", "host": "127.0.0.1"},
        ),
        (APT_DNS, "network_error", {"host": "nope.invalid"}),
        (APT_NOPKG, "build_error", {"package": "no-such-pkg"}),
        (APT_NOCAND, "build_error", {"package": "foo"}),
        (APT_HASH, "hash_mismatch", {"host": "deb.debian.org"}),
        ("E: something odd\n", "build_error", {"package": None}),
    ],
)
def test_apt_output(text: str, kind: str, fields: dict[str, object]) -> None:
    err = tx.classify_apt(text)
    assert err.kind == kind
    for key, value in fields.items():
        assert err.details.get(key) == value


# ---- console and systemctl ------------------------------------------------------------

CONSOLE = """\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msystemd-journald.service\x1b[0m - Journal Service.
[  OK  ] Reached target sysinit.target - System Initialization.
[FAILED] Failed to start broken.service - Broken.
         Starting hang.service - Hang...
         Starting fine.service - Fine...
[  OK  ] Finished fine.service - Fine.
[ ***  ] A start job is running for Hang (25s / no limit)\r
"""


def test_console_units() -> None:
    units = tx.console_units(CONSOLE.replace("\x1b[0;32m  OK  \x1b[0m]", "[  OK  ]"))
    assert "systemd-journald.service" in units.active and "fine.service" in units.active
    assert units.failed == ("broken.service",)
    assert units.pending == ("hang.service",)
    assert units.running_jobs == ("Hang",)


@pytest.mark.parametrize(
    ("console", "kind"),
    [
        ("[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs\n", "kernel_panic"),
        (
            "[FAILED] Failed to mount data.mount\nYou are in emergency mode. After logging in",
            "emergency_mode",
        ),
        ("[  OK  ] Reached target emergency.target - Emergency Mode.\n", "emergency_mode"),
        (CONSOLE, None),
    ],
)
def test_console_classification(console: str, kind: str | None) -> None:
    err = tx.classify_console(console)
    assert (err.kind if err else None) == kind


def test_systemctl_parsers() -> None:
    assert tx.list_jobs_units("123 hang.service start running\n1 multi-user.target start waiting\n") == [
        "hang.service", "multi-user.target",
    ]  # fmt: skip
    assert tx.list_units_names("● broken.service loaded failed failed Broken\n") == [
        "broken.service"
    ]
    show = tx.parse_show("Result=exit-code\nExecMainStatus=3\nExecMainCode=1\n")
    err = tx.service_failed("broken.service", show, "line1\nline2")
    assert (err.details["unit"], err.details["exit_status"], err.details["result"]) == (
        "broken.service",
        3,
        "exit-code",
    )
    assert tx.journal_matches("a\nsegfault at 0\nb", "segf") == ["segfault at 0"]


def test_nix_file_relative_to_flake() -> None:
    assert (
        tx.flake_relative("/nix/store/9rp3msq4lagil6slcccvgmsswcfyj445-source/flake.nix")
        == "flake.nix"
    )
    assert tx.flake_relative("/etc/x.nix") == "/etc/x.nix"


def test_index_lists_every_recorded_output_with_a_failing_exit() -> None:
    """index.tsv (name, exit, elapsed, command) names exactly the recorded files, and
    every one of them was a failing Nix command."""
    rows = [line.split("\t") for line in (FIXTURES / "index.tsv").read_text().splitlines()[1:]]
    assert {row[0] for row in rows} == {p.stem for p in FIXTURES.glob("*.txt")}
    assert len(rows) == len(NIX_CASES)
    assert all(int(row[1]) != 0 and row[3].startswith("nix") for row in rows), rows
