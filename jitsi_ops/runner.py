"""The one I/O boundary: a typed Runner protocol with local and recording adapters.

Commands are argv lists everywhere; they are joined with shlex only inside an adapter that
needs a command line (SSH). The SSH adapter lives in jitsi_ops.ssh, the only module that
imports Fabric.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jitsi_ops.errors import RemoteCommandError


@dataclass(frozen=True)
class Result:
    """Outcome of one command."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Exit code 0."""
        return self.exit_code == 0


class Runner(Protocol):
    """Runs commands and moves files on one host."""

    @property
    def host(self) -> str:
        """A label for reports."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        """Run argv; raise RemoteCommandError on non-zero exit when `check`."""
        ...

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write `data` to `path` atomically (temporary file + rename) with `mode`."""
        ...

    def get(self, path: str) -> bytes:
        """Read a file."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def checked(result: Result, check: bool) -> Result:
    """Raise for a failed command when asked to."""
    if check and not result.ok:
        raise RemoteCommandError(result.argv, result.exit_code, result.stderr)
    return result


class LocalRunner:
    """Runs on this machine (used for the local sandbox and by tests)."""

    def __init__(self, label: str = "localhost", env: dict[str, str] | None = None) -> None:
        self._label = label
        self._env = env

    @property
    def host(self) -> str:
        """A label for reports."""
        return self._label

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        """Run argv with subprocess (no shell)."""
        env = None if self._env is None else {**os.environ, **self._env}
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
            )
        except FileNotFoundError:
            return checked(Result(tuple(argv), 127, "", f"{argv[0]}: command not found"), check)
        except subprocess.TimeoutExpired:
            return checked(Result(tuple(argv), 124, "", f"timed out after {timeout} s"), check)
        return checked(Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr), check)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Atomic write: temporary file in the same directory, chmod, rename."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, path: str) -> bytes:
        """Read a local file."""
        return Path(path).expanduser().read_bytes()

    def close(self) -> None:
        """Nothing to release."""


Responder = Callable[[tuple[str, ...]], Result | None]


@dataclass
class RecordingRunner:
    """Unit-test fake: records every call and answers from canned responses.

    `responses` maps an argv prefix (tuple) to (exit code, stdout, stderr); the longest
    matching prefix wins; unmatched commands succeed with empty output.
    """

    label: str = "recorded-host"
    responses: dict[tuple[str, ...], tuple[int, str, str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """A label for reports."""
        return self.label

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        """Record argv and answer from the longest matching canned prefix."""
        key = tuple(argv)
        self.calls.append(key)
        best: tuple[int, str, str] = (0, "", "")
        best_len = -1
        for prefix, answer in self.responses.items():
            if key[: len(prefix)] == prefix and len(prefix) > best_len:
                best, best_len = answer, len(prefix)
        return checked(Result(key, *best), check)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Record the upload."""
        self.calls.append(("put", path, oct(mode)))
        self.files[path] = data
        self.modes[path] = mode

    def get(self, path: str) -> bytes:
        """Return a recorded file or raise FileNotFoundError."""
        self.calls.append(("get", path))
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def close(self) -> None:
        """Nothing to release."""
