"""Queries the web dashboard needs beyond ``Services`` and ``api_queries`` (the queue
per group and host comes from there): the learning page's data, and the key that signs
its cookie sessions.

Every function returns plain JSON-ready data (dicts and lists), so the dashboard's
templates need nothing below the service layer.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Any

from vmrunner.services.learning import open_learning

KEY_FILE = "dashboard-session.key"


def learning_overview(services: Any, command: str | None, top: int = 10) -> dict[str, Any]:
    """The learning page's data: ``stats`` (top failure signatures, flaky and failing
    commands), ``lessons`` (with candidate fixes), and ``related`` for ``command`` --
    or, when none is given, for the most failing command (None when nothing is known)."""
    with open_learning(services.settings) as svc:
        stats = svc.stats(top=top).to_dict()
        lessons = svc.lessons().to_dict()
        if not command:
            failing = stats.get("failing_commands") or []
            command = failing[0]["command"] if failing else None
        related = svc.related(command).to_dict() if command else None
    return {"stats": stats, "lessons": lessons, "command": command, "related": related}


def session_key(services: Any) -> bytes:
    """The key signing dashboard sessions: 32 random bytes kept in the state directory
    (mode 0600), made on first use, so sessions survive a restart of ``serve``."""
    path = Path(services.settings.state_dir) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # atomic: the first process to link wins, the others read its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()
