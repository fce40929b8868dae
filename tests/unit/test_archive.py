"""Restore safety on real archives built in tmp_path: owners and modes survive a round trip,
every malicious member is refused before anything is written, corrupt archives are refused first,
and the manifest's checksums are enforced."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jitsi_ops.archive import (
    RestoreRefused,
    extract_archive,
    normalized_roots,
    validate_archive,
    verify_manifest_checksums,
)
from jitsi_ops.backup import EntryType, FileEntry, Manifest, Root
from tests import crafted

CONFIG = "/srv/jitsi/config"
STACK = "/srv/jitsi/stack"
ROOTS = (CONFIG, STACK)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="keeping owners needs root")


# --- building archives -----------------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes | None]


def info(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    link: str = "",
    data: bytes | None = None,
) -> Member:
    """A hand-made member (tarfile writes whatever it is given: that is the point here)."""
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = mode
    member.uid, member.gid = uid, gid
    member.linkname = link
    member.mtime = 1_767_268_800
    if kind == tarfile.REGTYPE:
        data = data if data is not None else f"content of {name}\n".encode()
        member.size = len(data)
    return member, data


def d(name: str, **kw: int) -> Member:
    """A directory member."""
    return info(
        name,
        tarfile.DIRTYPE,
        mode=kw.get("mode", 0o755),
        uid=kw.get("uid", 0),
        gid=kw.get("gid", 0),
    )


def build(path: Path, members: Iterable[Member]) -> Path:
    """Write a .tar.gz of exactly these members."""
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def good_members() -> list[Member]:
    """CONFIG and stack dir as a backup holds them: mixed owners and modes, links inside."""
    return [
        d("srv/jitsi/config"),
        d("srv/jitsi/config/storage", uid=1000, gid=1000),
        d("srv/jitsi/config/storage/prosody", mode=0o750, uid=1000, gid=1000),
        info("srv/jitsi/config/storage/prosody/accounts.dat", mode=0o600, uid=1000, gid=1000),
        d("srv/jitsi/config/prosody", mode=0o750, uid=101, gid=102),
        info("srv/jitsi/config/prosody/focus.dat", mode=0o640, uid=101, gid=102),
        d("srv/jitsi/config/web"),
        info("srv/jitsi/config/web/cert.key", mode=0o640),
        info("srv/jitsi/config/web/current.key", tarfile.SYMTYPE, mode=0o777, link="cert.key"),
        info(
            "srv/jitsi/config/web/stack-env",
            tarfile.SYMTYPE,
            mode=0o777,
            link="/srv/jitsi/stack/.env",
        ),
        info(
            "srv/jitsi/config/accounts-copy.dat",
            tarfile.LNKTYPE,
            mode=0o600,
            uid=1000,
            gid=1000,
            link="srv/jitsi/config/storage/prosody/accounts.dat",
        ),
        d("srv/jitsi/stack", mode=0o750),
        info("srv/jitsi/stack/.env", mode=0o600, data=b"SECRET=never-printed\n"),
        info("srv/jitsi/stack/docker-compose.yml"),
        d("srv/jitsi/stack/setgid", mode=0o2750, gid=102),
    ]


def tree(root: Path) -> list[str]:
    """Every path below `root` (what a refusal must leave untouched)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The extraction destination; `outside` next to it must stay empty too."""
    (tmp_path / "scratch").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "scratch"


# --- round trip ------------------------------------------------------------------------------


@as_root
def test_round_trip_keeps_numeric_owners_modes_and_links(tmp_path: Path, scratch: Path) -> None:
    archive = build(tmp_path / "good.tar.gz", good_members())
    members = extract_archive(archive, scratch, ROOTS)
    assert len(members) == len(good_members())

    def owner_mode(rel: str) -> tuple[int, int, int]:
        st = os.lstat(scratch / rel)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    config = "srv/jitsi/config"
    assert owner_mode(f"{config}/storage/prosody/accounts.dat") == (1000, 1000, 0o600)
    assert owner_mode(f"{config}/storage/prosody") == (1000, 1000, 0o750)
    assert owner_mode(f"{config}/prosody") == (101, 102, 0o750)
    assert owner_mode(f"{config}/prosody/focus.dat") == (101, 102, 0o640)
    assert owner_mode(f"{config}/web/cert.key") == (0, 0, 0o640)
    assert owner_mode("srv/jitsi/stack/.env") == (0, 0, 0o600)
    assert owner_mode("srv/jitsi/stack/setgid") == (0, 102, 0o2750)
    assert os.readlink(scratch / config / "web" / "current.key") == "cert.key"
    assert os.readlink(scratch / config / "web" / "stack-env") == "/srv/jitsi/stack/.env"
    copy = os.stat(scratch / config / "accounts-copy.dat")
    original = os.stat(scratch / config / "storage" / "prosody" / "accounts.dat")
    assert copy.st_ino == original.st_ino and copy.st_nlink == 2
    assert (scratch / "srv/jitsi/stack/.env").read_bytes() == b"SECRET=never-printed\n"
    assert tree(tmp_path / "outside") == []


def test_validate_returns_every_member_in_order(tmp_path: Path) -> None:
    archive = build(tmp_path / "good.tar.gz", good_members())
    names = [m.name for m in validate_archive(archive, ROOTS)]
    assert names == [m.name for m, _ in good_members()]


@as_root
def test_restore_over_an_existing_tree_replaces_links_not_their_targets(
    tmp_path: Path, scratch: Path
) -> None:
    """A symlink or a hard link already in a file's place is replaced, never written through."""
    outside = tmp_path / "outside"
    victim = outside / "victim"
    victim.write_text("untouched\n")
    web = scratch / "srv/jitsi/config/web"
    web.mkdir(parents=True)
    (web / "cert.key").symlink_to(victim)
    os.link(victim, scratch / "srv/jitsi/config/storage-link")
    members = [
        d("srv/jitsi/config"),
        d("srv/jitsi/config/web"),
        info("srv/jitsi/config/web/cert.key", mode=0o600, data=b"restored\n"),
        info("srv/jitsi/config/storage-link", data=b"restored too\n"),
    ]
    extract_archive(build(tmp_path / "a.tar.gz", members), scratch, ROOTS)
    assert victim.read_text() == "untouched\n"
    assert not (web / "cert.key").is_symlink()
    assert (web / "cert.key").read_bytes() == b"restored\n"
    assert (scratch / "srv/jitsi/config/storage-link").read_bytes() == b"restored too\n"


