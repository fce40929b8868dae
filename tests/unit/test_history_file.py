"""The local history file is private to its owner (issue 10 item 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jitsi_ops import hoststate


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_history_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = hoststate.history_path(tmp_path)
    old_umask = os.umask(0)
    try:
        hoststate.append_history(path, {"env": "prod", "result": "failed"})
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600, oct(mode(path))


def test_an_existing_wider_history_is_tightened(tmp_path: Path) -> None:
    path = hoststate.history_path(tmp_path)
    path.parent.mkdir()
    path.write_text('{"env": "prod"}\n')
    os.chmod(path, 0o644)
    hoststate.append_history(path, {"env": "prod", "result": "deployed"})
    assert mode(path) == 0o600, oct(mode(path))
    assert len(path.read_text().splitlines()) == 2
