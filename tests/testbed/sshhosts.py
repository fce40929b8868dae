"""The testbed's SSH side: keys, sshd configs, the client ssh_config and known_hosts.

Everything lives in the state dir; nothing is written under the user's real ~/.ssh.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .system import TestbedError, find_exe, log_tail, run

CLIENT_KEY = "id_ed25519"
HOST_KEY = "ssh_host_ed25519_key"


@dataclass(frozen=True)
class Host:
    """One SSH host of the testbed: the loopback sandbox or a network-namespace host."""

    alias: str
    address: str
    port: int
    directory: Path
    docker_host: str
    netns: str | None = None
    user: str = "root"  # the login of this alias in the client ssh_config

    @property
    def host_key(self) -> Path:
        """The sshd's own private host key."""
        return self.directory / HOST_KEY

    @property
    def sshd_config(self) -> Path:
        """This host's sshd_config."""
        return self.directory / "sshd_config"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts (brackets only for a non-22 port)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def ensure_key(path: Path, comment: str) -> bool:
    """Create an ed25519 key pair unless it exists; return whether it was created."""
    if path.is_file() and path.with_suffix(".pub").is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run([find_exe("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return True


def render_sshd_config(
    host: Host, authorized_keys: Path, user_keys: Sequence[tuple[str, Path]] = ()
) -> str:
    """sshd_config of a throw-away sshd: key-only root login on one address.

    ``user_keys``: other users who may log in, each with its own AuthorizedKeysFile (sshd reads
    it as that user, who cannot read root's file in the 0700 state dir).
    """
    matches = [
        line
        for user, keys in user_keys
        for line in (f"Match User {user}", f"    AuthorizedKeysFile {keys}")
    ]
    return "\n".join(
        [
            f"# sshd of the jitsi-ops testbed host {host.alias!r}; written by tests/testbed",
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host.host_key}",
            f"PidFile {host.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # A clone under /tmp puts the key file below a world-writable directory, which
            # StrictModes refuses; the key and its directory are ours and mode 0600/0700.
            "StrictModes no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            # Each host talks to its own engine, like a real remote machine.
            f"SetEnv DOCKER_HOST={host.docker_host}",
            # Match blocks last: everything after a Match line belongs to it.
            *matches,
            "",
        ]
    )


def check_sshd_config(config: Path) -> None:
    """``sshd -t``: refuse to start an sshd whose config does not parse."""
    run([find_exe("sshd"), "-t", "-f", str(config)])


def sshd_argv(host: Host) -> list[str]:
    """The sshd command line (foreground, logging to stderr, which goes to its log file)."""
    return [find_exe("sshd"), "-D", "-e", "-f", str(host.sshd_config)]


def render_ssh_config(hosts: Sequence[Host], key: Path, known_hosts: Path) -> str:
    """The client ssh_config the tool and the tests use with ``ssh -F``."""
    blocks = ["# ssh_config of the jitsi-ops testbed; use with `ssh -F <this file> <alias>`"]
    for host in hosts:
        blocks.append(
            "\n".join(
                [
                    f"Host {host.alias}",
                    f"    HostName {host.address}",
                    f"    Port {host.port}",
                    f"    User {host.user}",
                    f"    IdentityFile {key}",
                    "    IdentitiesOnly yes",
                    f"    UserKnownHostsFile {known_hosts}",
                    "    GlobalKnownHostsFile /dev/null",
                    "    StrictHostKeyChecking yes",
                    "    UpdateHostKeys no",
                    "    BatchMode yes",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def render_known_hosts(hosts: Sequence[Host]) -> str:
    """known_hosts with each host key under its address and under its ssh_config alias."""
    lines: list[str] = []
    for host in hosts:
        key_type, key_data = host.host_key.with_suffix(".pub").read_text().split()[:2]
        lines += [f"{name} {key_type} {key_data}" for name in (host.known_hosts_name, host.alias)]
    # Several aliases (logins) of one sshd share its address line: keep each line once.
    return "\n".join(dict.fromkeys(lines)) + "\n"


def check_logins(hosts: Sequence[Host], ssh_config: Path, timeout: float = 15) -> None:
    """Log into every host once (in parallel) with the generated client config."""
    ssh = find_exe("ssh")
    procs = {
        host: subprocess.Popen(
            [ssh, "-F", str(ssh_config), "-o", "ConnectTimeout=5", host.alias, "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in hosts
    }
    failures: list[str] = []
    for host, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            err = f"no answer within {timeout:.0f} s"
        if proc.returncode != 0:
            sshd_log = log_tail(host.directory / "sshd.log", 2)
            failures.append(f"{host.alias}: {err.strip() or 'failed'} (sshd log: {sshd_log})")
    if failures:
        raise TestbedError("ssh login failed: " + "; ".join(failures))
