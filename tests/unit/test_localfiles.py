"""Local writes of env files: mkstemp in the same directory, fsync, rename (issue 10 item 7)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jitsi_ops.environments import write_private
from jitsi_ops.migrations import FileEdit, write_edits

FAKE_SECRET = "Zq7Xw-p9K2vR4mT8jL"


def plant_symlinks(directory: Path, name: str, target: Path) -> None:
    """Symlinks at every temporary name a writer could have picked without mkstemp."""
    for tmp in (f".{name}.tmp", f"{name}.tmp", f".{name}.new", f"{name}~"):
        (directory / tmp).symlink_to(target)


def test_write_private_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    env_dir = tmp_path / "env" / "prod"
    env_dir.mkdir(parents=True)
    elsewhere = tmp_path / "attacker-readable"
    plant_symlinks(env_dir, "secrets.env", elsewhere)

    write_private(env_dir / "secrets.env", f"JVB_AUTH_PASSWORD={FAKE_SECRET}\n")

    assert not elsewhere.exists() or FAKE_SECRET not in elsewhere.read_text(), (
        "the secret was written through the planted symlink"
    )
    target = env_dir / "secrets.env"
    assert not target.is_symlink()
    assert target.read_text() == f"JVB_AUTH_PASSWORD={FAKE_SECRET}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_private_fsyncs_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_private(tmp_path / "secrets.env", "A=1\n")
    assert synced == ["file", "dir"], f"fsync calls: {synced}"


def test_write_private_replaces_atomically_and_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "secrets.env"
    target.write_text("OLD=1\n")
    os.chmod(target, 0o600)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk went away"):
        write_private(target, f"JVB_AUTH_PASSWORD={FAKE_SECRET}\n")
    assert target.read_text() == "OLD=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.env"], "temporary file left"


def test_write_private_tightens_an_existing_wide_file(tmp_path: Path) -> None:
    target = tmp_path / "secrets.env"
    target.write_text("OLD=1\n")
    os.chmod(target, 0o644)
    write_private(target, "NEW=1\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(("name", "private"), [("jitsi.env", False), ("secrets.env", True)])
def test_migration_rewrites_do_not_follow_a_planted_symlink(
    tmp_path: Path, name: str, private: bool
) -> None:
    path = tmp_path / name
    path.write_text("A=1\n")
    elsewhere = tmp_path / "elsewhere"
    plant_symlinks(tmp_path, name, elsewhere)
    new_text = f"A=1\nJVB_AUTH_PASSWORD={FAKE_SECRET}\n"
    write_edits([FileEdit(path, f"env/x/{name}", "A=1\n", new_text, private=private)])
    assert not elsewhere.exists(), "the rewrite followed a planted symlink"
    assert path.read_text() == new_text and not path.is_symlink()
