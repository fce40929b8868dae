"""SSH adapter of the Runner protocol: the only module that imports Fabric and Paramiko.

One connection per host for a whole run. Host keys are strict by default: an unknown or
changed key is refused before any command runs, naming the fingerprint.

A host with `sudo = true` (a non-root deploy user) runs every command through sudo. Once per
connection `sudo -n -k true` tells whether sudo needs a password; if it does, the password comes
from a provider callable (the CLI asks once per run), is validated once, and then travels as the
first line of each command's stdin for `sudo -S`: never on a command line, in a Result, in an
exception or in a log, and only in memory for the run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import posixpath
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import paramiko
from fabric import Config, Connection
from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE

from jitsi_ops.errors import ConfigError, HostKeyError, OpsError, RemoteCommandError
from jitsi_ops.runner import Result, checked
from jitsi_ops.settings import SUDO_PASSWORD_VAR, Environment, Host, SshOptions


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


# --- sudo: pure argv builders (the password is never part of any argv) --------------------------

SudoPassword = Callable[[str], str]
"""Returns the sudo password; the argument is a prompt label such as "deploy@meet.example.com"."""

SudoMode = Literal["off", "nopasswd", "password"]

# -n: never prompt. -k: ignore cached credentials, so that sudo always reads the password line
# itself; with a cached timestamp it would skip reading and the line would become the command's
# stdin. -S: the password comes from stdin. -p '': no prompt text on stderr.
_SUDO_NOPASSWD = ("sudo", "-n", "--")
_SUDO_PASSWORD = ("sudo", "-k", "-S", "-p", "", "--")
SUDO_PROBE = ("sudo", "-n", "-k", "true")
SUDO_VALIDATE = (*_SUDO_PASSWORD, "true")

# One round trip for an upload: copy the user's private temporary file next to the target as
# root with the final mode (never briefly readable by others), rename it over the target
# (atomic), and remove the temporary files whatever happened. Positional parameters only: no
# path is ever interpolated into the script.
_INSTALL_SCRIPT = (
    'rc=0; install -m "$1" -- "$2" "$3" && mv -f -- "$3" "$4" || rc=$?; rm -f -- "$2" "$3"; '
    "exit $rc"
)


def sudo_argv(argv: Sequence[str], mode: SudoMode) -> list[str]:
    """argv as it runs on the host in a sudo mode ("off": unchanged)."""
    if mode == "off":
        return list(argv)
    prefix = _SUDO_NOPASSWD if mode == "nopasswd" else _SUDO_PASSWORD
    return [*prefix, *argv]


def install_argv(tmp: str, path: str, mode: int, suffix: str) -> list[str]:
    """The privileged half of put(): `tmp` (the user's upload) becomes `path` with `mode`."""
    staged = posixpath.join(posixpath.dirname(path) or ".", f".{posixpath.basename(path)}.{suffix}")
    return ["sh", "-c", _INSTALL_SCRIPT, "sh", f"{mode:o}", tmp, staged, path]


def cat_argv(path: str) -> list[str]:
    """The privileged get(): the file's bytes on stdout."""
    return ["cat", "--", path]


# The command shell: one `sh` per connection that runs probe after probe, so a command costs
# a fork on the host instead of a new SSH session with a fresh login shell (which sources the
# user's ~/.bashrc: pyenv/nvm/conda setups there cost ~0.15 s per command). Each command runs
# with stdin from /dev/null (it must never read the stream of commands), its stdout and stderr
# go to files in a private directory, and a header line announces its exit code and the two
# sizes, so the framing never depends on what a command prints. The files are emptied as soon
# as they are sent: an output (a file read with sudo, say) does not linger on the host.
_SHELL_BOOT = "T=$(mktemp -d) || exit 1; trap 'rm -rf \"$T\"' EXIT; printf '%s\\n' {ready}\n"
_SHELL_STEP = (
    '{{ {command} ; }} </dev/null >"$T/o" 2>"$T/e"; r=$?; '
    'printf \'%s %s %s %s\\n\' {token} "$r" "$(wc -c <"$T/o")" "$(wc -c <"$T/e")"; '
    'cat "$T/o" "$T/e"; : >"$T/o"; : >"$T/e"\n'
)


def shell_step(command: str, token: str) -> str:
    """The text the command shell reads for one command line (pure, for tests)."""
    return _SHELL_STEP.format(command=command, token=token)


class _CommandShell:
    """A long-lived `sh` on one channel; run() is one command's exit code, stdout, stderr."""

    def __init__(self, transport: paramiko.Transport, timeout: float) -> None:
        self._channel = transport.open_session(timeout=timeout)
        self._buffer = bytearray()
        ready = f"jitsi-ops-ready-{uuid.uuid4().hex}"
        self._channel.exec_command("sh")
        self._channel.sendall(_SHELL_BOOT.format(ready=ready).encode())
        # Whatever the login prints before (a motd-like echo in a profile) is skipped.
        self._read_until(f"{ready}\n".encode(), time.monotonic() + timeout)

    def _fill(self, deadline: float) -> None:
        """Read what the channel has (waiting until the deadline for something)."""
        while True:
            if self._channel.recv_ready():
                self._buffer += self._channel.recv(65536)
                return
            if self._channel.recv_stderr_ready():
                self._channel.recv_stderr(65536)  # the shell's own complaints: not a result
                continue
            if self._channel.exit_status_ready() or self._channel.closed:
                raise EOFError("the command shell ended")
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.001)

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        """Consume the buffer through `marker`; returns what was consumed."""
        while (index := self._buffer.find(marker)) < 0:
            self._fill(deadline)
        end = index + len(marker)
        head = bytes(self._buffer[:end])
        del self._buffer[:end]
        return head

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def run(self, command: str, timeout: float | None) -> tuple[int | None, bytes, bytes]:
        """Exit code (None on timeout: the shell is then unusable), stdout, stderr."""
        token = f"jitsi-ops-done-{uuid.uuid4().hex}"
        deadline = time.monotonic() + (timeout if timeout is not None else 365 * 86400.0)
        self._channel.sendall(shell_step(command, token).encode())
        try:
            self._read_until(f"{token} ".encode(), deadline)
            header = self._read_until(b"\n", deadline).split()
            code, out_size, err_size = (int(field) for field in header)
            out = self._read_exactly(out_size, deadline)
            err = self._read_exactly(err_size, deadline)
        except TimeoutError:
            return None, b"", b""
        return code, out, err

    def close(self) -> None:
        self._channel.close()


