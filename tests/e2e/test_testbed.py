"""The testbed's hosts are real: separate sshd hosts, and a namespaced host with its own engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.errors import HostKeyError
from jitsi_ops.settings import Host, SshOptions
from jitsi_ops.ssh import SshRunner
from tests.testbed.provision import TestbedInfo


def runner_for(testbed: TestbedInfo, alias: str) -> SshRunner:
    options = SshOptions(config_file=testbed.ssh_config, known_hosts=testbed.known_hosts)
    return SshRunner(Host(alias), options)


def test_namespaced_host_has_its_own_engine_and_reaches_the_registry(testbed: TestbedInfo) -> None:
    assert "jvb1" in testbed.hosts, testbed.hosts
    sandbox, jvb1 = runner_for(testbed, "sandbox"), runner_for(testbed, "jvb1")
    try:
        main_engine = sandbox.run(
            ["docker", "info", "--format", "{{.ID}} {{.DockerRootDir}}"]
        ).stdout
        jvb_engine = jvb1.run(["docker", "info", "--format", "{{.ID}} {{.DockerRootDir}}"]).stdout
        assert main_engine.split()[0] != jvb_engine.split()[0], (main_engine, jvb_engine)
        assert str(testbed.state_dir) in jvb_engine, f"jvb1 engine root: {jvb_engine}"
        # The host's own view of the network: only its veth address and loopback.
        addresses = jvb1.run(["ip", "-o", "-4", "addr", "show"]).stdout
        assert "10.231.1.2/30" in addresses, addresses
        pulled = jvb1.run(
            ["docker", "pull", "-q", f"{testbed.registry}/jitsi/jvb:stable-11146-2"], timeout=120
        )
        assert pulled.stdout.strip().endswith("jitsi/jvb:stable-11146-2"), pulled.stdout
    finally:
        sandbox.close()
        jvb1.close()


def test_changed_host_key_is_refused_before_any_command(
    testbed: TestbedInfo, tmp_path: Path
) -> None:
    """known_hosts lists another key (jvb1's) for the sandbox address: strict policy refuses."""
    lines = testbed.known_hosts.read_text().splitlines()
    jvb1_key = next(line.split(maxsplit=1)[1] for line in lines if line.startswith("10.231.1.2"))
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.1]:2222 {jvb1_key}\n")
    runner = SshRunner(
        Host("sandbox"), SshOptions(config_file=testbed.ssh_config, known_hosts=forged)
    )
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        runner.run(["touch", str(tmp_path / "ran")])
    assert not (tmp_path / "ran").exists()
