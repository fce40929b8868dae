"""Small process, command and readiness helpers shared by the testbed modules.

Everything here runs argv lists (never shell strings) and turns expected failures into a
one-line :class:`TestbedError`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

# sshd, dockerd and ip live in sbin, which a non-login root shell may not have on PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

Log = Callable[[str], None]

# Children started by this process, kept so they can be reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class TestbedError(Exception):
    """An expected testbed failure; the CLI prints it as one line without a traceback."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name


def find_exe(name: str) -> str:
    """Absolute path of an executable on PATH or in the sbin directories."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which(name, path=path)
    if found is None:
        raise TestbedError(f"{name} not found on PATH or in {', '.join(_SBIN_DIRS)}")
    return found


def has_exe(name: str) -> bool:
    """Whether an executable is available (see :func:`find_exe`)."""
    try:
        find_exe(name)
    except TestbedError:
        return False
    return True


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output; raise TestbedError when it fails.

    `stdin` is a file descriptor to read from (e.g. a pipe from another process).
    """
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=stdin,
            check=False,
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"{argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"`{shlex.join(argv)}` timed out after {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        detail = last_line(done.stderr) or last_line(done.stdout) or "no output"
        raise TestbedError(f"`{shlex.join(argv)}` failed (exit {done.returncode}): {detail}")
    return done


def succeeds(argv: Sequence[str], timeout: float = 30) -> bool:
    """Whether a command exits 0 (a missing program or a timeout counts as failure)."""
    try:
        return run(argv, check=False, timeout=timeout).returncode == 0
    except TestbedError:
        return False


def last_line(text: str) -> str:
    """The last non-empty line of a command's output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log file joined into one line, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) if tail else f"(empty log {path})"


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write a text file only when its content differs; return whether it changed."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return True


def start_background(
    argv: Sequence[str],
    log: Path,
    pidfile: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a long-running daemon detached from our session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # A new session: the daemon outlives the CLI and ignores a Ctrl-C sent to our terminal.
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    _CHILDREN[proc.pid] = proc
    if pidfile is not None:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def child_running(pid: int) -> bool:
    """Whether a daemon this process started is still running (reaps it when it exited)."""
    child = _CHILDREN.get(pid)
    return child is not None and child.poll() is None


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in a pid file, or None."""
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_matches(pid: int, exe: str, marker: str) -> bool:
    """Whether ``pid`` is a live (non-zombie) ``exe`` whose command line mentions ``marker``.

    The marker (a path of ours) guards against pid reuse: we never signal a stranger.
    """
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        exe_name = Path(os.readlink(proc / "exe")).name
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"} and exe_name == exe and marker in cmdline


def running_pid(pidfile: Path, exe: str, marker: str) -> int | None:
    """The pid from ``pidfile`` if that process is alive and ours, else None."""
    pid = read_pid(pidfile)
    if pid is not None and process_matches(pid, exe, marker):
        return pid
    return None


def stop_process(pidfile: Path, exe: str, marker: str, timeout: float = 15) -> bool:
    """Stop the process recorded in ``pidfile`` (TERM, then KILL); return whether it ran."""
    pid = running_pid(pidfile, exe, marker)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not process_matches(pid, exe, marker), timeout):
        os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not process_matches(pid, exe, marker), 5):
            raise TestbedError(f"{exe} (pid {pid}) survived SIGKILL")
    return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2) -> bool:
    """Whether an HTTP GET answers 200, ignoring any proxy settings of the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def docker_ping(socket_path: Path, timeout: float = 2) -> bool:
    """Whether a Docker Engine answers ``/_ping`` on a unix socket (no CLI round trip)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def mounts_under(roots: Sequence[Path]) -> list[Path]:
    """Mount points at or below any of ``roots``, deepest first (the order to unmount them)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = Path(_unescape_mount(line.split()[4]))
            if any(point == root or root in point.parents for root in roots):
                found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount(points: list[Path], log: Log) -> None:
    """Unmount leftovers (an engine that was killed leaves its overlay mounts behind)."""
    for point in points:
        if not succeeds(["umount", str(point)]):
            run(["umount", "-l", str(point)], check=False)
        log(f"  unmounted {point}")


def is_mount_point(path: Path) -> bool:
    """Whether ``path`` is a mount point (bind mounts of the same filesystem included)."""
    return path in mounts_under([path])


def _unescape_mount(field: str) -> str:
    """Decode the octal escapes (``\\040`` for a space) used in /proc mount tables."""
    return field.encode().decode("unicode_escape")
