"""The SSH layer against real sshd: an ssh_config ProxyJump (bastion) is honoured, and the
bastion's host key is held to the same strict policy as the target's."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.errors import HostKeyError
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
