"""Host-side access for the suite: testinfra over the tool's own SSH connection, and HTTP to
services that listen on the host's 127.0.0.1 only (jicofo and jvb REST).

testinfra runs its modules (file, socket, ...) through a backend. Instead of a second SSH stack,
RunnerBackend routes every testinfra command through the environment's Runner: the same
connection, ssh_config, known_hosts and strict host-key policy as deploy, and in unit tests the
RecordingRunner. Loopback-only REST ports are reached through a `direct-tcpip` channel of that
SSH connection (what `ssh -L` does, without listening anywhere locally), so they are never
exposed.
"""

from __future__ import annotations

import http.client
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import testinfra.backend.base
import testinfra.host

from jitsi_ops.errors import OpsError
from jitsi_ops.runner import LocalRunner, Runner
from jitsi_ops.ssh import SshRunner

MAX_BODY = 256 * 1024

# A refused direct-tcpip channel is an observation the check reports; without a handler,
# paramiko's ERROR record would also reach stderr through logging's last-resort handler.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class RunnerBackend(testinfra.backend.base.BaseBackend):  # type: ignore[misc]
    """A testinfra backend that runs commands through a jitsi-ops Runner (`sh -c` on the host)."""

    NAME = "jitsi-ops"

    def __init__(self, runner: Runner, timeout: float = 30.0) -> None:
        self._runner = runner
        self._timeout = timeout
        super().__init__(runner.host)

    def run(self, command: str, *args: str, **_kwargs: Any) -> Any:
        """Run a testinfra command line on the host; never raises for a non-zero exit."""
        line = self.get_command(command, *args)
        result = self._runner.run(["sh", "-c", line], check=False, timeout=self._timeout)
        return self.result(result.exit_code, self.encode(line), result.stdout, result.stderr)


def infra_host(runner: Runner, timeout: float = 30.0) -> Any:
    """A testinfra Host whose modules run over `runner`."""
    backend = RunnerBackend(runner, timeout)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


@dataclass(frozen=True)
class HttpAnswer:
    """Status and body of one HTTP exchange."""

    status: int
    body: str


class LoopbackHttp(Protocol):
    """GET a path from a port that listens on a host's 127.0.0.1."""

    def __call__(self, runner: Runner, port: int, path: str, timeout: float) -> HttpAnswer:
        """Answer of http://127.0.0.1:PORT/PATH as seen on the runner's host."""
        ...


class LoopbackRequest(Protocol):
    """Any method (POST/PATCH with a JSON body) on a port that listens on a host's 127.0.0.1."""

    def __call__(
        self,
        runner: Runner,
        port: int,
        path: str,
        timeout: float,
        *,
        method: str,
        body: bytes | None,
    ) -> HttpAnswer:
        """Answer of METHOD http://127.0.0.1:PORT/PATH (body sent as application/json)."""
        ...


def _exchange(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", body: bytes | None = None
) -> HttpAnswer:
    headers = {"Connection": "close", "User-Agent": "jitsi-ops-verify"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    # A file over a channel may return short reads: read until EOF (or the cap).
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY:
        chunk = response.read(MAX_BODY - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return HttpAnswer(response.status, b"".join(chunks).decode("utf-8", errors="replace"))


class _ChannelSocket:
    """The socket face http.client needs, over a paramiko Channel.

    http.client writes with sendall() and reads through makefile(); it also closes its socket
    as soon as it sees `Connection: close`, before the body is read. A real socket survives that
    (its makefile keeps the descriptor); a Channel would drop unread data, so close() here is a
    no-op and the caller closes the channel after reading.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def sendall(self, data: bytes) -> None:
        """Send everything."""
        self._channel.sendall(data)

    def makefile(self, mode: str = "rb", *_args: Any, **_kwargs: Any) -> Any:
        """A file over the channel for reading the response."""
        return self._channel.makefile(mode)

    def settimeout(self, timeout: float | None) -> None:
        """Per-operation timeout."""
        self._channel.settimeout(timeout)

    def close(self) -> None:
        """Deliberately nothing: see the class docstring."""


def ssh_loopback_get(
    runner: SshRunner,
    port: int,
    path: str,
    timeout: float,
    *,
    method: str = "GET",
    body: bytes | None = None,
) -> HttpAnswer:
    """METHOD (default GET) http://127.0.0.1:PORT/PATH on the host through a direct-tcpip channel."""
    channel = runner.open_tunnel(port, timeout)
    try:
        channel.settimeout(timeout)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.sock = _ChannelSocket(channel)
        return _exchange(conn, path, method, body)
    finally:
        channel.close()


def local_loopback_get(
    port: int, path: str, timeout: float, *, method: str = "GET", body: bytes | None = None
) -> HttpAnswer:
    """METHOD (default GET) http://127.0.0.1:PORT/PATH on this machine (LocalRunner hosts)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        return _exchange(conn, path, method, body)
    finally:
        conn.close()


def loopback_request(
    runner: Runner, port: int, path: str, timeout: float, *, method: str, body: bytes | None
) -> HttpAnswer:
    """The default LoopbackRequest: an SSH channel for remote hosts, a socket for local ones."""
    try:
        if isinstance(runner, SshRunner):
            return ssh_loopback_get(runner, port, path, timeout, method=method, body=body)
        if isinstance(runner, LocalRunner):
            return local_loopback_get(port, path, timeout, method=method, body=body)
    except TimeoutError:
        raise TimeoutError(
            f"{method} 127.0.0.1:{port}{path} did not answer within {timeout:.0f}s"
        ) from None
    raise _no_transport(runner)


def loopback_get(runner: Runner, port: int, path: str, timeout: float) -> HttpAnswer:
    """The default LoopbackHttp: an SSH channel for remote hosts, a plain socket for local ones."""
    try:
        if isinstance(runner, SshRunner):
            return ssh_loopback_get(runner, port, path, timeout)
        if isinstance(runner, LocalRunner):
            return local_loopback_get(port, path, timeout)
    except TimeoutError:
        raise TimeoutError(f"127.0.0.1:{port}{path} did not answer within {timeout:.0f}s") from None
    raise _no_transport(runner)


def _no_transport(runner: Runner) -> OpsError:
    return OpsError(
        f"{runner.host}: no loopback transport for {type(runner).__name__}",
        hint="verify needs an SSH or local runner to reach jicofo/jvb REST",
    )


def peer_address(runner: Runner) -> str | None:
    """The address this machine reached the host at (its public/NAT address), if known."""
    if not isinstance(runner, SshRunner):
        return None
    try:
        return runner.peer_address()
    except (OpsError, OSError):
        return None
