"""Bring the e2e testbed up and down: Docker Engine, registry, sshd hosts and namespaced hosts.

``provision()`` is idempotent: every piece is checked and reused when alive, (re)started when
not. ``teardown()`` removes only what ``provision()`` recorded in ``provisioned.json``.

The Docker Engine is whatever answers on ``$DOCKER_HOST`` (a ``unix://`` socket; default
``/var/run/docker.sock``). An engine that already answers is used and never stopped. Otherwise a
``dockerd`` is started in the background: on the default socket with Docker's default data and
exec roots (it is the machine's own engine, as the distro would run it; /var/lib/docker and
/etc/docker/key.json stay after teardown like after any engine run), on any other socket with
everything under the state dir and without touching docker0 or iptables, so it can run next to
another engine. Its pid file and log are in ``<state>/engine/``.

State layout: see :mod:`tests.testbed.state`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from . import packages, sshhosts, sudouser
from .daemons import Daemon, ensure_daemon, stop_daemon
from .netns import ensure_main_address, ensure_netns, remove_network
from .sshhosts import Host
from .state import NETNS_DIR, Action, Layout, State, locked
from .system import (
    Log,
    TestbedError,
    docker_ping,
    find_exe,
    http_ok,
    mounts_under,
    run,
    running_pid,
    succeeds,
    tcp_open,
    unmount,
    write_if_changed,
)

REGISTRY = "127.0.0.1:5000"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"
SANDBOX_PORT = 2222
STANDIN_LABEL = "org.jitsi-ops.standin=true"
MAX_EXTRA_HOSTS = 50
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


@dataclass(frozen=True)
class TestbedInfo:
    """Where the provisioned testbed is, for the e2e tests and the sandbox deploy."""

    __test__: ClassVar[bool] = False

    state_dir: Path
    ssh_config: Path
    known_hosts: Path
    key: Path
    registry: str
    hosts: tuple[str, ...]
    docker_hosts: Mapping[str, str]
    engine_preexisting: bool
    timings: Mapping[str, float] = field(default_factory=dict)
    # The sandbox's non-root deploy user (sudo with a password): its ssh_config alias and the
    # file holding its password.
    sudo_alias: str = sudouser.SUDO_ALIAS
    sudo_user: str = sudouser.SUDO_USER
    sudo_password_file: Path | None = None


@dataclass(frozen=True)
class Check:
    """One line of ``status``."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class TestbedStatus:
    """The result of ``status()``."""

    __test__: ClassVar[bool] = False

    provisioned: bool
    state_dir: Path
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        """Provisioned and every piece alive."""
        return self.provisioned and all(check.ok for check in self.checks)


# --------------------------------------------------------------------------- the engine


def _engine_host() -> str:
    host = os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
    if not host.startswith("unix://"):
        raise TestbedError(f"DOCKER_HOST={host!r}: the testbed needs a unix:// engine socket")
    return host


def _socket(host: str) -> Path:
    return Path(host.removeprefix("unix://"))


def engine_daemon(layout: Layout, host: str) -> Daemon:
    """The dockerd the testbed starts when no engine answers on ``host``."""
    pidfile = layout.engine_dir / "dockerd.pid"
    argv = [find_exe("dockerd"), "-H", host, "--pidfile", str(pidfile)]
    if host != DEFAULT_ENGINE:
        # Next to another engine in the same network namespace: its own everything, and
        # hands off docker0 and iptables (which the other engine owns).
        argv += [
            "--data-root", str(layout.engine_dir / "data"),
            "--exec-root", str(layout.run / "engine"),
            "--config-file", str(layout.engine_dir / "daemon.json"),
            "--cgroup-parent", "jitsiops-engine",
            "--bridge", "none",
            "--iptables=false",
        ]  # fmt: skip
    return Daemon(
        name="dockerd",
        exe="dockerd",
        argv=tuple(argv),
        pidfile=pidfile,
        log=layout.engine_dir / "dockerd.log",
        marker=str(pidfile),
        own_pidfile=True,
    )


def _write_daemon_json(directory: Path) -> None:
    """daemon.json of an engine we run next to another one.

    Our own file keeps the machine's /etc/docker/daemon.json out. Docker 20.10 derives the
    engine ID from a key file (only settable here, there is no flag); the default
    /etc/docker/key.json would give every engine on the machine the same ID.
    """
    config = {"deprecated-key-path": str(directory / "key.json")}
    write_if_changed(directory / "daemon.json", json.dumps(config, indent=2) + "\n")


