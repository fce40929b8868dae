"""What the checks read, gathered lazily and cached: once per round for things that change while
services settle (containers, config.js, REST answers), once per run for things that do not
(CONFIG path, deploy user, the testinfra host, the expected image references).

A fact that failed to gather is cached as its exception, so every check that needs it fails with
the same observation instead of asking the host again.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

from jitsi_ops import commands, stack
from jitsi_ops.composeset import compose_dir
from jitsi_ops.configjs import parse_config_js
from jitsi_ops.environments import deployed_components, rendered_values
from jitsi_ops.errors import OpsError
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify import derive
from jitsi_ops.verify.hostside import (
    HttpAnswer,
    LoopbackHttp,
    LoopbackRequest,
    infra_host,
    loopback_request,
)
from jitsi_ops.verify.tlstrust import Trust, pem_to_der
from jitsi_ops.versions import Layout

T = TypeVar("T")

# Upper bound of any single request or remote command; the run's deadline can only shorten it.
REQUEST_TIMEOUT = 10.0
RESTART_SAMPLE_INTERVAL = 3.0
CORE_SERVICES = ("web", "prosody", "jicofo", "jvb")


@dataclass
class VerifyRun:
    """Everything fixed for one verify run: environment, connections, deadline, caches."""

    env: Environment
    values: Mapping[str, str]
    runners: Mapping[Host, Runner]
    loopback: LoopbackHttp
    deadline: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    restart_interval: float = RESTART_SAMPLE_INTERVAL
    # POST/PATCH to loopback-only REST (the bridge's colibri2 conferences for media.ice).
    rest: LoopbackRequest = loopback_request
    # How many bridges jicofo must count, when not every JVB host runs one yet (a rolling first
    # deploy of several bridge hosts, gated host by host); None: one per JVB host.
    expected_bridges: int | None = None
    _stable: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float:
        """Seconds left before the overall deadline (never negative)."""
        return max(0.0, self.deadline - self.clock())

    def timeout(self) -> float:
        """Timeout of one request or command: bounded, and shorter near the deadline."""
        return max(2.0, min(REQUEST_TIMEOUT, self.remaining()))

    def connected(self, host: Host) -> Runner:
        """The host's Runner after one connection attempt per run.

        A host that cannot be reached would otherwise cost every one of its checks a full SSH
        connect timeout; its first error is kept and repeated instead.
        """
        runner = self.runners[host]
        key = f"connect:{host}"
        if key not in self._stable:
            try:
                opener = getattr(runner, "open", None)
                if callable(opener):
                    opener()
                self._stable[key] = None
            except OpsError as exc:
                self._stable[key] = exc
        error = self._stable[key]
        if isinstance(error, OpsError):
            raise error
        return runner

    def stable(self, key: str, produce: Callable[[], T]) -> T:
        """A fact computed once per run."""
        if key not in self._stable:
            self._stable[key] = produce()
        value: T = self._stable[key]
        return value

    @property
    def main(self) -> Host:
        """The main host (web, prosody, jicofo, jvb)."""
        return self.env.deploy.main_host

    @property
    def jvb_hosts(self) -> tuple[Host, ...]:
        """Hosts that run a videobridge: the main host and every role 'jvb' host."""
        return self.env.deploy.hosts

    def expected_services(self, host: Host) -> tuple[str, ...]:
        """Compose services that must run on `host`."""
        if host.role == "jvb":
            return ("jvb",)
        return (*CORE_SERVICES, *deployed_components(self.env))

    def expected_images(self) -> dict[str, str]:
        """Image reference per service, as the deployed compose files and values pin them."""
        return self.stable(
            "images",
            lambda: derive.expected_images(
                compose_dir(self.env.root, self.env.layout),
                stack.target_for(self.env).files,
                self.values,
            ),
        )


class Facts:
    """The per-round view of the deployment (a fresh one for every retry round)."""

    def __init__(self, run: VerifyRun) -> None:
        self.run = run
        self.env = run.env
        self.values = run.values
        self._cache: dict[str, Any] = {}

    def memo(self, key: str, produce: Callable[[], T]) -> T:
        """Compute once per round; a failure is cached and re-raised."""
        if key not in self._cache:
            try:
                self._cache[key] = (True, produce())
            except Exception as exc:  # re-raised to every check that asks
                self._cache[key] = (False, exc)
        ok, value = self._cache[key]
        if not ok:
            raise value
        result: T = value
        return result

    def timeout(self) -> float:
        """Timeout of one request or command."""
        return self.run.timeout()

    def runner(self, host: Host) -> Runner:
        """The Runner of a host, connected; a host that could not be reached fails fast."""
        return self.run.connected(host)

    def sh(self, host: Host, argv: list[str], what: str) -> str:
        """stdout of a command that must succeed; OpsError naming `what` otherwise."""
        result = self.runner(host).run(argv, check=False, timeout=self.timeout())
        if not result.ok:
            tail = derive.excerpt(result.stderr or result.stdout) or f"exit {result.exit_code}"
            raise OpsError(f"{what} failed: {tail}")
        return result.stdout

    # ---- host side -------------------------------------------------------------------------

    def testinfra(self, host: Host) -> Any:
        """testinfra Host over this host's Runner."""
        return self.run.stable(
            f"testinfra:{host}", lambda: infra_host(self.runner(host), REQUEST_TIMEOUT)
        )

    def config_dir(self, host: Host) -> str:
        """CONFIG as an absolute path on the host."""
        return self.run.stable(
            f"config:{host}",
            lambda: stack.resolve_config_dir(self.env.for_host(host), self.runner(host)),
        )

    def host_values(self, host: Host) -> Mapping[str, str]:
        """The rendered values of one host (a bridge host's deploy.toml `values` included)."""
        if host == self.run.main:
            return self.values
        return self.run.stable(f"values:{host}", lambda: rendered_values(self.env.for_host(host)))

    def stack_dir(self, host: Host) -> str:
        """The stack dir of the host (absolute: settings refuse `~`)."""
        return self.env.for_host(host).deploy.stack_dir

    def deploy_user(self, host: Host) -> str:
        """The user the tool logs in as on the host."""
        return self.run.stable(
            f"user:{host}", lambda: self.sh(host, ["id", "-un"], "`id -un`").strip()
        )

    def compose_target(self, host: Host | None = None) -> commands.ComposeTarget:
        """The compose invocation on `host` (default: the main host)."""
        return stack.target_for(self.env if host is None else self.env.for_host(host))

    def compose_ps(self, host: Host) -> list[derive.Container]:
        """The project's containers on the host."""
        return self.memo(
            f"ps:{host}",
            lambda: derive.parse_compose_ps(
                self.sh(host, commands.compose_ps(self.compose_target(host)), "`docker compose ps`")
            ),
        )

    def inspect(self, host: Host, *, fresh: bool = False) -> dict[str, derive.Inspected]:
        """`docker inspect` of the project's containers, by service (`fresh` skips the cache)."""

        def produce() -> dict[str, derive.Inspected]:
            ids = self.sh(
                host,
                [*self.compose_target(host).base(), "ps", "--all", "--quiet"],
                "`docker compose ps --quiet`",
            ).split()
            if not ids:
                return {}
            return derive.parse_inspect(
                self.sh(host, ["docker", "inspect", *ids], "`docker inspect`")
            )

        if fresh:
            return produce()
        return self.memo(f"inspect:{host}", produce)

    def image_id(self, host: Host, ref: str) -> str | None:
        """The local image id a reference points to on the host now, None if absent."""
        result = self.runner(host).run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
            check=False,
            timeout=self.timeout(),
        )
        return (result.stdout.strip() or None) if result.ok else None

    # ---- operator side ---------------------------------------------------------------------

    def public_url(self) -> str:
        """PUBLIC_URL as the web container renders it."""
        return derive.public_url(self.values)

    def base_url(self) -> str:
        """PUBLIC_URL with exactly one trailing slash (paths are appended to it)."""
        return self.public_url().rstrip("/") + "/"

    def host_cert_path(self) -> str:
        """Where the web container keeps the certificate it serves (on the main host)."""
        config = self.config_dir(self.run.main)
        keys = "storage/web/keys" if self.env.layout is Layout.ROOTLESS else "web/keys"
        return posixpath.join(config, keys, "cert.crt")

    def trust(self) -> Trust:
        """The explicit TLS trust of this environment (see tlstrust)."""

        def produce() -> Trust:
            origin = derive.origin_of(self.public_url())
            options = self.env.deploy.verify
            if options.ca_file is not None:
                if not options.ca_file.is_file():
                    raise OpsError(f"verify.ca_file {options.ca_file} does not exist")
                return Trust("ca_file", origin, ca_file=options.ca_file)
            if options.trust_host_certificate:
                path = self.host_cert_path()
                try:
                    pem = self.runner(self.run.main).get(path)
                except FileNotFoundError:
                    raise OpsError(
                        f"cannot pin: {path} not found on {self.run.main.label}"
                    ) from None
                return Trust(
                    "pinned",
                    origin,
                    pinned_der=pem_to_der(pem.decode("ascii", errors="replace")),
                    pinned_source=f"{self.run.main.label}:{path}",
                )
            return Trust("system", origin)

        return self.memo("trust", produce)

    def session(self) -> requests.Session:
        """A requests session with the environment's trust (one per round)."""
        return self.memo("session", lambda: self.trust().session())

    def served_text(self, name: str) -> str:
        """A file the web container serves at PUBLIC_URL/NAME (config.js, ...), as UTF-8 text."""

        def produce() -> str:
            url = self.base_url() + name
            response = self.session().get(url, timeout=self.timeout(), allow_redirects=False)
            if response.status_code != 200:
                raise OpsError(f"GET {url} answered {response.status_code}")
            # nginx may send no charset; the files are UTF-8, as the custom files compared to them.
            return response.content.decode("utf-8", errors="replace")

        return self.memo(f"served:{name}", produce)

    def served_config(self) -> dict[str, Any]:
        """config.js as the web container serves it over PUBLIC_URL, parsed."""
        return self.memo("config.js", lambda: parse_config_js(self.served_text("config.js")))

    def loopback(self, host: Host, port: int, path: str) -> HttpAnswer:
        """GET from a host's 127.0.0.1:PORT (through SSH for remote hosts)."""
        return self.memo(
            f"loopback:{host}:{port}:{path}",
            lambda: self.run.loopback(self.runner(host), port, path, self.timeout()),
        )
