"""The SSH layer against real sshd: an ssh_config ProxyJump (bastion) is honoured, and the
bastion's host key is held to the same strict policy as the target's; uploads are never
readable by others, not even for a moment; the lock appears complete and is given back on
Ctrl-C."""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_OPEN

from jitsi_ops import hoststate
from jitsi_ops.errors import HostKeyError, LockHeld
from jitsi_ops.settings import Host, SshOptions
from jitsi_ops.ssh import SshRunner
from tests.e2e.conftest import REPO_ROOT

TESTBED = REPO_ROOT / ".testbed"
JVB1_ADDRESS = "10.231.1.2"


def bastion_config(directory: Path, known_hosts: Path) -> Path:
    """`behind` is jvb1, reached only through the sandbox sshd as a ProxyJump bastion."""
    common = (
        f"    User root\n    IdentityFile {TESTBED / 'id_ed25519'}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n    StrictHostKeyChecking yes\n"
    )
    config = directory / "ssh_config"
    config.write_text(
        f"Host bastion\n    HostName 127.0.0.1\n    Port 2222\n{common}\n"
        f"Host behind\n    HostName {JVB1_ADDRESS}\n    Port 22\n    ProxyJump bastion\n{common}"
    )
    return config


@pytest.mark.usefixtures("testbed")
def test_proxyjump_reaches_the_host_through_the_bastion(tmp_path: Path) -> None:
    known = TESTBED / "known_hosts"
    runner = SshRunner(Host("behind"), SshOptions(bastion_config(tmp_path, known), known))
    try:
        addresses = runner.run(["ip", "-o", "-4", "addr", "show"]).stdout
        assert f"inet {JVB1_ADDRESS}/" in addresses, f"not on jvb1:\n{addresses}"
        # The connection's socket is a channel of the bastion's connection, not a TCP socket
        # to jvb1: the peer this machine talks to is the sandbox sshd.
        assert runner.peer_address() == "127.0.0.1", runner.peer_address()
    finally:
        runner.close()


@pytest.mark.usefixtures("testbed")
def test_a_bastion_with_a_changed_key_is_refused_before_any_command(tmp_path: Path) -> None:
    lines = (TESTBED / "known_hosts").read_text().splitlines()
    # The bastion's entry carries jvb1's key: the bastion presents a key that is not the one
    # on record, as a man in the middle would.
    jvb1_key = next(line.split(maxsplit=1)[1] for line in lines if line.startswith(JVB1_ADDRESS))
    tampered = [line for line in lines if not line.startswith("[127.0.0.1]:2222")]
    tampered.append(f"[127.0.0.1]:2222 {jvb1_key}")
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(tampered) + "\n")
    runner = SshRunner(Host("behind"), SshOptions(bastion_config(tmp_path, known), known))
    try:
        with pytest.raises(HostKeyError) as info:
            runner.run(["true"])
        assert "bastion" in info.value.message, info.value.message
        assert "HOST KEY CHANGED" in info.value.message, info.value.message
    finally:
        runner.close()
    assert "[127.0.0.1]:2222 " + jvb1_key in known.read_text(), "known_hosts was rewritten"


# --- uploads and the lock through the sandbox's real sshd ---------------------------------------


@pytest.fixture
def remote_dir(sandbox_runner: SshRunner) -> Iterator[str]:
    """A fresh directory on the sandbox host (0755, as a stack dir's parent often is)."""
    made = sandbox_runner.run(["mktemp", "-d", "/tmp/jitsi-ops-e2e-XXXXXXXX"]).stdout.strip()
    sandbox_runner.run(["chmod", "0755", made])
    yield made
    sandbox_runner.run(["rm", "-rf", "--", made])


def listing(runner: SshRunner, directory: str) -> list[str]:
    return sorted(runner.run(["ls", "-A", "--", directory]).stdout.split())


