"""How QEMU is confined: its seccomp sandbox.

QEMU starts with a scrubbed environment (``procs.vmm_env``) and ``-sandbox on`` (no
obsolete system calls, no resource control, no new processes unless it migrates a
snapshot through ``exec:``, no privilege changes). ``run_as`` (``-runas``) is supported
by the argv builder but vmrunner does not use it: changing credentials clears QEMU's
parent-death signal, and QEMU must die with vmrunner. Pure.
"""

from __future__ import annotations


def sandbox_args(*, spawn: bool, run_as: str | None) -> list[str]:
    """QEMU's seccomp sandbox (pure): no obsolete system calls, no resource control, no
    new processes unless ``spawn``, no privilege changes -- except QEMU's own drop to
    ``run_as`` (``-runas``) after it opened its files, which ``elevateprivileges=deny``
    would kill; once dropped, it cannot regain them anyway."""
    elevate = "allow" if run_as else "deny"
    args = [
        "-sandbox",
        f"on,obsolete=deny,elevateprivileges={elevate},spawn={'allow' if spawn else 'deny'},"
        "resourcecontrol=deny",
    ]
    return [*args, "-runas", run_as] if run_as else args
