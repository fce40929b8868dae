"""e2e: media.ice, the path a third participant's audio/video takes to every bridge.

From this machine (outside the hosts, like a participant), the probe sends ICE connectivity
checks to the candidates of a colibri2 conference it created on each bridge over SSH:
- the sandbox (main host, JVB_PORT/udp published on 127.0.0.1) passes;
- jvb1 (its own network namespace, reached at its veth address) passes, fails with "no answer"
  while a firewall rule in its namespace drops JVB_PORT/udp, and a deploy that makes it
  advertise an address that is not its own fails the gate and is rolled back;
- after every probe, /colibri/stats of each bridge shows no leftover probe conference.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import stack
from jitsi_ops.bridge_rest import Candidate, IceTransport
from jitsi_ops.settings import Environment
from jitsi_ops.ssh import SshRunner
from jitsi_ops.verify import verify
from jitsi_ops.verify.media import stun_probe
from tests.e2e.conftest import run_invoke
from tests.e2e.test_multihost import (  # noqa: F401 (two_hosts is a fixture)
    JVB1_ADDRESS,
    MAIN_PRIVATE_ADDRESS,
    NEW,
    OLD,
    deploy,
    jvb1_containers,
    secrets,
    two_hosts,
)

THIRD = "a third participant will lose audio/video"
NETNS = "/run/netns/jitsiops-h1"  # jvb1's network namespace (tests/testbed/netns.py)
# In the raw table: before Docker's DNAT, so the published port is really cut off.
DROP_MEDIA = ["PREROUTING", "-p", "udp", "--dport", "10000", "-j", "DROP"]


def sandbox_stats() -> dict[str, Any]:
    """/colibri/stats of the sandbox's bridge (published on the machine's 127.0.0.1)."""
    with urllib.request.urlopen("http://127.0.0.1:8080/colibri/stats", timeout=5) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


def jvb1_stats() -> dict[str, Any]:
    """/colibri/stats of jvb1's bridge (published on 127.0.0.1 inside its namespace)."""
    done = subprocess.run(
        ["nsenter", f"--net={NETNS}", "curl", "-sS", "--max-time", "5",
         "http://127.0.0.1:8080/colibri/stats"],
        capture_output=True, text=True, check=True, timeout=15,
    )  # fmt: skip
    stats: dict[str, Any] = json.loads(done.stdout)
    return stats


def no_conferences(stats: dict[str, Any]) -> bool:
    return (stats["conferences"], stats["endpoints"], stats["participants"]) == (0, 0, 0)


