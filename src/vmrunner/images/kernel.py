"""Fetch a guest kernel from Debian's ``linux-image-*`` package with apt.

The kernel comes from the host's apt sources (``apt-get download``), never from
anywhere else. The package is unpacked with ``dpkg-deb -x``; the result is the
``vmlinuz`` and the ``lib/modules/<version>`` tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vmrunner.cancel import CancelToken
from vmrunner.errors import ImageBuildError
from vmrunner.procs import require_tool, run_tool

DEFAULT_KERNEL_PACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class KernelFiles:
    """An unpacked kernel package."""

    version: str
    package: str
    vmlinuz: Path
    modules_dir: Path


def resolve_package(meta: str, *, timeout: float = 60.0, cancel: CancelToken | None = None) -> str:
    """The versioned ``linux-image-<ver>`` package that ``meta`` depends on.

    A package that is already versioned is returned as it is.
    """
    if re.match(r"linux-image-\d", meta):
        return meta
    apt_cache = require_tool("apt-cache", "vmrunner needs a Debian host with apt")
    out = run_tool(
        [apt_cache, "depends", meta],
        timeout=timeout,
        what=f"apt-cache depends {meta}",
        cancel=cancel,
    )
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\d\S*)", line)
        if m:
            return m.group(1)
    raise ImageBuildError(
        f"cannot find the kernel package that {meta} depends on "
        "(is 'apt-get update' done on this host?)",
        ["apt-cache", "depends", meta],
        0,
        out,
    )


def fetch_kernel(
    dest: Path,
    package: str = DEFAULT_KERNEL_PACKAGE,
    *,
    timeout: float = 600.0,
    cancel: CancelToken | None = None,
) -> KernelFiles:
    """Download and unpack the kernel package into ``dest`` (an empty directory)."""
    apt_get = require_tool("apt-get", "vmrunner needs a Debian host with apt")
    dpkg_deb = require_tool("dpkg-deb")
    versioned = resolve_package(package, cancel=cancel)
    dl = dest / "deb"
    dl.mkdir(parents=True, exist_ok=True)
    dl.chmod(0o777)  # lets apt's sandbox user write here
    run_tool(
        [apt_get, "download", "-q", versioned],
        cwd=dl,
        timeout=timeout,
        what="apt-get download",
        cancel=cancel,
    )
    debs = sorted(dl.glob("*.deb"))
    if not debs:
        raise ImageBuildError(
            f"apt-get download {versioned} produced no .deb", [apt_get, "download", versioned]
        )
    root = dest / "root"
    run_tool(
        [dpkg_deb, "-x", str(debs[0]), str(root)],
        timeout=timeout,
        what="dpkg-deb -x",
        cancel=cancel,
    )
    for deb in debs:
        deb.unlink()
    vmlinuzes = sorted((root / "boot").glob("vmlinuz-*"))
    if not vmlinuzes:
        raise ImageBuildError(f"{versioned} holds no /boot/vmlinuz-*")
    version = vmlinuzes[0].name.removeprefix("vmlinuz-")
    modules = root / "lib" / "modules" / version
    if not modules.is_dir():
        raise ImageBuildError(f"{versioned} holds no /lib/modules/{version}")
    return KernelFiles(
        version=version, package=versioned, vmlinuz=vmlinuzes[0], modules_dir=modules
    )
