"""Every program that src/ or tests/ run on the host is installed by scripts/bootstrap.sh.

A static check, so that a fresh Debian 12 machine passes ``./scripts/bootstrap.sh &&
./scripts/test.sh``. An AST walk of src/ and tests/ finds the host commands:

* argv given to ``subprocess.run/Popen/...``, ``asyncio.create_subprocess_exec`` and the
  project's helpers (``run_tool``, ``run_capture``, ``run_probe``, ``stream_tool``,
  ``spawn_vmm``); argv[0] is followed through local names, ``[*prefix, ...]`` lists,
  ``x or y``, loops over literal tuples and ``require_tool``/``shutil.which`` results;
* program names looked up with ``require_tool("x")`` or ``shutil.which("x")``;
* in tests/guest/, whose agent runs on the host, the argv of ``channel.exec([...])``.

A command whose argv[0] cannot be followed statically must be listed in ``INDIRECT``
(keyed by file and function) with the programs it runs. Each program is mapped to the
Debian package shipping it by ``PROGRAM_PACKAGE``; an unknown program fails the test,
asking for its mapping. A package must be in bootstrap.sh's ``PKGS`` or in ``BASE_SYSTEM``.
Commands run inside a VM (``guest.execute``, ``vmrunner exec -- ...``, chroot'ed
commands) are not host programs and are not collected. Shell script text (``sh -c
"..."``, workflow ``run:`` steps) is not parsed: what it runs is listed in ``INDIRECT``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bootstrap_scan import REPO, Use, bootstrap_packages, scan_file

BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"
NPM_DEPENDENCIES = json.loads((REPO / "tests" / "node" / "package.json").read_text())[
    "dependencies"
]
SCANNED = ("src", "tests")

# Where argv[0] is not a literal that can be followed: the programs such a command runs.
# () means it runs whatever argv its caller gives, and the callers are checked.
INDIRECT: dict[str, tuple[str, ...]] = {
    "src/vmrunner/procs.py::require_tool": (),
    "src/vmrunner/procs.py::run_tool": (),
    "src/vmrunner/procs.py::spawn_vmm": (),
    "src/vmrunner/services/background.py::Background.start": (),  # sys.executable -m vmrunner
    "src/vmrunner/procs.py::run_capture": (),
    "src/vmrunner/procs.py::stream_tool": (),
    "src/vmrunner/procs.py::run_probe": (),
    # the agent runs the argv its channel sends: in a VM, or on the host in tests/guest
    "src/vmrunner/guest/agent.py::ExecJob._run": (),
    "src/vmrunner/images/builder.py::mmdebstrap": ("unshare", "mmdebstrap", "newuidmap",
                                                   "newgidmap"),
    "src/vmrunner/images/layers.py::_sandboxed": ("unshare", "python3", "newuidmap",
                                                  "newgidmap", "sh"),
    "src/vmrunner/images/idmount.py::main": (),  # the argv of layers.py::_sandboxed
    "src/vmrunner/vm/qemu.py::QemuMachine._create_disk": ("qemu-img",),
    "src/vmrunner/vm/qemu.py::QemuMachine._spawn": ("qemu-system-x86_64",),
    "src/vmrunner/systest/nix.py::nix_build": ("nix",),
    "src/vmrunner/vm/netns.py::_nft": ("nft", "nsenter"),
    "tests/vm/test_netns_firewall.py::sh": ("ip", "nsenter", "nft"),
    # workflow steps run on the host by the fake guest: their shells and the tools the
    # test workflows use (checkout runs git)
    "tests/runner/fakes.py::HostGuest._run": ("bash", "sh", "git", "python3", "sleep", "date",
                                               "mkdir", "printf", "rm", "cat", "tar"),
    "tests/runner/action_repos.py::bundle": ("esbuild",),  # tests/node's, as actions bundle
    "tests/conftest.py::PgCluster._ctl": ("initdb", "pg_ctl", "runuser"),
    "tests/conftest.py::PgCluster.remove": ("pg_ctl", "runuser"),
    "tests/cli/test_console_output.py::_pty_run": (),  # this Python running vmrunner
    "tests/guest/test_agent.py::test_commands_that_cannot_start.main": (),  # a file it wrote
    "tests/test_bootstrap_programs.py::_dpkg_owner": (),  # looks up PROGRAM_PACKAGE's programs
    "tests/test_bootstrap_programs.py::test_npm_programs_are_installed_by_npm_ci": ("esbuild",),
}  # fmt: skip
# Programs a file runs only inside a VM (the tests run the agent with --no-poweroff).
GUEST_ONLY = {"src/vmrunner/guest/agent.py": ("poweroff",)}
# Named by tests precisely because no such program exists.
ABSENT_ON_PURPOSE = frozenset({"/no/such/program"})

NPM = "npm:tests/node"
"""Programs of the npm packages in tests/node/package.json, installed by bootstrap's
``npm ci --prefix tests/node`` (node itself is Debian's ``nodejs``)."""
PROGRAM_PACKAGE = {
    "cpio": "cpio", "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap", "busybox": "busybox-static", "mkfs.ext4": "e2fsprogs",
    "ip": "iproute2", "nft": "nftables", "nsenter": "util-linux", "unshare": "util-linux",
    "runuser": "util-linux", "setpriv": "util-linux", "nix": "nix-bin", "git": "git", "python3": "python3",
    "initdb": "postgresql", "pg_ctl": "postgresql", "apt-get": "apt", "apt-cache": "apt",
    "dpkg-deb": "dpkg", "tar": "tar", "sh": "dash", "bash": "bash", "chroot": "coreutils",
    "env": "coreutils", "sleep": "coreutils", "cat": "coreutils", "touch": "coreutils",
    "true": "coreutils", "date": "coreutils", "mkdir": "coreutils", "printf": "coreutils",
    "rm": "coreutils", "kill": "procps", "dpkg-query": "dpkg", "node": "nodejs",
    "dd": "coreutils", "esbuild": NPM, "newuidmap": "uidmap", "newgidmap": "uidmap",
}  # fmt: skip
# Debian's Essential (and apt) packages: on every Debian 12 system, bootstrap or not.
BASE_SYSTEM = frozenset({"coreutils", "dash", "bash", "dpkg", "apt", "util-linux", "tar",
                         "findutils", "grep", "sed", "gzip", "diffutils", "debianutils"})  # fmt: skip


def scan() -> tuple[list[Use], dict[str, list[str]]]:
    """Every host program of src/ and tests/ (with ``INDIRECT``'s), and what is unresolved."""
    uses: list[Use] = []
    unresolved: dict[str, list[str]] = {}
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            found, open_ = scan_file(path, rel, GUEST_ONLY.get(rel, ()))
            uses += found
            for key, wheres in open_.items():
                unresolved.setdefault(key, []).extend(wheres)
    for key, programs in INDIRECT.items():
        uses += [Use(p, f"{key} (INDIRECT)") for p in programs]
    return uses, unresolved


def problems(uses: list[Use], unresolved: dict[str, list[str]], pkgs: set[str]) -> list[str]:
    """Everything wrong, one line each: unknown programs, programs whose package bootstrap
    does not install, unresolved commands missing from ``INDIRECT``, stale entries."""
    out = []
    for use in sorted(uses, key=lambda u: (u.program, u.where)):
        name = use.program.rsplit("/", 1)[-1]
        if use.program in ABSENT_ON_PURPOSE:
            continue
        package = PROGRAM_PACKAGE.get(name)
        if package is None:
            out.append(f"{use.where}: runs '{name}', which PROGRAM_PACKAGE does not know: add "
                       "it with the Debian package that ships it (dpkg -S $(command -v "
                       f"{name})), and that package to scripts/bootstrap.sh")  # fmt: skip
        elif package == NPM:
            if (
                name not in NPM_DEPENDENCIES
                or "npm ci --prefix tests/node" not in BOOTSTRAP.read_text()
            ):
                out.append(f"{use.where}: runs '{name}' from npm, which tests/node/package.json "
                           "does not list or scripts/bootstrap.sh does not install (npm ci)")  # fmt: skip
        elif package not in pkgs and package not in BASE_SYSTEM:
            out.append(f"{use.where}: runs '{name}' from Debian package '{package}', which "
                       "scripts/bootstrap.sh does not install: add it to PKGS")  # fmt: skip
    for key, wheres in sorted(unresolved.items()):
        if key not in INDIRECT:
            out.append(f"{', '.join(wheres)}: runs a command whose program cannot be followed "
                       f"statically: add '{key}' to INDIRECT with the programs it runs")  # fmt: skip
    out += [f"INDIRECT has '{key}', which runs no such command now: remove it"
            for key in INDIRECT if key not in unresolved]  # fmt: skip
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def scanned() -> tuple[list[Use], dict[str, list[str]]]:
    return scan()


def test_every_program_run_on_the_host_is_installed_by_bootstrap(
    scanned: tuple[list[Use], dict[str, list[str]]],
) -> None:
    uses, unresolved = scanned
    found = problems(uses, unresolved, bootstrap_packages(BOOTSTRAP.read_text()))
    assert found == [], "\n".join(found)


def test_the_scan_finds_the_known_commands(scanned: tuple[list[Use], dict[str, list[str]]]) -> None:
    """The walk of the real tree is not vacuous."""
    seen = {(u.program, u.where.split(":")[0]) for u in scanned[0]}
    for expected in [
        ("cpio", "tests/images/test_initramfs.py"),  # subprocess.run(["cpio", ...])
        ("git", "src/vmrunner/runner/context.py"),  # run_capture(["git", ...])
        ("qemu-system-x86_64", "src/vmrunner/vm/qemu.py"),  # require_tool("...")
        ("mkfs.ext4", "src/vmrunner/images/builder.py"),  # tool = require_tool(...); [tool, ...]
        ("runuser", "tests/conftest.py"),  # [*as_user, str(initdb), ...]
        ("sleep", "tests/cli/test_doctor_gc.py"),  # subprocess.Popen(["sleep", "600"])
        ("cat", "tests/guest/test_agent.py"),  # the agent runs ch.exec(["cat"]) on the host
    ]:
        assert expected in seen, expected


FOLLOWED = {
    "a name bound to a list": "def f():\n    argv = ['frob', '-x']\n    subprocess.run(argv)\n",
    "a prefix that may be empty": (
        "def f(root):\n    pre = []\n    if root:\n        pre = ['runuser']\n"
        "    subprocess.run([*pre, 'frob'])\n"
    ),
    "a looked-up path": "def f():\n    t = require_tool('frob')\n    run_tool([t, 'x'])\n",
    "a fallback": "def f():\n    n = shutil.which('frob') or 'frob'\n    run_tool([n])\n",
    "a loop over a module constant": (
        "A = ('frob',)\nB = ('x',)\ndef f(c):\n    for t in (A if c else B):\n"
        "        require_tool(t)\n"
    ),
    "a table of lookups": (
        "def f():\n    tools = {t: shutil.which(t) for t in ('frob',)}\n"
        "    run_probe([str(tools['frob']), '--version'])\n"
    ),
    "an imported constant": (
        "from vmrunner.systest.runner import DEBIAN_TOOLS\n"
        "def f():\n    for t in DEBIAN_TOOLS:\n        require_tool(t)\n"
    ),
    "the agent run on the host": "async def f(ch):\n    await ch.exec(['frob'])\n",
}


@pytest.mark.parametrize("source", FOLLOWED.values(), ids=FOLLOWED.keys())
def test_each_way_of_naming_a_program_is_followed(tmp_path: Path, source: str) -> None:
    path = tmp_path / "t.py"
    path.write_text(source)
    uses, unresolved = scan_file(path, rel="tests/guest/t.py")
    assert unresolved == {}
    assert {u.program for u in uses} & {"frob", "mmdebstrap"}


def test_a_package_removed_from_bootstrap_is_reported(
    scanned: tuple[list[Use], dict[str, list[str]]],
) -> None:
    uses, unresolved = scanned
    pkgs = bootstrap_packages(BOOTSTRAP.read_text())
    for package, program in [("cpio", "cpio"), ("git", "git"), ("postgresql", "initdb")]:
        assert package in pkgs
        found = problems(uses, unresolved, pkgs - {package})
        assert any(f"runs '{program}' from Debian package '{package}'" in p for p in found), found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import subprocess\nsubprocess.run(['frobnicate', '-x'])\n", "runs 'frobnicate', which"),
        ("import shutil\nshutil.which('frobnicate')\n", "runs 'frobnicate', which"),
        ("def f(cmd):\n    run_tool([cmd, 'x'], timeout=1, what='w')\n", "add 'tests/t.py::f' to"),
        ("def f():\n    p = ['frob']\n    subprocess.Popen([*p, 'a'])\n", "runs 'frob', which"),
    ],
)
def test_new_commands_are_caught(tmp_path: Path, source: str, expected: str) -> None:
    """What a developer adding a command sees (the file is scanned as if in tests/)."""
    path = tmp_path / "t.py"
    path.write_text(source)
    uses, unresolved = scan_file(path, rel="tests/t.py")
    found = problems(uses, unresolved, bootstrap_packages(BOOTSTRAP.read_text()))
    assert any(expected in p for p in found), found


