"""Settings: one frozen model fed by the config file, the environment and CLI flags.

Precedence, lowest first: built-in defaults, the config file
(``$VMRUNNER_CONFIG``, else ``$XDG_CONFIG_HOME/vmrunner/config.toml``), environment
variables (``VMRUNNER_HOME``, ``VMRUNNER_CACHE``, ``VMRUNNER_DATABASE_URL``), then
explicit overrides (CLI flags). Mutable run state never lives here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.errors import ConfigError


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    value = env.get(var)
    return Path(value) if value else Path.home() / fallback


@dataclass(frozen=True)
class Settings:
    """Where vmrunner keeps things and how it runs VMs by default.

    ``state_dir`` holds the database, runs, logs and the records of live VMs;
    ``cache_dir`` holds images and kernels. Both may be shared by several
    vmrunner processes at once.
    """

    state_dir: Path
    cache_dir: Path
    database_url: str = ""
    default_image: str = "debian"
    accel: str = "auto"
    cpus: int = 2
    memory_mib: int = 1024
    debian_mirror: str = "http://deb.debian.org/debian"
    debian_security_mirror: str = "http://deb.debian.org/debian-security"
    label_images: Mapping[str, str] = field(default_factory=dict)
    lesson_min_occurrences: int = 3

    @property
    def vms_dir(self) -> Path:
        """One directory per live VM, holding all its files (overlay, sockets, logs, pid)."""
        return self.state_dir / "vms"

    @property
    def images_dir(self) -> Path:
        return self.cache_dir / "images"

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the store: SQLite in the state directory unless configured."""
        return self.database_url or f"sqlite:///{self.state_dir / 'vmrunner.db'}"

    def ensure_dirs(self) -> None:
        """Create the state and cache directories (does nothing if they exist)."""
        for d in (self.state_dir, self.cache_dir, self.vms_dir, self.images_dir):
            d.mkdir(parents=True, exist_ok=True)


_KEYS = {f.name for f in dataclasses.fields(Settings)}


def _config_file(env: Mapping[str, str]) -> Path:
    if env.get("VMRUNNER_CONFIG"):
        return Path(env["VMRUNNER_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vmrunner" / "config.toml"


def _coerce(key: str, value: Any) -> Any:
    if key in ("state_dir", "cache_dir"):
        return Path(str(value)).expanduser()
    if key in ("cpus", "memory_mib", "lesson_min_occurrences"):
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from exc
    if key == "label_images":
        if not isinstance(value, Mapping):
            raise ConfigError(f"label_images must be a table of label = image, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    return str(value)


def load_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, config file, environment and ``overrides``.

    Raises ``ConfigError`` naming the file and key when the config file is invalid.
    Does not create any directory.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {
        "state_dir": Path(env["VMRUNNER_HOME"])
        if env.get("VMRUNNER_HOME")
        else _xdg(env, "XDG_DATA_HOME", ".local/share") / "vmrunner",
        "cache_dir": Path(env["VMRUNNER_CACHE"])
        if env.get("VMRUNNER_CACHE")
        else _xdg(env, "XDG_CACHE_HOME", ".cache") / "vmrunner",
    }
    path = _config_file(env)
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for key, value in data.items():
            if key not in _KEYS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            if key in ("state_dir", "cache_dir") and (
                env.get("VMRUNNER_HOME" if key == "state_dir" else "VMRUNNER_CACHE")
            ):
                continue  # the environment wins over the file
            values[key] = _coerce(key, value)
    if env.get("VMRUNNER_LESSON_MIN"):
        values["lesson_min_occurrences"] = _coerce(
            "lesson_min_occurrences", env["VMRUNNER_LESSON_MIN"]
        )
    if env.get("VMRUNNER_DATABASE_URL"):
        values["database_url"] = env["VMRUNNER_DATABASE_URL"]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value)
    return Settings(**values)
