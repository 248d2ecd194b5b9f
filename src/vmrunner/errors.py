"""The exceptions vmrunner raises.

Two kinds of failure are never confused:

* The *system under test* failed (a command exited 1, a unit failed, a boot timed
  out). That is not an exception: it is a result (``CommandResult``, a step or
  phase status), recorded, reported and learned from.
* The *harness* failed (QEMU did not start, the guest channel broke, an image is
  missing or corrupt, the database is gone). That is an exception from the tree
  below, carrying what is needed to diagnose it (argv, exit status, log tail).

Exception tree::

    VmrunnerError
    ├── ConfigError               bad settings or command-line input
    ├── UserInputError            bad input from the user (a file, an expression)
    │   └── (workflow/expression errors subclass this, with file/line/col)
    ├── ToolMissingError          a required host tool is not installed
    ├── AccelError                the requested acceleration is not available
    │   └── KvmUnavailableError   --accel kvm asked for, but KVM is not functional
    ├── ImageError                an image or kernel is missing, corrupt or failed to build
    │   └── ImageBuildError       the build command failed (argv, status, log tail)
    │       └── BuildCancelledError   the build was cancelled (its processes killed)
    ├── VmError                   a VM failed to start, answer, or stop
    │   ├── VmStartError          the VMM exited or never connected (argv, status, console tail)
    │   ├── VmStateError          an operation was asked for in the wrong machine state
    │   └── ChannelError          the guest channel broke or spoke nonsense
    │       └── ProtocolError     a malformed or unexpected frame
    │           └── UnsafeArchiveError    a copy_out member that could land outside (member, reason)
    │               └── ArchiveLimitError a copy_out past its byte or member limit
    └── StoreError                the database failed
"""

from __future__ import annotations

from collections.abc import Sequence


class VmrunnerError(Exception):
    """Base of every error vmrunner raises on purpose."""


class ConfigError(VmrunnerError):
    """Settings or command-line input that cannot be used."""


class UserInputError(VmrunnerError):
    """Input from the user (a file, an expression) that is not valid."""


class ToolMissingError(VmrunnerError):
    """A host tool vmrunner needs is not installed."""

    def __init__(self, tool: str, hint: str = "") -> None:
        self.tool = tool
        self.hint = hint
        msg = f"required tool not found: {tool}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class AccelError(VmrunnerError):
    """The requested acceleration is not available."""


class KvmUnavailableError(AccelError):
    """KVM was asked for but is not functional on this host."""


class ImageError(VmrunnerError):
    """An image, kernel or initramfs is missing or corrupt."""


def describe(
    message: str, argv: Sequence[str], status: int | None, tails: Sequence[tuple[str, str]]
) -> str:
    """A harness error message: what failed, the exact command, its exit status, log tails."""
    import shlex

    parts = [message]
    if argv:
        parts.append(f"command: {shlex.join(argv)}")
    if status is not None:
        parts.append(f"exit status: {status}")
    parts += [f"{label}:\n{text}" for label, text in tails if text]
    return "\n".join(parts)


class ImageBuildError(ImageError):
    """Building an image failed: carries the argv, exit status and log tail."""

    def __init__(
        self, message: str, argv: Sequence[str] = (), status: int | None = None, log_tail: str = ""
    ) -> None:
        self.argv = list(argv)
        self.status = status
        self.log_tail = log_tail
        super().__init__(describe(message, self.argv, status, [("log tail", log_tail)]))


class BuildCancelledError(ImageBuildError):
    """A build was cancelled (``CancelToken``): the running tool's process group was
    killed at once. Not a failure of the recipe: nothing to classify or learn from."""


class VmError(VmrunnerError):
    """A VM failed to start, answer or stop."""


class VmStartError(VmError):
    """The VMM process exited early or the guest never answered."""

    def __init__(
        self,
        message: str,
        argv: Sequence[str] = (),
        status: int | None = None,
        console_tail: str = "",
        vmm_log_tail: str = "",
    ) -> None:
        self.argv = list(argv)
        self.status = status
        self.console_tail = console_tail
        self.vmm_log_tail = vmm_log_tail
        tails = [("VMM log tail", vmm_log_tail), ("console tail", console_tail)]
        super().__init__(describe(message, self.argv, status, tails))


class VmStateError(VmError):
    """An operation was asked for in a machine state that does not allow it."""


class ChannelError(VmError):
    """The guest channel broke (closed, timed out) or could not be used."""


class ProtocolError(ChannelError):
    """A malformed, unknown or unexpected frame on the guest channel."""


class UnsafeArchiveError(ProtocolError):
    """The guest's copy_out archive holds a member the host refuses to extract.

    The guest sent something hostile or broken: a member that would land outside
    the destination (absolute name, ``..``, below a symlink), a link leaving it, a
    hard link to something not extracted, a device or FIFO. Carries ``member`` (its
    name as sent) and ``reason``. Nothing was written outside the destination.
    """

    def __init__(self, member: str, reason: str, where: str = "copy_out") -> None:
        self.member = member
        self.reason = reason
        super().__init__(f"{where}: refused member {member!r} sent by the guest: {reason}")


class ArchiveLimitError(UnsafeArchiveError):
    """A copy_out archive passed a limit (total file bytes or member count); ``reason`` names it."""


class StoreError(VmrunnerError):
    """The database failed."""


class RunNotFoundError(UserInputError):
    """No run (or no log of a run) matches what was asked for."""