def test_uploads_are_never_readable_by_others_on_a_real_sshd(
    sandbox_runner: SshRunner, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file the upload creates is stat'ed over SFTP the moment the server answers its
    OPEN, before any other request of the upload (chmod, write) can run."""
    first_modes: dict[str, int] = {}
    original = paramiko.SFTPClient._request

    def watched(self: paramiko.SFTPClient, t: int, *args: Any) -> Any:
        answer = original(self, t, *args)
        if t == CMD_OPEN:
            path = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            first_modes.setdefault(path, stat.S_IMODE(self.lstat(path).st_mode))
        return answer

    monkeypatch.setattr(paramiko.SFTPClient, "_request", watched)
    secret = b"JVB_AUTH_PASSWORD=e2e-not-a-real-secret\n"
    sandbox_runner.put(secret, f"{remote_dir}/.env", 0o600)
    sandbox_runner.put(b"services: {}\n", f"{remote_dir}/docker-compose.yml", 0o644)
    assert len(first_modes) == 2, first_modes
    for path, mode in first_modes.items():
        assert posixpath.dirname(path) == remote_dir, path
        assert mode == 0o600, f"{path} was created {oct(mode)} on the host"
    env, compose = f"{remote_dir}/.env", f"{remote_dir}/docker-compose.yml"
    modes = sandbox_runner.run(["stat", "-c", "%n %a", "--", env, compose]).stdout
    assert modes.split() == [env, "600", compose, "644"], modes
    assert sandbox_runner.get(f"{remote_dir}/.env") == secret
    assert listing(sandbox_runner, remote_dir) == [".env", "docker-compose.yml"]


def test_a_failed_upload_leaves_no_temporary_file_on_the_host(
    sandbox_runner: SshRunner, remote_dir: str
) -> None:
    sandbox_runner.run(["mkdir", "-p", f"{remote_dir}/.env/in-the-way"])
    with pytest.raises(OSError, match="Failure"):
        sandbox_runner.put(b"KEY=value\n", f"{remote_dir}/.env", 0o600)
    assert listing(sandbox_runner, remote_dir) == [".env"], "temporary file left behind"


def test_the_lock_over_ssh_appears_with_its_owner_and_refuses_an_ownerless_one(
    sandbox_runner: SshRunner, remote_dir: str
) -> None:
    stack = f"{remote_dir}/stack"
    mine = hoststate.LockInfo("alice", "laptop", 4242, "2026-12-03T12:00:00Z", "e2e", "e2e-1")
    hoststate.acquire_lock(sandbox_runner, stack, mine)
    assert hoststate.read_lock(sandbox_runner, stack) == mine
    assert listing(sandbox_runner, f"{stack}/.jitsi-ops") == ["lock"], "staging left behind"
    with pytest.raises(LockHeld, match="alice@laptop"):
        hoststate.acquire_lock(sandbox_runner, stack, replace(mine, deploy_id="e2e-2"))
    assert hoststate.release_lock(sandbox_runner, stack, "e2e-1") is True

    # An older jitsi-ops interrupted between its mkdir and its owner write left this.
    sandbox_runner.run(["mkdir", "-m", "0700", "--", f"{stack}/.jitsi-ops/lock"])
    with pytest.raises(LockHeld, match=r"has no owner\.json") as caught:
        hoststate.acquire_lock(sandbox_runner, stack, mine)
    assert "invoke unlock --env" in caught.value.hint, caught.value.hint
    assert listing(sandbox_runner, f"{stack}/.jitsi-ops/lock") == [], "ownerless lock replaced"


def test_ctrl_c_right_after_the_lock_was_taken_over_ssh_gives_it_back(
    sandbox_runner: SshRunner, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = f"{remote_dir}/stack"
    mine = hoststate.LockInfo("alice", "laptop", 4242, "2026-12-03T12:00:00Z", "e2e", "e2e-1")
    original = SshRunner.run
    fired: list[bool] = []

    def run(self: SshRunner, argv: Sequence[str], **kwargs: Any) -> Any:
        result = original(self, argv, **kwargs)
        if argv[:3] == ["sh", "-c", hoststate._LOCK_SCRIPT] and not fired:
            fired.append(True)
            # The lock exists on the host, complete, when the answer is lost.
            assert original(self, ["test", "-s", f"{argv[4]}/owner.json"], check=False).ok
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(SshRunner, "run", run)
    with pytest.raises(KeyboardInterrupt):
        hoststate.acquire_lock(sandbox_runner, stack, mine)
    assert fired, "the lock command never ran"
    assert listing(sandbox_runner, f"{stack}/.jitsi-ops") == [], "lock left behind"
