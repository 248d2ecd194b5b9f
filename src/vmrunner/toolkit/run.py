"""The toolkit services as a workflow run uses them: started once per run, attached
to each job's VM.

:func:`run_toolkit` starts the run's :class:`~.service.ToolkitService` on
a Unix socket in a private directory (recorded with its owner, :mod:`.sockdir`: gc
reaps a killed run's) for an ``async with`` block; :meth:`RunToolkit.job_env`
gives a job's VM its forward (:mod:`.tunnel`) and returns the variables GitHub sets
(``ACTIONS_RUNTIME_URL``, ``ACTIONS_RESULTS_URL``, ``ACTIONS_CACHE_URL``,
``ACTIONS_CACHE_SERVICE_V2``, ``ACTIONS_RUNTIME_TOKEN``). A VM that is not a QEMU VM
(test fakes) gets no forward and no variables.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vmrunner.toolkit.service import Identity, ToolkitService
from vmrunner.toolkit.sockdir import new_socket_dir
from vmrunner.toolkit.tunnel import GUEST_PORT, Tunnel, attach
from vmrunner.vm.records import reap_record

log = logging.getLogger(__name__)


class RunToolkit:
    """One run's services and the forwards of its VMs."""

    def __init__(self, service: ToolkitService) -> None:
        self.service = service
        self.tunnels: list[Tunnel] = []

    async def job_env(self, guest: Any, job: str) -> dict[str, str]:
        """Attach ``guest`` (job instance ``job``) to the services; its variables."""
        if getattr(guest, "qmp", None) is None or self.service.socket_path is None:
            return {}
        tunnel = await attach(guest, self.service.socket_path, str(len(self.tunnels)))
        self.tunnels.append(tunnel)
        return self.service.job_env(job, f"http://127.0.0.1:{GUEST_PORT}/")

    async def close(self) -> None:
        for tunnel in self.tunnels:
            await tunnel.close()
        await self.service.stop()


@contextlib.asynccontextmanager
async def run_toolkit(
    run_dir: Path, cache_root: Path, identity: Identity
) -> AsyncIterator[RunToolkit]:
    """The run's services for the block (artifacts under ``run_dir``, caches under
    ``cache_root``), stopped afterwards."""
    run_dir.mkdir(parents=True, exist_ok=True)
    service = ToolkitService(run_dir, cache_root, identity)
    sock_dir = new_socket_dir("run")  # 0700, short for a socket name, owner recorded
    toolkit = RunToolkit(service)
    try:
        await service.start(uds=sock_dir.path / "toolkit.sock")
        yield toolkit
    finally:
        await toolkit.close()
        reap_record(sock_dir)


def identity(repo: str, ref: str, base_ref: str = "", payload: Any = None) -> Identity:
    """Whose caches a run on ``ref`` uses: its own ref, a pull request's base branch
    (``base_ref``) and the default branch (the event's ``repository.default_branch``,
    else ``main``)."""
    repository = payload.get("repository") if isinstance(payload, dict) else None
    default = (repository or {}).get("default_branch") if isinstance(repository, dict) else None
    heads = "refs/heads/"
    return Identity(
        repo, ref, heads + str(default or "main"),
        (base_ref if base_ref.startswith("refs/") else heads + base_ref) if base_ref else None,
    )  # fmt: skip