# --- malicious archives ------------------------------------------------------------------------

CASES: dict[str, tuple[list[Member], str]] = {
    "dotdot traversal": (
        [info("srv/jitsi/config/../../../outside/evil")],
        "'..' component",
    ),
    "leading dotdot": ([info("../outside/evil")], "'..' component"),
    "absolute path": ([info("/tmp/outside/evil")], "absolute path"),
    "member outside the roots": ([info("srv/jitsi/other/evil")], "outside the backup's roots"),
    "parent of a root": ([d("srv/jitsi")], "outside the backup's roots"),
    "symlink escaping with dotdot": (
        [info("srv/jitsi/config/up", tarfile.SYMTYPE, link="../../../outside")],
        "outside the roots",
    ),
    "symlink escaping absolute": (
        [info("srv/jitsi/config/etc", tarfile.SYMTYPE, link="/etc")],
        "resolves to /etc, outside the roots",
    ),
    "symlink escaping through another symlink": (
        [
            info("srv/jitsi/config/here", tarfile.SYMTYPE, link="/srv/jitsi/config"),
            # Lexically "here/.." is the config dir; physically it is /srv/jitsi.
            info("srv/jitsi/config/sneaky", tarfile.SYMTYPE, link="here/.."),
        ],
        "resolves to /srv/jitsi, outside the roots",
    ),
    "write through a symlink loop": (
        [
            info("srv/jitsi/config/a", tarfile.SYMTYPE, link="b"),
            info("srv/jitsi/config/b", tarfile.SYMTYPE, link="a"),
            info("srv/jitsi/config/a/evil"),
        ],
        "symlink loop",
    ),
    "hard link outside": (
        [info("srv/jitsi/config/passwd", tarfile.LNKTYPE, link="etc/passwd")],
        "hard link to /etc/passwd, outside the roots",
    ),
    "hard link with dotdot": (
        [info("srv/jitsi/config/passwd", tarfile.LNKTYPE, link="srv/jitsi/config/../../../etc/x")],
        "not a canonical relative member name",
    ),
    "hard link to a missing member": (
        [info("srv/jitsi/config/ghost", tarfile.LNKTYPE, link="srv/jitsi/config/nothing")],
        "not an earlier regular file",
    ),
    "character device": ([info("srv/jitsi/config/null", tarfile.CHRTYPE)], "device node"),
    "block device": ([info("srv/jitsi/config/sda", tarfile.BLKTYPE)], "device node"),
    "fifo": ([info("srv/jitsi/config/pipe", tarfile.FIFOTYPE)], "fifo"),
    "duplicate name": (
        [info("srv/jitsi/config/web/cert.key", data=b"second\n")],
        "appears twice",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_member_is_refused_and_nothing_is_written(
    case: str, tmp_path: Path, scratch: Path
) -> None:
    bad, reason = CASES[case]
    # Good members first: a refusal must come before the first write, not at the bad member.
    archive = build(tmp_path / "evil.tar.gz", [*good_members(), *bad])
    with pytest.raises(RestoreRefused) as refused:
        validate_archive(archive, ROOTS)
    assert reason in refused.value.message, refused.value.message
    assert repr(bad[-1][0].name) in refused.value.message  # names the member
    with pytest.raises(RestoreRefused) as again:
        extract_archive(archive, scratch, ROOTS)
    assert again.value.message == refused.value.message
    assert tree(scratch) == []
    assert tree(tmp_path / "outside") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "outside", "scratch"]


def test_refusal_message_is_one_clear_line(tmp_path: Path) -> None:
    archive = build(tmp_path / "evil.tar.gz", [d("srv/jitsi/config"), info("../outside/evil")])
    with pytest.raises(RestoreRefused) as refused:
        validate_archive(archive, ROOTS)
    assert refused.value.message == (
        "refusing evil.tar.gz: member '../outside/evil': '..' component in the name"
    )
    assert "nothing was extracted" in refused.value.hint


def test_destination_symlink_leading_out_is_refused_before_writing(
    tmp_path: Path, scratch: Path
) -> None:
    """A symlink already in the destination must not carry a write out of the root."""
    (scratch / "srv/jitsi/config").mkdir(parents=True)
    (scratch / "srv/jitsi/config/web").symlink_to(tmp_path / "outside")
    before = tree(scratch)
    archive = build(tmp_path / "a.tar.gz", good_members())
    with pytest.raises(RestoreRefused, match="destination has a symlink"):
        extract_archive(archive, scratch, ROOTS)
    assert tree(scratch) == before
    assert tree(tmp_path / "outside") == []


def test_destination_directory_in_a_files_place_is_refused(tmp_path: Path, scratch: Path) -> None:
    (scratch / "srv/jitsi/stack/.env").mkdir(parents=True)
    archive = build(tmp_path / "a.tar.gz", good_members())
    with pytest.raises(RestoreRefused, match="is a directory in the destination"):
        extract_archive(archive, scratch, ROOTS)
    assert tree(scratch) == ["srv", "srv/jitsi", "srv/jitsi/stack", "srv/jitsi/stack/.env"]


def test_destination_must_exist(tmp_path: Path) -> None:
    archive = build(tmp_path / "a.tar.gz", good_members())
    with pytest.raises(RestoreRefused, match="is not a directory"):
        extract_archive(archive, tmp_path / "missing", ROOTS)
    assert not (tmp_path / "missing").exists()


# --- corrupt archives ------------------------------------------------------------------------


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "corrupt or truncated"),
        (lambda data: data[:-4], "corrupt or truncated"),  # only the length trailer missing
        (_corrupt, "corrupt or truncated"),
        (lambda data: b"not gzip at all" + data, "not a gzip file"),
        (lambda _data: gzip.compress(b"\0" * 10 + b"garbage" * 200), "corrupt or truncated"),
    ],
    ids=["half", "no-trailer", "flipped-byte", "not-gzip", "gzip-of-garbage"],
)
def test_damaged_archive_is_refused_before_anything(
    tmp_path: Path, scratch: Path, damage: Callable[[bytes], bytes], expected: str
) -> None:
    good = build(tmp_path / "good.tar.gz", good_members()).read_bytes()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(damage(good))
    with pytest.raises(RestoreRefused, match=expected):
        validate_archive(broken, ROOTS)
    with pytest.raises(RestoreRefused, match=expected):
        extract_archive(broken, scratch, ROOTS)
    assert tree(scratch) == []


