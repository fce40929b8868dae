"""A rolling upgrade across three bridge hosts (jvb1..jvb3, each a network namespace with its own
sshd and dockerd, all reaching the sandbox's prosody on the main host's private address).

- OLD -> NEW: the main host's bridge (held out of the main host's apply), then jvb1..jvb3, are
  drained (seen on each bridge itself: drain off, on, off), upgraded and gated one at a time;
  the roll's journal shows no two bridges out of service at once;
- `invoke rollback` brings the four hosts back to OLD;
- OLD -> NEW again with jvb2's NEW jvb image replaced on that host (after the pull) by the broken
  stand-in release, which never joins the brewery: jvb2 fails its step gate, the roll stops,
  jvb3 is never touched, every changed host is rolled back and verified on OLD.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitsi_ops.settings import Environment
from tests.e2e.conftest import BRIDGE_HOSTS, run_invoke
from tests.e2e.test_fleet_guard import Deploy, DrainWatch, last_audit
from tests.e2e.test_multihost import (
    NEW,
    OLD,
    deploy,
    host_containers,
    on_host,
    operator_checkout,
    remove_project,
    secrets,
)

BRIDGES = [f"jvb{n}" for n in range(1, BRIDGE_HOSTS + 1)]
ROLLED = ["sandbox", *BRIDGES]  # the main host's bridge goes first
IMAGE = "127.0.0.1:5000/jitsi/jvb"


@pytest.fixture
def four_hosts(clean_sandbox: Environment, tmp_path: Path) -> Iterator[Path]:
    """The sandbox as main host plus jvb1..jvb3 as bridge hosts."""
    for alias in BRIDGES:
        remove_project(alias)
    yield operator_checkout(tmp_path, len(BRIDGES))
    for alias in BRIDGES:
        remove_project(alias)
    # jvb2's NEW tag may point at the broken image: drop the tag, the next pull fetches it anew.
    on_host("jvb2", f"docker image rm -f {IMAGE}:{NEW} >/dev/null 2>&1; true")


def releases() -> dict[str, str]:
    """Bridge host -> the tag its jvb container runs."""
    return {alias: host_containers(alias)["jvb"][1].rsplit(":", 1)[1] for alias in BRIDGES}


def out_of_service(journal: list[dict[str, object]]) -> dict[str, tuple[float, float]]:
    """Per host: from its drain on to its drain off (the time it serves no new conference)."""
    spans: dict[str, tuple[float, float]] = {}
    for event in journal:
        host, what, at = str(event["host"]), event["what"], float(event["at"])  # type: ignore[arg-type]
        if what == "drain on":
            spans[host] = (at, at)
        elif what in ("drain off", "drain stuck") and host in spans:
            spans[host] = (spans[host][0], at)
    return spans


def test_three_bridges_roll_one_at_a_time_and_a_broken_one_stops_the_roll(
    four_hosts: Path,
) -> None:
    first = deploy(four_hosts, OLD)
    assert first.returncode == 0, first.stdout + first.stderr
    assert releases() == dict.fromkeys(BRIDGES, OLD)

    # OLD -> NEW, every bridge drained in turn.
    watches = {alias: DrainWatch(alias) for alias in ROLLED}
    upgrade = deploy(four_hosts, NEW)
    seen = {alias: watch.stop() for alias, watch in watches.items()}
    output = upgrade.stdout + upgrade.stderr
    assert upgrade.returncode == 0, output
    assert f"deployed {NEW} (verified)" in output, output
    for alias in ROLLED:
        assert seen[alias][:3] == [False, True, False], f"drain as seen on {alias}: {seen}"
    journal = last_audit()["roll"]
    assert isinstance(journal, list)
    order = [(e["host"], e["what"]) for e in journal if e["what"] in ("drain on", "drain off")]
    assert order == [(a, w) for a in ROLLED for w in ("drain on", "drain off")], order
    spans = sorted(out_of_service(journal).values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"two bridges out of service at once: {spans}"
    assert releases() == dict.fromkeys(BRIDGES, NEW)

    # Back to OLD on every host.
    back = run_invoke("rollback", "--env", "sandbox", "--yes", root=four_hosts)
    assert back.returncode == 0, back.stdout + back.stderr
    assert releases() == dict.fromkeys(BRIDGES, OLD)
    jvb3_before = host_containers("jvb3")

    # OLD -> NEW with a broken bridge release on jvb2 only.
    pulled = on_host("jvb2", f"docker pull -q {IMAGE}:standin-broken")
    assert pulled.returncode == 0, pulled.stderr
    rolling = Deploy(four_hosts, release=NEW)
    assert rolling.wait_for("jvb1: drain on", timeout=600), "".join(rolling.lines)
    # After the pull phase, before jvb2's turn: the host's NEW tag now names the broken image.
    trap = on_host("jvb2", f"docker tag {IMAGE}:standin-broken {IMAGE}:{NEW}")
    assert trap.returncode == 0, trap.stderr
    code, output = rolling.finish(timeout=900)
    for value in secrets():
        assert value not in output, "a secret value appeared in output"
    assert code == 1, output
    assert "jvb2 failed its gate" in output, output
    assert f"rolled back to {OLD} (verified)" in output, output
    assert f"releases now: sandbox {OLD}, jvb1 {OLD}, jvb2 {OLD}, jvb3 {OLD}" in output, output
    assert host_containers("jvb3") == jvb3_before, "jvb3 was touched after the roll stopped"
    whats = [(e["host"], e["what"]) for e in last_audit()["roll"]]  # type: ignore[attr-defined]
    assert ("jvb2", "failed") in whats and ("jvb2", "drain off") in whats, whats
    assert not any(host == "jvb3" for host, _ in whats), whats
    verify = run_invoke(
        "verify", "--env", "sandbox", env={"JITSI_OPS_JITSI_IMAGE_VERSION": OLD}, root=four_hosts
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
