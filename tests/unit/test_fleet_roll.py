"""Rolling bridge upgrades (fleet.RollingUpgrade) against fake bridges that speak the drain and
stats REST: one bridge at a time, drain on around each step and always lifted (a failed gate,
an error, Ctrl-C), the roll stopping at a failing bridge with the later ones untouched."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops.errors import VerifyFailed
from jitsi_ops.fleet import RollingUpgrade
from jitsi_ops.guard import GuardRefused
from jitsi_ops.runner import RecordingRunner, Runner
from jitsi_ops.settings import Environment, Host, load_environment
from jitsi_ops.verify.hostside import HttpAnswer
from jitsi_ops.verify.model import Outcome, VerifyReport
from tests.unit.test_deploy_rollback import Seed, as_root

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Bridges:
    """Fake bridges by host label: drain flag and live conferences; a shared journal."""

    conferences: dict[str, list[int]] = field(default_factory=dict)  # per stats read, popped
    drain: dict[str, bool] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)
    refuse_enable: bool = False

    def __call__(
        self,
        runner: Runner,
        port: int,
        path: str,
        timeout: float,
        *,
        method: str,
        body: bytes | None,
    ) -> HttpAnswer:
        del port, timeout, body
        host = runner.host
        if (method, path) == ("GET", "/colibri/stats"):
            counts = self.conferences.get(host, [0])
            live = counts.pop(0) if len(counts) > 1 else counts[0]
            return HttpAnswer(
                200,
                json.dumps(
                    {"conferences": live, "participants": 2 * live, "drain": self.drain.get(host)}
                ),
            )
        if method == "POST" and path.startswith("/colibri/drain/"):
            if self.refuse_enable:
                return HttpAnswer(500, "no")
            self.drain[host] = path.endswith("/enable")
            self.journal.append(f"{host} drain {'on' if self.drain[host] else 'off'}")
            return HttpAnswer(200, "")
        return HttpAnswer(404, "Not Found")


@dataclass
class Gate:
    """The per-step verifier: fails on the hosts named in `failing`."""

    bridges: Bridges
    failing: set[str] = field(default_factory=set)
    counts: list[int] = field(default_factory=list)  # bridges jicofo must count, per gate

    def __call__(
        self, env: Environment, runners: dict[Host, Runner], timeout: float, bridges: int
    ) -> VerifyReport:
        del timeout
        host = next(h for h in runners if h.role == "jvb").label
        self.bridges.journal.append(f"{host} gate")
        self.counts.append(bridges)
        outcomes: tuple[Outcome, ...] = ()
        if host in self.failing:
            outcomes = (
                Outcome(
                    "conference.bridges", "meet", "main", "bridges", "fail", "1 < 3", "", 1, 0.1
                ),
            )
        return VerifyReport(env.name, env.release, outcomes, 0.1, 10.0, "2026-01-01T00:00:00Z")


@pytest.fixture
def env() -> Environment:
    return load_environment("example", REPO, environ={"JITSI_OPS_JVB_AUTH_PASSWORD": "x" * 32})


def steps(
    env: Environment, bridges: Bridges, labels: list[str], fault: dict[str, BaseException]
) -> list[pipeline.BridgeStep]:
    found = []
    for label in labels:
        host = Host(address=label, role="jvb")

        def apply(label: str = label) -> str:
            bridges.journal.append(
                f"{label} apply (drain {'on' if bridges.drain[label] else 'off'})"
            )
            if label in fault:
                raise fault[label]
            return "up"

        found.append(
            pipeline.BridgeStep(label, host, RecordingRunner(label=label), env, env, apply)
        )
    return found


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def roller(
    env: Environment, bridges: Bridges, gate: Gate, policy: str = "refuse"
) -> RollingUpgrade:
    clock = Clock()
    return RollingUpgrade(
        env,
        (env.deploy.main_host, RecordingRunner(label="meet")),
        policy,  # type: ignore[arg-type]
        60.0,
        30.0,
        transport=bridges,
        verifier=gate,
        clock=clock.clock,
        sleep=clock.sleep,
        interval=10.0,
    )


def test_bridges_go_one_at_a_time_each_drained_around_its_apply_and_gate(
    env: Environment,
) -> None:
    bridges = Bridges(conferences={"jvb2": [2, 1, 0]})
    roll = roller(env, bridges, Gate(bridges))
    lines: list[str] = []
    detail = roll(steps(env, bridges, ["jvb1", "jvb2", "jvb3"], {}), lines.append)
    assert bridges.journal == [
        "jvb1 drain on", "jvb1 apply (drain on)", "jvb1 gate", "jvb1 drain off",
        "jvb2 drain on", "jvb2 apply (drain on)", "jvb2 gate", "jvb2 drain off",
        "jvb3 drain on", "jvb3 apply (drain on)", "jvb3 gate", "jvb3 drain off",
    ]  # fmt: skip
    assert "jvb1, jvb2, jvb3" in detail, detail
    # jvb2 still had meetings: the roll waited for them before applying it.
    assert "jvb2: waiting for 2 conference(s), 4 participant(s); 1m00s left" in lines, lines
    drained = [e for e in roll.events if e.host == "jvb2" and e.what == "drained"]
    assert drained and "after waiting 20s" in drained[0].detail, roll.events


def test_a_bridge_failing_its_gate_stops_the_roll_with_drain_lifted(env: Environment) -> None:
    bridges = Bridges()
    roll = roller(env, bridges, Gate(bridges, failing={"jvb2"}))
    with pytest.raises(VerifyFailed, match=r"jvb2 failed its gate \(conference.bridges"):
        roll(steps(env, bridges, ["jvb1", "jvb2", "jvb3"], {}), None)
    assert bridges.journal[-2:] == ["jvb2 gate", "jvb2 drain off"], bridges.journal
    assert not [line for line in bridges.journal if line.startswith("jvb3")], "jvb3 was touched"
    assert bridges.drain == {"jvb1": False, "jvb2": False}
    # The failing step's report is what the deploy reports as its verification.
    assert roll.failed_gate is not None and not roll.failed_gate.ok
    assert [f.observed for f in roll.failed_gate.failures] == ["1 < 3"], roll.failed_gate


@pytest.mark.parametrize(
    "fault", [KeyboardInterrupt(), RuntimeError("boom")], ids=["ctrl-c", "error"]
)
def test_drain_is_lifted_when_the_apply_is_interrupted_or_fails(
    env: Environment, fault: BaseException
) -> None:
    bridges = Bridges()
    roll = roller(env, bridges, Gate(bridges))
    with pytest.raises(type(fault)):
        roll(steps(env, bridges, ["jvb1", "jvb2"], {"jvb1": fault}), None)
    assert bridges.journal == ["jvb1 drain on", "jvb1 apply (drain on)", "jvb1 drain off"]


def test_meetings_that_outlast_max_wait_stop_the_roll_unless_forced(env: Environment) -> None:
    bridges = Bridges(conferences={"jvb1": [1]})
    with pytest.raises(GuardRefused, match=r"^still 1 conference\(s\), 2 participant\(s\)"):
        roller(env, bridges, Gate(bridges))(steps(env, bridges, ["jvb1"], {}), None)
    assert bridges.journal == ["jvb1 drain on", "jvb1 drain off"], (
        "applied before the meeting ended"
    )

    bridges = Bridges(conferences={"jvb1": [1]})
    roll = roller(env, bridges, Gate(bridges), policy="force")
    roll(steps(env, bridges, ["jvb1"], {}), None)
    assert "jvb1 apply (drain on)" in bridges.journal
    assert next(e.detail for e in roll.events if e.what == "drained").startswith("forced: still")


def test_a_first_deploy_of_a_bridge_host_has_nothing_to_drain(env: Environment) -> None:
    bridges = Bridges(refuse_enable=True)  # nothing answers there yet
    first = [
        pipeline.BridgeStep(s.label, s.host, s.runner, env, env, s.apply, running=False)
        for s in steps(env, bridges, ["jvb1"], {})
    ]
    bridges.drain["jvb1"] = False
    roller(env, bridges, Gate(bridges))(first, None)
    assert bridges.journal == ["jvb1 apply (drain off)", "jvb1 gate"], bridges.journal


def test_each_step_gate_expects_the_bridges_that_run_by_then(env: Environment) -> None:
    """An upgrade: every bridge runs throughout. A first deploy of several bridge hosts: the
    ones not deployed yet cannot be counted by jicofo."""
    every = len(env.deploy.hosts)
    bridges = Bridges()
    gate = Gate(bridges)
    roller(env, bridges, gate)(steps(env, bridges, ["jvb1", "jvb2", "jvb3"], {}), None)
    assert gate.counts == [every] * 3, gate.counts

    bridges = Bridges(refuse_enable=True)
    gate = Gate(bridges)
    first = [
        pipeline.BridgeStep(s.label, s.host, s.runner, env, env, s.apply, running=False)
        for s in steps(env, bridges, ["jvb1", "jvb2", "jvb3"], {})
    ]
    bridges.drain.update(dict.fromkeys(["jvb1", "jvb2", "jvb3"], False))
    roller(env, bridges, gate)(first, None)
    assert gate.counts == [every - 2, every - 1, every], gate.counts


def test_a_bridge_that_refuses_drain_is_not_upgraded(env: Environment) -> None:
    bridges = Bridges(refuse_enable=True)
    with pytest.raises(Exception, match="jvb1: drain could not be enabled"):
        roller(env, bridges, Gate(bridges))(steps(env, bridges, ["jvb1"], {}), None)
    assert bridges.journal == [], bridges.journal


# --- the main host's bridge in the roll (deploy pipeline, recording hosts) ---------------------


@dataclass
class RecordingRoll:
    """A Roll that applies every step in order, recording each step and the docker compose
    calls of the main host its apply made."""

    main: Any = None
    given: list[tuple[str, bool]] = field(default_factory=list)
    ups_in_step: dict[str, int] = field(default_factory=dict)
    failed_gate: VerifyReport | None = None

    def __call__(self, steps: Sequence[pipeline.BridgeStep], progress: pipeline.Progress) -> str:
        del progress
        for step in steps:
            self.given.append((step.label, step.running))
            before = len(self.main.calls)
            step.apply()
            self.ups_in_step[step.label] = sum(
                1 for c in self.main.calls[before:] if c[:2] == ("docker", "compose") and "up" in c
            )
        return f"{len(steps)} step(s)"

    def journal(self) -> list[dict[str, Any]]:
        return [{"host": label, "what": "applied"} for label, _ in self.given]


@as_root
def test_the_main_host_with_a_running_jvb_is_the_rolls_first_step(
    tmp_path: Path, scratch_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its whole apply runs inside the step (drained by the real roll): upstream's web depends
    on jvb, so no `up` of the other services could leave jvb as it is."""
    seed = Seed(tmp_path, scratch_repo, bridge=True)
    planned = pipeline.planning.plan

    def running_jvb(*args: Any, **kwargs: Any) -> Any:
        # The recording host runs no container: say the main host's jvb runs (and changes).
        found = planned(*args, **kwargs)
        changes = tuple(
            dataclasses.replace(c, action="recreate") if c.service == "jvb" else c
            for c in found.service_changes
        )
        return dataclasses.replace(found, service_changes=changes)

    monkeypatch.setattr(pipeline.planning, "plan", running_jvb)
    roll = RecordingRoll(main=seed.main)
    report = pipeline.deploy(
        seed.env,
        seed.main,
        verifier=seed.verifier,
        bridges={seed.env.deploy.bridge_hosts[0]: seed.bridge},
        roll=roll,
    )
    assert report.result == "deployed", (report.result, report.error)
    assert [label for label, _ in roll.given] == ["meet", "jvb2"], roll.given
    assert roll.ups_in_step["meet"] >= 1, "the main host's apply did not run in its step"
    main_ups = [c for c in seed.main.calls if c[:2] == ("docker", "compose") and "up" in c]
    assert len(main_ups) == roll.ups_in_step["meet"], "the main host was applied outside its step"
    apply_phase = next(p for p in report.phases if p.name == "apply")
    assert apply_phase.status == "skipped" and "roll's first step" in apply_phase.detail