SMUGGLED = "srv/jitsi/outside/suid"


@pytest.mark.parametrize(
    "gap",
    [crafted.bad_checksum_header(), b"\0" * crafted.BLOCK],
    ids=["bad-checksum-header", "lone-zero-block"],
)
def test_members_after_where_tarfile_stops_are_refused(
    gap: bytes, tmp_path: Path, scratch: Path
) -> None:
    """tarfile ends the archive at a damaged header, GNU tar skips it and extracts what follows:
    anything but NUL padding after the last member tarfile parsed is refused."""
    hidden = crafted.member_blocks(*crafted.member(SMUGGLED, b"#!/bin/sh\n", mode=0o4755))
    good = build(tmp_path / "good.tar.gz", good_members()).read_bytes()
    archive = tmp_path / "smuggled.tar.gz"
    archive.write_bytes(crafted.insert_at_end(good, gap + hidden))
    with tarfile.open(archive, "r:gz") as tar:
        assert SMUGGLED not in tar.getnames(), "tarfile itself must not see the hidden member"
    with pytest.raises(RestoreRefused) as refused:
        validate_archive(archive, ROOTS)
    assert "after the last member" in refused.value.message, refused.value.message
    with pytest.raises(RestoreRefused, match="after the last member"):
        extract_archive(archive, scratch, ROOTS)
    assert tree(scratch) == []
    assert tree(tmp_path / "outside") == []


