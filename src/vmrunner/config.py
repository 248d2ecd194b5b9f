"""Settings: one frozen model fed by the config file, the environment and CLI flags.

Precedence, lowest first: built-in defaults, the config file
(``$VMRUNNER_CONFIG``, else ``$XDG_CONFIG_HOME/vmrunner/config.toml``), environment
variables (``VMRUNNER_HOME``, ``VMRUNNER_CACHE``, ``VMRUNNER_DATABASE_URL``), then
explicit overrides (CLI flags). Mutable run state never lives here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
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
    # networks (CIDR or address) a ``--network user`` guest may reach although they are
    # private or link-local; the host's own addresses stay unreachable whatever it says
    network_allow: tuple[str, ...] = ()
    # caps a workflow cannot raise: matrix instances of one job at once (``--max-parallel``
    # may set another; a workflow's own ``max-parallel`` only lowers it), and VMs running at
    # once on this host, over every vmrunner process (0: as many as fit in 75% of the
    # host's memory at ``memory_mib`` each); more wait for a free slot
    max_parallel: int = 4
    max_vms: int = 0
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_file: str = ""
    # the GitHub runner service: a token (PAT or installation token) reports commit
    # statuses; an App (id + private key) reports check runs and reconciles deliveries
    github_token: str = field(default="", repr=False)
    github_app_id: str = ""
    github_app_private_key_file: str = ""
    github_api_url: str = "https://api.github.com"
    # where repositories (and actions) are fetched from: {owner} and {repo} are filled in
    github_git_url: str = "https://github.com/{owner}/{repo}.git"
    public_url: str = ""  # this server's address, for details links in reports
    lease_s: float = 30.0  # a worker that stops heart-beating loses its jobs after this
    requeue_lost: int = 0  # times a lost job is queued again (0: failed with worker_lost)
    # caps per VM a workflow cannot raise: MiB the VM's QEMU may write to the host's disk
    # (its overlay disk above all; a VM starts only when that much is free), and MiB of
    # files one copy-out may bring to the host
    vm_disk_max_mib: int = 8192
    copy_out_max_mib: int = 8192
    # the user QEMU runs as: "auto" (vmrunner-qemu when vmrunner runs as root and that
    # user exists, else the invoking user), a user name, or "" / "self" (the invoking user)
    qemu_user: str = "auto"
    # RUNNER_TOOL_CACHE kept across the VMs of an image (under cache_dir/tool-cache): what
    # a job adds is kept, at most tool_cache_max_mib per image (the oldest versions go)
    tool_cache: bool = False
    tool_cache_max_mib: int = 2048

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

    def webhook_secret_bytes(self) -> bytes:
        """The webhook secret: ``webhook_secret``, else the first line of
        ``webhook_secret_file``; raises ``ConfigError`` when neither gives one."""
        if self.webhook_secret:
            return self.webhook_secret.encode()
        if self.webhook_secret_file:
            try:
                text = Path(self.webhook_secret_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"webhook_secret_file: {exc}") from exc
            if text:
                return text.encode()
        raise ConfigError(
            "no webhook secret: set webhook_secret or webhook_secret_file "
            "(or VMRUNNER_WEBHOOK_SECRET / VMRUNNER_WEBHOOK_SECRET_FILE)"
        )

    def ensure_dirs(self) -> None:
        """Create the state and cache directories. The state directory (runs, logs with
        unmasked output, the database) is private: made 0700, and tightened to 0700 when it
        exists and is ours."""
        for d in (self.state_dir, self.vms_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.state_dir.stat().st_uid == os.geteuid():
            self.state_dir.chmod(0o700)
        for d in (self.cache_dir, self.images_dir):
            d.mkdir(parents=True, exist_ok=True)


_KEYS = {f.name for f in dataclasses.fields(Settings)}
_ENV_KEYS = (
    "webhook_secret", "webhook_secret_file", "github_token", "github_app_id",
    "github_app_private_key_file", "github_api_url", "github_git_url", "public_url",
    "lease_s", "requeue_lost", "qemu_user", "tool_cache", "tool_cache_max_mib",
)  # fmt: skip
"""Settings also read from the environment as ``VMRUNNER_<KEY>``."""
_AT_LEAST_ONE = ("vm_disk_max_mib", "copy_out_max_mib", "tool_cache_max_mib")
_BOOLEANS = ("tool_cache",)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _config_file(env: Mapping[str, str]) -> Path:
    if env.get("VMRUNNER_CONFIG"):
        return Path(env["VMRUNNER_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vmrunner" / "config.toml"


def _coerce(key: str, value: Any) -> Any:
    if key in ("state_dir", "cache_dir"):
        return Path(str(value)).expanduser()
    if key == "lease_s":
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be a number of seconds, got {value!r}") from exc
        if not 1.0 <= seconds <= 3600.0:
            raise ConfigError(f"{key} must be between 1 and 3600 seconds, got {value!r}")
        return seconds
    if key in _BOOLEANS:
        return _boolean(key, value)
    if key in (
        "cpus", "memory_mib", "lesson_min_occurrences", "max_parallel", "max_vms", "requeue_lost",
        *_AT_LEAST_ONE,
    ):  # fmt: skip
        try:
            number = int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from exc
        if number < 0:
            raise ConfigError(f"{key} must not be negative, got {number}")
        if number < 1 and key in _AT_LEAST_ONE:
            raise ConfigError(f"{key} must be at least 1, got {number}")
        return number
    if key == "network_allow":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"network_allow must be a list of networks, got {value!r}")
        return parse_allow(value)
    if key == "label_images":
        if not isinstance(value, Mapping):
            raise ConfigError(f"label_images must be a table of label = image, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    return str(value)


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def parse_allow(values: Any, where: str = "network_allow") -> tuple[str, ...]:
    """Validate allow-list entries (``10.1.2.0/24``, ``169.254.169.254``, ``fd00::/8``) and
    return them normalised; raise ``ConfigError`` naming ``where`` and the bad entry."""
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError as exc:
            raise ConfigError(f"{where}: {value!r} is not an address or network: {exc}") from exc
    return tuple(out)


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
    for key in _ENV_KEYS:
        if env.get(f"VMRUNNER_{key.upper()}"):
            values[key] = _coerce(key, env[f"VMRUNNER_{key.upper()}"])
    if env.get("VMRUNNER_DATABASE_URL"):
        values["database_url"] = env["VMRUNNER_DATABASE_URL"]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value)
    return Settings(**values)
