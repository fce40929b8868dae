"""The small error hierarchy; tasks turn every OpsError into a one-line message with a hint."""

from __future__ import annotations

from collections.abc import Sequence


class OpsError(Exception):
    """An expected failure: reported as one line plus a hint, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(OpsError):
    """The operator's environment (files, keys, values) is invalid; nothing was changed."""


class PreflightError(OpsError):
    """A read-only check before a change failed; nothing was changed."""


class LockHeld(OpsError):
    """Another run holds the host's deploy lock."""


class HostKeyError(OpsError):
    """The host's SSH key is unknown or changed; refused before any command ran."""


class RemoteCommandError(OpsError):
    """A command on a host exited non-zero."""

    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str, hint: str = "") -> None:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        shown = " ".join(argv[:4]) + (" ..." if len(argv) > 4 else "")
        super().__init__(f"`{shown}` exited {exit_code}: {tail or 'no output'}", hint)
        self.argv = list(argv)
        self.returncode = exit_code
        self.stderr = stderr


class VerifyFailed(OpsError):
    """The verification suite found the deployment not serving."""