def test_gnu_tar_reads_on_past_a_bad_checksum_header(tmp_path: Path) -> None:
    """The premise of the check above, on this machine's GNU tar."""
    hidden = [crafted.member(SMUGGLED, b"#!/bin/sh\n", mode=0o4755)]
    good = build(tmp_path / "good.tar.gz", good_members()).read_bytes()
    archive = tmp_path / "smuggled.tar.gz"
    archive.write_bytes(crafted.smuggle_after_damaged_header(good, hidden))
    listed = subprocess.run(
        ["tar", "-tzf", str(archive)], capture_output=True, text=True, check=False
    )
    assert SMUGGLED in listed.stdout.split("\n"), listed.stdout
    assert "Skipping to next header" in listed.stderr, listed.stderr


def test_nul_padding_after_the_last_member_is_fine(tmp_path: Path) -> None:
    good = build(tmp_path / "good.tar.gz", good_members()).read_bytes()
    archive = tmp_path / "padded.tar.gz"
    archive.write_bytes(crafted.insert_at_end(good, b"\0" * (4 * crafted.RECORD)))
    assert len(validate_archive(archive, ROOTS)) == len(good_members())


def test_missing_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RestoreRefused, match="no such file"):
        validate_archive(tmp_path / "nope.tar.gz", ROOTS)


@pytest.mark.parametrize("roots", [("/",), ("relative/config",), ()])
def test_roots_must_be_absolute_paths_below_slash(roots: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="root"):
        normalized_roots(roots)


# --- manifest checksums ------------------------------------------------------------------------


KINDS: dict[bytes, EntryType] = {
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


def manifest_for(archive: Path) -> Manifest:
    """A manifest describing `archive` the way create_backup records one."""
    files = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = "/" + member.name
            entry = FileEntry(
                path=path,
                type=KINDS.get(member.type, "file"),
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
            )
            if member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                entry = replace(
                    entry, size=member.size, sha256=hashlib.sha256(handle.read()).hexdigest()
                )
            elif member.issym():
                entry = replace(entry, target=member.linkname)
            elif member.islnk():
                entry = replace(entry, target="/" + member.linkname)
            files.append(entry)
    data = archive.read_bytes()
    return Manifest(
        env="prod",
        deploy_id="prod-20260101T120000Z-abc123",
        created=datetime(2026, 1, 1, 12, tzinfo=UTC),
        host="meet",
        release="stable-11146-2",
        digests={},
        roots=(Root("config", CONFIG, CONFIG), Root("stack", STACK, STACK)),
        excluded=(),
        skipped=(),
        archive_name=archive.name,
        archive_size=len(data),
        archive_sha256=hashlib.sha256(data).hexdigest(),
        files=tuple(files),
    )


def test_manifest_checksums_pass_for_the_described_archive(tmp_path: Path) -> None:
    archive = build(tmp_path / "a.tar.gz", good_members())
    verify_manifest_checksums(archive, manifest_for(archive))


def test_manifest_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    archive = build(tmp_path / "a.tar.gz", good_members())
    manifest = manifest_for(archive)
    with pytest.raises(RestoreRefused, match=r"sha256 .* differs from the manifest's"):
        verify_manifest_checksums(archive, replace(manifest, archive_sha256="0" * 64))
    with pytest.raises(RestoreRefused, match=r"size .* differs"):
        verify_manifest_checksums(
            archive, replace(manifest, archive_size=manifest.archive_size + 1)
        )
    with pytest.raises(RestoreRefused, match="no such file"):
        verify_manifest_checksums(tmp_path / "gone.tar.gz", manifest)


def test_manifest_member_mismatch_names_the_file(tmp_path: Path) -> None:
    """An archive whose own checksum matches a manifest that lies about one file is refused."""
    archive = build(tmp_path / "a.tar.gz", good_members())
    manifest = manifest_for(archive)
    files = tuple(
        replace(f, sha256="f" * 64) if f.path.endswith("focus.dat") else f for f in manifest.files
    )
    with pytest.raises(RestoreRefused, match=r"/srv/jitsi/config/prosody/focus.dat: content"):
        verify_manifest_checksums(archive, replace(manifest, files=files))
    files = tuple(replace(f, mode=0o644) if f.path.endswith(".env") else f for f in manifest.files)
    with pytest.raises(RestoreRefused, match=r"/srv/jitsi/stack/.env: mode 0600 != 0644"):
        verify_manifest_checksums(archive, replace(manifest, files=files))
