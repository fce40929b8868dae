"""A service the operator runs in the project from an overlay jitsi-ops does not ship (here a
stand-in named after upstream's prometheus.yml) survives `invoke deploy`: the deploy refuses
before changing anything instead of letting `up --remove-orphans` remove it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jitsi_ops.settings import Environment
from tests.e2e.test_deploy import NEW, OLD, at, containers, deploy, host_env

MONITORING_YML = """services:
  prometheus:
    image: {image}
    entrypoint: ["sleep", "infinity"]
    networks:
      meet.jitsi:
networks:
  meet.jitsi:
"""


def test_deploy_refuses_to_remove_a_running_monitoring_service(
    clean_sandbox: Environment, tmp_path: Path
) -> None:
    first = deploy(env=at(OLD))
    assert first.returncode == 0, first.stdout + first.stderr
    before = containers()
    overlay = tmp_path / "prometheus.yml"
    overlay.write_text(MONITORING_YML.format(image=before["jvb"][1]))
    project = clean_sandbox.deploy.project
    started = subprocess.run(
        ["docker", "compose", "-p", project, "-f", str(overlay), "up", "-d"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    running = containers()
    assert "prometheus" in running, running
    env_before = host_env()

    result = deploy(env=at(NEW))

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "prometheus (upstream's prometheus.yml)" in output, output
    after = containers()
    assert after == running, f"containers changed: {running} -> {after}"
    assert host_env() == env_before, "the deploy rewrote the host's .env"
    assert all(after[s][1].endswith(OLD) for s in ("web", "prosody", "jicofo", "jvb")), after
