"""Putting hosts back after a deploy failed, was rejected by its gate or was interrupted.

Each changed host goes back one of two ways, chosen by what the run changed there:

- its previous stack files and image references (a Snapshot taken in the plan phase), then
  `up -d`: enough when only the `.env`, the compose files and the images changed;
- this deploy's own backup, restored in place (jitsi_ops.restore.restore_held, validated like
  any restore): when migrations ran, CONFIG changed too (new `storage/` and `tmp/` dirs, the
  stable-11146 `chown -R 1000:1000` of old data), and only the archive holds the owners, modes
  and files from before.

The local env/NAME files the migrate phase rewrote are put back byte for byte (LocalFiles).

A rollback is shielded from Ctrl-C (`shielded`): the first interrupt while it runs is noted and
ignored, since stopping halfway would leave the host worse than either release; a second one
abandons it, and the caller then says so.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from jitsi_ops import commands, facts, localfiles, stack
from jitsi_ops.envfile import parse_env
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment

UP_TIMEOUT = 600.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Snapshot:
    """What runs before the change: enough to put it back without the backup archive."""

    files: Mapping[str, bytes]  # .env and compose files of the stack dir
    image_ids: Mapping[str, str]  # image reference -> image id the containers run
    release: str | None
    # The files the running containers were created from (their config_files label), for a
    # stack jitsi-ops did not render (an adopted one has no COMPOSE_FILE in its .env).
    running_files: tuple[str, ...] = ()

    @property
    def compose_names(self) -> list[str]:
        """The previous compose set, in -f order."""
        env_text = self.files.get(".env", b"").decode()
        listed = parse_env(env_text, "host .env").get("COMPOSE_FILE", "") if env_text else ""
        names = [n.rsplit("/", 1)[-1] for n in listed.split(":") if n]
        if names:
            return names
        if self.running_files:
            return list(self.running_files)
        # What `docker compose up` in that directory reads by default: not every overlay an
        # unpacked release archive holds.
        default = [n for n in facts.DEFAULT_COMPOSE_FILES if n in self.files][:1]
        default += [n for n in facts.DEFAULT_OVERRIDE_FILES if n in self.files][:1]
        return default or sorted(n for n in self.files if n.endswith(".yml"))


def rollback_to(env: Environment, runner: Runner, previous: Snapshot) -> str:
    """Put the previous stack files and image references back and converge."""
    stack_dir = env.deploy.stack_dir
    if not previous.files:
        # First deploy: there is nothing to go back to but an empty host.
        runner.run(commands.compose_down(stack.target_for(env)), timeout=UP_TIMEOUT)
        return "first deploy: stack removed"
    current_names = [n for n in stack.stack_files(env) if n.endswith(".yml")]
    for name, data in previous.files.items():
        runner.put(data, posixpath.join(stack_dir, name), 0o600 if name == ".env" else 0o644)
    extra = [n for n in current_names if n not in previous.files]
    if extra:
        runner.run(["rm", "-f", "--", *(posixpath.join(stack_dir, n) for n in extra)])
    # Tags can move; the image ids the old containers ran are what comes back.
    for ref, image_id in sorted(previous.image_ids.items()):
        runner.run(["docker", "tag", image_id, ref], check=False)
    target = commands.ComposeTarget(stack_dir, env.deploy.project, tuple(previous.compose_names))
    runner.run(commands.compose_up(target), timeout=UP_TIMEOUT)
    return f"restored {previous.release or 'previous stack'}"


@dataclass(frozen=True)
class HostUndo:
    """One changed host and how to put it back."""

    label: str  # "" for the main host
    env: Environment  # the host's view of the environment (the target one)
    runner: Runner
    previous: Snapshot
    # This deploy's backup on that host, restored in place when CONFIG changed; None: the
    # previous files and images are enough (or there is no backup: a first deploy).
    backup_id: str | None = None


# The commands a deploy runs in the stack dir and CONFIG (argv[0] basenames; the Compose plugin
# is its own process). Anything else that mentions those paths (an editor, `tail -f`) is not ours.
OWN_COMMANDS = frozenset(
    {"docker", "docker-compose", "chown", "chmod", "find", "mkdir", "rm", "tar", "xargs"}
)
SETTLE_TIMEOUT = 120.0


def process_list() -> list[str]:
    """Every process with its whole command line (procps `ps`, no width limit)."""
    return ["ps", "-e", "-ww", "-o", "pid=,args="]


def busy_with(ps_output: str, paths: Sequence[str]) -> list[str]:
    """The command lines in `ps -o pid=,args=` output of a deploy's own commands working on or
    below `paths` (pure)."""
    roots = [p.rstrip("/") for p in paths if p.strip("/")]
    found = []
    for line in ps_output.splitlines():
        parts = line.split()
        if len(parts) < 2 or posixpath.basename(parts[1]) not in OWN_COMMANDS:
            continue
        if any(t == r or t.startswith(r + "/") for t in parts[2:] for r in roots):
            found.append(" ".join(parts[1:]))
    return found


def settle(
    runner: Runner,
    paths: Sequence[str],
    timeout: float = SETTLE_TIMEOUT,
    poll: float = 0.5,
    say: Say | None = None,
) -> str:
    """Wait until no command of the interrupted (or timed-out) run still works on `paths` on
    the host: Ctrl-C ends the local side only, and an orphaned `docker compose up` still
    recreating containers would race the rollback's own `down`/`up`. Returns "" when the host
    is quiet, else what still runs (the rollback then goes ahead anyway and its gate judges)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = runner.run(process_list(), check=False)
        if not listed.ok:
            return ""  # no procps `ps` there: nothing to wait for that can be seen
        busy = busy_with(listed.stdout, paths)
        if not busy:
            return ""
        if time.monotonic() > deadline:
            return f"still running after {timeout:.0f}s: {busy[0][:120]}"
        if say:
            say(f"waiting for what was interrupted to end: {busy[0][:100]}")
            say = None  # once
        time.sleep(poll)


