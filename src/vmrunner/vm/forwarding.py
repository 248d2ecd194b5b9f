"""IPv4 forwarding held only while ``--network user`` VMs need it.

Traffic from a VM's namespace is forwarded by the host, which needs the host-wide
``net.ipv4.ip_forward``. Rather than leave it switched on for good, every VM namespace
holds it: the first holder records the value it found and turns forwarding on, the last
one to go restores that value. The holders live in a small JSON file under ``/run``
(host-wide, like the setting, and gone at reboot, like the setting), changed under an
exclusive ``flock`` so that concurrent vmrunner processes never race. A holder whose
namespace no longer exists (its vmrunner was killed before gc) is dropped on every
change, so a crash cannot pin forwarding on.

If something else turns forwarding on while VMs hold it, the last VM still restores the
value it found first: the setting has one owner at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Forwarding:
    """The forwarding switch at ``sysctl``, with holders kept in ``state`` and namespaces
    (the holders' names) in ``netns_dir``. Paths are parameters so tests use their own."""

    sysctl: Path = Path("/proc/sys/net/ipv4/ip_forward")
    state: Path = Path("/run/vmrunner/ip_forward.json")
    netns_dir: Path = Path("/run/netns")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, object]]:
        self.state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.state.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.state.read_text())
            except (OSError, ValueError):
                data = {}
            holders = [h for h in data.get("holders", []) if (self.netns_dir / h).exists()]
            data["holders"] = holders
            yield data
            self._save(data)

    def _save(self, data: dict[str, object]) -> None:
        if data["holders"]:
            tmp = self.state.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.state)
            return
        original = data.get("original")
        if isinstance(original, str) and self.sysctl.read_text().strip() != original:
            self.sysctl.write_text(original + "\n")
        self.state.unlink(missing_ok=True)

    def hold(self, name: str) -> None:
        """Namespace ``name`` needs forwarding: turn it on (recording the value found when
        there was no holder yet). Idempotent per name."""
        with self._locked() as data:
            holders = data["holders"]
            assert isinstance(holders, list)
            if "original" not in data:  # kept when earlier holders died without a release
                data["original"] = self.sysctl.read_text().strip()
            if name not in holders:
                holders.append(name)
            if self.sysctl.read_text().strip() != "1":
                self.sysctl.write_text("1\n")

    def release(self, name: str) -> None:
        """Namespace ``name`` is gone: when no holder is left, restore the original value.
        Idempotent; does nothing when there is no record at all."""
        if not self.state.exists():
            return
        with self._locked() as data:
            holders = data["holders"]
            assert isinstance(holders, list)
            if name in holders:
                holders.remove(name)