def ensure_engine(layout: Layout, state: State) -> Action:
    """Use the engine answering on the socket, or start one."""
    sock = _socket(state.engine_host)
    daemon = engine_daemon(layout, state.engine_host)
    if docker_ping(sock) and (not state.engine_started or daemon.running() is not None):
        return Action.REUSED
    if docker_ping(sock):
        # Ours died and another engine took the socket: that one is not ours to stop.
        state.engine_started = False
        state.save()
        return Action.REUSED
    _check_socket_path(sock)
    layout.engine_dir.mkdir(parents=True, exist_ok=True)
    if state.engine_host != DEFAULT_ENGINE:
        _write_daemon_json(layout.engine_dir)
        _make_run_dir(layout, state)
        state.remember("cgroups", "jitsiops-engine")
    state.engine_started = True
    return ensure_daemon(daemon, lambda: docker_ping(sock), state, timeout=60)


def _check_socket_path(sock: Path) -> None:
    if len(os.fsencode(sock)) > _UNIX_PATH_MAX:
        raise TestbedError(f"socket path too long for a unix socket: {sock} (move the clone)")


# Where env/sandbox keeps its stack, CONFIG and backups on the sandbox host (this machine).
SANDBOX_DATA = Path("/srv/jitsi-ops-sandbox")
SANDBOX_PROJECT_LABEL = "com.docker.compose.project=jitsi-sandbox"


def _make_run_dir(layout: Layout, state: State) -> None:
    if not layout.run.exists():
        layout.run.mkdir(mode=0o700, parents=True)
        state.remember("dirs", str(layout.run))
    # Deploys to the sandbox create this; teardown removes it with the rest.
    if not SANDBOX_DATA.exists():
        state.remember("dirs", str(SANDBOX_DATA))


# --------------------------------------------------------------------------- the registry


def render_registry_config(storage: Path) -> str:
    """docker-registry (distribution 2.8) config: loopback only, no auth, deletes allowed."""
    # JSON strings are valid YAML scalars and quote any path safely.
    return "\n".join(
        [
            "# registry of the jitsi-ops testbed; written by tests/testbed",
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {json.dumps(str(storage))}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {REGISTRY}",
            "",
        ]
    )


def registry_daemon(layout: Layout, directory: Path, netns: str | None) -> Daemon:
    """A docker-registry process (in the root or a host's network namespace)."""
    # REGISTRY_* variables would override the config file: never inherit them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
    pidfile = directory / "registry.pid"
    return Daemon(
        name="registry" if netns is None else f"registry-{netns}",
        exe="docker-registry",
        argv=(find_exe("docker-registry"), "serve", str(layout.registry_config)),
        pidfile=pidfile,
        log=directory / "registry.log",
        marker=str(layout.registry_config),
        netns=netns,
        env=env,
    )


# Runs inside a namespace: a bare socket keeps interpreter start-up (the warm path) short.
_NS_HTTP_PROBE = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2)\n"
    "s.sendall(b'GET /v2/ HTTP/1.0\\r\\n\\r\\n')\n"
    "sys.exit(0 if s.recv(64).split(b' ')[1:2] == [b'200'] else 1)\n"
)


def _registry_ready(netns: str | None) -> Callable[[], bool]:
    if netns is None:
        return lambda: http_ok(f"http://{REGISTRY}/v2/")
    port = REGISTRY.rsplit(":", 1)[1]
    probe = [sys.executable, "-I", "-S", "-c", _NS_HTTP_PROBE, port]
    argv = [find_exe("nsenter"), f"--net={NETNS_DIR / netns}", *probe]
    return lambda: succeeds(argv, timeout=5)


def ensure_registry(layout: Layout, state: State, *, config_changed: bool) -> Action:
    """The registry on 127.0.0.1:5000 of the root network namespace."""
    daemon = registry_daemon(layout, layout.state, None)
    if daemon.running() is None and tcp_open("127.0.0.1", 5000):
        raise TestbedError(f"{REGISTRY} is already taken by a process the testbed did not start")
    return ensure_daemon(daemon, _registry_ready(None), state, restart=config_changed)


# --------------------------------------------------------------------------- ssh hosts


def sandbox_host(layout: Layout, engine_host: str) -> Host:
    """The loopback host the sandbox environment deploys to."""
    return Host("sandbox", "127.0.0.1", SANDBOX_PORT, layout.state / "sandbox", engine_host)


