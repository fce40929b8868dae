"""Crash-safe writes of the operator's local files (secrets.env, jitsi.env, deploy.toml, renders).

A write goes to a fresh temporary file made by mkstemp in the target's own directory (never a
fixed name: a symlink planted there would redirect the content), is fsynced, renamed over the
target, and the directory is fsynced so the rename itself survives a crash. Without that, a
crash could leave an empty secrets.env, and the next `invoke secrets` would regenerate every
secret and lock jicofo and jvb out of prosody.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
# Committed files (deploy.toml, jitsi.env): no secrets in them, readable like the rest of the repo.
PUBLIC_MODE = 0o644


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace `path` with `text` (UTF-8) at `mode`: all or nothing, durable once this returns."""
    write_atomic_bytes(path, text.encode("utf-8"), mode)


def write_atomic_bytes(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` at `mode`: all or nothing, durable once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file O_EXCL at 0600, so it is never briefly readable by others.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (mode 0600), atomically and durably."""
    write_atomic(path, text, PRIVATE_MODE)