def undo_host(undo: HostUndo, say: Say | None = None) -> str:
    """Put one host back; returns a detail line. Raises OpsError when it cannot."""
    config = stack.resolve_config_dir(undo.env, undo.runner)
    prefix = f"{undo.label}: " if undo.label else ""
    said = (lambda line: say(prefix + line)) if say else None
    still = settle(undo.runner, [undo.env.deploy.stack_dir, config], say=said)
    note = f" (an earlier command was {still})" if still else ""
    if undo.backup_id is None:
        return rollback_to(undo.env, undo.runner, undo.previous) + note
    # restore imports the deploy module (its gate helpers), which imports this one.
    from jitsi_ops import restore  # noqa: PLC0415

    restored = restore.restore_held(undo.env, undo.runner, undo.backup_id, say=said)
    detail = f"restored backup {undo.backup_id} ({restored.release or 'release unknown'}"
    detail += f": CONFIG and stack dir, {len(restored.removed)} path(s) removed)"
    return detail + note


# --- the operator's env/NAME files ---------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    """One local file as it was: its bytes and mode, or None when it did not exist."""

    path: Path
    data: bytes | None
    mode: int = 0o644


@dataclass(frozen=True)
class LocalFiles:
    """The env/NAME files a migration is about to rewrite, as they were before (bytes, modes)."""

    files: tuple[LocalFile, ...] = ()

    @classmethod
    def capture(cls, paths: Sequence[Path]) -> LocalFiles:
        """Read the files now (before anything writes them)."""
        found = []
        for path in paths:
            try:
                found.append(LocalFile(path, path.read_bytes(), path.stat().st_mode & 0o7777))
            except FileNotFoundError:
                found.append(LocalFile(path, None))
        return cls(tuple(found))

    def changed(self) -> list[LocalFile]:
        """The files whose bytes or mode differ from what was captured."""
        out = []
        for item in self.files:
            try:
                now: tuple[bytes, int] | None = (
                    item.path.read_bytes(),
                    item.path.stat().st_mode & 0o7777,
                )
            except FileNotFoundError:
                now = None
            if now != (None if item.data is None else (item.data, item.mode)):
                out.append(item)
        return out

    def put_back(self) -> list[Path]:
        """Restore every changed file atomically (a file that did not exist is removed);
        returns the paths written."""
        written = []
        for item in self.changed():
            if item.data is None:
                item.path.unlink(missing_ok=True)
            else:
                localfiles.write_atomic_bytes(item.path, item.data, item.mode)
            written.append(item.path)
        return written


# --- Ctrl-C while rolling back -------------------------------------------------------------------

SHIELD_NOTICE = (
    b"\njitsi-ops: still rolling back (stopping now would leave the host between both "
    b"releases); press Ctrl-C again to abandon the rollback\n"
)


@contextmanager
def shielded() -> Iterator[None]:
    """Ignore the first SIGINT while the block runs (with a notice on stderr); the second one
    raises KeyboardInterrupt as usual. Only the main thread can handle signals: elsewhere this
    changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        nonlocal seen
        seen += 1
        if seen > 1:
            raise KeyboardInterrupt
        # os.write: no lock a live progress line may hold while the handler runs.
        with contextlib.suppress(OSError):
            os.write(2, SHIELD_NOTICE)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
