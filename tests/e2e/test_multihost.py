"""`invoke deploy` on an environment with a bridge host: the sandbox (main) plus jvb1, a network
namespace with its own sshd and dockerd, whose videobridge reaches the main host's prosody
over the published XMPP port (remote-jvb.yml) and runs from jvb.yml alone.

The namespace shares the filesystem with the sandbox, so jvb1 gets its own stack, CONFIG and
backup directories through its deploy.toml host entry (on real machines they may be the same).
"""

from __future__ import annotations

import json
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from jitsi_ops.settings import Environment
from tests.e2e.conftest import REPO_ROOT, SANDBOX_ROOT, by_service, run_invoke
from tests.testbed.fleetenv import fleet_checkout
from tests.testbed.netns import MAIN_PRIVATE_ADDRESS  # where every bridge host reaches prosody

OLD, NEW = "stable-11146-1", "stable-11146-2"
PROJECT = "jitsi-sandbox"
JVB1_ROOT = Path(SANDBOX_ROOT) / "jvb1"
JVB1_STACK = JVB1_ROOT / "stack"
JVB1_BACKUPS = JVB1_ROOT / "backups"
MAIN_STACK = Path(SANDBOX_ROOT) / "stack"
JVB1_ADDRESS = "10.231.1.2"
JVB1_NETNS = "jitsiops-h1"  # the testbed's network namespace of jvb1
TESTBED = REPO_ROOT / ".testbed"


