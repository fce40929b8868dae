"""Where the testbed keeps its state, and the record of what provisioning created or started.

``provisioned.json`` in the state dir lists every process (by pid file), network namespace,
link, cgroup, mount and directory that ``up`` created; ``down`` removes exactly those.

State dir ``<repo>/.testbed/`` (removed by teardown)::

    provisioned.json                what was created/started (teardown reads only this)
    id_ed25519[.pub], authorized_keys, known_hosts, ssh_config
    sudo_password                   the sandbox's non-root deploy user's password (0600)
    registry.yml, registry/         registry config and storage; registry.pid/.log
    engine/                         dockerd.pid/.log when the engine was started by us
    sandbox/                        sshd_config, host key, sshd.pid/.log of the loopback host
    hN/                             host jvbN: sshd, dockerd (docker.sock, docker/ data root,
                                    daemon.json, key.json), registry.pid/.log

Exec roots of the namespaced engines are in /run/jitsiops-testbed/hN (short unix socket paths).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import sshhosts
from .system import TestbedError

REPO = Path(__file__).resolve().parents[2]
# Resolved: a git worktree links .testbed to the main checkout's, and the daemons' markers
# (config paths on their command lines) must be the same strings from either checkout.
STATE_DIR = (REPO / ".testbed").resolve()
RUN_DIR = Path("/run/jitsiops-testbed")
NETNS_DIR = Path("/run/netns")
_STATE_VERSION = 1


class Action(StrEnum):
    """What a provisioning step did."""

    REUSED = "reused"
    STARTED = "started"
    CREATED = "created"
    INSTALLED = "installed"
    CHECKED = "ok"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Layout:
    """Paths of one testbed (state dir, cache dir, run dir)."""

    state: Path = STATE_DIR
    run: Path = RUN_DIR

    @property
    def record(self) -> Path:
        """provisioned.json."""
        return self.state / "provisioned.json"

    @property
    def key(self) -> Path:
        """The client private key."""
        return self.state / sshhosts.CLIENT_KEY

    @property
    def authorized_keys(self) -> Path:
        """The AuthorizedKeysFile every testbed sshd reads."""
        return self.state / "authorized_keys"

    @property
    def ssh_config(self) -> Path:
        """The client ssh_config."""
        return self.state / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        """The client known_hosts."""
        return self.state / "known_hosts"

    @property
    def registry_config(self) -> Path:
        """Our own docker-registry config (the distro default asks for auth)."""
        return self.state / "registry.yml"

    @property
    def engine_dir(self) -> Path:
        """Pid file, log (and, off the default socket, data) of an engine we started."""
        return self.state / "engine"

    @staticmethod
    def cache() -> Path:
        """Cache that survives teardown and clones (base image tarball, wheels)."""
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "jitsi-ops" / "testbed"


@dataclass
class State:
    """What provisioning created or started; persisted after every change."""

    path: Path
    engine_host: str
    engine_started: bool = False
    hosts: int = 0
    processes: dict[str, dict[str, str]] = field(default_factory=dict)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # removed with everything in them
    mounts: list[str] = field(default_factory=list)  # unmounted when empty
    empty_dirs: list[str] = field(default_factory=list)  # removed only when empty
    users: list[str] = field(default_factory=list)  # removed with their home (userdel -r)
    files: list[str] = field(default_factory=list)  # single files outside the state dir

    @classmethod
    def load(cls, path: Path) -> State | None:
        """Read provisioned.json (None when there is none)."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            if data.pop("version", None) != _STATE_VERSION:
                raise ValueError("unknown format version")
            return cls(path=path, **data)
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise TestbedError(f"cannot read {path}: the testbed needs root") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise TestbedError(f"{path} is unreadable ({exc}); clean up by hand") from exc

    def save(self) -> None:
        """Write provisioned.json atomically."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": _STATE_VERSION, **data}, indent=2) + "\n")
        tmp.replace(self.path)

    def remember(self, kind: str, name: str) -> None:
        """Record a namespace, link, cgroup, directory, user or file we created."""
        items: list[str] = getattr(self, kind)
        if name not in items:
            items.append(name)
            self.save()

    def remember_process(self, name: str, spec: dict[str, str]) -> None:
        """Record a daemon before it is started, so a failed run can still be torn down."""
        self.processes[name] = spec
        self.save()


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """One provision/teardown at a time (pytest-xdist workers may race for it)."""
    while True:
        layout.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(layout.state, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A teardown we waited for may have deleted the directory we locked: lock the new one.
        if _same_file(fd, layout.state):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
