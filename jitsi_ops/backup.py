"""The backup phase: a verified archive of CONFIG and the stack dir on the host, plus a manifest.

Layout on the host (design.md §6):

    <backup_dir>/<deploy_id>.tar.gz   0600, GNU tar, gzip, numeric owners, modes kept
    <backup_dir>/<deploy_id>.json     0600, the manifest (Manifest.to_json)

Member names are root-relative: the absolute host path without its leading "/" (so
`/srv/jitsi/config/web/keys/cert.key` is the member `srv/jitsi/config/web/keys/cert.key`, archived
with `-C /`). The manifest records the roots (canonical absolute paths), so a restore can check
every member against them and put each file back exactly where it came from.

Everything on the host runs through a Runner with coreutils, findutils, GNU tar and gzip only
(the host may have no Python). How an archive is made consistent:

1. `find -printf` lists the roots once (excluded subtrees pruned there); jitsi-ops decides in
   Python what goes in (directories, regular files, symlinks; hard links detected by inode) and
   uploads that exact list, so tar archives precisely the set the manifest describes.
2. `sha256sum` of every regular file on the host becomes the manifest's per-file checksum.
3. Before anything is kept, the archive is re-read on the host: `gzip -t`, the `tar --list`
   listing compared with the manifest (paths, types, sizes, owners, modes, link targets), and
   the content of every member hashed out of the archive (`--to-command`) and compared with the
   host checksums; any difference names the file. The archive's own sha256 and size are recorded.
4. Only then is the archive renamed into place and the manifest written; a manifest on the host
   therefore always describes a verified archive.

The archive holds the stack's `.env` (every secret): it is created 0600 in a 0700 directory and
nothing here ever copies or prints file contents (only their sha256 leaves the host); errors
name files, never what is in them.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from jitsi_ops import commands, facts, hoststate
from jitsi_ops.errors import ConfigError, OpsError, PreflightError, RemoteCommandError
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment
from jitsi_ops.stack import resolve_config_dir

FORMAT_VERSION = 1
MEMBER_NAMES = "root-relative"  # member name = absolute host path without the leading "/"

# Paths below CONFIG that are left out unless asked for: jibri recordings can be many GB and are
# not needed to bring a release back (jitsi-facts §8.1). Both layouts' locations are listed.
RECORDING_DIRS: tuple[str, ...] = ("storage/jibri/recordings", "jibri/recordings")
# Below the stack dir: the lock belongs to the running deploy, and the audit log is history that a
# restore must not roll back (it records the restore itself).
STACK_EXCLUDES: tuple[tuple[str, str], ...] = (
    (".jitsi-ops/lock", "deploy lock of the running operation"),
    (".jitsi-ops/audit.log", "audit history (a restore must not roll it back)"),
)

# Deploy ids come from jitsi_ops.hoststate.new_deploy_id: <env>-YYYYmmddTHHMMSSZ-<6 hex>.
_STAMP = "%Y%m%dT%H%M%SZ"
_ID_TIME_RE = re.compile(r"-(\d{8}T\d{6}Z)-[0-9a-f]{6}\Z")

# One find record: type, mode, uid, gid, size, device:inode, link count, path, symlink target.
FIND_FORMAT = "%y\\0%m\\0%U\\0%G\\0%s\\0%D:%i\\0%n\\0%p\\0%l\\0"
_FIND_FIELDS = 9
# tar runs this with /bin/sh for every regular member, its content on stdin: "<name>\0<hash>  -\n".
HASH_COMMAND = 'printf "%s\\0" "$TAR_FILENAME"; sha256sum'

Progress = Callable[[str], None]
EntryType = Literal["file", "dir", "symlink", "hardlink"]
_FIND_TYPES: dict[str, EntryType] = {"f": "file", "d": "dir", "l": "symlink"}
_SKIPPED_TYPES = {
    "p": "fifo",
    "s": "socket",
    "b": "block device",
    "c": "character device",
    "D": "door",
}
_LIST_TYPES: dict[str, str] = {
    "-": "file",
    "d": "dir",
    "l": "symlink",
    "h": "hardlink",
    "c": "character device",
    "b": "block device",
    "p": "fifo",
}


def deploy_id_time(deploy_id: str) -> datetime | None:
    """The UTC time encoded in a deploy id, or None when it is not one."""
    match = _ID_TIME_RE.search(deploy_id)
    if match is None:
        return None
    return datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)


def is_env_backup(env_name: str, deploy_id: str) -> bool:
    """Whether `deploy_id` is one of this environment's ids (not a longer name's: the id of env
    `prod-eu` also starts with `prod-`)."""
    return hoststate.env_of_deploy_id(deploy_id) == env_name


# --- manifest model -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One archived path as the manifest records it (path is absolute on the host)."""

    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    target: str = ""  # symlink: its target as stored; hardlink: the host path it links to

    @property
    def member(self) -> str:
        """The archive member name."""
        return member_name(self.path)

    def as_json(self) -> dict[str, Any]:
        """JSON form (mode as an octal string, readable next to `ls -l`)."""
        data: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "sha256": self.sha256,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
        }
        if self.target:
            data["target"] = self.target
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileEntry:
        """Parse one `files` item (KeyError/ValueError/TypeError on malformed input)."""
        kind = str(data["type"])
        if kind not in ("file", "dir", "symlink", "hardlink"):
            raise ValueError(f"unknown file type {kind!r}")
        return cls(
            path=str(data["path"]),
            type=cast(EntryType, kind),
            mode=int(str(data["mode"]), 8),
            uid=int(data["uid"]),
            gid=int(data["gid"]),
            size=int(data.get("size", 0)),
            sha256=str(data.get("sha256", "")),
            target=str(data.get("target", "")),
        )


