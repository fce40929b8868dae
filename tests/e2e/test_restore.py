"""`invoke restore` refuses crafted backups on the real sandbox while the stack keeps running.

Each crafted backup is made from a real one taken by `invoke backup` of the deployed sandbox,
with a manifest whose every checksum matches (tests/crafted.py): one declares an extra root
(issue 10, item 1), one hides members after a bad-checksum header that Python's tarfile stops at
and GNU tar reads past (item 2). Both must be refused before anything stops, with the same
containers running and nothing written outside CONFIG and the stack dir.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jitsi_ops import backup, hoststate
from jitsi_ops.backup import Manifest, Root
from jitsi_ops.settings import Environment
from tests import crafted
from tests.e2e.conftest import SANDBOX_ROOT, compose_down, run_invoke
from tests.e2e.test_adopt import tree
from tests.e2e.test_deploy import BACKUPS, STACK, containers

SANDBOX = Path(SANDBOX_ROOT)
EXTRA_ROOT = SANDBOX / "extra-root"  # a root only the crafted manifest declares
OUTSIDE = SANDBOX / "outside"  # where the smuggled member would land
SUID_SCRIPT = b"#!/bin/sh\nid\n"


@pytest.fixture(scope="module")
def taken(sandbox_env: Environment) -> Iterator[Manifest]:
    """The sandbox deployed and running, and a real backup of it (its manifest)."""
    compose_down(sandbox_env)
    deployed = run_invoke("deploy", "--env", "sandbox")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    result = run_invoke("backup", "--env", "sandbox")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"backup (sandbox-\d{8}T\d{6}Z-[0-9a-f]{6}) ", result.stdout)
    assert match, result.stdout
    path = backup.manifest_path(str(BACKUPS), match[1])
    yield Manifest.from_json(Path(path).read_text(), path)
    compose_down(sandbox_env)


def plant(manifest: Manifest, data: bytes) -> str:
    """Put a crafted archive and its vouching manifest into the backup dir under a new id."""
    backup_id = hoststate.new_deploy_id("sandbox")
    manifest = replace(manifest, deploy_id=backup_id, archive_name=f"{backup_id}.tar.gz")
    for path, content in (
        (backup.archive_path(str(BACKUPS), backup_id), data),
        (backup.manifest_path(str(BACKUPS), backup_id), manifest.to_json().encode()),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
    return backup_id


def setuid_files() -> list[str]:
    return [
        str(p)
        for p in SANDBOX.rglob("*")
        if not p.is_symlink() and p.is_file() and p.stat().st_mode & stat.S_ISUID
    ]


def running_ids() -> set[str]:
    return set(
        subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                "label=com.docker.compose.project=jitsi-sandbox",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )


def assert_refused_and_untouched(backup_id: str, expected: str, watched: Path) -> None:
    """Restore `backup_id`: refused naming `expected`; the stack runs as before, nothing else."""
    before = containers()
    assert before and running_ids() == {cid for cid, _, _ in before.values()}, before
    env_before = (STACK / ".env").read_bytes()
    stack_before = tree(STACK, times=False)
    watched_before = tree(watched, times=True)
    backups_before = sorted(p.name for p in BACKUPS.iterdir())

    result = run_invoke("restore", "--env", "sandbox", "--backup", backup_id, "--yes")

    assert result.returncode == 1, result.stdout + result.stderr
    refused = [line for line in result.stdout.splitlines() if line.startswith("REFUSED: ")]
    assert len(refused) == 1 and expected in refused[0], result.stdout
    assert "hint:" in refused[0], refused[0]
    assert containers() == before, "a refused restore touched the stack"
    assert running_ids() == {cid for cid, _, _ in before.values()}, "containers stopped"
    assert (STACK / ".env").read_bytes() == env_before
    assert tree(STACK, times=False) == stack_before, "the stack dir changed"
    assert tree(watched, times=True) == watched_before, f"{watched} changed"
    assert sorted(p.name for p in BACKUPS.iterdir()) == backups_before, "a backup was made"
    assert not (STACK / ".jitsi-ops" / "lock").exists()
    assert setuid_files() == [], "a setuid file was written"


def test_backup_whose_manifest_adds_a_root_is_refused(taken: Manifest) -> None:
    EXTRA_ROOT.mkdir()
    (EXTRA_ROOT / "precious").write_text("in no backup: a restore must not remove it\n")
    planted = [
        crafted.member(backup.member_name(str(EXTRA_ROOT)), None, mode=0o755),
        crafted.member(backup.member_name(str(EXTRA_ROOT / "suid")), SUID_SCRIPT, mode=0o4755),
    ]
    archive = Path(backup.archive_path(str(BACKUPS), taken.deploy_id))
    data = crafted.with_members(archive.read_bytes(), planted)
    backup_id = plant(
        crafted.vouching_manifest(
            taken,
            data,
            roots=[Root("config", str(EXTRA_ROOT), str(EXTRA_ROOT))],
            files=crafted.file_entries(planted),
        ),
        data,
    )
    assert_refused_and_untouched(backup_id, f"config root {EXTRA_ROOT}", EXTRA_ROOT)
    assert sorted(p.name for p in EXTRA_ROOT.iterdir()) == ["precious"]


def test_backup_with_members_after_a_bad_header_is_refused(taken: Manifest) -> None:
    hidden = [
        crafted.member(backup.member_name(str(OUTSIDE / "suid")), SUID_SCRIPT, mode=0o4755),
    ]
    archive = Path(backup.archive_path(str(BACKUPS), taken.deploy_id))
    data = crafted.smuggle_after_damaged_header(archive.read_bytes(), hidden)
    backup_id = plant(crafted.vouching_manifest(taken, data), data)
    assert_refused_and_untouched(backup_id, "data after the last member", OUTSIDE)
    assert not OUTSIDE.exists()
