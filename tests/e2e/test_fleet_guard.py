"""The conference guard and the rolling bridge upgrade on the sandbox plus jvb1 (see
test_multihost): a "live meeting" is a colibri2 conference held open on jvb1's bridge.

- refuse: `deploy` names the counts and changes nothing;
- wait: it waits (live line) and goes on once the test ends the meeting; the upgrade then
  drains jvb1 (observed on the bridge itself: drain on, then off) around its apply and gate;
- force: goes over a live meeting, recorded in the audit line; a broken bridge release
  (`standin-broken`) fails the roll's first step (the main host, its jvb drained), the roll
  stops there with jvb1 untouched, drain is lifted, and the main host runs the previous
  release again, verified.

The rolling upgrade across three bridge hosts is test_fleet_roll's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from jitsi_ops import bridge_rest
from jitsi_ops.verify.media import stun_probe
from tests.e2e.test_multihost import (
    JVB1_ADDRESS,
    MAIN_STACK,
    NEW,
    OLD,
    TESTBED,
    deploy,
    jvb1_containers,
    secrets,
    two_hosts,
)

__all__ = ["two_hosts"]  # the fixture, shared with test_multihost

SSH = ["ssh", "-F", str(TESTBED / "ssh_config"), "jvb1"]


def colibri(method: str, path: str, body: dict[str, object]) -> str:
    """A colibri2 request to jvb1's bridge REST (its 127.0.0.1:8080), as jicofo would send."""
    command = (
        f"curl -sS -f -X {method} -H 'Content-Type: application/json' --data-binary @- "
        f"http://127.0.0.1:8080{path}"
    )
    done = subprocess.run(
        [*SSH, command],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class LiveMeeting:
    """One conference with one endpoint on jvb1, open until end().

    Like a participant's browser (ICE consent freshness), it sends a connectivity check to the
    bridge every few seconds: a bridge expires an endpoint idle for a minute
    (videobridge.entity-expiration), the stand-in too."""

    def __init__(self) -> None:
        self.conference = bridge_rest.ProbeConference(
            str(uuid.uuid4()), "e2e-live-meeting", f"alice{uuid.uuid4().hex[:6]}"
        )
        created = colibri(
            "POST", bridge_rest.CONFERENCES_PATH, bridge_rest.create_request(self.conference)
        )
        self.transport = bridge_rest.parse_conference_modified(created, self.conference.endpoint_id)
        self.ended = threading.Event()
        self.keepalive = threading.Thread(target=self._consent, daemon=True)
        self.keepalive.start()

    def _consent(self) -> None:
        while not self.ended.wait(5):
            stun_probe(self.transport, tries=1, interval=0.5, only=[JVB1_ADDRESS])

    def end(self) -> None:
        self.ended.set()
        colibri(
            "PATCH",
            f"{bridge_rest.CONFERENCES_PATH}/{self.conference.meeting_id}",
            bridge_rest.expire_request(self.conference),
        )


DRAIN_POLL = """
import time, urllib.request
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/colibri/drain", timeout=1) as answer:
            print(answer.read().decode(), flush=True)
    except OSError:
        print(flush=True)
    time.sleep(0.05)
"""


class DrainWatch:
    """Polls a bridge host's GET /colibri/drain over one SSH session; `seen` lists the changes."""

    def __init__(self, alias: str = "jvb1") -> None:
        # Every 50 ms from one process on the host: between drain on and the old container's
        # stop there may be well under a second.
        loop = shlex.join(["python3", "-u", "-c", DRAIN_POLL])
        self.process = subprocess.Popen(
            ["ssh", "-F", str(TESTBED / "ssh_config"), alias, loop],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.seen: list[bool] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                drain = bool(json.loads(line)["drain"])
            except (ValueError, KeyError, TypeError):
                continue  # the bridge restarting: no answer
            if not self.seen or self.seen[-1] != drain:
                self.seen.append(drain)

    def stop(self) -> list[bool]:
        self.process.kill()
        self.process.wait(timeout=10)
        return self.seen


def last_audit() -> dict[str, object]:
    lines = (MAIN_STACK / ".jitsi-ops" / "audit.log").read_text().splitlines()
    return dict(json.loads(lines[-1]))


class Deploy:
    """`invoke deploy` running in the background; its output lines collected as they come."""

    def __init__(self, repo: Path, *args: str, release: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "deploy", "--env", "sandbox", *args],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "JITSI_OPS_JITSI_IMAGE_VERSION": release},
        )
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.2)
        return any(text in line for line in self.lines)

    def finish(self, timeout: float) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code, "".join(self.lines)


