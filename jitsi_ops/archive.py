"""Restore safety: decide whether a backup archive may be extracted, before anything is written.

Python's `data` extraction filter is not usable for a restore: it drops owners and clears
set-id/group-write bits, and CONFIG must come back with its numeric owners (uid 1000 for the
rootless images, 101:102 and root for older ones) and modes exactly. So the rules are written
out here, deliberately, and checked for the whole archive first:

- the gzip stream must be complete (length and CRC): a truncated or corrupt archive is refused
  before its members are even looked at;
- names must be canonical and relative: no leading "/", no "..", "." or empty components;
- every member must lie inside one of the manifest's roots (member names are root-relative:
  the host path without its leading "/", see jitsi_ops.backup);
- only directories, regular files, symlinks and hard links: device nodes, fifos and anything
  else are refused;
- a symlink's target, resolved through the symlinks earlier in the archive (the way the kernel
  would resolve it after extraction, `..` after a link included), must stay inside the roots;
  so must the directory every member is written into;
- a hard link must point to a regular file that came earlier in the archive, inside the roots;
- a name may appear only once;
- nothing but NUL padding may follow the last member: Python's tarfile ends the archive at a
  header with a bad checksum (or a zero block), where GNU tar, which does the real extraction,
  reports the header, skips it and extracts whatever members follow. Those members would reach
  the disk without any rule above having seen them.

Owners (numeric) and modes are kept as archived. `extract_archive` additionally checks the
destination as it is on disk (a symlink already there must not lead a write out of the roots),
first for every member before writing anything, then again just before each member is written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jitsi_ops.backup import (
    ListedMember,
    Manifest,
    compare_content,
    compare_listing,
    host_path,
    is_within,
)
from jitsi_ops.errors import OpsError

_MAX_LINK_HOPS = 40  # as Linux's ELOOP limit
_CHUNK = 1 << 20


class RestoreRefused(OpsError):
    """The archive (or the destination) is not safe or not intact; nothing was written."""


def _refuse(archive: Path | str, why: str) -> RestoreRefused:
    return RestoreRefused(
        f"refusing {Path(archive).name}: {why}",
        hint="this archive cannot be restored safely; nothing was extracted",
    )


def normalized_roots(roots: Sequence[str]) -> tuple[str, ...]:
    """Roots as normalized absolute paths; "/" itself is never a root (it would allow anything)."""
    out = []
    for root in roots:
        normal = posixpath.normpath(root)
        if not root.startswith("/") or normal == "/":
            raise ValueError(f"backup root must be an absolute path below /, got {root!r}")
        out.append(normal)
    if not out:
        raise ValueError("no backup roots given")
    return tuple(out)


def _root_of(path: str, roots: Sequence[str]) -> str | None:
    return next((root for root in roots if is_within(path, root)), None)


def _canonical_name(name: str) -> str | None:
    """The member name without one trailing "/", or None when it is not canonical."""
    if name.endswith("/"):
        name = name[:-1]
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        return None
    return name


def _name_and_type(member: tarfile.TarInfo) -> str:
    """The canonical member name, or ValueError for a bad name or a refused type."""
    raw = member.name
    if raw.startswith("/"):
        raise ValueError("absolute path")
    name = _canonical_name(raw)
    if name is None:
        if ".." in raw.split("/"):
            raise ValueError("'..' component in the name")
        raise ValueError("non-canonical name (empty or '.' component)")
    if member.ischr() or member.isblk():
        raise ValueError("device node")
    if member.isfifo():
        raise ValueError("fifo")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ValueError(f"unsupported member type {member.type!r}")
    return name


@dataclass
class _Checker:
    """Applies the static rules member by member, in archive order (state: what came before)."""

    roots: tuple[str, ...]
    links: dict[str, str] = field(default_factory=dict)  # physical host path -> symlink target
    kinds: dict[str, str] = field(default_factory=dict)  # physical host path -> member kind

    def resolve(self, path: str, hops: int = 0) -> str:
        """Physical location of an absolute path after the archive's own symlinks (lexical for
        everything the archive does not contain)."""
        current = "/"
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part)
            target = self.links.get(candidate)
            if target is None:
                current = candidate
                continue
            if hops >= _MAX_LINK_HOPS:
                raise ValueError("symlink loop")
            current = self.resolve(posixpath.join(current, target), hops + 1)
        return current

    def check(self, member: tarfile.TarInfo) -> str:
        """Raise ValueError with the reason a member is refused; return its physical host path."""
        lexical = host_path(_name_and_type(member))
        root = _root_of(lexical, self.roots)
        if root is None:
            raise ValueError(f"outside the backup's roots ({', '.join(self.roots)})")
        if lexical == root:
            physical = lexical  # a root's place is given by the manifest, not by its parents
        else:
            parent = self.resolve(posixpath.dirname(lexical))
            physical = posixpath.join(parent, posixpath.basename(lexical))
            if _root_of(physical, self.roots) is None:
                raise ValueError(f"written through a symlink to {parent}, outside the roots")
        if physical in self.kinds:
            raise ValueError("appears twice in the archive")
        if member.issym():
            self._check_symlink(member, physical)
        elif member.islnk():
            self._check_hardlink(member)
        self.kinds[physical] = (
            "file" if member.isreg() else "dir" if member.isdir() else member.type.decode()
        )
        return physical

    def _check_symlink(self, member: tarfile.TarInfo, physical: str) -> None:
        target = member.linkname
        if not target:
            raise ValueError("symlink with an empty target")
        base = (
            target
            if target.startswith("/")
            else posixpath.join(posixpath.dirname(physical), target)
        )
        resolved = self.resolve(base)
        if _root_of(resolved, self.roots) is None:
            raise ValueError(f"symlink to {target!r} resolves to {resolved}, outside the roots")
        self.links[physical] = target

    def _check_hardlink(self, member: tarfile.TarInfo) -> None:
        target = member.linkname
        name = None if target.startswith("/") else _canonical_name(target)
        if name is None:
            raise ValueError(f"hard link to {target!r}: not a canonical relative member name")
        path = host_path(name)
        if _root_of(path, self.roots) is None:
            raise ValueError(f"hard link to {path}, outside the roots")
        physical = posixpath.join(self.resolve(posixpath.dirname(path)), posixpath.basename(path))
        if self.kinds.get(physical) != "file":
            raise ValueError(
                f"hard link to {path}, which is not an earlier regular file of the archive"
            )


def _check_gzip(path: Path) -> None:
    """Read the whole gzip stream: truncation and corruption show up here, before tar parsing."""
    try:
        with path.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                raise _refuse(path, "not a gzip file")
        with gzip.open(path, "rb") as stream:
            while stream.read(_CHUNK):
                pass
    except RestoreRefused:
        raise
    except FileNotFoundError:
        raise _refuse(path, "no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _refuse(path, f"corrupt or truncated archive ({exc})") from None


def _check_end(path: Path, end: int) -> None:
    """The decompressed bytes from `end` (where tarfile stopped reading) on must all be NUL."""
    with gzip.open(path, "rb") as stream:
        stream.seek(end)
        offset = end
        while chunk := stream.read(_CHUNK):
            rest = chunk.lstrip(b"\0")
            if rest:
                raise _refuse(
                    path,
                    f"data after the last member, at byte {offset + len(chunk) - len(rest)} of "
                    "the tar stream (a damaged header that GNU tar would skip and read past)",
                )
            offset += len(chunk)


def _validated(tar: tarfile.TarFile, path: Path, roots: tuple[str, ...]) -> list[tarfile.TarInfo]:
    try:
        members = tar.getmembers()
        _check_end(path, tar.offset)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _refuse(path, f"corrupt or truncated archive ({exc})") from None
    checker = _Checker(roots)
    for member in members:
        try:
            checker.check(member)
        except ValueError as exc:
            raise _refuse(path, f"member {member.name!r}: {exc}") from None
    return members


def validate_archive(path: Path, roots: Sequence[str]) -> list[tarfile.TarInfo]:
    """Check a whole `.tar.gz` against the rules above; its members, or RestoreRefused naming the
    first offending member and why. Reads only; nothing is written anywhere."""
    normal = normalized_roots(roots)
    _check_gzip(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            return _validated(tar, path, normal)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _refuse(path, f"corrupt or truncated archive ({exc})") from None


# --- extraction ------------------------------------------------------------------------------


def _disk_check(dest: str, member: tarfile.TarInfo, roots: Sequence[str], *, fix: bool) -> None:
    """The destination as it is now must not redirect `member` out of its root.

    With `fix`, whatever is in the member's place and is not a directory it can reuse is removed
    first (never a real directory): so a regular file is never written through a symlink or into
    an inode hard-linked elsewhere, and a symlink or hard link can be created.
    """
    name = member.name.rstrip("/")
    target = os.path.join(dest, name)
    lexical = host_path(name)
    root = _root_of(lexical, roots)
    if root is None:  # validated before; kept so this function is safe on its own
        raise ValueError("outside the backup's roots")
    if lexical == root:
        container = os.path.realpath(os.path.dirname(target))
        if not is_within(container, dest):
            raise ValueError(f"the destination's {os.path.dirname(target)} leads to {container}")
    else:
        disk_root = os.path.realpath(os.path.join(dest, root.lstrip("/")))
        parent = os.path.realpath(os.path.dirname(target))
        if not is_within(disk_root, dest) or not is_within(parent, disk_root):
            raise ValueError(
                f"the destination has a symlink that leads {os.path.dirname(target)} to {parent}"
            )
    if not os.path.lexists(target):
        return
    real_dir = os.path.isdir(target) and not os.path.islink(target)
    if real_dir and not member.isdir():
        raise ValueError(f"{target} is a directory in the destination; the archive has a file")
    if fix and not real_dir:
        os.unlink(target)


@dataclass
class _ExtractFilter:
    """The tarfile extraction filter: the static rules again, then the destination on disk."""

    dest: str
    roots: tuple[str, ...]
    archive: Path
    checker: _Checker = field(init=False)

    def __post_init__(self) -> None:
        self.checker = _Checker(self.roots)

    def __call__(self, member: tarfile.TarInfo, _dest_path: str) -> tarfile.TarInfo:
        try:
            self.checker.check(member)
            _disk_check(self.dest, member, self.roots, fix=True)
        except ValueError as exc:
            raise _refuse(self.archive, f"member {member.name!r}: {exc}") from None
        # Returned unchanged: numeric uid/gid and mode (set-id bits included) are kept.
        return member


def extract_archive(path: Path, dest: Path, roots: Sequence[str]) -> list[tarfile.TarInfo]:
    """Extract a validated archive below `dest` (an existing directory; "/" for a real restore),
    keeping numeric owners (when running as root) and modes. Everything is checked before the
    first member is written; RestoreRefused otherwise."""
    normal = normalized_roots(roots)
    real_dest = os.path.realpath(dest)
    if not os.path.isdir(real_dest):
        raise _refuse(path, f"destination {dest} is not a directory")
    _check_gzip(path)
    try:
        tar = tarfile.open(path, "r:gz")  # noqa: SIM115  # closed below, after extraction
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _refuse(path, f"corrupt or truncated archive ({exc})") from None
    with tar:
        members = _validated(tar, path, normal)
        for member in members:
            try:
                _disk_check(real_dest, member, normal, fix=False)
            except ValueError as exc:
                raise _refuse(path, f"member {member.name!r}: {exc}") from None
        # errorlevel 2: a failed chown/chmod is an error, not a debug message.
        tar.errorlevel = 2
        try:
            # S202: every member was validated above and the filter checks each one again.
            tar.extractall(  # noqa: S202
                real_dest,
                members=members,
                numeric_owner=True,
                filter=_ExtractFilter(real_dest, normal, path),
            )
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            # Everything was checked before the first write: this is the write itself failing
            # (disk full, permissions), not a refusal, and part of the archive may be out.
            raise OpsError(
                f"extracting {path.name} into {dest} failed: {exc.__class__.__name__}: {exc}",
                hint="fix the cause and extract again (extraction replaces what is there)",
            ) from None
    return members


# --- manifest checks ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _listed(member: tarfile.TarInfo) -> ListedMember:
    kind = (
        "file"
        if member.isreg()
        else "dir"
        if member.isdir()
        else "symlink"
        if member.issym()
        else "hardlink"
        if member.islnk()
        else "other"
    )
    return ListedMember(
        name=member.name.rstrip("/"),
        type=kind,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        size=member.size if member.isreg() else 0,
        target=member.linkname,
    )


def verify_manifest_checksums(archive_path: Path, manifest: Manifest) -> None:
    """The local archive must be the one the manifest describes: size and sha256 of the file,
    then every member's type, mode, owner, size and content hash. RestoreRefused otherwise."""
    if not archive_path.is_file():
        raise _refuse(archive_path, "no such file")
    size = archive_path.stat().st_size
    if size != manifest.archive_size:
        raise _refuse(
            archive_path, f"size {size} differs from the manifest's {manifest.archive_size}"
        )
    digest = sha256_file(archive_path)
    if digest != manifest.archive_sha256:
        raise _refuse(
            archive_path, f"sha256 {digest} differs from the manifest's {manifest.archive_sha256}"
        )
    _check_gzip(archive_path)
    listed: list[ListedMember] = []
    contents: dict[str, str] = {}
    try:
        # Stream mode: one sequential pass, content hashed as it goes by.
        with tarfile.open(archive_path, "r|gz") as tar:
            for member in tar:
                listed.append(_listed(member))
                if member.isreg():
                    handle = tar.extractfile(member)
                    if handle is None:
                        raise _refuse(archive_path, f"cannot read member {member.name!r}")
                    file_digest = hashlib.sha256()
                    while chunk := handle.read(_CHUNK):
                        file_digest.update(chunk)
                    contents[member.name] = file_digest.hexdigest()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _refuse(archive_path, f"corrupt or truncated archive ({exc})") from None
    try:
        compare_listing(manifest.files, listed)
        compare_content(manifest.files, contents)
    except OpsError as exc:
        raise _refuse(
            archive_path, exc.message.replace("archive verification failed: ", "")
        ) from None