# --- uploads ------------------------------------------------------------------------------------


def create_private(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPFile:
    """A new file at `path`, open for writing, mode 0600 from the moment it exists.

    Exclusive: an existing file (or a symlink planted there) is an error, never reused. The
    SFTP OPEN request carries the new file's permissions (the server hands them to open(2)),
    but paramiko's public open() always sends none: the file would start with the server's
    default (0644 under umask 022), and whoever opened it in that moment would keep reading
    what is written later, whatever chmod follows. Hence paramiko's request layer, which
    open() itself uses.
    """
    attributes = paramiko.SFTPAttributes()
    attributes.st_mode = 0o600
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
    kind, answer = sftp._request(CMD_OPEN, path, flags, attributes)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError(f"expected a file handle from the server, got message {kind}")
    return paramiko.SFTPFile(sftp, answer.get_binary(), "wb")


def sftp_upload(sftp: paramiko.SFTPClient, data: bytes, tmp: str, path: str, mode: int) -> None:
    """Write `data` to `path` through `tmp` (created 0600, exclusive), which gets `mode` before
    the data and is renamed over `path`; `tmp` is removed when anything fails."""
    created = False
    try:
        with create_private(sftp, tmp) as handle:
            created = True
            if mode != 0o600:
                handle.chmod(mode)
            handle.write(data)
        sftp.posix_rename(tmp, path)
    except BaseException:
        if created:
            # Best effort (the connection may be what failed); never a file we did not create.
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                sftp.remove(tmp)
        raise


def _close_quietly(shell: _CommandShell | None) -> None:
    if shell is not None:
        with contextlib.suppress(OSError, paramiko.SSHException):
            shell.close()


def _tail(stderr: str) -> str:
    return " | ".join(line for line in stderr.strip().splitlines()[-2:] if line.strip())


class SshRunner:
    """Runs commands on one host over a single reused Fabric connection."""

    def __init__(
        self, host: Host, options: SshOptions, sudo_password: SudoPassword | None = None
    ) -> None:
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
        # A ProxyJump bastion is a Connection of its own that Fabric would open with
        # AutoAddPolicy: every hop gets the same known_hosts and policy as the target.
        gateway = self._conn.gateway
        while isinstance(gateway, Connection):
            if known.is_file():
                gateway.client.load_host_keys(str(known))
            gateway.client.set_missing_host_key_policy(policy)
            gateway = gateway.gateway
        self._known = known
        self._connect_timeout = options.connect_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._sudo_password = sudo_password
        # Settled on first use: None until then; a refusal is kept and raised again, so a
        # wrong password is tried once and nothing else runs.
        self._sudo_mode: SudoMode | None = None if host.sudo else "off"
        self._sudo_error: OpsError | None = None
        self._secret: str | None = None
        self._private_dir: str | None = None
        self._idle_shells: list[_CommandShell] = []
        self._shell_usable = True
        self._shell_lock = threading.Lock()

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
            hop = "" if exc.hostname in (self._conn.host, None) else f" (bastion {exc.hostname})"
            raise HostKeyError(
                f"{self.host}{hop}: HOST KEY CHANGED (now {exc.key.get_name()} "
                f"{fingerprint(exc.key)})",
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
        With sudo the Result still names argv as given (the wrapper is an adapter detail).
        """
        code, out, err = self._elevated(argv, None if stdin is None else stdin.encode(), timeout)
        stderr = self._scrub(err.decode(errors="replace"))
        if code is None:
            code, stderr = 124, stderr + f"\ntimed out after {timeout} s"
        stdout = self._scrub(out.decode(errors="replace"))
        return checked(Result(tuple(argv), code, stdout, stderr), check)

    def _exec(
        self,
        argv: Sequence[str],
        stdin: bytes | None,
        timeout: float | None,
        *,
        shell: bool = True,
    ) -> tuple[int | None, bytes, bytes]:
        """Exit code (None on timeout), stdout and stderr bytes of one command line.

        In one of the connection's command shells when the command needs no stdin (a thread
        of its own, e.g. a background pull, gets a shell of its own); else on a channel of its
        own.
        """
        if shell and stdin is None and self._shell_usable:
            answer = self._in_shell(shlex.join(argv), timeout)
            if answer is not None:
                return answer
        return self._exec_channel(argv, stdin, timeout)

    def _in_shell(
        self, command: str, timeout: float | None
    ) -> tuple[int | None, bytes, bytes] | None:
        """One command in an idle command shell; None when no shell can be had here."""
        with self._shell_lock:
            shell = self._idle_shells.pop() if self._idle_shells else None
        try:
            if shell is None:
                shell = _CommandShell(self._transport(), self._connect_timeout)
            code, out, err = shell.run(command, timeout)
        except KeyboardInterrupt:
            # Interrupted mid-command: what is in flight can no longer be told apart from the
            # next command's answer, so this shell is not used again.
            _close_quietly(shell)
            raise
        except (EOFError, TimeoutError, ValueError, paramiko.SSHException, OSError):
            # No usable `sh` (a forced command, a restricted shell) or it died: this
            # connection runs every command on its own channel from now on.
            _close_quietly(shell)
            self._shell_usable = False
            return None
        if code is None:
            _close_quietly(shell)  # a timed-out command may still run in it
        else:
            with self._shell_lock:
                self._idle_shells.append(shell)
        return code, out, err

    def _drop_shells(self) -> None:
        with self._shell_lock:
            shells, self._idle_shells = self._idle_shells, []
        for shell in shells:
            _close_quietly(shell)

    def _exec_channel(
        self, argv: Sequence[str], stdin: bytes | None, timeout: float | None
    ) -> tuple[int | None, bytes, bytes]:
        """One command on a channel of its own (needed for stdin)."""
        channel = self._transport().open_session(timeout=self._connect_timeout)
        try:
            channel.exec_command(shlex.join(argv))
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err, timed_out = _drain(channel, timeout)
            code = None if timed_out else channel.recv_exit_status()
        finally:
            channel.close()
        return code, out, err

    def _elevated(
        self,
        argv: Sequence[str],
        stdin: bytes | None,
        timeout: float | None,
        *,
        shell: bool = True,
    ) -> tuple[int | None, bytes, bytes]:
        """_exec() through sudo when the host asks for it (no extra round trip per command)."""
        mode = self._sudo()
        if mode == "password":
            assert self._secret is not None
            # sudo -S reads exactly one line; the command gets the rest of stdin unchanged.
            stdin = (self._secret + "\n").encode() + (stdin or b"")
        return self._exec(sudo_argv(argv, mode), stdin, timeout, shell=shell)

    def _sudo(self) -> SudoMode:
        """How commands are elevated on this host: probed (and the password checked) once."""
        if self._sudo_error is not None:
            raise self._sudo_error
        if self._sudo_mode is None:
            try:
                self._sudo_mode = self._settle_sudo()
            except OpsError as exc:
                self._sudo_error = exc
                raise
        return self._sudo_mode

    def _settle_sudo(self) -> SudoMode:
        code, _, err = self._exec(SUDO_PROBE, None, self._connect_timeout)
        if code == 0:
            return "nopasswd"
        stderr = err.decode(errors="replace")
        if code == 127 or "command not found" in stderr:
            raise OpsError(
                f"{self.host}: sudo = true in deploy.toml, but sudo is not installed there",
                hint="install sudo on the host, or connect as a user that needs no sudo",
            )
        user = self._conn.user
        if self._sudo_password is None:
            raise ConfigError(
                f"{self.host}: sudo needs {user}'s password and nothing can ask for it here",
                hint=f"run through the jitsi-ops tasks (they ask once, or read {SUDO_PASSWORD_VAR}), "
                "or allow NOPASSWD sudo for this user",
            )
        secret = self._sudo_password(f"{user}@{self.host}")
        code, _, err = self._exec(SUDO_VALIDATE, (secret + "\n").encode(), self._connect_timeout)
        if code == 0:
            self._secret = secret
            return "password"
        if code is None:
            raise OpsError(
                f"{self.host}: sudo did not answer within {self._connect_timeout:.0f} s",
                hint="check sudo on the host (e.g. a slow PAM module), then retry",
            )
        stderr = err.decode(errors="replace")
        if secret:
            stderr = stderr.replace(secret, "********")
        if "sudoers" in stderr or "not allowed" in stderr:
            raise OpsError(
                f"{self.host}: {user} may not use sudo there ({_tail(stderr)})",
                hint=f"add a sudoers rule for {user} on the host (all commands), or deploy as root",
            )
        raise OpsError(
            f"{self.host}: sudo refused the password of {user}",
            hint=f"check the password (the prompt, or {SUDO_PASSWORD_VAR}); nothing was run",
        )

    def _scrub(self, text: str) -> str:
        # sudo never echoes the password; this is defence in depth for outputs that would.
        return text.replace(self._secret, "********") if self._secret else text

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
        """Upload to a temporary name next to `path` (created 0600, given `mode` before any data
        is written), then rename it over `path`; a failed upload leaves no temporary file.

        With sudo: SFTP (as the user) into a private 0700 directory, then one sudo command
        installs it next to `path` with `mode` and renames it over `path`.
        """
        if self._sudo() != "off":
            self._sudo_put(data, path, mode)
            return
        directory = posixpath.dirname(path) or "."
        tmp = posixpath.join(directory, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}")
        sftp_upload(self._sftp_client(), data, tmp, path, mode)

    def _sudo_put(self, data: bytes, path: str, mode: int) -> None:
        sftp = self._sftp_client()
        if self._private_dir is None:
            # mkdir fails when the name exists, so nobody else can have prepared it; 0700 keeps
            # the upload (a .env holds secrets) unreadable for other users from the start.
            private = f"/tmp/.jitsi-ops-{uuid.uuid4().hex}"  # noqa: S108 - see above
            sftp.mkdir(private, 0o700)
            self._private_dir = private
        tmp = posixpath.join(self._private_dir, uuid.uuid4().hex[:12])
        created = False
        try:
            with create_private(sftp, tmp) as handle:
                created = True
                handle.write(data)
        except BaseException:
            if created:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    sftp.remove(tmp)
            raise
        argv = install_argv(tmp, path, mode, uuid.uuid4().hex[:8])
        code, _, err = self._elevated(argv, None, None)
        if code != 0:
            raise RemoteCommandError(
                ["install", "-m", f"{mode:o}", path],
                code or 124,
                self._scrub(err.decode("utf-8", "replace")),
            )

    def get(self, path: str) -> bytes:
        """Download a file; FileNotFoundError when absent. With sudo: `sudo cat`, as bytes."""
        if self._sudo() != "off":
            # On a channel of its own: the file's bytes never pass through the shell's files.
            code, out, err = self._elevated(cat_argv(path), None, None, shell=False)
            if code == 0:
                return out
            stderr = self._scrub(err.decode("utf-8", "replace"))
            if "No such file or directory" in stderr:
                raise FileNotFoundError(path)
            raise RemoteCommandError(cat_argv(path), code or 124, stderr)
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
        """Close SFTP and the connection; the sudo password is forgotten."""
        if self._sftp is not None:
            if self._private_dir is not None:
                # Best effort: the uploads in it were already removed by the install command.
                with contextlib.suppress(OSError):
                    self._sftp.rmdir(self._private_dir)
                self._private_dir = None
            self._sftp.close()
            self._sftp = None
        self._secret = None
        if self._sudo_mode == "password":
            self._sudo_mode = None
        self._drop_shells()
        self._conn.close()


def connect(env: Environment, host: Host, sudo_password: SudoPassword | None = None) -> SshRunner:
    """A runner for one host of an environment (connects lazily, on first use)."""
    return SshRunner(host, env.deploy.ssh, sudo_password)
