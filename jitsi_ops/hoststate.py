"""What jitsi-ops keeps about a stack: the host's deploy lock, state.json and audit log, plus the
operator's local history (design.md section 6).

Everything on the host goes through a Runner. The lock is a directory that appears complete: one
remote command builds it (owner.json included) under a private name and renames it into place,
and rename(2) of a directory onto a non-empty one fails, so of two concurrent runs exactly one
gets it, and nobody ever sees a lock without its owner. Records written here
never hold a secret: keys that look like secrets are refused and strings are scrubbed of known
secret values before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import secrets as _random
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jitsi_ops import __version__
from jitsi_ops.errors import LockHeld, OpsError, RemoteCommandError
from jitsi_ops.runner import Runner
from jitsi_ops.secrets import is_secret_key, scrub
from jitsi_ops.settings import local_user

OPS_DIR = ".jitsi-ops"
LOCK_DIR = "lock"
OWNER_FILE = "owner.json"
STATE_FILE = "state.json"
AUDIT_FILE = "audit.log"
HISTORY_FILE = "history.jsonl"

_DEPLOY_ID_RE = re.compile(r"(?P<env>.+)-(?P<time>\d{8}T\d{6}Z)-(?P<token>[0-9a-f]{6})")

# --- identifiers and paths -------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time in UTC (one place, so tests can compare formats)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with a `Z` and whole seconds, e.g. 2026-11-26T06:33:57Z."""
    return (moment or utc_now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_deploy_id(env_name: str, *, now: datetime | None = None, token: str | None = None) -> str:
    """A new deploy id `<env>-YYYYmmddTHHMMSSZ-<6 hex>`: sorts by time within an environment.

    The random suffix keeps two runs started in the same second apart.
    """
    stamp = (now or utc_now()).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = token if token is not None else _random.token_hex(3)
    if not re.fullmatch(r"[0-9a-f]{6}", suffix):
        raise ValueError("deploy id token must be 6 lowercase hex digits")
    return f"{env_name}-{stamp}-{suffix}"


def env_of_deploy_id(deploy_id: str) -> str | None:
    """The environment name a deploy id was made for, or None if it is not one of ours."""
    match = _DEPLOY_ID_RE.fullmatch(deploy_id)
    return match["env"] if match else None


def _check_stack_dir(stack_dir: str) -> str:
    # Paths below are removed with `rm -rf`; an empty or relative stack dir would aim it at the
    # SSH user's home, so refuse anything that is not absolute.
    if not stack_dir.startswith("/") or stack_dir.rstrip("/") == "":
        raise ValueError(f"stack dir must be an absolute path below /, got {stack_dir!r}")
    return stack_dir.rstrip("/")


def ops_dir(stack_dir: str) -> str:
    """<stack_dir>/.jitsi-ops."""
    return posixpath.join(_check_stack_dir(stack_dir), OPS_DIR)


def lock_dir(stack_dir: str) -> str:
    """<stack_dir>/.jitsi-ops/lock."""
    return posixpath.join(ops_dir(stack_dir), LOCK_DIR)


def state_path(stack_dir: str) -> str:
    """<stack_dir>/.jitsi-ops/state.json."""
    return posixpath.join(ops_dir(stack_dir), STATE_FILE)


def audit_path(stack_dir: str) -> str:
    """<stack_dir>/.jitsi-ops/audit.log."""
    return posixpath.join(ops_dir(stack_dir), AUDIT_FILE)


def history_path(root: Path) -> Path:
    """<repo>/.jitsi-ops/history.jsonl on the operator's machine."""
    return root / OPS_DIR / HISTORY_FILE


def _ensure_ops_dir(runner: Runner, stack_dir: str) -> None:
    # 0750: state and audit hold no secrets, but there is no reason for other users to read them.
    # Both directories are named because `-m` applies only to named ones: on a first deploy the
    # lock creates the stack dir, and it must get the same 0750 that apply would give it.
    # Existing directories keep their mode.
    runner.run(["mkdir", "-p", "-m", "0750", "--", _check_stack_dir(stack_dir), ops_dir(stack_dir)])


# --- records without secrets ------------------------------------------------------------------


def sanitize_record(
    record: Mapping[str, Any], secret_values: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A JSON-ready deep copy of `record` that cannot carry a secret.

    A key that names a secret (checked case-insensitively with is_secret_key) is a programming
    error and raises ValueError naming the key; every string is scrubbed of the values of the
    secret keys in `secret_values` (normally the environment's values), so a secret that leaked
    into an error message is masked before it reaches a log.
    """
    values = dict(secret_values or {})

    def clean(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = str(key)
                if is_secret_key(name.upper()):
                    raise ValueError(
                        f"record field {where}{name} names a secret; refusing to write it"
                    )
                out[name] = clean(item, f"{where}{name}.")
            return out
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value) if isinstance(value, set | frozenset) else value
            return [clean(item, f"{where}{index}.") for index, item in enumerate(items)]
        if isinstance(value, str):
            return scrub(value, values) if values else value
        if value is None or isinstance(value, bool | int | float):
            return value
        # Paths, enums, datetimes: their text form, scrubbed like any other string.
        return clean(str(value), where)

    result: dict[str, Any] = clean(record, "")
    return result


def _json_line(record: Mapping[str, Any]) -> str:
    # One line per record: ensure_ascii keeps control characters escaped, so no embedded newline
    # can ever split a record.
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n"


# --- the lock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """Who holds a stack's deploy lock: written to lock/owner.json by the holder."""

    owner: str
    host: str
    pid: int
    time: str
    message: str
    deploy_id: str
    # Set only for a lock whose owner cannot be read (see read_lock); never written to a host.
    problem: str = ""

    @classmethod
    def for_this_process(
        cls, deploy_id: str, message: str = "", *, now: datetime | None = None
    ) -> LockInfo:
        """A LockInfo describing this jitsi-ops process (local user, hostname, pid, now)."""
        return cls(
            owner=local_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            time=iso_utc(now),
            message=message,
            deploy_id=deploy_id,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockInfo:
        """Read owner.json tolerantly: a lock written by another version must still be shown."""
        try:
            pid = int(data.get("pid", 0))
        except (TypeError, ValueError):
            pid = 0
        return cls(
            owner=str(data.get("owner", "unknown")),
            host=str(data.get("host", "unknown")),
            pid=pid,
            time=str(data.get("time", "")),
            message=str(data.get("message", "")),
            deploy_id=str(data.get("deploy_id", "")),
        )

    def as_dict(self) -> dict[str, Any]:
        """The owner.json shape (CONVENTIONS: owner, host, pid, time, message, deploy_id), plus
        `problem` for a lock whose owner cannot be read."""
        data = asdict(self)
        if not self.problem:
            del data["problem"]
        return data

    def describe(self) -> str:
        """One line for humans: who, where, since when, which deploy, why."""
        if self.problem:
            return f"nobody known: {self.problem}"
        text = f"{self.owner}@{self.host} (pid {self.pid}) since {self.time or 'unknown time'}"
        if self.deploy_id:
            text += f", deploy {self.deploy_id}"
        if self.message:
            text += f": {self.message}"
        return text


def _ownerless(problem: str) -> LockInfo:
    return LockInfo("unknown", "unknown", 0, "", "", "", problem=problem)


# This version never shows a lock without its owner; an older one created the directory first
# and wrote owner.json a round trip later, and a Ctrl-C in between left this behind.
_NO_OWNER = _ownerless(
    "the lock directory has no owner.json (left by an interrupted run of an older jitsi-ops)"
)
_UNREADABLE_OWNER = _ownerless("the lock's owner.json is not readable JSON")


def unlock_command(env_name: str) -> str:
    """The command that breaks an environment's lock."""
    return f"invoke unlock --env {env_name or 'NAME'}"


def lock_hint(holder: LockInfo, env_name: str) -> str:
    """What to do about a lock: wait for its holder, or break it when nobody can own it."""
    unlock = unlock_command(env_name)
    if holder.problem:
        return (
            f"no run is recorded as holding it: if no jitsi-ops run is working on this host "
            f"right now, break it with `{unlock}`"
        )
    # Only a holder on this very machine can be checked; a remote pid means nothing here.
    if holder.pid > 0 and holder.host == socket.gethostname() and not _pid_alive(holder.pid):
        return f"the holding process (pid {holder.pid} on this machine) is gone: break the stale lock with `{unlock}`"
    return f"wait for that run to finish; if it is gone, break the lock with `{unlock}`"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _held_error(runner: Runner, stack_dir: str, holder: LockInfo, env_name: str) -> LockHeld:
    return LockHeld(
        f"{runner.host}: {stack_dir} is locked by {holder.describe()}",
        hint=lock_hint(holder, env_name),
    )


def read_lock(runner: Runner, stack_dir: str) -> LockInfo | None:
    """The current holder of the lock, or None when the stack is not locked.

    A lock whose owner cannot be read is returned with `problem` set (it still blocks).
    """
    directory = lock_dir(stack_dir)
    try:
        data = json.loads(runner.get(posixpath.join(directory, OWNER_FILE)))
    except FileNotFoundError:
        data = None
    except ValueError:  # corrupt owner.json (JSONDecodeError and UnicodeDecodeError)
        return _UNREADABLE_OWNER
    if isinstance(data, dict):
        return LockInfo.from_dict(data)
    if data is not None:
        return _UNREADABLE_OWNER
    if runner.run(["test", "-e", directory], check=False).ok:
        return _NO_OWNER
    return None


# Exit status of the lock script when the lock exists already (EX_TEMPFAIL: try again later).
LOCK_HELD_EXIT = 75

# One remote step: build the lock complete (owner.json inside) under a private name, then rename
# it into place. `mv -T` is rename(2), which fails onto a non-empty directory; the `-e` check
# first keeps an empty lock directory (an older version's, maybe half-taken) from being
# replaced, since rename onto an empty directory would succeed. Interrupting the client does
# not stop the script halfway, and whatever fails removes the private directory. Positional
# parameters only: no path or value is ever interpolated into the script.
_LOCK_SCRIPT = (
    'umask 077; [ -e "$1" ] && exit 75; mkdir -m 0700 -- "$2" || exit 1; '
    'if printf %s "$3" >"$2/owner.json" && mv -T -- "$2" "$1"; then exit 0; fi; '
    'rm -rf -- "$2"; [ -e "$1" ] && exit 75; exit 1'
)


def lock_argv(stack_dir: str, owner_json: str, token: str) -> list[str]:
    """The one command that takes the lock with `owner_json` in it (private name: `token`)."""
    staging = posixpath.join(ops_dir(stack_dir), f".{LOCK_DIR}.{token}")
    return ["sh", "-c", _LOCK_SCRIPT, "sh", lock_dir(stack_dir), staging, owner_json]


def acquire_lock(runner: Runner, stack_dir: str, info: LockInfo) -> LockInfo:
    """Take the stack's lock for `info` or raise LockHeld naming the holder.

    Taking it is one remote command (see _LOCK_SCRIPT). When that command's answer never
    arrives (Ctrl-C, a dropped connection) the lock may be ours: it is given back before the
    error goes on, so an interrupted run leaves no lock behind.
    """
    _ensure_ops_dir(runner, stack_dir)
    owner = _json_line(sanitize_record(info.as_dict()))
    argv = lock_argv(stack_dir, owner, _random.token_hex(6))
    try:
        taken = runner.run(argv, check=False)
    except BaseException:
        with contextlib.suppress(OpsError, OSError):
            release_lock(runner, stack_dir, info.deploy_id)
        raise
    if taken.exit_code == LOCK_HELD_EXIT:
        holder = read_lock(runner, stack_dir) or _NO_OWNER
        raise _held_error(runner, stack_dir, holder, env_of_deploy_id(info.deploy_id) or "")
    if not taken.ok:
        raise RemoteCommandError(
            ["mkdir", lock_dir(stack_dir)],  # what it amounts to; the script is noise
            taken.exit_code,
            taken.stderr,
            hint="check that the deploy user may write to the stack dir",
        )
    return info


def release_lock(runner: Runner, stack_dir: str, deploy_id: str) -> bool:
    """Remove the lock if `deploy_id` holds it; True when it was released.

    A lock held by another run (or one whose owner cannot be read) is left alone: releasing
    someone else's lock is what `break_lock` (with the operator's confirmation) is for.
    """
    holder = read_lock(runner, stack_dir)
    if holder is None or holder.deploy_id != deploy_id or not deploy_id:
        return False
    # Between this read and the rm, only `break_lock` plus a new acquire could swap the
    # holder: both need an operator, so the window is accepted rather than paid for with a
    # remote script.
    runner.run(["rm", "-rf", "--", lock_dir(stack_dir)])
    return True


def break_lock(runner: Runner, stack_dir: str) -> LockInfo | None:
    """Remove the lock whoever holds it; returns the holder that was removed (None if unlocked).

    The caller asks the operator for confirmation first (`invoke unlock`).
    """
    holder = read_lock(runner, stack_dir)
    if holder is None:
        return None
    runner.run(["rm", "-rf", "--", lock_dir(stack_dir)])
    return holder


@contextmanager
def holding_lock(runner: Runner, stack_dir: str, info: LockInfo) -> Iterator[LockInfo]:
    """Hold the lock for a `with` block; it is released on success, on error and on Ctrl-C."""
    acquire_lock(runner, stack_dir, info)
    try:
        yield info
    finally:
        release_lock(runner, stack_dir, info.deploy_id)


# --- state.json -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployState:
    """<stack_dir>/.jitsi-ops/state.json: what the last successful deploy left running.

    `images` maps service -> the image reference as configured (tag); `digests` maps service ->
    the pinned reference (`repo@sha256:...`, or the image id when the image has no repo digest),
    which is what a rollback restores. `env_sha256` identifies the rendered `.env` without
    revealing any of its values.
    """

    env: str
    release: str | None
    deploy_id: str
    time: str
    project: str = ""
    compose_files: tuple[str, ...] = ()
    env_sha256: str = ""
    images: Mapping[str, str] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)
    jitsi_ops_version: str = __version__

    def as_dict(self) -> dict[str, Any]:
        """The state.json shape."""
        return {
            "env": self.env,
            "release": self.release,
            "deploy_id": self.deploy_id,
            "time": self.time,
            "project": self.project,
            "compose_files": list(self.compose_files),
            "env_sha256": self.env_sha256,
            "images": dict(sorted(self.images.items())),
            "digests": dict(sorted(self.digests.items())),
            "jitsi_ops_version": self.jitsi_ops_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeployState:
        """Parse state.json written by this or an older version (missing fields get defaults)."""

        def str_map(raw: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

        release = data.get("release")
        files = data.get("compose_files")
        return cls(
            env=str(data.get("env", "")),
            release=str(release) if release else None,
            deploy_id=str(data.get("deploy_id", "")),
            time=str(data.get("time", "")),
            project=str(data.get("project", "")),
            compose_files=tuple(str(f) for f in files) if isinstance(files, list) else (),
            env_sha256=str(data.get("env_sha256", "")),
            images=str_map(data.get("images")),
            digests=str_map(data.get("digests")),
            jitsi_ops_version=str(data.get("jitsi_ops_version", "")),
        )


def read_state(runner: Runner, stack_dir: str) -> DeployState | None:
    """The host's state.json, or None before the first deploy."""
    try:
        raw = runner.get(state_path(stack_dir))
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise OpsError(
            f"{runner.host}: {state_path(stack_dir)} is not valid JSON",
            hint="inspect the file; the next successful deploy rewrites it",
        )
    return DeployState.from_dict(data)


def write_state(runner: Runner, stack_dir: str, state: DeployState) -> None:
    """Write state.json atomically (mode 0640)."""
    _ensure_ops_dir(runner, stack_dir)
    text = json.dumps(sanitize_record(state.as_dict()), indent=2, sort_keys=True) + "\n"
    runner.put(text.encode(), state_path(stack_dir), 0o640)


# --- audit log and local history ---------------------------------------------------------------


def _stamped(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"time": iso_utc(), **record} if "time" not in record else dict(record)


def append_audit(
    runner: Runner,
    stack_dir: str,
    record: Mapping[str, Any],
    *,
    secret_values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Append one JSON line to the host's audit.log; returns the record as written.

    `tee -a` opens with O_APPEND and writes a line this short in one write(2), so concurrent
    appends do not interleave; the line travels on stdin, never on a command line.
    """
    clean = sanitize_record(_stamped(record), secret_values)
    _ensure_ops_dir(runner, stack_dir)
    runner.run(["tee", "-a", "--", audit_path(stack_dir)], stdin=_json_line(clean))
    return clean


def _parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            # A torn or hand-edited line must not hide the rest of the log from `status`.
            continue
        if isinstance(item, dict):
            records.append(item)
    return records


def read_audit(runner: Runner, stack_dir: str, last: int = 20) -> list[dict[str, Any]]:
    """The last `last` records of the host's audit log, oldest first ([] when there is none)."""
    path = audit_path(stack_dir)
    result = runner.run(["tail", "-n", str(max(last, 1)), "--", path], check=False)
    if not result.ok:
        if not runner.run(["test", "-e", path], check=False).ok:
            return []
        raise RemoteCommandError(result.argv, result.exit_code, result.stderr)
    return _parse_lines(result.stdout)[-last:] if last > 0 else []


def append_history(
    local_path: Path, record: Mapping[str, Any], *, secret_values: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Append one JSON line to the local history file (creating it); returns the record written."""
    clean = sanitize_record(_stamped(record), secret_values)
    local_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_APPEND + a single write: two jitsi-ops runs from one checkout cannot interleave lines.
    # 0600: the history names hosts, users and errors; an older file made wider is tightened.
    fd = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, _json_line(clean).encode())
    finally:
        os.close(fd)
    return clean


def read_history(local_path: Path, last: int = 20) -> list[dict[str, Any]]:
    """The last `last` records of the local history, oldest first ([] when there is none)."""
    try:
        text = local_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return _parse_lines(text)[-last:] if last > 0 else []
