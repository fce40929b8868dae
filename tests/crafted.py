"""Crafted backup archives for the restore refusal tests (unit and e2e), built by byte surgery.

An outside review found two ways a backup that passes every manifest check can still write
where it must not (issue 10, items 1 and 2):

- a manifest that declares a root of its own (`with_extra_root`): its "stale" files get removed
  and the archive's members below it extracted;
- members smuggled past a header with a bad checksum (`smuggle_after_damaged_header`): Python's
  tarfile takes that header for the end of the archive, GNU tar skips it and extracts what
  follows, so members no check ever saw reach the disk.

The archives are real `.tar.gz` files; only the tar stream is edited, at the offset where
tarfile stops reading (the end-of-archive blocks), so every member tarfile sees is unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import replace

from jitsi_ops.backup import FileEntry, Manifest, Root, host_path

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar's default record size
MTIME = 1_767_268_800  # 2026-01-01T12:00:00Z
# The checksum field of a ustar/GNU header: 8 bytes at offset 148.
_CHKSUM = slice(148, 156)

Member = tuple[tarfile.TarInfo, bytes | None]


def member(
    name: str, data: bytes | None = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> Member:
    """A regular file member (or a directory when `data` is None), name root-relative."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE if data is not None else tarfile.DIRTYPE
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, MTIME
    info.size = len(data) if data is not None else 0
    return info, data


def member_blocks(info: tarfile.TarInfo, data: bytes | None) -> bytes:
    """One member as tar blocks: its GNU header, then its content padded to a block."""
    content = data or b""
    return info.tobuf(tarfile.GNU_FORMAT) + content + b"\0" * (-len(content) % BLOCK)


def bad_checksum_header(name: str = "padding") -> bytes:
    """A well-formed GNU header whose checksum field is off by one: GNU tar reports it
    ("Skipping to next header") and reads on; tarfile ends the archive there."""
    block = bytearray(tarfile.TarInfo(name).tobuf(tarfile.GNU_FORMAT))
    stored = int(bytes(block[_CHKSUM]).rstrip(b"\0 ").decode(), 8)
    block[_CHKSUM] = b"%06o\0 " % (stored + 1)
    return bytes(block)


def tarfile_end(tar: bytes) -> int:
    """Where Python's tarfile stops reading this (uncompressed) tar stream."""
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        archive.getmembers()
        return archive.offset


def insert_at_end(tar_gz: bytes, blocks: bytes) -> bytes:
    """`blocks` spliced in where tarfile stops (before the end-of-archive blocks), the stream
    then closed with two zero blocks and padded to a record, as GNU tar writes it."""
    tar = gzip.decompress(tar_gz)
    body = tar[: tarfile_end(tar)] + blocks + b"\0" * (2 * BLOCK)
    return gzip.compress(body + b"\0" * (-len(body) % RECORD), mtime=0)


def smuggle_after_damaged_header(tar_gz: bytes, hidden: Iterable[Member]) -> bytes:
    """The archive with a bad-checksum header and then `hidden` after its last member."""
    return insert_at_end(
        tar_gz, bad_checksum_header() + b"".join(member_blocks(*m) for m in hidden)
    )


def with_members(tar_gz: bytes, extra: Iterable[Member]) -> bytes:
    """The archive with `extra` appended as ordinary members."""
    return insert_at_end(tar_gz, b"".join(member_blocks(*m) for m in extra))


def file_entries(members: Sequence[Member]) -> tuple[FileEntry, ...]:
    """Manifest entries that vouch for these members exactly (type, mode, owner, content)."""
    return tuple(
        FileEntry(host_path(info.name), "dir", info.mode, info.uid, info.gid)
        if data is None
        else FileEntry(
            host_path(info.name),
            "file",
            info.mode,
            info.uid,
            info.gid,
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        for info, data in members
    )


def vouching_manifest(
    manifest: Manifest,
    tar_gz: bytes,
    *,
    roots: Sequence[Root] = (),
    files: Sequence[FileEntry] = (),
) -> Manifest:
    """`manifest` made to describe `tar_gz` (size, sha256) with `roots` and `files` added: every
    checksum in it matches, so only the restore's own rules can refuse it."""
    return replace(
        manifest,
        roots=(*manifest.roots, *roots),
        files=(*manifest.files, *files),
        archive_size=len(tar_gz),
        archive_sha256=hashlib.sha256(tar_gz).hexdigest(),
    )
