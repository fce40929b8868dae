"""The logs, lock, status and unlock tasks against a recording runner (no host involved)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops import hoststate
from jitsi_ops.cli import common as cli_common
from jitsi_ops.cli import deploy_tasks
from jitsi_ops.deploy import DeployReport
from jitsi_ops.runner import RecordingRunner, Result
from jitsi_ops.secrets import GENERATED_SECRETS
from jitsi_ops.settings import load_environment
from tests.unit.taskrun import run_task

STACK = "/opt/jitsi-meet"  # env/example's stack_dir
LOCK = f"{STACK}/.jitsi-ops/lock"


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> RecordingRunner:
    """The main host every task of the run connects to."""
    runner = RecordingRunner(label="meet.example.com")
    monkeypatch.setattr(cli_common, "connect", lambda _env, _host: runner)
    return runner


def compose_logs_calls(host: RecordingRunner) -> list[tuple[str, ...]]:
    return [c for c in host.calls if c[:2] == ("docker", "compose") and "logs" in c]


# --- logs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["--follow", "-f", "wbe"])
def test_logs_refuses_a_service_the_compose_set_does_not_have(
    scratch_repo: Path, host: RecordingRunner, capsys: pytest.CaptureFixture[str], service: str
) -> None:
    # `invoke logs --service --follow` hands "--follow" over as the service name: it used to
    # reach Compose as its own --follow flag and the task hung until the timeout.
    code = run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--service", service)
    err = capsys.readouterr().err
    assert code == 1, (code, err)
    assert compose_logs_calls(host) == [], f"compose ran: {host.calls}"
    first, hint = err.strip().splitlines()
    assert first == f"error: example has no service {service!r} in its compose set", err
    assert "web" in hint and "jvb" in hint, hint
    if service == "wbe":
        assert hint.startswith("hint: did you mean 'web'?"), hint


def test_logs_of_one_service_passes_it_after_a_double_dash(
    scratch_repo: Path, host: RecordingRunner
) -> None:
    code = run_task(
        deploy_tasks, scratch_repo, "logs", "--env", "example", "--service", "jvb", "--host", "main"
    )
    assert code == 0
    (call,) = compose_logs_calls(host)
    assert call[-2:] == ("--", "jvb"), call


def test_logs_strip_terminal_control_codes_when_not_on_a_terminal(
    scratch_repo: Path, host: RecordingRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    host.responses[("docker", "compose")] = (
        0,
        "\x1b[2Kweb-1  | \x1b[1;32mstarted\x1b[0m\n\x1b]0;title\x07jvb-1  | ready\r\n",
        "\x1b[?25lprosody-1  | up\x1b[?25h\n",
    )
    assert run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--host", "main") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out, repr(out)
    assert out == "web-1  | started\njvb-1  | ready\r\nprosody-1  | up\n", repr(out)


# --- the lock -----------------------------------------------------------------------------------


def test_lock_and_status_explain_a_lock_without_owner(
    scratch_repo: Path, host: RecordingRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    # An older jitsi-ops, interrupted between its mkdir and its owner write, left this.
    assert run_task(deploy_tasks, scratch_repo, "lock", "--env", "example") == 0
    out = capsys.readouterr().out
    assert "locked: nobody known: the lock directory has no owner.json" in out, out
    assert "older jitsi-ops" in out and "hint: " in out, out
    assert "break it with `invoke unlock --env example`" in out, out

    host.responses[("docker", "inspect")] = (0, "", "")
    assert run_task(deploy_tasks, scratch_repo, "status", "--env", "example") == 0
    out = capsys.readouterr().out
    assert "  lock: nobody known: the lock directory has no owner.json" in out, out
    assert (
        "  hint: no run is recorded as holding it" in out and "invoke unlock --env example" in out
    )


def test_status_json_marks_a_lock_whose_owner_cannot_be_read(
    scratch_repo: Path, host: RecordingRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    host.files[f"{LOCK}/owner.json"] = b"{torn"
    assert run_task(deploy_tasks, scratch_repo, "status", "--env", "example", "--json") == 0
    lock = json.loads(capsys.readouterr().out)["lock"]
    assert lock["problem"] == "the lock's owner.json is not readable JSON", lock


@dataclass
class LockingHost(RecordingRunner):
    """A recording host that keeps the lock (the take script and its removal) and raises
    KeyboardInterrupt for the argv prefixes in `ctrl_c`, each time they run."""

    ctrl_c: tuple[tuple[str, ...], ...] = ()

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        key = tuple(argv)
        if any(key[: len(prefix)] == prefix for prefix in self.ctrl_c):
            self.calls.append(key)
            raise KeyboardInterrupt
        if key[:3] == ("sh", "-c", hoststate._LOCK_SCRIPT):
            self.calls.append(key)
            if f"{key[4]}/owner.json" in self.files:
                return Result(key, hoststate.LOCK_HELD_EXIT, "", "")
            self.files[f"{key[4]}/owner.json"] = key[6].encode()
            return Result(key, 0, "", "")
        if key[:3] == ("rm", "-rf", "--"):
            self.files = {p: d for p, d in self.files.items() if not p.startswith(key[3] + "/")}
        if key[:2] == ("test", "-e"):
            self.calls.append(key)
            held = any(p.startswith(key[2] + "/") for p in self.files)
            return Result(key, 0 if held else 1, "", "")
        return super().run(argv, check=check, timeout=timeout, stdin=stdin)

    def get(self, path: str) -> bytes:
        if ("get", path) in self.ctrl_c:
            self.calls.append(("get", path))
            raise KeyboardInterrupt
        return super().get(path)


def interrupted_deploy(scratch_repo: Path, *ctrl_c: tuple[str, ...]) -> DeployReport:
    secrets = scratch_repo / "env" / "example" / "secrets.env"
    secrets.write_text("".join(f"{key}={'7' * 32}\n" for key in GENERATED_SECRETS))
    secrets.chmod(0o600)
    env = load_environment("example", scratch_repo)
    runner = LockingHost(ctrl_c=(("docker", "version"), *ctrl_c))  # preflight's first probe
    report = pipeline.deploy(env, runner, bridges=dict.fromkeys(env.deploy.bridge_hosts, runner))
    assert report.result == "interrupted", report
    return report


def test_an_interrupted_deploy_says_lock_released_only_when_it_was(scratch_repo: Path) -> None:
    report = interrupted_deploy(scratch_repo)
    assert report.lock == "released", report.lock
    assert deploy_tasks._summary(report).startswith("interrupted: lock released;")


@pytest.mark.parametrize(
    "also", [("rm", "-rf", "--", LOCK), ("get", f"{LOCK}/owner.json")], ids=["rm", "read"]
)
def test_an_interrupted_release_does_not_claim_the_lock_was_released(
    scratch_repo: Path, also: tuple[str, ...]
) -> None:
    # Ctrl-C again while the lock is given back (and while it is given back once more).
    report = interrupted_deploy(scratch_repo, also)
    assert report.lock == "held", report.lock
    line = deploy_tasks._summary(report)
    assert "released" not in line, line
    assert "may still be held" in line and "invoke unlock --env example" in line, line
    assert report.as_dict()["lock"] == "held"


def test_an_interrupted_take_that_left_nothing_says_so(scratch_repo: Path) -> None:
    report = interrupted_deploy(scratch_repo, ("sh", "-c"))
    assert report.lock == "not held", report.lock
    assert deploy_tasks._summary(report).startswith("interrupted: this run holds no lock;")