def media_checks(root: Path | None = None, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """`invoke verify --only media.ice --json`: exit code and the checks by host."""
    args = ["verify", "--env", "sandbox", "--only", "media.ice", "--json", *extra]
    result = run_invoke(*args, root=root) if root else run_invoke(*args)
    assert result.stdout.strip(), result.stderr
    document = json.loads(result.stdout)
    return result.returncode, {c["host"]: c for c in document["checks"]}


@pytest.fixture
def deployed(clean_sandbox: Environment, sandbox_runner: SshRunner) -> Environment:
    """A freshly applied sandbox whose bridge answers."""
    stack.apply(clean_sandbox, sandbox_runner)
    report = verify(
        clean_sandbox,
        {clean_sandbox.deploy.main_host: sandbox_runner},
        only=["conference.jvb_health"],
        timeout=120,
    )
    assert report.ok, report.failures
    return clean_sandbox


def test_media_ice_passes_on_the_sandbox_and_leaves_no_probe_conference(
    deployed: Environment,
) -> None:
    assert no_conferences(sandbox_stats()), sandbox_stats()
    code, checks = media_checks()
    check = checks["sandbox"]
    assert code == 0 and check["status"] == "pass", check
    assert (
        "127.0.0.1:10000/udp (srflx) answered a Binding Success with valid MESSAGE-INTEGRITY"
        in (check["observed"])
    ), check
    assert no_conferences(sandbox_stats()), f"a probe conference was left: {sandbox_stats()}"


def test_the_bridge_drops_checks_without_valid_credentials(deployed: Environment) -> None:
    # What makes a pass meaningful: a bridge answers only its own ufrag with its own pwd.
    guess = IceTransport(
        "notaufrag", "not-the-pwd", (Candidate("127.0.0.1", 10000, "srflx", "udp"),)
    )
    outcome = stun_probe(guess, interval=0.2)
    assert not outcome.replies, outcome


@contextlib.contextmanager
def media_blocked_on_jvb1() -> Iterator[None]:
    """A firewall rule in jvb1's namespace dropping JVB_PORT/udp before Docker's DNAT."""
    subprocess.run(
        ["nsenter", f"--net={NETNS}", "iptables", "-t", "raw", "-I", *DROP_MEDIA], check=True
    )
    try:
        yield
    finally:
        subprocess.run(
            ["nsenter", f"--net={NETNS}", "iptables", "-t", "raw", "-D", *DROP_MEDIA], check=True
        )


def test_media_path_of_the_bridge_host(two_hosts: Path) -> None:  # noqa: F811 (fixture)
    first = deploy(two_hosts, OLD)
    assert first.returncode == 0, first.stdout + first.stderr

    code, checks = media_checks(two_hosts)
    assert code == 0, checks
    assert f"{JVB1_ADDRESS}:10000/udp (srflx) answered" in checks["jvb1"]["observed"], checks
    assert checks["sandbox"]["status"] == "pass", checks
    assert no_conferences(sandbox_stats()) and no_conferences(jvb1_stats())
    plan = run_invoke("plan", "--env", "sandbox", root=two_hosts)
    assert "media path before: sandbox ok, jvb1 ok" in plan.stdout, plan.stdout + plan.stderr

    # A firewall dropping the media port: the bridge's REST still answers, media does not.
    with media_blocked_on_jvb1():
        code, checks = media_checks(two_hosts, "--timeout", "20")
        plan = run_invoke("plan", "--env", "sandbox", root=two_hosts)
    # The plan of the next deploy would say the media path was broken before it.
    assert f"jvb1 BROKEN (no answer from {JVB1_ADDRESS}:10000/udp" in plan.stdout, plan.stdout
    jvb1 = checks["jvb1"]
    assert code == 1 and jvb1["status"] == "fail", checks
    assert jvb1["observed"].startswith(f"no answer from {JVB1_ADDRESS}:10000/udp"), jvb1
    assert THIRD in jvb1["observed"], jvb1
    assert f"open UDP 10000 to jvb1 at {JVB1_ADDRESS}" in jvb1["hint"], jvb1
    assert checks["sandbox"]["status"] == "pass", checks
    assert no_conferences(jvb1_stats()), f"a failed probe left a conference: {jvb1_stats()}"

    # A deploy that makes jvb1 advertise an address that is not its own fails the gate on
    # media.ice and is rolled back; the plan said the media path worked before.
    toml = two_hosts / "env" / "sandbox" / "deploy.toml"
    text = toml.read_text()
    toml.write_text(
        text.replace(
            f'JVB_ADVERTISE_IPS = "{JVB1_ADDRESS}"', f'JVB_ADVERTISE_IPS = "{MAIN_PRIVATE_ADDRESS}"'
        )
    )
    bad = run_invoke(
        "deploy", "--env", "sandbox", "--timeout", "30", "--json",
        env={"JITSI_OPS_JITSI_IMAGE_VERSION": NEW}, root=two_hosts,
    )  # fmt: skip
    output = bad.stdout + bad.stderr
    for value in secrets():
        assert value not in output, "a secret value appeared in output"
    assert bad.returncode == 1, output
    report = json.loads(bad.stdout)
    assert report["result"] == "rolled-back", report["result"]
    assert report["media_before"]["jvb1"]["status"] == "pass", report["media_before"]
    failed = report["verification"]["failed"]
    assert [(f["check"], f["host"]) for f in failed] == [("media.ice", "jvb1")], failed
    assert failed[0]["observed"].startswith(f"no answer from {MAIN_PRIVATE_ADDRESS}:10000/udp"), (
        failed
    )
    assert THIRD in failed[0]["observed"], failed
    # jvb1's own step of the rolling upgrade found it (the final gate never ran).
    roll = next(p for p in report["phases"] if p["name"] == "roll")
    assert "jvb1: media path broken by this deploy" in roll["detail"], roll
    assert jvb1_containers()["jvb"][1].endswith(f"/jvb:{OLD}"), "jvb1 was not rolled back"
    assert no_conferences(sandbox_stats()) and no_conferences(jvb1_stats())

    toml.write_text(text)
    code, checks = media_checks(two_hosts)
    assert code == 0, checks
