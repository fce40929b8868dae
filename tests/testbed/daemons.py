"""Background daemons of the testbed (dockerd, docker-registry, sshd), managed by pid file.

A daemon is reused while its pid file names a live process of the right executable whose
command line carries one of our paths; it is never looked up or signalled by name.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .state import NETNS_DIR, Action, State
from .system import (
    Log,
    TestbedError,
    child_running,
    find_exe,
    log_tail,
    running_pid,
    start_background,
    stop_process,
    wait_until,
)


@dataclass(frozen=True)
class Daemon:
    """A background process the testbed starts, stops and checks by pid file."""

    name: str
    exe: str
    argv: tuple[str, ...]
    pidfile: Path
    log: Path
    marker: str  # a path of ours on its command line: proves a pid is still ours
    netns: str | None = None
    own_pidfile: bool = False  # dockerd writes its own (and refuses a pre-written one)
    env: Mapping[str, str] | None = None

    def command(self) -> list[str]:
        """argv, entered into the network namespace when there is one."""
        if self.netns is None:
            return list(self.argv)
        # nsenter rather than `ip netns exec`: the latter remounts /sys, and dockerd then
        # fails with "Devices cgroup isn't mounted".
        return [find_exe("nsenter"), f"--net={NETNS_DIR / self.netns}", *self.argv]

    def running(self) -> int | None:
        """Its pid if it is alive and ours."""
        return running_pid(self.pidfile, self.exe, self.marker)

    def spec(self) -> dict[str, str]:
        """What provisioned.json keeps to find and stop it later."""
        return {"exe": self.exe, "pidfile": str(self.pidfile), "marker": self.marker}


def ensure_daemon(
    daemon: Daemon,
    ready: Callable[[], bool],
    state: State,
    *,
    timeout: float = 30,
    restart: bool = False,
) -> Action:
    """Reuse a live daemon, or (re)start it and wait until ``ready()``."""
    pid = daemon.running()
    if pid is not None and restart:
        stop_process(daemon.pidfile, daemon.exe, daemon.marker)
        pid = None
    if pid is not None:
        if wait_until(ready, timeout):
            return Action.REUSED
        raise TestbedError(f"{daemon.name} (pid {pid}) runs but does not answer; see {daemon.log}")
    state.remember_process(daemon.name, daemon.spec())
    daemon.pidfile.unlink(missing_ok=True)
    pid = start_background(
        daemon.command(), daemon.log, None if daemon.own_pidfile else daemon.pidfile, daemon.env
    )
    if not wait_until(lambda: ready() or not child_running(pid), timeout) or not ready():
        if child_running(pid):
            os.kill(pid, signal.SIGTERM)  # ours: started a moment ago, never became ready
            wait_until(lambda: not child_running(pid), 10)
        raise TestbedError(f"{daemon.name} did not come up: {log_tail(daemon.log)}")
    return Action.STARTED


def stop_daemon(name: str, spec: Mapping[str, str], log: Log) -> None:
    """Stop one recorded daemon by its pid file (never by name)."""
    # dockerd stops its containers and its own containerd first: give it time.
    timeout = 60 if spec["exe"] == "dockerd" else 15
    if stop_process(Path(spec["pidfile"]), spec["exe"], spec["marker"], timeout=timeout):
        log(f"  stopped {name}")
