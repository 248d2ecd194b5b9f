"""Image recipes: what goes into an image, and the hash that keys its cache entry.

A recipe is immutable. Its ``digest`` covers every input that changes the built
image (suite, mirrors, packages, kernel package, guest files including the agent),
so an image is rebuilt exactly when its recipe changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources

from vmrunner.images.kernel import DEFAULT_KERNEL_PACKAGE

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "python3",
    "bash",
    "coreutils",
    "git",
    "curl",
    "ca-certificates",
    "tar",
    "gzip",
    "xz-utils",
    "sudo",
    "procps",
    "iproute2",
    "kmod",
)
GUEST_FILES = ("initramfs-init", "init-fast", "vmrunner-agent.service")
# Layers applied on top of the guest files; left out of the digest while empty, so
# adding them did not change the digest (and cache entry) of existing recipes.
LAYER_FIELDS = ("files", "users", "units", "run")


@dataclass(frozen=True)
class FileSpec:
    """A file written into the image (``owner`` is ``user[:group]``, applied after users)."""

    path: str
    content: str
    mode: int = 0o644
    owner: str = "root:root"


@dataclass(frozen=True)
class UserSpec:
    """A user created with ``useradd -m`` in the image."""

    name: str
    groups: tuple[str, ...] = ()
    shell: str = "/bin/bash"


@dataclass(frozen=True)
class UnitSpec:
    """A systemd unit written to /etc/systemd/system; enabled (per its [Install]) or masked."""

    name: str
    content: str = ""
    enable: bool = True
    mask: bool = False


@dataclass(frozen=True)
class Recipe:
    """How to build one image."""

    name: str
    suite: str = "bookworm"
    packages: tuple[str, ...] = BASE_PACKAGES
    extra_packages: tuple[str, ...] = ()
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    kernel_package: str = DEFAULT_KERNEL_PACKAGE
    size_gib: int = 8
    extra_sources: tuple[str, ...] = field(default=())
    files: tuple[FileSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()
    units: tuple[UnitSpec, ...] = ()
    run: tuple[str, ...] = ()

    def sources(self) -> list[str]:
        """The apt source lines: the suite, its updates and its security suite."""
        lines = [f"deb {self.mirror} {self.suite} main"]
        if self.suite not in ("sid", "unstable"):
            lines.append(f"deb {self.mirror} {self.suite}-updates main")
            lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return lines + list(self.extra_sources)

    def all_packages(self) -> list[str]:
        return sorted(set(self.packages) | set(self.extra_packages))

    def base_digest(self) -> str:
        """A hex digest of what determines the bootstrapped root file system alone."""
        parts = {"suite": self.suite, "packages": self.all_packages(), "sources": self.sources()}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def digest(self) -> str:
        """A hex digest of everything that determines the built image."""
        fields = asdict(self)
        for name in LAYER_FIELDS:
            if not fields[name]:
                del fields[name]
        h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
        for name in (*GUEST_FILES,):
            h.update(resources.files("vmrunner.images").joinpath(f"guestfiles/{name}").read_bytes())
        h.update(resources.files("vmrunner.guest").joinpath("agent.py").read_bytes())
        h.update(b"layout-1")
        return h.hexdigest()


BUILTIN_RECIPES: dict[str, Recipe] = {
    "debian": Recipe(name="debian"),
}


def get_recipe(name: str) -> Recipe:
    """The built-in recipe called ``name``; raises KeyError when unknown."""
    return BUILTIN_RECIPES[name]
