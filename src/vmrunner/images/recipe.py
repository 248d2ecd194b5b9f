"""Image recipes: what goes into an image, and the hash that keys its cache entry.

A recipe is immutable. Its ``digest`` covers every input that changes the built
image (suite, mirrors, packages, kernel package, guest files including the agent),
so an image is rebuilt exactly when its recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING

from vmrunner.errors import ConfigError
from vmrunner.images.kernel import DEFAULT_KERNEL_PACKAGE

if TYPE_CHECKING:
    from vmrunner.config import Settings

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
_MIRROR_RE = re.compile(r"(https?|file|ftp)://\S+\Z")

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
    "nodejs",  # JavaScript actions (runs.using: node*) run with the guest's node
)
GUEST_FILES = ("initramfs-init", "init-fast", "vmrunner-agent.service")
# Layers applied on top of the guest files; left out of the digest while empty, so
# adding them did not change the digest (and cache entry) of existing recipes.
LAYER_FIELDS = ("files", "users", "units", "run")


@dataclass(frozen=True)
class Mirrors:
    """The Debian archive (for the suite and ``SUITE-updates``) and the security archive
    (for ``SUITE-security``) that an image's apt sources name. Raises ``ConfigError``
    naming the setting when one is not a URL that fits in an apt source line."""

    debian: str = DEFAULT_MIRROR
    security: str = DEFAULT_SECURITY_MIRROR

    def __post_init__(self) -> None:
        for setting, url in (("debian_mirror", self.debian),
                             ("debian_security_mirror", self.security)):  # fmt: skip
            if not _MIRROR_RE.match(url):
                raise ConfigError(
                    f"{setting} must be an http://, https://, ftp:// or file:// URL "
                    f"without spaces, got {url!r}"
                )


def mirrors_from(settings: Settings) -> Mirrors:
    """The mirrors set by ``settings`` (``debian_mirror``, ``debian_security_mirror``)."""
    return Mirrors(settings.debian_mirror, settings.debian_security_mirror)


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
    mirror: str = DEFAULT_MIRROR
    security_mirror: str = DEFAULT_SECURITY_MIRROR
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

    def with_mirrors(self, mirrors: Mirrors) -> Recipe:
        """This recipe with its apt sources on ``mirrors`` (and so its own digest)."""
        return replace(self, mirror=mirrors.debian, security_mirror=mirrors.security)

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


def builtin_recipes(mirrors: Mirrors | None = None) -> dict[str, Recipe]:
    """The built-in recipes with their apt sources on ``mirrors`` (default: Debian's own
    archives, which gives exactly :data:`BUILTIN_RECIPES`). What ``ImageCache`` should be
    given for the user's settings: ``builtin_recipes(mirrors_from(settings))``."""
    mirrors = mirrors or Mirrors()
    return {name: r.with_mirrors(mirrors) for name, r in BUILTIN_RECIPES.items()}


def get_recipe(name: str) -> Recipe:
    """The built-in recipe called ``name``; raises KeyError when unknown."""
    return BUILTIN_RECIPES[name]