def extra_host(layout: Layout, n: int) -> Host:
    """Extra host N: network namespace jitsiops-hN, address 10.231.N.2, its own engine."""
    directory = layout.state / f"h{n}"
    return Host(
        alias=f"jvb{n}",
        address=f"10.231.{n}.2",
        port=22,
        directory=directory,
        docker_host=f"unix://{directory / 'docker.sock'}",
        netns=f"jitsiops-h{n}",
    )


def ensure_keys(layout: Layout) -> Action:
    """The client key pair and the authorized_keys every sshd reads."""
    created = sshhosts.ensure_key(layout.key, "jitsi-ops-testbed-client")
    public = layout.key.with_suffix(".pub").read_text()
    changed = write_if_changed(layout.authorized_keys, public, 0o600)
    return Action.CREATED if created or changed else Action.REUSED


def ensure_sshd(
    layout: Layout,
    state: State,
    host: Host,
    *,
    restart: bool = False,
    user_keys: tuple[tuple[str, Path], ...] = (),
) -> Action:
    """One sshd with its own host key; restarted when its config changed."""
    host.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    sshhosts.ensure_key(host.host_key, f"jitsi-ops-testbed-{host.alias}")
    changed = write_if_changed(
        host.sshd_config, sshhosts.render_sshd_config(host, layout.authorized_keys, user_keys)
    )
    pidfile = host.directory / "sshd.pid"
    daemon = Daemon(
        name=f"sshd-{host.alias}",
        exe="sshd",
        argv=tuple(sshhosts.sshd_argv(host)),
        pidfile=pidfile,
        log=host.directory / "sshd.log",
        marker=str(host.sshd_config),
        netns=host.netns,
    )
    if daemon.running() is None or changed:
        # sshd (and sshd -t) refuse to run without the privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sshhosts.check_sshd_config(host.sshd_config)
        if daemon.running() is None and tcp_open(host.address, host.port):
            raise TestbedError(f"{host.address}:{host.port} is taken by a process we did not start")
    return ensure_daemon(
        daemon, lambda: tcp_open(host.address, host.port), state, restart=changed or restart
    )


def write_client_files(layout: Layout, hosts: list[Host]) -> Action:
    """ssh_config and known_hosts for every host."""
    changed = write_if_changed(
        layout.known_hosts, sshhosts.render_known_hosts(hosts), 0o600
    ) | write_if_changed(
        layout.ssh_config,
        sshhosts.render_ssh_config(hosts, layout.key, layout.known_hosts),
        0o600,
    )
    return Action.CREATED if changed else Action.REUSED


# --------------------------------------------------------------------------- namespaced hosts


def host_engine_daemon(layout: Layout, host: Host) -> Daemon:
    """The namespaced host's own dockerd (own data, exec root, socket, pid file, cgroup)."""
    assert host.netns is not None
    pidfile = host.directory / "dockerd.pid"
    argv = (
        find_exe("dockerd"),
        "-H", host.docker_host,
        "--data-root", str(host.directory / "docker"),
        "--exec-root", str(layout.run / host.directory.name),
        "--pidfile", str(pidfile),
        "--cgroup-parent", host.netns,
        "--config-file", str(host.directory / "daemon.json"),
    )  # fmt: skip
    return Daemon(
        name=f"dockerd-{host.netns}",
        exe="dockerd",
        argv=argv,
        pidfile=pidfile,
        log=host.directory / "dockerd.log",
        marker=str(pidfile),
        netns=host.netns,
        own_pidfile=True,
    )


def ensure_host_engine(layout: Layout, state: State, host: Host, *, restart: bool) -> Action:
    """Start the host's own dockerd inside its namespace (bridge and iptables stay in there)."""
    assert host.netns is not None
    sock = _socket(host.docker_host)
    _check_socket_path(sock)
    _make_run_dir(layout, state)
    host.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_daemon_json(host.directory)
    state.remember("cgroups", host.netns)
    daemon = host_engine_daemon(layout, host)
    return ensure_daemon(daemon, lambda: docker_ping(sock), state, timeout=60, restart=restart)