def _dpkg_owner(program: str) -> str | None:
    """The package that ships ``program`` on this host (Debian's own directories only)."""
    pg_dirs = [str(d) for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"))]
    path = shutil.which(
        program, path=":".join(["/usr/sbin", "/usr/bin", "/sbin", "/bin", *pg_dirs])
    )
    if path is None:
        return None
    real = str(Path(path).resolve())
    for candidate in dict.fromkeys([path, real, *(f"{d}/{Path(real).name}" for d in
                                                   ("/bin", "/usr/bin", "/sbin", "/usr/sbin"))]):  # fmt: skip
        proc = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            pkgs, _, owned = line.rpartition(": ")
            if owned == candidate and "diversion" not in pkgs:
                return pkgs.split(",")[0].split(":")[0].strip()
    return None


@pytest.mark.parametrize("program", sorted(p for p, pkg in PROGRAM_PACKAGE.items() if pkg != NPM))
def test_the_mapping_names_the_package_that_ships_each_program(program: str) -> None:
    """Checked against dpkg where the program is installed here (a versioned package such
    as postgresql-15 or python3.11-minimal counts as its unversioned name)."""
    owner = _dpkg_owner(program)
    if owner is None:
        pytest.skip(f"{program} is not installed from a Debian package on this host")
    assert owner.startswith(PROGRAM_PACKAGE[program]), (program, owner)


@pytest.mark.parametrize("program", sorted(p for p, pkg in PROGRAM_PACKAGE.items() if pkg == NPM))
def test_npm_programs_are_installed_by_npm_ci(program: str) -> None:
    """A program from tests/node is there after bootstrap's ``npm ci``, and runs."""
    path = REPO / "tests" / "node" / "node_modules" / ".bin" / program
    assert path.exists(), f"{path}: run scripts/bootstrap.sh (npm ci --prefix tests/node)"
    assert subprocess.run([str(path), "--version"], capture_output=True, timeout=60).returncode == 0