def on_host(alias: str, command: str) -> subprocess.CompletedProcess[str]:
    """A shell command on a bridge host over the testbed's ssh_config (its own dockerd)."""
    return subprocess.run(
        ["ssh", "-F", str(TESTBED / "ssh_config"), alias, command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def on_jvb1(command: str) -> subprocess.CompletedProcess[str]:
    return on_host("jvb1", command)


def host_containers(alias: str) -> dict[str, tuple[str, str, str]]:
    """service -> (id, image, started at) of the project on a bridge host."""
    listing = on_host(
        alias,
        f"docker ps -aq --filter label=com.docker.compose.project={PROJECT} | "
        "xargs -r docker inspect",
    )
    assert listing.returncode == 0, listing.stderr
    inspected = json.loads(listing.stdout or "[]")
    return by_service(inspected)


def jvb1_containers() -> dict[str, tuple[str, str, str]]:
    return host_containers("jvb1")


def remove_project(alias: str) -> None:
    on_host(
        alias,
        f"docker ps -aq --filter label=com.docker.compose.project={PROJECT} | xargs -r docker rm -f; "
        f"docker network ls -q --filter label=com.docker.compose.project={PROJECT} | "
        "xargs -r docker network rm",
    )


def remove_jvb1_project() -> None:
    remove_project("jvb1")


def jicofo_bridges() -> int:
    """operational_bridge_count of the sandbox's jicofo (REST on the sandbox's 127.0.0.1)."""
    with urllib.request.urlopen("http://127.0.0.1:8888/stats", timeout=5) as answer:
        stats = json.loads(answer.read())
    selector = stats.get("bridge_selector", stats)
    return int(selector["operational_bridge_count"])


def secrets() -> list[str]:
    values = dotenv_values(REPO_ROOT / "env" / "sandbox" / "secrets.env")
    return [v for v in values.values() if v]


def operator_checkout(tmp_path: Path, bridges: int) -> Path:
    """An operator checkout whose sandbox environment has jvb1..jvbN as bridge hosts."""
    return fleet_checkout(REPO_ROOT, tmp_path / "ops", bridges, Path(SANDBOX_ROOT))


@pytest.fixture
def two_hosts(clean_sandbox: Environment, tmp_path: Path) -> Iterator[Path]:
    """An operator checkout whose sandbox environment has jvb1 as a bridge host."""
    remove_jvb1_project()
    yield operator_checkout(tmp_path, 1)
    remove_jvb1_project()


def deploy(repo: Path, release: str) -> subprocess.CompletedProcess[str]:
    result = run_invoke(
        "deploy", "--env", "sandbox", env={"JITSI_OPS_JITSI_IMAGE_VERSION": release}, root=repo
    )
    for value in secrets():
        assert value not in result.stdout + result.stderr, "a secret value appeared in output"
    return result


def test_bridge_host_joins_and_is_upgraded_with_the_main_host(two_hosts: Path) -> None:
    first = deploy(two_hosts, OLD)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output
    assert "jvb1 (jvb)" in output and f"deployed {OLD} (verified)" in output, output
    assert jicofo_bridges() == 2, "jicofo does not see both bridges"

    bridge = jvb1_containers()
    assert set(bridge) == {"jvb"}, f"jvb1 runs {sorted(bridge)}"
    assert bridge["jvb"][1].endswith(f"/jvb:{OLD}"), bridge
    bridge_env = dotenv_values(JVB1_STACK / ".env", interpolate=False)
    assert bridge_env["COMPOSE_FILE"] == "jvb.yml", bridge_env.get("COMPOSE_FILE")
    assert bridge_env["JVB_XMPP_SERVER"] == MAIN_PRIVATE_ADDRESS
    assert bridge_env["JVB_ADVERTISE_IPS"] == JVB1_ADDRESS
    assert bridge_env.get("JVB_AUTH_PASSWORD"), "the bridge needs its XMPP password"
    leaked = sorted(k for k in ("JICOFO_AUTH_PASSWORD", "JIGASI_XMPP_PASSWORD") if k in bridge_env)
    assert not leaked, f"the bridge host got passwords it does not use: {leaked}"
    assert stat.S_IMODE((JVB1_STACK / ".env").stat().st_mode) == 0o600
    main_env = dotenv_values(MAIN_STACK / ".env", interpolate=False)
    assert "remote-jvb.yml" in (main_env["COMPOSE_FILE"] or "").split(":"), main_env["COMPOSE_FILE"]
    assert main_env["JVB_ADVERTISE_IPS"] == "127.0.0.1", "bridge values leaked into the main host"
    state = json.loads((JVB1_STACK / ".jitsi-ops" / "state.json").read_text())
    assert state["release"] == OLD, state

    upgrade = deploy(two_hosts, NEW)
    output = upgrade.stdout + upgrade.stderr
    assert upgrade.returncode == 0, output
    assert f"deployed {NEW} (verified)" in output, output
    upgraded = jvb1_containers()
    assert upgraded["jvb"][1].endswith(f"/jvb:{NEW}"), upgraded
    assert upgraded["jvb"][0] != bridge["jvb"][0], "the bridge container was not recreated"
    assert jicofo_bridges() == 2
    manifests = sorted(JVB1_BACKUPS.glob("*.json"))
    assert manifests, f"no backup on jvb1 in {JVB1_BACKUPS}"
    assert json.loads(manifests[-1].read_text())["release"] == OLD

    status = run_invoke("status", "--env", "sandbox", "--json", root=two_hosts)
    assert status.returncode == 0, status.stdout + status.stderr
    bridges = json.loads(status.stdout)["bridges"]
    assert [(b["host"], b["release"]) for b in bridges] == [("jvb1", NEW)], bridges
    assert [s["service"] for s in bridges[0]["services"]] == ["jvb"], bridges

    again = deploy(two_hosts, NEW)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout, again.stdout
    assert jvb1_containers() == upgraded, "a no-op redeploy restarted the bridge"

    plan = run_invoke(
        "plan", "--env", "sandbox", env={"JITSI_OPS_JITSI_IMAGE_VERSION": OLD}, root=two_hosts
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # Going back is planned on both hosts: the bridge's own section names its image change.
    bridge_section = plan.stdout.split("jvb1:", 1)[-1]
    assert "jvb1:" in plan.stdout and f"jvb:{OLD}" in bridge_section, plan.stdout


def test_failed_gate_rolls_back_the_bridge_host_too(two_hosts: Path) -> None:
    first = deploy(two_hosts, OLD)
    assert first.returncode == 0, first.stdout + first.stderr
    before = jvb1_containers()
    env_before = (JVB1_STACK / ".env").read_bytes()

    broken = run_invoke(
        "deploy",
        "--env",
        "sandbox",
        "--timeout",
        "30",
        env={"JITSI_OPS_JITSI_IMAGE_VERSION": "standin-broken"},
        root=two_hosts,
    )
    output = broken.stdout + broken.stderr
    for value in secrets():
        assert value not in output, "a secret value appeared in output"
    assert broken.returncode == 1, output
    assert f"rolled back to {OLD} (verified)" in output, output
    after = jvb1_containers()
    assert after["jvb"][1] == before["jvb"][1], f"jvb1 runs {after['jvb'][1]} after the rollback"
    assert (JVB1_STACK / ".env").read_bytes() == env_before, "jvb1's previous .env is not back"
    assert jicofo_bridges() == 2, "the restored bridges did not rejoin"


def hold_port_on_jvb1() -> tuple[subprocess.Popen[str], int]:
    """A process in jvb1's network namespace listening on a free 127.0.0.1 port there (and
    only there: the main host's same port stays free); returns it and the port."""
    holder = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{JVB1_NETNS}",
            "python3",
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
            "print(s.getsockname()[1], flush=True); time.sleep(900)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    return holder, int(holder.stdout.readline())


def test_compose_up_failing_on_the_bridge_rolls_back_both_hosts(two_hosts: Path) -> None:
    """The main host's apply worked, jvb1's `docker compose up` fails for real (its jvb's REST
    port is taken on jvb1): both hosts go back to what they ran."""
    first = deploy(two_hosts, OLD)
    assert first.returncode == 0, first.stdout + first.stderr
    bridge_before, main_before = jvb1_containers(), containers_of_main()
    envs_before = [(JVB1_STACK / ".env").read_bytes(), (MAIN_STACK / ".env").read_bytes()]
    holder, port = hold_port_on_jvb1()
    try:
        failed = run_invoke(
            "deploy",
            "--env",
            "sandbox",
            env={"JITSI_OPS_JITSI_IMAGE_VERSION": NEW, "JITSI_OPS_JVB_COLIBRI_PORT": str(port)},
            root=two_hosts,
        )
    finally:
        holder.kill()
        holder.wait()
    output = failed.stdout + failed.stderr
    for value in secrets():
        assert value not in output, "a secret value appeared in output"
    assert failed.returncode == 1, output
    last = failed.stdout.strip().splitlines()[-1]
    # Bridge hosts change in the roll phase (one drained step each), after the main host.
    assert last.startswith("FAILED: roll failed: ") and f":{port}" in last, last
    assert f"rolled back to {OLD} (verified)" in last, last
    rollback = next(line for line in output.splitlines() if line.startswith("  rollback "))
    assert "jvb1: restored" in rollback, rollback
    after = jvb1_containers()
    assert after["jvb"][1] == bridge_before["jvb"][1], f"jvb1 runs {after['jvb'][1]}"
    main_after = containers_of_main()
    assert {s: i for s, (_, i, _) in main_after.items()} == {
        s: i for s, (_, i, _) in main_before.items()
    }, main_after
    envs_after = [(JVB1_STACK / ".env").read_bytes(), (MAIN_STACK / ".env").read_bytes()]
    assert envs_after == envs_before, "a previous .env is not back"
    assert jicofo_bridges() == 2, "the restored bridges did not rejoin"


def containers_of_main() -> dict[str, tuple[str, str, str]]:
    """service -> (id, image, started at) of the project on the sandbox (main) host."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    inspected = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    return by_service(json.loads(inspected))


def main_jvb_image() -> str:
    """The image the sandbox's own jvb container runs (the main host's dockerd)."""
    listing = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=jvb",
            "--format",
            "{{.Image}}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return listing.stdout.strip()


def releases() -> tuple[str, str, str, str]:
    """(main state.json release, main jvb image, jvb1 state.json release, jvb1 jvb image)."""
    main_state = json.loads((MAIN_STACK / ".jitsi-ops" / "state.json").read_text())
    bridge_state = json.loads((JVB1_STACK / ".jitsi-ops" / "state.json").read_text())
    return (
        main_state["release"],
        main_jvb_image().rsplit(":", 1)[-1],
        bridge_state["release"],
        jvb1_containers()["jvb"][1].rsplit(":", 1)[-1],
    )


def test_rollback_and_restore_bring_back_every_host_and_logs_take_a_host(
    two_hosts: Path,
) -> None:
    for release in (OLD, NEW):
        deployed = deploy(two_hosts, release)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    bridge_env_new = (JVB1_STACK / ".env").read_bytes()

    logs = run_invoke("logs", "--env", "sandbox", "--host", "jvb1", "--tail", "5", root=two_hosts)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    services = {line.split("|", 1)[0].strip() for line in logs.stdout.splitlines() if "|" in line}
    assert services and all(s.startswith("jvb") for s in services), logs.stdout
    every = run_invoke("logs", "--env", "sandbox", "--tail", "2", root=two_hosts)
    assert every.returncode == 0, every.stderr
    prefixes = {line.split(": ", 1)[0] for line in every.stdout.splitlines() if ": " in line}
    assert {"sandbox", "jvb1"} <= prefixes, every.stdout
    unknown = run_invoke("logs", "--env", "sandbox", "--host", "jvb9", root=two_hosts)
    assert unknown.returncode == 1 and "has no host 'jvb9'" in unknown.stderr, unknown.stderr

    # The last deploy backed up both hosts under its id: rollback brings both back to OLD.
    back = run_invoke("rollback", "--env", "sandbox", "--yes", "--json", root=two_hosts)
    for value in secrets():
        assert value not in back.stdout + back.stderr, "a secret value appeared in output"
    assert back.returncode == 0, back.stdout + back.stderr
    report = json.loads(back.stdout)
    assert [(h["host"], h["result"]) for h in report["hosts"]] == [
        ("sandbox", "restored"),
        ("jvb1", "restored"),
    ], report
    assert releases() == (OLD, OLD, OLD, OLD), releases()
    assert jicofo_bridges() == 2, "the restored bridges did not rejoin"

    # The rollback's safety backup is a set too: restoring it brings both hosts to NEW again.
    safety = report["safety_backup_id"]
    assert (JVB1_BACKUPS / f"{safety}.tar.gz").exists(), sorted(JVB1_BACKUPS.iterdir())
    again = run_invoke("restore", "--env", "sandbox", "--backup", safety, "--yes", root=two_hosts)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert f"restored {safety} ({NEW}) on 2 host(s) (verified)" in output, output
    assert releases() == (NEW, NEW, NEW, NEW), releases()
    assert (JVB1_STACK / ".env").read_bytes() == bridge_env_new