@dataclass(frozen=True)
class Root:
    """One archived tree: what it is, its canonical path, and the path as configured."""

    kind: Literal["config", "stack"]
    path: str
    configured: str
    present: bool = True


@dataclass(frozen=True)
class Omitted:
    """A path deliberately not in the archive, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Manifest:
    """`<deploy_id>.json`: what the archive holds and how to check it."""

    env: str
    deploy_id: str
    created: datetime
    host: str
    release: str | None
    digests: Mapping[str, str]
    roots: tuple[Root, ...]
    excluded: tuple[Omitted, ...]
    skipped: tuple[Omitted, ...]
    archive_name: str
    archive_size: int
    archive_sha256: str
    files: tuple[FileEntry, ...]
    format: int = FORMAT_VERSION

    @property
    def root_paths(self) -> tuple[str, ...]:
        """Canonical absolute paths of the archived roots (for the restore filter)."""
        return tuple(root.path for root in self.roots if root.present)

    def to_json(self) -> str:
        """The manifest file's text."""
        data = {
            "format": self.format,
            "env": self.env,
            "deploy_id": self.deploy_id,
            "created": self.created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "host": self.host,
            "release": self.release,
            "digests": dict(self.digests),
            "member_names": MEMBER_NAMES,
            "roots": [
                {"kind": r.kind, "path": r.path, "configured": r.configured, "present": r.present}
                for r in self.roots
            ],
            "excluded": [{"path": o.path, "reason": o.reason} for o in self.excluded],
            "skipped": [{"path": o.path, "reason": o.reason} for o in self.skipped],
            "archive": {
                "name": self.archive_name,
                "size": self.archive_size,
                "sha256": self.archive_sha256,
            },
            "files": [entry.as_json() for entry in self.files],
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> Manifest:
        """Parse a manifest; OpsError naming `source` when it is not one this version reads."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("format") != FORMAT_VERSION or data.get("member_names") != MEMBER_NAMES:
                raise ValueError(f"unsupported format {data.get('format')!r}")
            archive = data["archive"]
            created = datetime.fromisoformat(str(data["created"]).replace("Z", "+00:00"))
            return cls(
                env=str(data["env"]),
                deploy_id=str(data["deploy_id"]),
                created=created.astimezone(UTC),
                host=str(data.get("host", "")),
                release=None if data.get("release") is None else str(data["release"]),
                digests={str(k): str(v) for k, v in dict(data.get("digests") or {}).items()},
                roots=tuple(
                    Root(
                        kind="config" if r["kind"] == "config" else "stack",
                        path=str(r["path"]),
                        configured=str(r.get("configured", r["path"])),
                        present=bool(r.get("present", True)),
                    )
                    for r in data["roots"]
                ),
                excluded=tuple(Omitted(str(o["path"]), str(o["reason"])) for o in data["excluded"]),
                skipped=tuple(Omitted(str(o["path"]), str(o["reason"])) for o in data["skipped"]),
                archive_name=str(archive["name"]),
                archive_size=int(archive["size"]),
                archive_sha256=str(archive["sha256"]),
                files=tuple(FileEntry.from_json(item) for item in data["files"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise OpsError(
                f"{source}: not a readable jitsi-ops backup manifest ({exc.__class__.__name__}: {exc})",
                hint="the backup cannot be used; remove it or restore the manifest from a copy",
            ) from None


@dataclass(frozen=True)
class BackupInfo:
    """One row of `invoke backups`."""

    id: str
    time: datetime
    release: str | None
    size: int
    problem: str = ""  # non-empty: the backup is unusable (manifest unreadable, archive missing)

    def as_json(self) -> dict[str, Any]:
        """JSON form for `invoke backups --json`."""
        return {
            "id": self.id,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "release": self.release,
            "size": self.size,
            "problem": self.problem,
        }


# --- paths ----------------------------------------------------------------------------------


def member_name(path: str) -> str:
    """Archive member of an absolute host path."""
    return path.lstrip("/")


def host_path(member: str) -> str:
    """Absolute host path of an archive member."""
    return "/" + member.strip("/")


def is_within(path: str, root: str) -> bool:
    """`path` is `root` or below it (both normalized absolute POSIX paths)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def archive_path(backup_dir: str, deploy_id: str) -> str:
    """`<backup_dir>/<deploy_id>.tar.gz`."""
    return posixpath.join(backup_dir, f"{deploy_id}.tar.gz")


def manifest_path(backup_dir: str, deploy_id: str) -> str:
    """`<backup_dir>/<deploy_id>.json`."""
    return posixpath.join(backup_dir, f"{deploy_id}.json")


def human_size(size: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as df -h and du -h print)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _glob_escape(path: str) -> str:
    # find -path takes an fnmatch pattern: a literal path must not glob.
    return re.sub(r"([\\*?\[\]])", r"\\\1", path)


# --- argv builders (pure) ---------------------------------------------------------------------


def realpath(path: str) -> list[str]:
    """Canonical path of an existing file (exits 1 when it does not exist)."""
    return ["realpath", "-e", "--", path]


def find_listing(roots: Sequence[str], prune: Sequence[str] = ()) -> list[str]:
    """Every path below `roots` as NUL-separated find records, `prune` paths (and below) left out.

    -P: never follow symlinks; a symlink is archived as a symlink.
    """
    argv = ["find", "-P", *roots]
    if prune:
        argv.append("(")
        for index, path in enumerate(prune):
            if index:
                argv.append("-o")
            argv += ["-path", _glob_escape(path)]
        argv += [")", "-prune", "-o"]
    argv += ["-printf", FIND_FORMAT]
    return argv


def df_free(path: str) -> list[str]:
    """POSIX df of the file system holding `path`, in KiB."""
    return ["df", "-P", "-k", "--", path]


def create_empty(path: str, mode: str = "0600") -> list[str]:
    """An empty file with `mode` from the start, so tar writes the archive into a private file
    (tar itself would create it with the login's umask)."""
    return ["install", "-m", mode, "/dev/null", path]


def tar_create(archive: str, list_file: str) -> list[str]:
    """Archive exactly the NUL-separated, root-relative names in `list_file` (read from /).

    --no-recursion: directories are in the list themselves, their contents listed one by one;
    --verbatim-files-from: a name starting with "-" is a name, never an option;
    --numeric-owner: uid/gid only (the host's user names mean nothing elsewhere);
    -p: no effect on create; kept so the flag set matches the restore side.
    """
    return [
        "tar",
        "--create",
        "--gzip",
        "--format=gnu",
        "--numeric-owner",
        "-p",
        "--no-recursion",
        "--null",
        "--verbatim-files-from",
        "--directory=/",
        f"--files-from={list_file}",
        f"--file={archive}",
    ]


def sha256_files(list_file: str) -> list[str]:
    """sha256sum of every file named (absolute, NUL-separated) in `list_file`."""
    return ["xargs", "-0", "-r", "-a", list_file, "sha256sum", "--"]


def gzip_test(archive: str) -> list[str]:
    """Decompress the whole archive and check the gzip CRC and length."""
    return ["gzip", "-t", "--", archive]


def tar_list(archive: str) -> list[str]:
    """Verbose listing with numeric owners, full timestamps and C-quoted names (unambiguous)."""
    return [
        "tar",
        "--list",
        "--verbose",
        "--gzip",
        "--numeric-owner",
        "--full-time",
        "--quoting-style=c",
        f"--file={archive}",
    ]


def tar_hashes(archive: str) -> list[str]:
    """sha256 of every regular member's content, read back out of the archive (nothing written)."""
    return ["tar", "--extract", "--gzip", f"--file={archive}", f"--to-command={HASH_COMMAND}"]


def sha256_of(path: str) -> list[str]:
    """sha256 of one file."""
    return ["sha256sum", "--", path]


def stat_files(paths: Sequence[str]) -> list[str]:
    """Octal mode and size of each path, one `MODE SIZE` line each, in order."""
    return ["stat", "-c", "%a %s", "--", *paths]


def move(source: str, target: str) -> list[str]:
    """Rename within the backup dir (atomic on one file system)."""
    return ["mv", "-f", "-T", "--", source, target]


def remove(paths: Sequence[str]) -> list[str]:
    """Delete files (missing ones are fine), in the order given."""
    return ["rm", "-f", "--", *paths]


def list_dir(directory: str) -> list[str]:
    """Regular files directly in `directory`: `name\\0size\\0` records."""
    return [
        "find",
        "-P",
        directory,
        "-mindepth",
        "1",
        "-maxdepth",
        "1",
        "-type",
        "f",
        "-printf",
        "%f\\0%s\\0",
    ]


def is_dir(path: str) -> list[str]:
    """Exit 0 when `path` is a directory."""
    return ["test", "-d", path]


# --- parsers (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostEntry:
    """One `find -printf FIND_FORMAT` record."""

    kind: str  # find %y: f d l p s b c D
    mode: int
    uid: int
    gid: int
    size: int
    inode: str  # "device:inode", to detect hard links
    links: int
    path: str
    target: str


def parse_find_listing(text: str) -> list[HostEntry]:
    """Records of `find -printf FIND_FORMAT` output (any byte but NUL may appear in a name)."""
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    if len(fields) % _FIND_FIELDS:
        raise OpsError(
            f"unexpected find output: {len(fields)} fields is not a multiple of {_FIND_FIELDS}",
            hint="the host's find must be GNU findutils (-printf)",
        )
    entries = []
    for i in range(0, len(fields), _FIND_FIELDS):
        kind, mode, uid, gid, size, inode, links, path, target = fields[i : i + _FIND_FIELDS]
        entries.append(
            HostEntry(
                kind=kind,
                mode=int(mode, 8),
                uid=int(uid),
                gid=int(gid),
                size=int(size),
                inode=inode,
                links=int(links),
                path=path,
                target=target,
            )
        )
    return entries


def _unescape_sha256sum_name(name: str) -> str:
    # GNU sha256sum escapes "\\", "\n" (and "\r" since 9.x) in names and marks such lines with a
    # leading backslash.
    out = []
    chars = iter(name)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def parse_sha256sum(text: str) -> dict[str, str]:
    """`sha256sum` output (text mode) as {name: hex digest}."""
    found: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, sep, name = body.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            # Binary-mode marker ("hash *name") is the only other documented form.
            digest, sep, name = body.partition(" *")
            if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise OpsError(f"unexpected sha256sum output line: {line[:80]!r}")
        found[_unescape_sha256sum_name(name) if escaped else name] = digest
    return found


def parse_tar_hashes(text: str) -> dict[str, str]:
    """`tar_hashes` output as {member name: hex digest}."""
    found: dict[str, str] = {}
    position = 0
    pattern = re.compile(r"([^\0]*)\0([0-9a-f]{64})  -\n")
    while position < len(text):
        match = pattern.match(text, position)
        if match is None:
            raise OpsError(f"unexpected output of the archive hash pass at byte {position}")
        found[match[1]] = match[2]
        position = match.end()
    return found


def parse_df_available(text: str) -> int:
    """Free bytes from `df -P -k PATH` (the field before the "NN%" capacity; file system and mount
    point names may contain spaces, so fields are counted from the capacity, not from the left)."""
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    if not lines:
        raise OpsError("unexpected df output: no data line")
    fields = lines[-1].split()
    for index, value in enumerate(fields):
        if index >= 3 and re.fullmatch(r"\d+%|-", value) and fields[index - 1].isdigit():
            return int(fields[index - 1]) * 1024
    raise OpsError(f"unexpected df output line: {lines[-1][:120]!r}")


_C_ESCAPES = {
    "n": b"\n",
    "t": b"\t",
    "r": b"\r",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "?": b"?",
}


def _c_unquote(text: str, start: int) -> tuple[str, int]:
    """Decode the C-quoted string starting at text[start] == '"'; return it and the index after."""
    if start >= len(text) or text[start] != '"':
        raise ValueError("expected a quoted name")
    out = bytearray()
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            # Octal escapes are raw bytes of the (usually UTF-8) name: decode once at the end.
            return out.decode("utf-8", "surrogateescape"), i + 1
        if char == "\\":
            nxt = text[i + 1 : i + 2]
            octal = re.match(r"[0-7]{1,3}", text[i + 1 : i + 4])
            if octal:
                out.append(int(octal.group(), 8))
                i += 1 + len(octal.group())
                continue
            if nxt not in _C_ESCAPES:
                raise ValueError(f"unknown escape \\{nxt}")
            out += _C_ESCAPES[nxt]
            i += 2
            continue
        out += char.encode("utf-8", "surrogateescape")
        i += 1
    raise ValueError("unterminated quoted name")


def permissions_mode(text: str) -> int:
    """'rwxr-s--T' (ls/tar style, 9 characters) -> 0o3750, set-id and sticky bits included."""
    if not re.fullmatch(r"([r-][w-][xsS-]){2}[r-][w-][xtT-]", text):
        raise ValueError(f"bad permissions {text!r}")
    mode = 0
    specials = (0o4000, 0o2000, 0o1000)
    for group in range(3):
        chunk = text[group * 3 : group * 3 + 3]
        shift = 6 - group * 3
        mode |= (4 if chunk[0] == "r" else 0) << shift
        mode |= (2 if chunk[1] == "w" else 0) << shift
        if chunk[2] in "xst":
            mode |= 1 << shift
        if chunk[2] in "sStT":
            mode |= specials[group]
    return mode


@dataclass(frozen=True)
class ListedMember:
    """One line of `tar_list` output."""

    name: str  # member name, no trailing "/"
    type: str  # file, dir, symlink, hardlink, character device, block device, fifo, other
    mode: int
    uid: int
    gid: int
    size: int
    target: str = ""  # symlink target, or the member a hard link points to


_LIST_LINE = re.compile(
    r"^(?P<perm>\S)(?P<bits>\S{9})\s+(?P<uid>\d+)/(?P<gid>\d+)\s+(?P<size>\d+|\d+,\s*\d+)\s+"
    r"\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}(?::\d{2})?\s+(?P<rest>\".*)$"
)


def parse_tar_listing(text: str) -> list[ListedMember]:
    """`tar_list` output (GNU tar, --numeric-owner --full-time --quoting-style=c)."""
    members = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        match = _LIST_LINE.match(line)
        if match is None:
            raise OpsError(f"unexpected tar listing line: {line[:120]!r}")
        try:
            name, end = _c_unquote(match["rest"], 0)
            tail = match["rest"][end:]
            target = ""
            if tail.startswith(" -> "):
                target, end2 = _c_unquote(tail, 4)
                tail = tail[end2:]
            elif tail.startswith(" link to "):
                target, end2 = _c_unquote(tail, 9)
                tail = tail[end2:]
            if tail.strip():
                raise ValueError(f"trailing text {tail[:40]!r}")
            mode = permissions_mode(match["bits"])
        except ValueError as exc:
            raise OpsError(f"unexpected tar listing line ({exc}): {line[:120]!r}") from None
        size = match["size"]
        members.append(
            ListedMember(
                name=name.rstrip("/"),
                type=_LIST_TYPES.get(match["perm"], "other"),
                mode=mode,
                uid=int(match["uid"]),
                gid=int(match["gid"]),
                size=int(size) if size.isdigit() else 0,
                target=target,
            )
        )
    return members


# --- selection and comparison (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class ArchivePlan:
    """What goes into the archive, in archive order, and what is skipped."""

    entries: tuple[FileEntry, ...]
    skipped: tuple[Omitted, ...]

    @property
    def data_bytes(self) -> int:
        """Bytes of regular-file content."""
        return sum(e.size for e in self.entries if e.type == "file")

    def tar_bytes(self) -> int:
        """Upper bound of the uncompressed tar stream: a 512-byte header per member (two more
        for long names), content padded to 512, end blocks, record padding to 10240."""
        total = 1024
        for entry in self.entries:
            total += 512 + (1024 + len(entry.member) if len(entry.member) >= 100 else 0)
            if entry.type == "file":
                total += -(-entry.size // 512) * 512
        return -(-total // 10240) * 10240


def plan_archive(found: Iterable[HostEntry]) -> ArchivePlan:
    """Keep directories, regular files and symlinks; the second and later names of one inode
    become hard links to the first (tar does the same in the same order); sockets, fifos and
    device nodes are skipped: a restore refuses them, and nothing in CONFIG needs them."""
    entries: list[FileEntry] = []
    skipped: list[Omitted] = []
    first_name: dict[str, str] = {}
    for item in found:
        if item.kind in _SKIPPED_TYPES:
            skipped.append(Omitted(item.path, f"{_SKIPPED_TYPES[item.kind]}: not archived"))
            continue
        kind = _FIND_TYPES.get(item.kind)
        if kind is None:
            skipped.append(Omitted(item.path, f"unknown file type {item.kind!r}: not archived"))
            continue
        entry = FileEntry(item.path, kind, item.mode, item.uid, item.gid)
        if kind == "file" and item.links > 1:
            if item.inode in first_name:
                target = first_name[item.inode]
                entries.append(replace(entry, type="hardlink", size=item.size, target=target))
                continue
            first_name[item.inode] = item.path
        if kind == "file":
            entry = replace(entry, size=item.size)
        elif kind == "symlink":
            entry = replace(entry, target=item.target)
        entries.append(entry)
    return ArchivePlan(tuple(entries), tuple(skipped))


def with_checksums(entries: Sequence[FileEntry], sums: Mapping[str, str]) -> tuple[FileEntry, ...]:
    """Fill each regular file's sha256 from `sums` (by host path); a missing one is an error."""
    out = []
    for entry in entries:
        if entry.type != "file":
            out.append(entry)
            continue
        digest = sums.get(entry.path)
        if digest is None:
            raise OpsError(f"no checksum for {entry.path}: it vanished while being backed up")
        out.append(replace(entry, sha256=digest))
    return tuple(out)


def compare_listing(expected: Sequence[FileEntry], listed: Sequence[ListedMember]) -> None:
    """The archive listing must describe exactly the manifest's files; OpsError naming the first
    differing file otherwise."""
    by_name: dict[str, ListedMember] = {}
    for member in listed:
        if member.name in by_name:
            raise OpsError(
                f"archive verification failed: {host_path(member.name)} is in the archive twice"
            )
        by_name[member.name] = member
    wanted = {e.member for e in expected}
    for entry in expected:
        found = by_name.get(entry.member)
        if found is None:
            raise OpsError(f"archive verification failed: {entry.path} is missing from the archive")
        _compare_member(entry, found)
    extra = [m.name for m in listed if m.name not in wanted]
    if extra:
        raise OpsError(f"archive verification failed: {host_path(extra[0])} is not in the manifest")


def _compare_member(entry: FileEntry, member: ListedMember) -> None:
    """One manifest entry against its archive listing line."""
    problems = []
    if member.type != entry.type:
        problems.append(f"type {member.type} != {entry.type}")
    if member.mode != entry.mode:
        problems.append(f"mode {member.mode:04o} != {entry.mode:04o}")
    if (member.uid, member.gid) != (entry.uid, entry.gid):
        problems.append(f"owner {member.uid}:{member.gid} != {entry.uid}:{entry.gid}")
    if entry.type == "file" and member.size != entry.size:
        problems.append(f"size {member.size} != {entry.size}")
    if entry.type == "symlink" and member.target != entry.target:
        problems.append("symlink target differs")
    if entry.type == "hardlink" and host_path(member.target) != entry.target:
        problems.append("hard link target differs")
    if problems:
        raise OpsError(
            f"archive verification failed: {entry.path}: {', '.join(problems)} (archive vs host)",
            hint="the file changed while it was archived; run the backup again",
        )


def compare_content(expected: Sequence[FileEntry], archived: Mapping[str, str]) -> None:
    """Every regular file's content in the archive must hash to the host file's checksum."""
    for entry in expected:
        if entry.type != "file":
            continue
        digest = archived.get(entry.member)
        if digest is None:
            raise OpsError(
                f"archive verification failed: no content for {entry.path} in the archive"
            )
        if digest != entry.sha256:
            raise OpsError(
                f"archive verification failed: {entry.path}: content in the archive differs from "
                "the file on the host",
                hint="the file changed while it was archived; run the backup again",
            )


# --- host side ----------------------------------------------------------------------------------


def stack_dir_of(env: Environment, runner: Runner) -> str:
    """The environment's stack dir as an absolute path on the host (settings refuse `~`)."""
    del runner
    return posixpath.normpath(env.deploy.stack_dir)


def backup_dir_of(env: Environment, runner: Runner) -> str:
    """The environment's backup dir as an absolute path on the host (settings refuse `~`)."""
    del runner
    directory = posixpath.normpath(env.deploy.backup.dir)
    if not directory.startswith("/"):
        raise ConfigError(
            f"backup.dir {env.deploy.backup.dir!r} is not absolute",
            hint="set [backup] dir to an absolute path in deploy.toml",
        )
    return directory


def _canonical(runner: Runner, path: str) -> str | None:
    """realpath -e of `path` on the host, None when it does not exist."""
    result = runner.run(realpath(path), check=False)
    if result.ok:
        return result.stdout.rstrip("\n")
    if "No such file" in result.stderr or "Not a directory" in result.stderr:
        return None
    raise RemoteCommandError(result.argv, result.exit_code, result.stderr)


def resolve_roots(env: Environment, runner: Runner) -> tuple[Root, ...]:
    """CONFIG and the stack dir as canonical host paths (symlinks resolved: the data is archived
    where it really is), marked absent when they do not exist."""
    config = resolve_config_dir(env, runner)
    if not config:
        raise ConfigError("CONFIG is not set", hint="set CONFIG in jitsi.env")
    stack_dir = stack_dir_of(env, runner)
    roots = []
    kinds: tuple[Literal["config", "stack"], ...] = ("config", "stack")
    for kind, configured in zip(kinds, (config, stack_dir), strict=True):
        if not configured.startswith("/"):
            raise ConfigError(
                f"{'CONFIG' if kind == 'config' else 'stack_dir'} {configured!r} is not absolute",
                hint="use an absolute path (or one starting with ~/)",
            )
        canonical = _canonical(runner, configured)
        if canonical == "/":
            raise ConfigError(f"{configured!r} resolves to /", hint="refusing to archive /")
        roots.append(
            Root(
                kind, canonical or posixpath.normpath(configured), configured, canonical is not None
            )
        )
    return tuple(roots)


def traversal_roots(roots: Sequence[Root]) -> list[str]:
    """Present roots, minus any inside another (CONFIG may live below the stack dir)."""
    paths = list(dict.fromkeys(r.path for r in roots if r.present))
    return [p for p in paths if not any(q != p and is_within(p, q) for q in paths)]


def exclusions(
    roots: Sequence[Root], backup_dir: str, *, include_recordings: bool
) -> tuple[Omitted, ...]:
    """Absolute paths left out of the archive, with the reason recorded in the manifest."""
    out: list[Omitted] = []
    for root in roots:
        if root.kind == "config" and not include_recordings:
            out += [
                Omitted(
                    posixpath.join(root.path, sub),
                    "jibri recordings: excluded by default (can be huge)",
                )
                for sub in RECORDING_DIRS
            ]
        if root.kind == "stack":
            out += [Omitted(posixpath.join(root.path, sub), why) for sub, why in STACK_EXCLUDES]
        if root.present and is_within(backup_dir, root.path):
            out.append(Omitted(backup_dir, "the backup dir itself"))
    # CONFIG below the stack dir puts the backup dir below both: listed once.
    return tuple({o.path: o for o in out}.values())


def _check_deploy_id(env: Environment, deploy_id: str) -> None:
    # The id becomes a file name on the host: only this environment's ids are accepted (the env
    # name is validated by settings, so such an id holds no "/" or "..").
    if not is_env_backup(env.name, deploy_id):
        raise ConfigError(
            f"invalid backup id {deploy_id!r} for environment {env.name!r}",
            hint=f"ids look like {env.name}-20260101T120000Z-a1b2c3",
        )


def _nul_list(names: Iterable[str]) -> bytes:
    return b"".join(name.encode("utf-8", "surrogateescape") + b"\0" for name in names)


@dataclass(frozen=True)
class _Paths:
    """Where one backup goes on the host; the dot files exist only while it is being made."""

    backup_dir: str
    deploy_id: str

    @property
    def archive(self) -> str:
        return archive_path(self.backup_dir, self.deploy_id)

    @property
    def manifest(self) -> str:
        return manifest_path(self.backup_dir, self.deploy_id)

    @property
    def partial(self) -> str:
        return posixpath.join(self.backup_dir, f".{self.deploy_id}.tar.gz.partial")

    @property
    def member_list(self) -> str:
        return posixpath.join(self.backup_dir, f".{self.deploy_id}.members")

    @property
    def file_list(self) -> str:
        return posixpath.join(self.backup_dir, f".{self.deploy_id}.files")


def _prepare(env: Environment, runner: Runner, deploy_id: str) -> tuple[tuple[Root, ...], _Paths]:
    """Roots resolved, backup dir created (0700) and canonical, the id not taken yet."""
    _check_deploy_id(env, deploy_id)
    roots = resolve_roots(env, runner)
    if not any(root.present for root in roots):
        raise OpsError(
            f"nothing to back up on {runner.host}: neither CONFIG ({roots[0].configured}) nor the "
            f"stack dir ({roots[1].configured}) exists",
            hint="a host that was never deployed has nothing to back up",
        )
    configured = backup_dir_of(env, runner)
    # `-m` applies to the last component only: parents keep the host's defaults.
    runner.run(commands.mkdirs([configured], mode="0700"))
    paths = _Paths(_canonical(runner, configured) or configured, deploy_id)
    for root in roots:
        if root.present and is_within(root.path, paths.backup_dir):
            # Pruning the backup dir out of the archive would prune this root with it.
            raise ConfigError(
                f"backup.dir {paths.backup_dir} contains {root.path}, which it must back up",
                hint="point [backup] dir in deploy.toml somewhere outside CONFIG's and the "
                "stack dir's parents, e.g. /var/backups/jitsi-ops",
            )
    for existing in (paths.archive, paths.manifest):
        if runner.run(["test", "-e", existing], check=False).ok:
            raise OpsError(
                f"backup {deploy_id} already exists in {paths.backup_dir}",
                hint="use a new deploy id",
            )
    return roots, paths


def _plan(
    runner: Runner, roots: Sequence[Root], paths: _Paths, *, include_recordings: bool
) -> tuple[ArchivePlan, tuple[Omitted, ...]]:
    """List the roots on the host and decide what goes into the archive."""
    excluded = exclusions(roots, paths.backup_dir, include_recordings=include_recordings)
    listing = runner.run(find_listing(traversal_roots(roots), [o.path for o in excluded]))
    found = parse_find_listing(listing.stdout)
    for root in roots:
        first = next((e for e in found if e.path == root.path), None)
        if root.present and first is not None and first.kind != "d":
            raise ConfigError(f"{root.configured} is not a directory", hint="check the path")
    return plan_archive(found), excluded


def _check_space(runner: Runner, paths: _Paths, plan: ArchivePlan) -> None:
    """PreflightError with the numbers when the backup dir's file system is too full."""
    # The uncompressed tar stream bounds the gzip output (gzip grows incompressible data by well
    # under 0.1 %); the two name lists and some slack come on top. This is the exact set tar will
    # read, which `du` of the roots could not give (it cannot apply the same exclusions).
    tar_bytes = plan.tar_bytes()
    needed = tar_bytes + tar_bytes // 1000 + 2 * len(_nul_list(e.path for e in plan.entries))
    needed += 65536
    free = parse_df_available(runner.run(df_free(paths.backup_dir)).stdout)
    if free < needed:
        raise PreflightError(
            f"not enough space for the backup in {paths.backup_dir} on {runner.host}: needs up to "
            f"{human_size(needed)} ({len(plan.entries)} entries, {human_size(plan.data_bytes)} of "
            f"file data), {human_size(free)} free",
            hint="free space there, or point [backup] dir in deploy.toml to a larger file system",
        )


def _write_archive(
    runner: Runner, paths: _Paths, plan: ArchivePlan, say: Progress
) -> tuple[tuple[FileEntry, ...], str, int]:
    """Archive the planned entries into the partial file, checksum the host files, verify the
    archive against them. Returns the entries with checksums, the archive's sha256 and size."""
    runner.put(_nul_list(e.member for e in plan.entries), paths.member_list, 0o600)
    runner.put(_nul_list(e.path for e in plan.entries if e.type == "file"), paths.file_list, 0o600)
    runner.run(create_empty(paths.partial))
    try:
        runner.run(tar_create(paths.partial, paths.member_list))
    except RemoteCommandError as exc:
        raise OpsError(
            f"creating the backup archive failed on {runner.host}: {exc.message}",
            hint="exit 1 with 'file changed as we read it' means something wrote meanwhile; "
            "run the backup again",
        ) from None
    sums = parse_sha256sum(runner.run(sha256_files(paths.file_list)).stdout)
    entries = with_checksums(plan.entries, sums)
    archive_sha = _sha256_of(runner, paths.partial)
    size = _stat(runner, [paths.partial])[0][1]
    say(f"verifying the {human_size(size)} archive")
    _verify_on_host(runner, paths.partial, entries)
    return entries, archive_sha, size


def _check_kept(runner: Runner, paths: _Paths, archive_sha: str) -> None:
    """The kept archive is still the verified one, and both files are private."""
    if _sha256_of(runner, paths.archive) != archive_sha:
        raise OpsError(f"{paths.archive} changed after it was verified")
    kept = (paths.archive, paths.manifest)
    for (mode, _size), path in zip(_stat(runner, kept), kept, strict=True):
        if mode & 0o077:
            raise OpsError(f"{path} has mode {mode:04o}, expected 0600")


def create_backup(
    env: Environment,
    runner: Runner,
    deploy_id: str,
    *,
    release: str | None,
    digests: Mapping[str, str],
    progress: Progress | None = None,
    include_recordings: bool = False,
    now: datetime | None = None,
) -> Manifest:
    """Archive CONFIG and the stack dir on the env's main host, verify the archive, write the
    manifest; returns it.

    Raises PreflightError when space is short (nothing written but the backup dir), OpsError
    naming the file when verification finds a difference; nothing of a failed backup is kept.
    """
    say: Progress = progress or (lambda _message: None)
    roots, paths = _prepare(env, runner, deploy_id)
    plan, excluded = _plan(runner, roots, paths, include_recordings=include_recordings)
    _check_space(runner, paths, plan)
    say(
        f"archiving {len(plan.entries)} entries ({human_size(plan.data_bytes)}) from "
        f"{', '.join(r.path for r in roots if r.present)}"
    )
    scratch = [paths.partial, paths.member_list, paths.file_list]
    try:
        entries, archive_sha, size = _write_archive(runner, paths, plan, say)
        runner.run(move(paths.partial, paths.archive))
        scratch += [paths.archive, paths.manifest]  # nothing unverified may stay behind
        manifest = Manifest(
            env=env.name,
            deploy_id=deploy_id,
            # Microseconds kept: two backups in one second still sort newest first.
            created=(now or datetime.now(UTC)).astimezone(UTC),
            host=runner.host,
            release=release,
            digests=dict(digests),
            roots=roots,
            excluded=excluded,
            skipped=plan.skipped,
            archive_name=posixpath.basename(paths.archive),
            archive_size=size,
            archive_sha256=archive_sha,
            files=entries,
        )
        runner.put(manifest.to_json().encode(), paths.manifest, 0o600)
        _check_kept(runner, paths, archive_sha)
    except BaseException:
        # The original error matters more than a failed cleanup (e.g. the connection dropped),
        # so the cleanup's own errors are swallowed.
        with contextlib.suppress(Exception):
            runner.run(remove(scratch), check=False)
        raise
    runner.run(remove([paths.member_list, paths.file_list]), check=False)
    say(f"backup {deploy_id}: {human_size(size)}, {len(entries)} entries, verified")
    return manifest


def _sha256_of(runner: Runner, path: str) -> str:
    sums = parse_sha256sum(runner.run(sha256_of(path)).stdout)
    if len(sums) != 1:
        raise OpsError(f"unexpected sha256sum output for {path}")
    return next(iter(sums.values()))


def _stat(runner: Runner, paths: Sequence[str]) -> list[tuple[int, int]]:
    lines = runner.run(stat_files(paths)).stdout.split()
    if len(lines) != 2 * len(paths):
        raise OpsError(f"unexpected stat output for {', '.join(paths)}")
    return [(int(lines[i], 8), int(lines[i + 1])) for i in range(0, len(lines), 2)]


def _verify_on_host(runner: Runner, archive: str, entries: Sequence[FileEntry]) -> None:
    """Re-read the archive on the host: gzip integrity, listing, content hashes."""
    for argv, what in ((gzip_test(archive), "gzip -t"), (tar_list(archive), "tar --list")):
        result = runner.run(argv, check=False)
        if not result.ok:
            raise OpsError(
                f"archive verification failed: {what} of {archive} exited {result.exit_code} "
                f"({result.stderr.strip()[-200:] or 'no output'})"
            )
        listing = result.stdout
    compare_listing(entries, parse_tar_listing(listing))
    result = runner.run(tar_hashes(archive), check=False)
    if not result.ok:
        raise OpsError(
            f"archive verification failed: reading the content of {archive} exited "
            f"{result.exit_code} ({result.stderr.strip()[-200:] or 'no output'})"
        )
    compare_content(entries, parse_tar_hashes(result.stdout))


# --- listing and retention ------------------------------------------------------------------------


def list_backups(env: Environment, runner: Runner) -> list[BackupInfo]:
    """This environment's backups on its host, newest first (read from the manifests)."""
    directory = backup_dir_of(env, runner)
    if not runner.run(is_dir(directory), check=False).ok:
        return []
    fields = runner.run(list_dir(directory)).stdout.split("\0")
    sizes = {fields[i]: int(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    ids = sorted(
        name[: -len(".json")]
        for name in sizes
        if name.endswith(".json") and is_env_backup(env.name, name[: -len(".json")])
    )
    # An archive whose manifest was never written is an interrupted run: listed as unusable.
    ids += sorted(
        name[: -len(".tar.gz")]
        for name in sizes
        if name.endswith(".tar.gz")
        and is_env_backup(env.name, name[: -len(".tar.gz")])
        and f"{name[: -len('.tar.gz')]}.json" not in sizes
    )
    infos = []
    for deploy_id in ids:
        stamp = deploy_id_time(deploy_id) or datetime.fromtimestamp(0, UTC)
        archive_name = f"{deploy_id}.tar.gz"
        if f"{deploy_id}.json" not in sizes:
            infos.append(BackupInfo(deploy_id, stamp, None, sizes[archive_name], "no manifest"))
            continue
        source = manifest_path(directory, deploy_id)
        try:
            manifest = Manifest.from_json(runner.get(source).decode("utf-8"), source)
        except (OpsError, UnicodeDecodeError) as exc:
            infos.append(
                BackupInfo(
                    deploy_id,
                    stamp,
                    None,
                    sizes.get(archive_name, 0),
                    f"unreadable manifest: {exc}",
                )
            )
            continue
        problem = ""
        if archive_name not in sizes:
            problem = "archive missing"
        elif sizes[archive_name] != manifest.archive_size:
            problem = f"archive size {sizes[archive_name]} != {manifest.archive_size} in manifest"
        elif manifest.env != env.name or manifest.deploy_id != deploy_id:
            problem = "manifest belongs to another backup"
        infos.append(
            BackupInfo(
                deploy_id, manifest.created, manifest.release, manifest.archive_size, problem
            )
        )
    infos.sort(key=lambda info: (info.time, info.id), reverse=True)
    return infos


def prune(
    env: Environment, runner: Runner, keep: int, *, protect: Collection[str] = ()
) -> list[str]:
    """Delete this environment's usable backups beyond the newest `keep`; never one in `protect`
    (the one just made). Unusable entries are left for the operator to look at. Returns the
    removed ids."""
    if keep < 1:
        raise ConfigError(f"keep must be >= 1, got {keep}", hint="keep at least one backup")
    usable = [info for info in list_backups(env, runner) if not info.problem]
    directory = backup_dir_of(env, runner)
    removed = []
    for info in usable[keep:]:
        if info.id in protect or not is_env_backup(env.name, info.id):
            continue
        # Archive first: an interruption leaves a manifest saying "archive missing", not an
        # invisible archive.
        runner.run(remove([archive_path(directory, info.id), manifest_path(directory, info.id)]))
        removed.append(info.id)
    return removed


# --- what is running (for `invoke backup`) --------------------------------------------------------


def running_digests(env: Environment, runner: Runner) -> dict[str, str]:
    """{service: `repo@sha256:...`} of the project's containers (the image id when an image has
    no registry digest), probed with jitsi_ops.facts' narrow inspect templates (never the
    containers' environment, which holds the stack's passwords)."""
    containers = facts.gather(runner, facts.project_containers(env.deploy.project))
    ids = [c.id for c in containers if c.id]
    if not ids:
        return {}
    details = facts.gather(runner, facts.inspect_containers(ids))
    containers = facts.with_details(containers, details)
    image_ids = sorted({c.image_id for c in containers if c.image_id})
    images = facts.gather(runner, facts.inspect_images(image_ids)) if image_ids else []
    view = facts.HostFacts(containers=tuple(containers), images={i.id: i for i in images})
    return {c.service: ref for c in containers if c.service and (ref := view.pinned_ref(c))}


def deployed_release(env: Environment, runner: Runner) -> str | None:
    """The release in the host's state.json, or None (never deployed by jitsi-ops, or the file
    is unreadable: a backup is worth taking exactly when things look odd)."""
    try:
        state = hoststate.read_state(runner, stack_dir_of(env, runner))
    except OpsError:
        return None
    return state.release if state is not None else None
