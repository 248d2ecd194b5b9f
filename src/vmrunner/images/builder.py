"""Build an image from a recipe: mmdebstrap, guest files, ext4 disk, kernel, initramfs.

Runs host tools through ``vmrunner.procs.run_tool`` (each with a timeout, its
argv and output tail in any error). Needs root and root's subordinate id range
(:mod:`.idmap`): the image tree keeps real ownership on the host, which
``mkfs.ext4 -d`` copies into the disk, while every program of the image or the recipe
(mmdebstrap's maintainer scripts, depmod, the agent's byte-compilation, the recipe's
layers) runs as root of a user namespace mapped to that unprivileged range.

A build follows a ``CancelToken``: once it is set, the running tool's process
group is killed at once and ``BuildCancelledError`` unwinds the build. mmdebstrap
runs in a private mount namespace, so even a killed mmdebstrap leaves no mount on
the host; its temporary directory (``MMDEBSTRAP_TMP_PREFIX<pid>-*`` in the system
temporary directory, where apt's ``_apt`` sandbox user can reach it) is removed
after it, or by ``vmrunner gc`` once its owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from vmrunner.cancel import CancelToken, check
from vmrunner.errors import ImageBuildError
from vmrunner.images.idmap import IdRange, build_env, build_range, userns_argv
from vmrunner.images.initramfs import build_initramfs
from vmrunner.images.kernel import KernelFiles, fetch_kernel
from vmrunner.images.layers import apply_layers, run_in_image
from vmrunner.images.manifest import Progress, write_manifest
from vmrunner.images.recipe import Recipe
from vmrunner.procs import require_tool, run_tool

MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
)
# apt inside mmdebstrap fails fast on network errors: one attempt, short connect
# and stall timeouts (a failed build is reported in seconds, never retried).
APT_FAIL_FAST = (
    'Acquire::Retries "0";',
    'Acquire::http::Timeout "15";',
    'Acquire::https::Timeout "15";',
)
Stage = Callable[[str], None]
MMDEBSTRAP_TMP_PREFIX = "vmrunner.mmdebstrap-"


def _guestfile(name: str) -> bytes:
    return resources.files("vmrunner.images").joinpath(f"guestfiles/{name}").read_bytes()


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def _symlink(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


@contextlib.contextmanager
def mmdebstrap_tmpdir(ids: IdRange) -> Iterator[Path]:
    """A fresh directory for mmdebstrap's temporary root and its tarball, removed afterwards.
    Named ``MMDEBSTRAP_TMP_PREFIX<pid>-<random>`` for ``gc``; owned by root of ``ids`` (who
    runs mmdebstrap) and readable by apt's ``_apt`` user."""
    path = Path(tempfile.mkdtemp(prefix=f"{MMDEBSTRAP_TMP_PREFIX}{os.getpid()}-"))
    try:
        path.chmod(0o755)
        os.chown(path, ids.uid, ids.gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mmdebstrap_argv(
    recipe: Recipe,
    tarball: Path,
    *,
    ids: IdRange,
    mmdebstrap: str = "mmdebstrap",
    unshare: str = "unshare",
) -> list[str]:
    """The command that bootstraps ``recipe`` into ``tarball`` (pure): mmdebstrap as root of a
    user namespace mapped to ``ids`` (so the packages' maintainer scripts never run as the
    host's root), with a private mount namespace, its apt sources those of
    ``recipe.sources()`` (the recipe's mirrors, then its extra sources). Its unshare mode
    (which, run as root, adds no user namespace of its own) needs no host privilege."""
    return [
        *userns_argv(unshare, ids), "--mount", "--propagation", "private", "--",
        mmdebstrap, "--mode=unshare", "--variant=minbase",
        f"--include={','.join(recipe.all_packages())}",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        *(f"--aptopt={opt}" for opt in APT_FAIL_FAST),
        recipe.suite, str(tarball), *recipe.sources(),
    ]  # fmt: skip


def mmdebstrap(recipe: Recipe, tarball: Path, log: Path, cancel: CancelToken | None = None) -> None:
    """Bootstrap the root file system into ``tarball`` with mmdebstrap, as root of the build's
    unprivileged id range (:mod:`.idmap`).

    mmdebstrap mounts /proc, /sys and /dev into its temporary root; it runs in a
    private mount namespace, so the mounts are never seen on the host and go with it
    even when it is killed. It writes the tarball into its own temporary directory (the
    unprivileged ids cannot write the image cache); it is moved to ``tarball`` afterwards.
    ``file://`` sources must be readable by every user (they are read by the build's ids).
    """
    tool = require_tool("mmdebstrap", "apt-get install mmdebstrap")
    unshare = require_tool("unshare", "apt-get install util-linux")
    require_tool("newuidmap", "apt-get install uidmap")
    ids = build_range()
    with mmdebstrap_tmpdir(ids) as tmpdir:
        out = tmpdir / "base.tar"
        argv = mmdebstrap_argv(recipe, out, ids=ids, mmdebstrap=tool, unshare=unshare)
        env = {**build_env(str(tmpdir), proxies=True), "TMPDIR": str(tmpdir)}
        run_tool(argv, timeout=1800, what="mmdebstrap", log=log, env=env, cancel=cancel)
        shutil.move(out, tarball)
        os.chown(tarball, 0, 0)


def install_guest_files(
    rootfs: Path, kernel: KernelFiles, log: Path, cancel: CancelToken | None = None
) -> None:
    """Put the agent, the inits, the kernel modules and the base config into ``rootfs``."""
    from vmrunner.guest import agent as agent_module

    lib = rootfs / "usr/lib/vmrunner"
    _write(lib / "agent.py", Path(agent_module.__file__).read_bytes(), 0o755)
    _write(lib / "init-fast", _guestfile("init-fast"), 0o755)
    unit = rootfs / "etc/systemd/system/vmrunner-agent.service"
    _write(unit, _guestfile("vmrunner-agent.service"))
    wants = rootfs / "etc/systemd/system/sysinit.target.wants/vmrunner-agent.service"
    _symlink(wants, "/etc/systemd/system/vmrunner-agent.service")
    for name in MASKED_UNITS:
        _symlink(rootfs / "etc/systemd/system" / name, "/dev/null")
    _write(rootfs / "etc/fstab", "/dev/vda / ext4 rw,noatime 0 1\n")
    _write(rootfs / "etc/hostname", "vmrunner\n")
    _write(rootfs / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 vmrunner\n::1 localhost\n")
    _symlink(rootfs / "etc/resolv.conf", "/run/resolv.conf")
    (rootfs / "etc/machine-id").write_text("")
    modules = rootfs / "lib/modules" / kernel.version
    if modules.exists():
        shutil.rmtree(modules)
    shutil.copytree(kernel.modules_dir, modules, symlinks=True)
    run_in_image(rootfs, ["depmod", "-a", kernel.version], "depmod", log, cancel)
    compile_agent = ["python3", "-m", "py_compile", "/usr/lib/vmrunner/agent.py"]
    run_in_image(rootfs, compile_agent, "py_compile agent", log, cancel)


def make_disk(
    rootfs: Path, disk: Path, size_gib: int, log: Path, cancel: CancelToken | None = None
) -> None:
    """Write ``rootfs`` into a sparse raw ext4 disk of ``size_gib`` GiB."""
    tool = require_tool("mkfs.ext4", "apt-get install e2fsprogs")
    run_tool(
        [
            tool,
            "-q",
            "-F",
            "-L",
            "vmroot",
            "-E",
            "root_owner=0:0",
            "-d",
            str(rootfs),
            str(disk),
            f"{size_gib}G",
        ],
        timeout=600,
        what="mkfs.ext4",
        log=log,
        cancel=cancel,
    )


def base_tarball(
    recipe: Recipe, base_dir: Path, log: Path, progress: Progress, cancel: CancelToken | None = None
) -> Path:
    """The bootstrapped root file system for ``recipe``, cached by its base digest.

    Guest files (agent, inits) are not in it, so changing them does not re-run
    mmdebstrap. Written to a temporary name and renamed, so it is never half-written.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    tarball = base_dir / f"{recipe.suite}-{recipe.base_digest()[:16]}.tar"
    if tarball.exists():
        return tarball
    progress(
        f"bootstrapping Debian {recipe.suite} with mmdebstrap ({len(recipe.all_packages())} packages)"
    )
    tmp = base_dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}.tar"
    try:
        mmdebstrap(recipe, tmp, log, cancel)
        tmp.rename(tarball)
    finally:
        tmp.unlink(missing_ok=True)
    return tarball


def build_image(
    recipe: Recipe,
    out: Path,
    progress: Progress,
    stage: Stage | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Build ``recipe`` into the empty directory ``out`` (rootfs.raw, vmlinuz, initrd.cpio).

    Raises ``ImageBuildError`` with the failing step's argv and log tail, and
    ``BuildCancelledError`` soon after ``cancel`` is set (the running tool killed).
    Leaves cleanup of ``out`` (and its ``build.log``) to the caller. ``stage("install")``
    is called once the root file system is complete, before it is written to the disk image.
    """
    if os.geteuid() != 0:
        raise ImageBuildError("building an image needs root (user namespaces, mounts, chroot)")
    build_range()  # fails early, naming scripts/bootstrap.sh, when the id range is missing
    started = time.monotonic()
    out.mkdir(parents=True)
    log = out / "build.log"
    work = out / "work"

    def step(message: str) -> None:  # each step heads its tools' output in the build log
        with log.open("a") as fh:
            fh.write(f"== {message}\n")
        progress(message)

    step("fetching the kernel package")
    kernel = fetch_kernel(work / "kernel", recipe.kernel_package, cancel=cancel)
    rootfs = work / "rootfs"
    base = base_tarball(recipe, out.parent.parent / ".base", log, step, cancel)
    step("unpacking the base root file system")
    rootfs.mkdir()
    run_tool(
        [require_tool("tar"), "-xpf", str(base), "-C", str(rootfs), "--numeric-owner"],
        timeout=600, what="tar -x base", log=log, cancel=cancel,
    )  # fmt: skip
    step("installing the guest agent and kernel modules")
    install_guest_files(rootfs, kernel, log, cancel)
    if recipe.files or recipe.users or recipe.units or recipe.run:
        step("applying the recipe's users, files, units and run commands")
        apply_layers(rootfs, recipe, log, cancel)
    if stage is not None:
        stage("install")
    step("writing the ext4 disk")
    make_disk(rootfs, out / "rootfs.raw", recipe.size_gib, log, cancel)
    check(cancel, "build")
    step("writing the initramfs")
    build_initramfs(kernel.modules_dir, out / "initrd.cpio")
    shutil.copyfile(kernel.vmlinuz, out / "vmlinuz")
    shutil.rmtree(work)
    write_manifest(out, recipe.name, recipe.digest(), kernel.version, time.monotonic() - started)
    progress(f"built image {recipe.name} in {time.monotonic() - started:.1f} s")