def test_guard_refuses_waits_and_forces_and_the_bridge_rolls_drained(two_hosts: Path) -> None:
    first = deploy(two_hosts, OLD)
    assert first.returncode == 0, first.stdout + first.stderr
    bridge_before = jvb1_containers()
    state_before = (MAIN_STACK / ".jitsi-ops" / "state.json").read_bytes()

    # refuse (the default): counts, nothing changed.
    meeting = LiveMeeting()
    refused = deploy(two_hosts, NEW)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "participant(s) live" in output, output
    assert "jvb1 jvb: 1 conference(s), 1 participant(s)" in output, output
    assert "nothing was changed" in output and "--guard wait" in output, output
    assert jvb1_containers() == bridge_before, "a refused deploy touched jvb1"
    assert (MAIN_STACK / ".jitsi-ops" / "state.json").read_bytes() == state_before

    # wait: goes on once the meeting ends; jvb1 is drained around its upgrade.
    watch = DrainWatch()
    started = time.monotonic()
    waiting = Deploy(two_hosts, "--guard", "wait", "--max-wait", "3m", release=NEW)
    live_line = "waiting for 1 conference(s), 1 participant(s);"
    saw_wait = waiting.wait_for(live_line, timeout=120)
    meeting.end()
    code, output = waiting.finish(timeout=600)
    seen = watch.stop()
    print(f"wait + rolling upgrade: {time.monotonic() - started:.1f}s")
    assert saw_wait, f"no live line while waiting: {output}"
    assert code == 0, output
    assert f"deployed {NEW} (verified)" in output, output
    assert seen[:3] == [False, True, False], f"drain as seen on jvb1: {seen}"
    audit = last_audit()
    assert audit["guard"]["outcome"] == "waited", audit  # type: ignore[index]
    steps = [(e["host"], e["what"]) for e in audit["roll"]]  # type: ignore[attr-defined]
    # The main host's bridge first (held out of the main host's apply), then jvb1.
    assert steps == [
        (host, what)
        for host in ("sandbox", "jvb1")
        for what in ("drain on", "drained", "applied", "gated", "drain off")
    ], steps
    assert jvb1_containers()["jvb"][1].endswith(f"/jvb:{NEW}")

    # force over a live meeting, onto a broken bridge release: the roll stops at its first
    # step, the main host (its broken jvb never joins the brewery); jvb1 is never touched.
    forced = LiveMeeting()
    jvb1_before = jvb1_containers()
    broken = subprocess.run(
        [
            sys.executable, "-m", "invoke", "deploy", "--env", "sandbox", "--guard", "force",
            "--max-wait", "5", "--timeout", "30",
        ],
        cwd=two_hosts, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "JITSI_OPS_JITSI_IMAGE_VERSION": "standin-broken"},
    )  # fmt: skip
    forced.end()  # still live on jvb1, which the roll never reached
    output = broken.stdout + broken.stderr
    for value in secrets():
        assert value not in output, "a secret value appeared in output"
    assert broken.returncode == 1, output
    assert "FORCED over 1 conference(s), 1 participant(s)" in output, output
    assert "sandbox failed its gate" in output, output
    assert f"rolled back to {NEW} (verified)" in output, output
    assert f"releases now: sandbox {NEW}, jvb1 {NEW}" in output, output
    audit = last_audit()
    assert audit["guard"]["overridden"] == {"conferences": 1, "participants": 1}, audit  # type: ignore[index]
    events = [(e["host"], e["what"]) for e in audit["roll"]]  # type: ignore[attr-defined]
    assert events[0] == ("sandbox", "drain on") and events[-1] == ("sandbox", "drain off"), events
    assert ("sandbox", "failed") in events and not any(h == "jvb1" for h, _ in events), events
    assert jvb1_containers() == jvb1_before, "jvb1 was touched after the roll stopped"
