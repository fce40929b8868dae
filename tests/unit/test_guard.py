"""The conference guard: parsers of jicofo's and the bridge's stats (fixtures in upstream's JSON
shape), reading the load through each host's connection, the refuse/wait/force policies with
a fake clock, and a refused deploy that changes nothing on a "host" in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jitsi_ops import bridge_rest
from jitsi_ops import deploy as pipeline
from jitsi_ops.cli import deploy_tasks
from jitsi_ops.errors import ConfigError
from jitsi_ops.guard import (
    ConferenceGuard,
    GuardRefused,
    HostLoad,
    LiveLoad,
    LoadReader,
    clock_text,
    disruptive_services,
    parse_duration,
)
from jitsi_ops.runner import RecordingRunner, Runner
from jitsi_ops.settings import load_environment, parse_deploy_toml
from jitsi_ops.verify.hostside import HttpAnswer
from tests.unit.test_deploy_rollback import Seed, as_root

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "liveload"
REPO = Path(__file__).resolve().parents[2]
UPGRADE = {"meet": ("jicofo", "jvb", "prosody", "web"), "jvb1": ("jvb",)}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- parsers --------------------------------------------------------------------------------


def test_bridge_stats_of_a_busy_bridge() -> None:
    stats = bridge_rest.parse_stats(fixture("colibri-stats-busy.json"))
    assert stats == bridge_rest.BridgeStats(3, 11, 11, drain=False), stats


def test_bridge_stats_of_a_draining_bridge() -> None:
    stats = bridge_rest.parse_stats(fixture("colibri-stats-draining.json"))
    assert (stats.conferences, stats.participants, stats.drain) == (1, 4, True), stats


def test_drain_answer() -> None:
    assert bridge_rest.parse_drain(fixture("colibri-drain-on.json")) is True
    assert bridge_rest.parse_drain('{"drain": false}') is False
    with pytest.raises(bridge_rest.BridgeRestError, match="no 'drain'"):
        bridge_rest.parse_drain("{}")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jicofo-stats.json", bridge_rest.JicofoStats(4, 15, 2, 2, 1)),
        ("jicofo-stats-flat.json", bridge_rest.JicofoStats(2, 5, 1, 1, 0)),
    ],
)
def test_jicofo_stats(name: str, expected: bridge_rest.JicofoStats) -> None:
    assert bridge_rest.parse_jicofo_stats(fixture(name)) == expected


def test_jicofo_stats_that_are_not_json_name_the_endpoint() -> None:
    with pytest.raises(bridge_rest.BridgeRestError, match="jicofo /stats is not JSON"):
        bridge_rest.parse_jicofo_stats("<html>")


# --- reading through the hosts' connections -------------------------------------------------


@dataclass
class Transport:
    """A LoopbackRequest answering from (host label, port, path) -> (status, body)."""

    answers: dict[tuple[str, int, str], tuple[int, str]]
    calls: list[tuple[str, int, str, str]] = field(default_factory=list)

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
        del timeout, body
        self.calls.append((runner.host, port, method, path))
        if (runner.host, port, path) not in self.answers:
            raise ConnectionRefusedError(f"127.0.0.1:{port} refused")
        status, text = self.answers[(runner.host, port, path)]
        return HttpAnswer(status, text)


def bridge_env(tmp_path: Path) -> pipeline.Environment:
    env = load_environment("sandbox", REPO, environ={"JITSI_OPS_JVB_AUTH_PASSWORD": "x" * 32})
    toml = (
        '[[hosts]]\naddress = "meet"\n\n[[hosts]]\naddress = "jvb1"\nrole = "jvb"\n'
        'values = { JVB_COLIBRI_PORT = "8090", JVB_XMPP_SERVER = "10.0.0.1" }\n'
    )
    deploy = parse_deploy_toml(toml, "deploy.toml", tmp_path)
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(env, deploy=deploy)


def test_the_reader_asks_jicofo_and_every_bridge_on_its_own_port(tmp_path: Path) -> None:
    env = bridge_env(tmp_path)
    main, jvb1 = env.deploy.hosts
    transport = Transport(
        {
            ("meet", 8888, "/stats"): (200, fixture("jicofo-stats.json")),
            ("meet", 8080, "/colibri/stats"): (200, '{"conferences": 1, "participants": 4}'),
            ("jvb1", 8090, "/colibri/stats"): (200, fixture("colibri-stats-busy.json")),
        }
    )
    runners: dict[pipeline.Host, Runner] = {
        main: RecordingRunner(label="meet"),
        jvb1: RecordingRunner(label="jvb1"),
    }
    load = LoadReader(env, runners, transport).read()
    # Asked all at once (in whatever order they are answered); reported in host order.
    assert sorted(transport.calls) == [
        ("jvb1", 8090, "GET", "/colibri/stats"),
        ("meet", 8080, "GET", "/colibri/stats"),
        ("meet", 8888, "GET", "/stats"),
    ]
    assert load.total() == (4, 15), "jicofo's totals (they equal the bridges' sum here)"
    assert load.affected({"jvb1": ("jvb",)}) == (3, 11), "a bridge alone: its own meetings"
    assert load.affected({"meet": ("web",), "jvb1": ("jvb",)}) == (4, 15)
    assert load.lines() == [
        "meet jicofo: 4 conference(s), 15 participant(s)",
        "meet jvb: 1 conference(s), 4 participant(s)",
        "jvb1 jvb: 3 conference(s), 11 participant(s)",
    ]


def test_the_total_is_the_larger_of_jicofos_count_and_the_bridges_sum() -> None:
    spanning = LiveLoad(  # one meeting on two bridges (jicofo counts it once)
        HostLoad("meet", "jicofo", 1, 6),
        (HostLoad("meet", "jvb", 1, 3), HostLoad("jvb1", "jvb", 1, 3)),
    )
    assert spanning.total() == (2, 6)
    direct = LiveLoad(  # a conference made on the bridge through colibri2: jicofo never sees it
        HostLoad("meet", "jicofo", 0, 0), (HostLoad("jvb1", "jvb", 1, 1),)
    )
    assert direct.total() == (1, 1)


def test_unreadable_sources_say_why_and_the_bridges_sum_stands_in_for_jicofo(
    tmp_path: Path,
) -> None:
    env = bridge_env(tmp_path)
    main, jvb1 = env.deploy.hosts
    transport = Transport(
        {
            ("meet", 8080, "/colibri/stats"): (404, "Not Found"),
            ("jvb1", 8090, "/colibri/stats"): (200, fixture("colibri-stats-busy.json")),
        }
    )
    runners: dict[pipeline.Host, Runner] = {
        main: RecordingRunner(label="meet"),
        jvb1: RecordingRunner(label="jvb1"),
    }
    load = LoadReader(env, runners, transport).read()
    assert load.jicofo is not None and "refused" in load.jicofo.error, load.jicofo
    assert load.bridges[0].error == "REST not enabled (404)", load.bridges[0]
    assert load.total() == (3, 11)
    # The main host's jvb restarts and could not be read: the safe side is the total.
    assert load.affected({"meet": ("jvb",)}) == (3, 11)


# --- policies -------------------------------------------------------------------------------


def busy(conferences: int = 3, participants: int = 11) -> LiveLoad:
    return LiveLoad(
        HostLoad("meet", "jicofo", conferences, participants),
        (HostLoad("meet", "jvb", conferences, participants),),
    )


class Clock:
    """A fake monotonic clock that sleep() advances; read() pops a scripted load per call."""

    def __init__(self, loads: list[LiveLoad]) -> None:
        self.now = 0.0
        self.loads: Iterator[LiveLoad] = iter(loads)
        self.reads = 0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def read(self) -> LiveLoad:
        self.reads += 1
        return next(self.loads)


def guard(policy: str, clock: Clock, max_wait: float = 60.0) -> ConferenceGuard:
    return ConferenceGuard(
        policy,  # type: ignore[arg-type]
        max_wait,
        clock.read,
        interval=10.0,
        clock=clock.clock,
        sleep=clock.sleep,
    )


def test_refuse_names_the_counts_the_hosts_and_the_services() -> None:
    clock = Clock([busy()])
    with pytest.raises(GuardRefused) as info:
        guard("refuse", clock).check(UPGRADE)
    message = info.value.message
    assert message.startswith("3 conference(s), 11 participant(s) live"), message
    assert "meet jicofo: 3 conference(s)" in message and "nothing was changed" in message
    assert "would restart jicofo, jvb, prosody, web" in message, message
    assert "--guard wait" in info.value.hint and "--guard force" in info.value.hint


def test_force_goes_on_and_records_the_counts_it_overrode() -> None:
    record = guard("force", Clock([busy()])).check(UPGRADE)
    assert (record.outcome, record.overridden) == ("forced", (3, 11)), record
    assert pipeline.guard_audit(record) == {
        "policy": "force",
        "outcome": "forced",
        "waited": 0.0,
        "overridden": {"conferences": 3, "participants": 11},
    }
    assert "FORCED over 3 conference(s), 11 participant(s)" in record.detail()


def test_wait_shows_a_live_line_and_goes_on_when_the_meetings_end() -> None:
    clock = Clock([busy(), busy(1, 2), busy(0, 0)])
    lines: list[str] = []
    record = guard("wait", clock, max_wait=300).check(UPGRADE, say=lines.append)
    assert record.outcome == "waited" and record.waited == 20.0, record
    assert lines == [
        "waiting for 3 conference(s), 11 participant(s); 5m00s left",
        "waiting for 1 conference(s), 2 participant(s); 4m50s left",
    ], lines


def test_wait_stops_unchanged_at_the_deadline() -> None:
    clock = Clock([busy()] * 10)
    with pytest.raises(GuardRefused, match=r"^still 3 conference\(s\), 11 participant\(s\) "):
        guard("wait", clock, max_wait=25).check(UPGRADE)
    assert clock.slept == [10.0, 10.0, 5.0], "never sleeps past the deadline"


@pytest.mark.parametrize(
    "recreate",
    [{}, {"meet": ()}, {"meet": ("etherpad", "whiteboard")}],
    ids=["nothing", "no service", "etherpad+whiteboard"],
)
def test_a_change_that_cuts_no_meeting_is_not_held_back(
    recreate: dict[str, tuple[str, ...]],
) -> None:
    clock = Clock([])
    record = guard("refuse", clock).check(recreate)
    assert record.outcome == "not needed" and clock.reads == 0, record


def test_unknown_load_is_said_and_does_not_block() -> None:
    unknown = LiveLoad(HostLoad("meet", "jicofo", error="REST not enabled (404)"), ())
    record = guard("refuse", Clock([unknown])).check(UPGRADE)
    assert record.outcome == "unknown", record
    assert "live load: unknown (meet jicofo: unknown (REST not enabled (404)))" in record.detail()


def test_disruptive_services_keep_only_what_cuts_meetings() -> None:
    assert disruptive_services(
        {"meet": ("etherpad", "web", "whiteboard"), "jvb1": ("jvb",), "jvb2": ()}
    ) == {"meet": ("web",), "jvb1": ("jvb",)}


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-5", "1.5h"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-wait"):
        parse_duration(text)


def test_clock_text() -> None:
    assert [clock_text(s) for s in (5, 252, 3720)] == ["5s", "4m12s", "1h02m"]


def test_guard_settings_are_type_checked(tmp_path: Path) -> None:
    base = '[[hosts]]\naddress = "meet"\n'
    parsed = parse_deploy_toml(base, "deploy.toml", tmp_path)
    assert (parsed.guard.policy, parsed.guard.max_wait) == ("refuse", 1800.0)
    assert (parsed.rolling.batch, parsed.fleet.parallel) == (1, 8)
    with pytest.raises(ConfigError, match=r"guard\.policy must be one of refuse, wait, force"):
        parse_deploy_toml('[guard]\npolicy = "maybe"\n' + base, "deploy.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"guard\.max_wait must be a number"):
        parse_deploy_toml('[guard]\nmax_wait = "5m"\n' + base, "deploy.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"fleet\.parallel must be at least 1"):
        parse_deploy_toml("[fleet]\nparallel = 0\n" + base, "deploy.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key 'guard\.polcy'"):
        parse_deploy_toml('[guard]\npolcy = "wait"\n' + base, "deploy.toml", tmp_path)


# --- the pipeline -----------------------------------------------------------------------------


@pytest.fixture
def seed(tmp_path: Path, scratch_repo: Path) -> Seed:
    return Seed(tmp_path, scratch_repo)


@as_root
def test_a_refused_deploy_changes_nothing_and_says_so(seed: Seed) -> None:
    before = seed.host_tree()
    clock = Clock([busy(2, 5)] * 2)
    report = pipeline.deploy(
        seed.env, seed.main, verifier=seed.verifier, guard=guard("refuse", clock)
    )
    assert report.result == "failed", (report.result, report.error)
    assert report.error.startswith("2 conference(s), 5 participant(s) live"), report.error
    assert [p.name for p in report.phases][-1] == "guard", report.phases
    assert seed.host_tree() == before, "the refused deploy changed the host"
    assert not seed.backups.exists() or not any(seed.backups.iterdir()), "a backup was written"
    flat = [" ".join(c) for c in seed.main.calls]
    changing = [c for c in flat if c.startswith("docker pull") or f" {c} ".count(" up ")]
    assert changing == [], "pulled or started something"
    assert "was not changed" in deploy_tasks._summary(report)
    assert report.as_dict()["load"]["conferences"] == 2
    audit = (seed.stack / ".jitsi-ops" / "audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["result"] == "failed"


@as_root
def test_a_forced_deploy_records_the_override_in_the_audit_line(seed: Seed) -> None:
    report = pipeline.deploy(
        seed.env, seed.main, verifier=seed.verifier, guard=guard("force", Clock([busy(2, 5)]))
    )
    assert report.result == "deployed", (report.result, report.error)
    audit = (seed.stack / ".jitsi-ops" / "audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["guard"] == {
        "policy": "force",
        "outcome": "forced",
        "waited": 0.0,
        "overridden": {"conferences": 2, "participants": 5},
    }


@as_root
def test_not_confirmed_at_the_prompt_changes_nothing(seed: Seed) -> None:
    before = seed.host_tree()
    shown: list[pipeline.DeployReport] = []

    def decline(report: pipeline.DeployReport) -> bool:
        shown.append(report)
        return False

    report = pipeline.deploy(seed.env, seed.main, verifier=seed.verifier, confirm=decline)
    assert shown and shown[0].plan is not None, "the question comes after the plan"
    assert report.result == "failed" and "not confirmed" in report.error, report.error
    assert seed.host_tree() == before


def test_a_port_that_does_not_speak_http_is_reported_not_raised() -> None:
    import http.client  # noqa: PLC0415

    def garbage(method: str, path: str, body: bytes | None) -> bridge_rest.Answer:
        raise http.client.BadStatusLine("SSH-2.0-OpenSSH_9.2")

    load = guarding_read(garbage)
    assert load.error == "BadStatusLine", load


def guarding_read(request: bridge_rest.Request) -> HostLoad:
    from jitsi_ops.guard import read_bridge  # noqa: PLC0415

    return read_bridge("jvb1", request)