def ensure_extra_host(
    layout: Layout,
    state: State,
    n: int,
    step: Callable[[str, Callable[[], Action]], Action],
    *,
    registry_changed: bool,
) -> Host:
    """Everything of host jvbN, one timed step per piece."""
    host = extra_host(layout, n)
    assert host.netns is not None
    fresh = step(f"{host.alias} netns", lambda: ensure_netns(state, host, n)) is Action.CREATED
    # Daemons still running in a namespace that was just re-created would be in the old one.
    step(f"{host.alias} dockerd", lambda: ensure_host_engine(layout, state, host, restart=fresh))
    registry = registry_daemon(layout, host.directory, host.netns)
    step(
        f"{host.alias} registry",
        lambda: ensure_daemon(
            registry, _registry_ready(host.netns), state, restart=fresh or registry_changed
        ),
    )
    step(f"{host.alias} sshd", lambda: ensure_sshd(layout, state, host, restart=fresh))
    return host


# --------------------------------------------------------------------------- images


def _base_image_cached(cache: Path) -> bool:
    """Whether images.py's saved base image tarball (standin-base-<suite>-<key>.tar) is cached."""
    return any(cache.glob("standin-base-*.tar"))


@contextlib.contextmanager
def _docker_host_env(host: str) -> Iterator[None]:
    """Point the image helpers' docker CLI at the testbed's engine for the duration."""
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before


def _images_module(log: Log) -> Any:
    """tests.testbed.images, or None while it does not exist yet."""
    try:
        from . import images  # noqa: PLC0415 - optional, and heavy only when building
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.images":
            raise
        log("  (tests/testbed/images.py is not there yet: no stand-in images)")
        return None
    return images


def build_images(state: State, log: Log) -> tuple[Action, dict[str, float], str]:
    """Build and push the stand-in images; also say whether the base image was cached."""
    images = _images_module(log)
    if images is None:
        return Action.SKIPPED, {}, "absent"
    cache = Layout.cache()
    cached = "hit" if _base_image_cached(cache) else "miss"
    with _docker_host_env(state.engine_host):
        timings: dict[str, float] = images.build_all(cache, registry=REGISTRY, log=log)
    # build_all() counts what it had to build and push; nothing means everything was reused.
    work = timings.get("built", 0) or timings.get("pushed", 0)
    return (Action.CREATED if work else Action.REUSED), timings, cached


# --------------------------------------------------------------------------- provision


