"""The logs, lock, status and unlock tasks against a recording runner (no host involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.cli import common as cli_common
from jitsi_ops.cli import deploy_tasks
from jitsi_ops.runner import RecordingRunner
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
    code = run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--service", "jvb")
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
    assert run_task(deploy_tasks, scratch_repo, "logs", "--env", "example") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out, repr(out)
    assert out == "web-1  | started\njvb-1  | ready\r\nprosody-1  | up\n", repr(out)
