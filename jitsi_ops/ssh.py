"""SSH adapter of the Runner protocol: the only module that imports Fabric and Paramiko.

One connection per host for a whole run. Host keys are strict by default: an unknown or
changed key is refused before any command runs, naming the fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import shlex
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from jitsi_ops.errors import ConfigError, HostKeyError, OpsError
from jitsi_ops.runner import Result, checked
from jitsi_ops.settings import Environment, Host, SshOptions


def _drain(channel: paramiko.Channel, timeout: float | None) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until the command exits (or the deadline passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    while True:
        busy = False
        while channel.recv_ready():
            out += channel.recv(65536)
            busy = True
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
            busy = True
        if (
            channel.exit_status_ready()
            and not channel.recv_ready()
            and not channel.recv_stderr_ready()
        ):
            # Whatever is still in flight after the exit status arrives is read to EOF.
            while chunk := channel.recv(65536):
                out += chunk
            while chunk := channel.recv_stderr(65536):
                err += chunk
            return bytes(out), bytes(err), False
        if deadline is not None and time.monotonic() > deadline:
            return bytes(out), bytes(err), True
        if not busy:
            time.sleep(0.002)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Strict policy: refuse with the fingerprint so the operator can compare it out of band."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"{hostname}: host key not in known_hosts ({key.get_name()} {fingerprint(key)})",
            hint="verify the fingerprint with the host's owner, then add it to the environment's "
            "known_hosts (ssh-keyscan), or set ssh.host_key_policy = 'accept-new' in deploy.toml",
        )


class _AcceptNew(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """accept-new: trust a first-seen key and record it; a changed key is still refused."""

    def __init__(self, known_hosts: Path) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self._known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self._known_hosts.open("a", encoding="utf-8") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def known_hosts_path(options: SshOptions, ssh_config: dict[str, Any]) -> Path:
    """The known_hosts file: deploy.toml, then ssh_config's UserKnownHostsFile, then ~/.ssh."""
    if options.known_hosts is not None:
        return options.known_hosts
    configured = ssh_config.get("userknownhostsfile")
    if configured:
        first = configured.split()[0] if isinstance(configured, str) else configured[0]
        return Path(first).expanduser()
    return Path("~/.ssh/known_hosts").expanduser()


class SshRunner:
    """Runs commands on one host over a single reused Fabric connection."""

    def __init__(self, host: Host, options: SshOptions) -> None:
        if options.config_file is not None and not options.config_file.is_file():
            raise ConfigError(
                f"ssh_config {options.config_file} does not exist",
                hint="fix [ssh] config in deploy.toml (for env/sandbox: `python -m tests.testbed up`)",
            )
        overrides: dict[str, Any] = {"load_ssh_configs": options.config_file is None}
        config = Config(overrides=overrides)
        if options.config_file is not None:
            config.set_runtime_ssh_path(str(options.config_file))
            config.load_ssh_config()
        self._host = host
        self._conn = Connection(
            host.address,
            user=host.user,
            port=host.port,
            config=config,
            connect_timeout=int(options.connect_timeout),
        )
        client: paramiko.SSHClient = self._conn.client
        known = known_hosts_path(options, dict(self._conn.ssh_config))
        if known.is_file():
            client.load_host_keys(str(known))
        policy: paramiko.MissingHostKeyPolicy = (
            _AcceptNew(known) if options.host_key_policy == "accept-new" else _RefuseUnknown()
        )
        client.set_missing_host_key_policy(policy)
        self._known = known
        self._connect_timeout = options.connect_timeout
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def host(self) -> str:
        """A label for reports."""
        return self._host.label

    def open(self) -> None:
        """Connect now; host-key and network errors become one-line OpsErrors."""
        if self._conn.is_connected:
            return
        try:
            self._conn.open()
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{self.host}: HOST KEY CHANGED (now {exc.key.get_name()} {fingerprint(exc.key)})",
                hint=f"if the host was really rebuilt, remove its old entry from {self._known}; "
                "otherwise do not connect (possible man-in-the-middle)",
            ) from None
        except paramiko.AuthenticationException:
            raise OpsError(
                f"{self.host}: SSH authentication failed",
                hint="check the user and key (ssh_config IdentityFile) or ssh-agent",
            ) from None
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise OpsError(
                f"{self.host}: cannot connect over SSH ({exc.__class__.__name__}: {exc})",
                hint="check address/port in deploy.toml or ssh_config, and that sshd runs",
            ) from None

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        """Run argv on the host (quoted with shlex, never interpreted twice).

        Straight on a Paramiko channel of the one connection: Fabric's run() adds threads and
        polling that cost ~0.4 s per command, which a deploy's ~50 probes cannot afford.
        """
        channel = self._transport().open_session(timeout=self._connect_timeout)
        try:
            channel.exec_command(shlex.join(argv))
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out, err, timed_out = _drain(channel, timeout)
            code = 124 if timed_out else channel.recv_exit_status()
        finally:
            channel.close()
        stderr = err.decode(errors="replace")
        if timed_out:
            stderr += f"\ntimed out after {timeout} s"
        return checked(Result(tuple(argv), code, out.decode(errors="replace"), stderr), check)

    def _transport(self) -> paramiko.Transport:
        self.open()
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise OpsError(f"{self.host}: SSH connection lost", hint="check the network and retry")
        return transport

    def open_tunnel(self, port: int, timeout: float) -> paramiko.Channel:
        """A channel to the host's own 127.0.0.1:PORT over this connection (nothing is exposed).

        ConnectionRefusedError when nothing listens there.
        """
        try:
            return self._transport().open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=timeout
            )
        except paramiko.ChannelException as exc:
            reason = exc.text or exc.__class__.__name__
            raise ConnectionRefusedError(
                f"nothing answers on the host's 127.0.0.1:{port} ({reason})"
            ) from None

    def peer_address(self) -> str | None:
        """The address this connection reached (after ssh_config's HostName, ProxyJump aside)."""
        name = self._transport().getpeername()
        return str(name[0]) if name else None

    def _sftp_client(self) -> paramiko.SFTPClient:
        self.open()
        if self._sftp is None:
            self._sftp = self._conn.sftp()
        return self._sftp

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Upload to a temporary name next to `path`, chmod before the rename (never briefly 0644)."""
        sftp = self._sftp_client()
        directory = posixpath.dirname(path) or "."
        tmp = posixpath.join(directory, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}")
        with sftp.open(tmp, "wb") as handle:
            handle.chmod(mode)
            handle.write(data)
        sftp.posix_rename(tmp, path)

    def get(self, path: str) -> bytes:
        """Download a file; FileNotFoundError when absent."""
        sftp = self._sftp_client()
        buffer = io.BytesIO()
        try:
            sftp.getfo(path, buffer)
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                raise FileNotFoundError(path) from None
            raise
        return buffer.getvalue()

    def close(self) -> None:
        """Close SFTP and the connection."""
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._conn.close()


def connect(env: Environment, host: Host) -> SshRunner:
    """A runner for one host of an environment (connects lazily, on first use)."""
    return SshRunner(host, env.deploy.ssh)
