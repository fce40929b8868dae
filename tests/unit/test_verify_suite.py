"""verify suite: which checks an environment gets, retries until the deadline, and the host-side
and REST checks against canned answers (RecordingRunner, a fake loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jitsi_ops.errors import ConfigError
from jitsi_ops.runner import RecordingRunner, Result, Runner
from jitsi_ops.settings import Environment, Host, load_environment
from jitsi_ops.verify import checks, select
from jitsi_ops.verify.facts import Facts, VerifyRun
from jitsi_ops.verify.hostside import HttpAnswer
from jitsi_ops.verify.model import Check, CheckResult, VerifyReport, failed, passed
from jitsi_ops.verify.suite import run_by_host, run_checks, verify

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "verify"
SECRET = "fedcba9876543210fedcba9876543210"


def sandbox(**overrides: str) -> Environment:
    environ = {"JITSI_OPS_JVB_AUTH_PASSWORD": SECRET, "JITSI_OPS_JICOFO_AUTH_PASSWORD": "x" * 32}
    environ.update({f"JITSI_OPS_{k}": v for k, v in overrides.items()})
    return load_environment("sandbox", REPO, environ=environ)


def two_hosts(scratch_repo: Path) -> Environment:
    env_dir = scratch_repo / "env" / "multi"
    env_dir.mkdir()
    (env_dir / "deploy.toml").write_text(
        '[[hosts]]\naddress = "meet.example.com"\nrole = "main"\n\n'
        '[[hosts]]\naddress = "jvb1.example.com"\nrole = "jvb"\n'
    )
    (env_dir / "jitsi.env").write_text(
        "PUBLIC_URL=https://meet.example.com\nJITSI_IMAGE_VERSION=stable-11146-2\n"
        "ENABLE_XMPP_WEBSOCKET=0\n"
    )
    return load_environment("multi", scratch_repo, environ={})


def ids(suite: Sequence[Check]) -> list[tuple[str, str]]:
    return [(c.id, c.host.label) for c in suite]


def test_sandbox_suite_lists_every_check_once_on_its_host() -> None:
    env = sandbox()
    suite = checks.build_suite(env, dict(env.values))
    got = [i for i, _ in ids(suite)]
    assert got == [
        "host.docker",
        "host.compose",
        "host.containers",
        "host.restarts",
        "host.images",
        "host.env_file",
        "host.config_dirs",
        "host.disk",
        "sockets.http",
        "sockets.https",
        "sockets.jvb_udp",
        "sockets.jicofo_rest",
        "sockets.jvb_rest",
        "web.root",
        "web.config_js",
        "web.custom_config",
        "web.tls",
        "signalling.bosh",
        "signalling.websocket",
        "conference.bridges",
        "conference.jicofo_health",
        "conference.jvb_health",
        "conference.jvb_version",
        "collab.whiteboard",
        "collab.etherpad",
        "media.advertise_ips",
        "media.ice",
    ], got
    assert {c.host.label for c in suite} == {"sandbox"}


def test_multi_host_suite_parametrises_per_bridge_host(scratch_repo: Path) -> None:
    env = two_hosts(scratch_repo)
    suite = ids(checks.build_suite(env, dict(env.values)))
    on_jvb = [i for i, host in suite if host == "jvb1.example.com"]
    assert on_jvb == [
        "host.docker",
        "host.compose",
        "host.containers",
        "host.restarts",
        "host.images",
        "host.env_file",
        "host.disk",
        "sockets.jvb_udp",
        "sockets.jvb_rest",
        "conference.jvb_health",
        "conference.jvb_version",
        "media.advertise_ips",
        "media.ice",
    ], on_jvb
    main_only = {i for i, host in suite if host == "meet.example.com"} - set(on_jvb)
    # common.env turns the redirect on; websocket is off here; no whiteboard, etherpad, health.
    assert "web.redirect" in main_only and "signalling.websocket" not in main_only, main_only
    assert not {"collab.whiteboard", "collab.etherpad", "conference.jicofo_health"} & main_only


SELECT_CASES = [
    (["web.tls"], ["web.tls"]),
    (
        ["conference"],
        [
            "conference.bridges",
            "conference.jicofo_health",
            "conference.jvb_health",
            "conference.jvb_version",
        ],
    ),
    (
        ["conference.jvb_*", "web.tls"],
        ["web.tls", "conference.jvb_health", "conference.jvb_version"],
    ),
    ([" "], None),
]


@pytest.mark.parametrize(("only", "expected"), SELECT_CASES)
def test_select(only: list[str], expected: list[str] | None) -> None:
    env = sandbox()
    suite = checks.build_suite(env, dict(env.values))
    chosen = [c.id for c in select(suite, only)]
    assert chosen == (expected if expected is not None else [c.id for c in suite]), chosen


def test_select_refuses_a_pattern_that_matches_nothing() -> None:
    env = sandbox()
    with pytest.raises(ConfigError, match="matches no check") as caught:
        select(checks.build_suite(env, dict(env.values)), ["web.tsl"])
    assert "web.tls" in caught.value.hint, caught.value.hint


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(results: list[CheckResult]) -> Callable[[Facts, Host], CheckResult]:
    def func(_facts: Facts, _host: Host) -> CheckResult:
        return results.pop(0) if len(results) > 1 else results[0]

    return func


def make_run(
    env: Environment, clock: FakeClock, timeout: float, runner: Runner | None = None
) -> VerifyRun:
    return VerifyRun(
        env=env,
        values=dict(env.values),
        runners={env.deploy.main_host: runner or RecordingRunner(label="sandbox")},
        loopback=lambda *_a: HttpAnswer(404, ""),
        deadline=clock() + timeout,
        clock=clock,
        sleep=clock.sleep,
    )


def test_settling_failures_are_retried_until_they_pass() -> None:
    env, clock = sandbox(), FakeClock()
    host = env.deploy.main_host
    settling = Check("t.settles", host, "d", scripted([failed("a"), failed("b"), passed("ok")]))
    static = Check("t.static", host, "d", scripted([failed("mode 0644")]), settles=False)
    final = Check("t.final", host, "d", scripted([failed("served wrong", final=True)]))
    outcomes = run_checks([settling, static, final], make_run(env, clock, 60))
    got = [(o.id, o.status, o.attempts, o.observed) for o in outcomes]
    assert got == [
        ("t.settles", "pass", 3, "ok"),
        ("t.static", "fail", 1, "mode 0644"),
        ("t.final", "fail", 1, "served wrong"),
    ], got
    assert clock.sleeps == [1.0, 2.0], clock.sleeps


def test_hosts_are_checked_side_by_side_and_reported_in_check_order(scratch_repo: Path) -> None:
    """Each host's checks wait at a barrier that only opens when every host is being checked
    at once: one host after another would time out there."""
    env = two_hosts(scratch_repo)
    main, jvb1 = env.deploy.hosts
    barrier = threading.Barrier(2, timeout=5)

    def meets_the_other_host(_facts: Facts, host: Host) -> CheckResult:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return failed(f"{host.label} checked alone", final=True)
        return passed(f"{host.label} ok")

    suite = [
        Check("t.a", main, "d", meets_the_other_host),
        Check("t.b", jvb1, "d", meets_the_other_host),
        Check("t.c", main, "d", scripted([passed("second on main")])),
    ]
    run = VerifyRun(
        env=env,
        values=dict(env.values),
        runners={main: RecordingRunner(label="meet"), jvb1: RecordingRunner(label="jvb1")},
        loopback=lambda *_a: HttpAnswer(404, ""),
        deadline=1e9,
    )
    outcomes = run_by_host(suite, run, None, parallel=8)
    got = [(o.id, o.host, o.status, o.observed) for o in outcomes]
    assert got == [
        ("t.a", main.label, "pass", f"{main.label} ok"),
        ("t.b", jvb1.label, "pass", f"{jvb1.label} ok"),
        ("t.c", main.label, "pass", "second on main"),
    ], got


def test_retries_stop_at_the_deadline() -> None:
    env, clock = sandbox(), FakeClock()
    never = Check("t.never", env.deploy.main_host, "d", scripted([failed("count 0")]))
    outcomes = run_checks([never], make_run(env, clock, 10))
    assert outcomes[0].status == "fail" and outcomes[0].attempts >= 3, outcomes
    assert clock.now <= 10.0, clock.now


def test_exceptions_become_failures_and_secrets_are_scrubbed() -> None:
    env, clock = sandbox(), FakeClock()

    def leaky(_facts: Facts, _host: Host) -> CheckResult:
        raise RuntimeError(f"jvb said password={SECRET}")

    outcome = run_checks(
        [Check("t.leak", env.deploy.main_host, "d", leaky, settles=False)], make_run(env, clock, 5)
    )[0]
    assert outcome.status == "fail", outcome
    assert SECRET not in outcome.observed and "RuntimeError" in outcome.observed, outcome.observed


def rec(responses: dict[tuple[str, ...], tuple[int, str, str]]) -> RecordingRunner:
    base: dict[tuple[str, ...], tuple[int, str, str]] = {
        ("sh", "-c", "uname -s"): (0, "Linux\n", ""),
        ("sh", "-c", "command -v command"): (0, "command\n", ""),
        ("sh", "-c", "command -v ss"): (0, "/usr/bin/ss\n", ""),
        ("id", "-un"): (0, "root\n", ""),
    }
    base.update(responses)
    return RecordingRunner(label="sandbox", responses=base)


def run_one(
    env: Environment,
    func: Callable[[Facts, Host], CheckResult],
    runner: Runner,
    loopback: object = None,
) -> CheckResult:
    clock = FakeClock()
    run = make_run(env, clock, 30, runner)
    if loopback is not None:
        run.loopback = loopback  # type: ignore[assignment]
    return func(Facts(run), env.deploy.main_host)


def ps_argv(env: Environment) -> tuple[str, ...]:
    from jitsi_ops import commands, stack  # noqa: PLC0415

    return tuple(commands.compose_ps(stack.target_for(env)))


def test_containers_pass_on_a_healthy_project_and_name_the_stopped_service() -> None:
    env = sandbox()
    healthy = (FIXTURES / "compose-ps-healthy.jsonl").read_text()
    result = run_one(env, checks.check_containers, rec({ps_argv(env): (0, healthy, "")}))
    assert result.status == "pass", result
    assert "6 running" in result.observed, result.observed
    exited = (FIXTURES / "compose-ps-jvb-exited.jsonl").read_text()
    result = run_one(env, checks.check_containers, rec({ps_argv(env): (0, exited, "")}))
    assert result.status == "fail", result
    assert result.observed == "jvb: exited (Exited (0) 12 seconds ago)", result.observed
    assert "logs jvb" in result.hint, result.hint


def test_published_ports_follow_publish_address_and_rest_stays_local() -> None:
    env = sandbox()
    healthy = (FIXTURES / "compose-ps-healthy.jsonl").read_text()
    ss = (
        "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        "tcp LISTEN 0 4096 127.0.0.1:8888 0.0.0.0:*\n"
        "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
    )
    runner = rec(
        {
            ps_argv(env): (0, healthy, ""),
            ("sh", "-c", "/usr/bin/ss --numeric --listening"): (0, ss, ""),
        }
    )
    for func in (checks.check_https_published, checks.check_http_published, checks.check_jvb_udp):
        result = run_one(env, func, runner)
        assert result.status == "pass", (func.__name__, result)
    assert run_one(env, checks.check_jicofo_rest_local, runner).status == "pass"
    exposed = ss + "tcp LISTEN 0 4096 0.0.0.0:8888 0.0.0.0:*\n"
    runner = rec(
        {
            ps_argv(env): (0, healthy, ""),
            ("sh", "-c", "/usr/bin/ss --numeric --listening"): (0, exposed, ""),
        }
    )
    result = run_one(env, checks.check_jicofo_rest_local, runner)
    assert result.status == "fail" and "tcp://0.0.0.0:8888" in result.observed, result
    # The sandbox pins PUBLISH_ADDRESS=127.0.0.1; upstream (unset) wants all interfaces.
    result = run_one(
        sandbox(PUBLISH_ADDRESS=""),
        checks.check_https_published,
        rec({ps_argv(env): (0, healthy, "")}),
    )
    assert result.status == "fail" and "expected all interfaces" in result.observed, result


def test_env_file_mode_and_owner() -> None:
    env = sandbox()
    path = "/srv/jitsi-ops-sandbox/stack/.env"
    answers = {
        ("sh", "-c", f"test -f {path}"): (0, "", ""),
        ("sh", "-c", f"stat -Lc %a {path}"): (0, "644\n", ""),
        ("sh", "-c", f"stat -Lc %U {path}"): (0, "root\n", ""),
    }
    result = run_one(env, checks.check_env_file, rec(answers))
    assert (result.status, result.final) == ("fail", True), result
    assert result.observed == f"{path}: mode 0644, expected 0600", result.observed
    answers[("sh", "-c", f"stat -Lc %a {path}")] = (0, "600\n", "")
    assert run_one(env, checks.check_env_file, rec(answers)).status == "pass"


def test_versions_below_the_floor_fail_for_good() -> None:
    env = sandbox()
    runner = rec(
        {("docker", "version"): (0, "19.03.15\n", ""), ("docker", "compose"): (0, "2.26.1-4\n", "")}
    )
    docker = run_one(env, checks.check_docker_version, runner)
    assert (docker.status, docker.final) == ("fail", True), docker
    assert "19.03.15 is older than the supported minimum 20.10" in docker.observed, docker.observed
    assert run_one(env, checks.check_compose_version, runner).status == "pass"


class SequenceRunner(RecordingRunner):
    """Answers `docker inspect` from a list of samples, one per call."""

    def __init__(self, samples: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.samples = samples

    def run(self, argv: Sequence[str], **kwargs: object) -> Result:  # type: ignore[override]
        if list(argv[:2]) == ["docker", "inspect"]:
            self.calls.append(tuple(argv))
            return Result(tuple(argv), 0, self.samples.pop(0), "")
        return super().run(argv, **kwargs)  # type: ignore[arg-type]


def inspect_sample(jvb_count: int, status: str = "running") -> str:
    def one(service: str, count: int, state: str) -> dict[str, object]:
        return {
            "Name": f"/jitsi-sandbox-{service}-1",
            "RestartCount": count,
            "Image": "sha256:" + "ab" * 32,
            "State": {"Status": state, "Restarting": state == "restarting"},
            "Config": {
                "Image": f"127.0.0.1:5000/jitsi/{service}:stable-11146-2",
                "Labels": {"com.docker.compose.service": service},
            },
        }

    return json.dumps([one("web", 0, "running"), one("jvb", jvb_count, status)])


def test_restart_counts_must_be_stable_across_two_samples() -> None:
    env = sandbox()
    ids_argv = (*ps_argv(env)[:-4], "ps", "--all", "--quiet")
    runner = SequenceRunner(
        [inspect_sample(2), inspect_sample(3)],
        label="sandbox",
        responses={ids_argv: (0, "a\nb\n", "")},
    )
    result = run_one(env, checks.check_restarts, runner)
    assert result.status == "fail", result
    assert "jvb: restarted during the check (RestartCount 2 -> 3)" in result.observed, (
        result.observed
    )
    runner = SequenceRunner(
        [inspect_sample(2), inspect_sample(2)],
        label="sandbox",
        responses={ids_argv: (0, "a\nb\n", "")},
    )
    result = run_one(env, checks.check_restarts, runner)
    assert result.status == "pass" and "jvb 2" in result.observed, result
    runner = SequenceRunner(
        [inspect_sample(2, "restarting")] * 2, label="sandbox", responses={ids_argv: (0, "a\n", "")}
    )
    assert "jvb: restarting" in run_one(env, checks.check_restarts, runner).observed


def stats(count: int) -> HttpAnswer:
    body = {"bridge_selector": {"bridge_count": count, "operational_bridge_count": count}}
    return HttpAnswer(200, json.dumps(body))


def test_bridges_and_jvb_rest_through_the_loopback() -> None:
    env = sandbox()
    seen: list[tuple[int, str]] = []

    def loopback(answers: dict[str, HttpAnswer]) -> Callable[[Runner, int, str, float], HttpAnswer]:
        def get(_runner: Runner, port: int, path: str, _timeout: float) -> HttpAnswer:
            seen.append((port, path))
            return answers[path]

        return get

    zero = run_one(env, checks.check_bridges, rec({}), loopback({"/stats": stats(0)}))
    assert zero.status == "fail", zero
    assert zero.observed.startswith("operational_bridge_count 0 (bridge_count 0), expected >= 1"), (
        zero.observed
    )
    assert seen == [(8888, "/stats")], seen
    assert (
        run_one(env, checks.check_bridges, rec({}), loopback({"/stats": stats(1)})).status == "pass"
    )
    health = run_one(
        env, checks.check_jvb_health, rec({}), loopback({"/about/health": HttpAnswer(500, "")})
    )
    assert (health.status, health.observed) == ("fail", "jvb /about/health answered 500"), health
    version = HttpAnswer(200, json.dumps({"name": "JVB", "version": "stable-11031"}))
    result = run_one(env, checks.check_jvb_version, rec({}), loopback({"/about/version": version}))
    assert (result.status, result.final) == ("fail", True), result
    assert result.observed == "jvb reports stable-11031, pinned release is stable-11146-2", result


def docker_check_on_main(env: Environment, answer: tuple[int, str, str]) -> VerifyReport:
    """Only host.docker, with a runner for the main host alone answering `docker version`."""
    clock = FakeClock()
    return verify(
        env,
        {env.deploy.main_host: rec({("docker", "version"): answer})},
        only=["host.docker"],
        timeout=5,
        clock=clock,
        sleep=clock.sleep,
    )


def test_verify_runs_only_the_selected_checks_and_reports_unreachable_hosts() -> None:
    report = docker_check_on_main(sandbox(), (1, "", "Cannot connect to the Docker daemon"))
    assert [(o.id, o.status) for o in report.outcomes] == [("host.docker", "fail")], report.outcomes
    assert "Cannot connect to the Docker daemon" in report.outcomes[0].observed
    assert not report.ok


def test_config_dirs_name_the_dir_uid_1000_cannot_write() -> None:
    env = sandbox()
    config = "/srv/jitsi-ops-sandbox/config"
    subdirs = [
        "storage/web",
        "storage/prosody",
        "storage/jibri",
        "storage/transcripts",
        "tmp/web-load-test",
    ]
    argv = ("stat", "-L", "-c", "%n|%F|%u|%g|%a", "--", *[f"{config}/{d}" for d in subdirs])
    lines = [f"{config}/{d}|directory|1000|1000|755" for d in subdirs[:3]]
    lines.append(f"{config}/storage/transcripts|directory|0|0|755")
    runner = rec({argv: (1, "\n".join(lines) + "\n", "stat: cannot statx 'tmp/web-load-test'")})
    result = run_one(env, checks.check_config_dirs, runner)
    assert (result.status, result.final) == ("fail", True), result
    assert result.observed == (
        f"{config}: storage/transcripts: 0:0 mode 0755, not writable by uid 1000; "
        "tmp/web-load-test: missing"
    ), result.observed


def test_verify_checks_only_the_hosts_it_was_given(scratch_repo: Path) -> None:
    report = docker_check_on_main(two_hosts(scratch_repo), (0, "27.0.1\n", ""))
    hosts = [(o.id, o.host) for o in report.outcomes]
    assert hosts == [("host.docker", "meet.example.com")], hosts