class _Timer:
    """Times the provisioning steps and prints one line per step."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.start = time.monotonic()
        self.steps: dict[str, tuple[float, Action]] = {}

    def step(self, name: str, fn: Callable[[], Action]) -> Action:
        began = time.monotonic()
        action = fn()
        self.record(name, time.monotonic() - began, action)
        return action

    def record(self, name: str, seconds: float, action: Action) -> None:
        self.steps[name] = (seconds, action)
        self.log(f"  {name:<18} {action.value:<9} {seconds:6.2f} s")

    @property
    def total(self) -> float:
        return time.monotonic() - self.start

    def busy_steps(self) -> int:
        """How many steps created, started or installed something."""
        idle = {Action.REUSED, Action.CHECKED, Action.SKIPPED}
        return sum(action not in idle for _, action in self.steps.values())


def provision(
    hosts: int = 0,
    install_packages: bool = False,
    build_images: bool = True,
    log: Log = print,
) -> TestbedInfo:
    """Bring the testbed up (idempotent) and say where it is."""
    if not 0 <= hosts <= MAX_EXTRA_HOSTS:
        raise TestbedError(f"--hosts must be between 0 and {MAX_EXTRA_HOSTS}")
    layout = Layout()
    _check_state_path(layout.state)
    timer = _Timer(log)
    log(f"testbed up: state in {layout.state}")
    timer.step("packages", lambda: _packages_step(install_packages, log))
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (dockerd, network namespaces, sshd)")
    with locked(layout):
        info, cache = _provision_locked(layout, timer, hosts, build_images, log)
    busy = timer.busy_steps()
    # warm: the base image came from the cache (or no images) and every piece was reused.
    kind = "warm" if cache in {"hit", "skipped", "absent"} and busy == 0 else "cold"
    log(
        f"testbed up: {kind} in {timer.total:.2f} s (base image cache: {cache}; "
        f"{busy} of {len(timer.steps)} steps created or started something); state: {layout.state}"
    )
    return info


def _packages_step(install_flag: bool, log: Log) -> Action:
    return Action.INSTALLED if packages.ensure_packages(install_flag, log) else Action.CHECKED


def _check_state_path(state: Path) -> None:
    # sshd_config and ssh_config take the paths unquoted and expand % tokens.
    if any(ch.isspace() or ch == "%" for ch in str(state)):
        raise TestbedError(f"the state dir path must not contain spaces or '%': {state}")


def _provision_locked(
    layout: Layout, timer: _Timer, hosts: int, with_images: bool, log: Log
) -> tuple[TestbedInfo, str]:
    engine_host = _engine_host()
    state = State.load(layout.record) or State(path=layout.record, engine_host=engine_host)
    if state.engine_host != engine_host:
        raise TestbedError(
            f"the testbed was provisioned on {state.engine_host}; run `down` before using "
            f"DOCKER_HOST={engine_host}"
        )
    if hosts < state.hosts:
        kept = ", ".join(f"jvb{n}" for n in range(hosts + 1, state.hosts + 1))
        log(f"  (keeping {kept} from an earlier run; `down` removes them)")
    state.hosts = max(hosts, state.hosts)
    state.save()
    timer.step("engine", lambda: ensure_engine(layout, state))
    registry_changed = write_if_changed(
        layout.registry_config, render_registry_config(layout.state / "registry")
    )
    timer.step("registry", lambda: ensure_registry(layout, state, config_changed=registry_changed))
    timer.step("ssh keys", lambda: ensure_keys(layout))
    timer.step("sudo user", lambda: sudouser.ensure_sudo_user(layout, state))
    all_hosts = [sandbox_host(layout, state.engine_host)]
    sudo_keys = ((sudouser.SUDO_USER, sudouser.authorized_keys_file(sudouser.home_of())),)
    timer.step(
        "sandbox sshd", lambda: ensure_sshd(layout, state, all_hosts[0], user_keys=sudo_keys)
    )
    if state.hosts:
        timer.step("main address", lambda: ensure_main_address(state))
    for n in range(1, state.hosts + 1):
        all_hosts.append(
            ensure_extra_host(layout, state, n, timer.step, registry_changed=registry_changed)
        )
    # One more login to the sandbox's sshd: the non-root deploy user.
    logins = [
        *all_hosts,
        replace(all_hosts[0], alias=sudouser.SUDO_ALIAS, user=sudouser.SUDO_USER),
    ]
    timer.step("ssh client files", lambda: write_client_files(layout, logins))
    timer.step("ssh logins", lambda: _check_logins(layout, logins))
    cache = "skipped"
    if with_images:
        began = time.monotonic()
        action, image_timings, cache = build_images(state, log)
        timer.record("images", time.monotonic() - began, action)
        if image_timings:
            log("    " + ", ".join(_image_figure(k, v) for k, v in image_timings.items()))
    return _info(layout, state, all_hosts, timer), cache


def _image_figure(name: str, value: float) -> str:
    # build_all() reports phase times in seconds plus the counts "built" and "pushed".
    return f"{name} {value:g}" if name in {"built", "pushed"} else f"{name} {value:.2f} s"


def _check_logins(layout: Layout, hosts: list[Host]) -> Action:
    sshhosts.check_logins(hosts, layout.ssh_config)
    return Action.CHECKED


def _info(layout: Layout, state: State, hosts: list[Host], timer: _Timer) -> TestbedInfo:
    return TestbedInfo(
        state_dir=layout.state,
        ssh_config=layout.ssh_config,
        known_hosts=layout.known_hosts,
        key=layout.key,
        registry=REGISTRY,
        hosts=tuple(host.alias for host in hosts),
        docker_hosts={host.alias: host.docker_host for host in hosts},
        engine_preexisting=not state.engine_started,
        timings={name: seconds for name, (seconds, _) in timer.steps.items()},
        sudo_password_file=sudouser.password_file(layout),
    )


# --------------------------------------------------------------------------- teardown


def teardown(keep_standins: bool = False, log: Log = print) -> None:
    """Remove exactly what provision() recorded, then the state dir.

    Stand-in containers and images in the engine are removed too, unless ``keep_standins``
    (for an engine shared with other work, where they may be in use or worth keeping).
    """
    layout = Layout()
    began = time.monotonic()
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root to tear down (dockerd, network namespaces)")
    if not layout.record.exists():
        log(f"testbed down: nothing to do (no {layout.record})")
        return
    with locked(layout):
        state = State.load(layout.record)
        problems = _teardown_locked(layout, state, log, keep_standins) if state else []
        if problems:
            raise TestbedError(
                f"teardown incomplete ({'; '.join(problems)}); {layout.state} is kept: "
                "fix the cause and run `down` again"
            )
        shutil.rmtree(layout.state, ignore_errors=True)
    log(f"testbed down: done in {time.monotonic() - began:.2f} s; removed {layout.state}")


def _teardown_locked(layout: Layout, state: State, log: Log, keep_standins: bool) -> list[str]:
    """Run every teardown phase even when one fails; return what went wrong."""
    phases: list[tuple[str, Callable[[], None]]] = [
        ("stand-ins", lambda: None if keep_standins else _remove_standins(state, log)),
        ("daemons", lambda: _stop_daemons(state, log)),
        # After the sshds: no session of the user is left to keep userdel from working.
        ("sudo user", lambda: sudouser.remove_sudo_user(state, log)),
        ("mounts", lambda: unmount(mounts_under([layout.state, layout.run]), log)),
        ("network", lambda: remove_network(state, log)),
        ("cgroups", lambda: _remove_cgroups(state.cgroups, log)),
        ("directories", lambda: _remove_dirs(state)),
    ]
    problems: list[str] = []
    for what, phase in phases:
        try:
            phase()
        except (TestbedError, OSError) as exc:
            problems.append(f"{what}: {exc}")
            log(f"  warning: {what}: {exc}")
    return problems


def _remove_dirs(state: State) -> None:
    for tree in state.dirs:
        shutil.rmtree(tree, ignore_errors=True)
    for directory in map(Path, state.empty_dirs):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _stop_daemons(state: State, log: Log) -> None:
    """sshds first (they front the engines), then registries and host engines, ours last."""
    order = sorted(
        state.processes, key=lambda name: (not name.startswith("sshd"), name == "dockerd")
    )
    failed: list[str] = []
    for name in order:
        try:
            stop_daemon(name, state.processes[name], log)
        except TestbedError as exc:
            failed.append(str(exc))
    if failed:
        raise TestbedError(", ".join(failed))


def _remove_standins(state: State, log: Log) -> None:
    """Containers of stand-in images (tests remove their own stacks; this catches leftovers)."""
    if not docker_ping(_socket(state.engine_host)):
        return
    docker = find_exe("docker")
    listed = run(
        [docker, "-H", state.engine_host, "ps", "-aq", "--filter", f"label={STANDIN_LABEL}"],
        check=False,
    )
    ids = listed.stdout.split()
    if ids:
        run([docker, "-H", state.engine_host, "rm", "-f", "-v", *ids], check=False)
        log(f"  removed {len(ids)} stand-in container(s)")
    # The sandbox project's network outlives its containers.
    networks = run(
        [
            docker,
            "-H",
            state.engine_host,
            "network",
            "ls",
            "-q",
            "--filter",
            f"label={SANDBOX_PROJECT_LABEL}",
        ],
        check=False,
    ).stdout.split()
    if networks:
        run([docker, "-H", state.engine_host, "network", "rm", *networks], check=False)
    images = _images_module(log)
    if images is not None:
        with _docker_host_env(state.engine_host):
            images.remove_all()
        log("  removed the stand-in images")


def _remove_cgroups(names: list[str], log: Log) -> None:
    """Empty cgroup directories the engines created under our --cgroup-parent names."""
    root = Path("/sys/fs/cgroup")
    for name in names:
        for directory in [root / name, *root.glob(f"*/{name}")]:
            if directory.is_dir():
                try:
                    directory.rmdir()
                except OSError as exc:
                    log(f"  could not remove cgroup {directory}: {exc.strerror}")


# --------------------------------------------------------------------------- status


def status() -> TestbedStatus:
    """Check every recorded piece without changing anything."""
    layout = Layout()
    state = State.load(layout.record)
    if state is None:
        return TestbedStatus(False, layout.state, ())
    checks = [_engine_check(state)]
    for name, spec in sorted(state.processes.items()):
        pid = running_pid(Path(spec["pidfile"]), spec["exe"], spec["marker"])
        checks.append(Check(name, pid is not None, f"pid {pid}" if pid else "not running"))
    checks += [Check(f"netns {netns}", (NETNS_DIR / netns).exists(), "") for netns in state.netns]
    checks += [Check(f"user {user}", sudouser.user_exists(user), "") for user in state.users]
    return TestbedStatus(True, layout.state, tuple(checks))


def _engine_check(state: State) -> Check:
    answers = docker_ping(_socket(state.engine_host))
    owner = "started by the testbed" if state.engine_started else "pre-existing, not ours"
    return Check("engine", answers, f"{state.engine_host} ({owner})")
