"""`invoke rollback`, `restore` and `apply` pass the conference guard before anything else:
refused with the counts (the restore never starts), forced with an audit line, and a stack
that runs nothing guarded is not held back. Recording runner; the load is scripted."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops import guard as guarding
from jitsi_ops import restore as restoring
from jitsi_ops.cli import common as cli_common
from jitsi_ops.cli import restore_tasks, stack_tasks
from jitsi_ops.guard import HostLoad, LiveLoad
from jitsi_ops.runner import RecordingRunner
from jitsi_ops.secrets import GENERATED_SECRETS
from tests.unit.fakehost import compose_ps_lines
from tests.unit.taskrun import run_task

PS = ("docker", "compose", "-p", "jitsi", "ps")
BUSY = LiveLoad(HostLoad("meet.example.com", "jicofo", 2, 7), ())


@pytest.fixture
def repo(scratch_repo: Path) -> Path:
    secrets = scratch_repo / "env" / "example" / "secrets.env"
    secrets.write_text("".join(f"{key}={'7' * 32}\n" for key in GENERATED_SECRETS))
    secrets.chmod(0o600)
    toml = scratch_repo / "env" / "example" / "deploy.toml"
    # One host: the bridge host of env/example is not part of these tests.
    text = toml.read_text()
    start = text.index("\n[[hosts]]", text.index("\n[[hosts]]") + 1) + 1
    toml.write_text(text[:start] + text[text.index("\n[ssh]\n") + 1 :])
    return scratch_repo


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> RecordingRunner:
    services = [
        {"Service": s, "State": "running", "Name": f"jitsi-{s}-1"} for s in ("jicofo", "web")
    ]
    runner = RecordingRunner(
        label="meet.example.com", responses={PS: (0, compose_ps_lines(services), "")}
    )
    monkeypatch.setattr(cli_common, "connect", lambda _env, _host: runner)
    monkeypatch.setattr(guarding.LoadReader, "read", lambda _self: BUSY)
    return runner


@pytest.fixture
def restores(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    started: list[str] = []

    def fake_restore(*args: object, **_kwargs: object) -> restoring.RestoreReport:
        started.append(str(args[2]))
        raise AssertionError("the restore started")

    monkeypatch.setattr(restoring, "restore", fake_restore)
    return started


@pytest.mark.parametrize(
    "argv",
    [
        ("rollback", "--env", "example", "--to", "x", "--yes"),
        ("restore", "--env", "example", "--backup", "x", "--yes"),
    ],
    ids=["rollback", "restore"],
)
def test_rollback_and_restore_are_refused_with_the_counts(
    repo: Path,
    host: RecordingRunner,
    restores: list[str],
    argv: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_task(restore_tasks, repo, *argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "2 conference(s), 7 participant(s) live" in err, err
    assert f"this {argv[0]} would restart jicofo, web" in err, err
    assert restores == [], "the restore started despite the refusal"
    assert not [c for c in host.calls if c[0] == "put" or "tee" in c], host.calls


def test_a_forced_rollback_writes_the_override_to_the_audit_log(
    repo: Path, host: RecordingRunner, restores: list[str]
) -> None:
    with pytest.raises(AssertionError, match="the restore started"):
        run_task(
            restore_tasks, repo, "rollback", "--env", "example", "--to", "x", "--guard", "force"
        )
    audit = [c for c in host.calls if c[:2] == ("tee", "-a")]
    assert audit, host.calls
    assert restores == ["x"]


def test_apply_of_an_unchanged_stack_is_not_held_back(
    repo: Path, monkeypatch: pytest.MonkeyPatch, host: RecordingRunner
) -> None:
    monkeypatch.setattr(stack_tasks, "_recreations", lambda _env, _runner: ("etherpad",))
    applied: list[str] = []

    def fake_apply(env: object, runner: object) -> object:
        applied.append("yes")
        raise SystemExit(0)

    monkeypatch.setattr(stack_tasks.stack, "apply", fake_apply)
    run_task(stack_tasks, repo, "apply", "--env", "example")
    assert applied == ["yes"]


def test_bad_guard_flags_name_the_flag(
    repo: Path, host: RecordingRunner, restores: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_task(restore_tasks, repo, "rollback", "--env", "example", "--guard", "maybe")
    assert code != 0 and "--guard 'maybe' is not a guard policy" in capsys.readouterr().err
    code = run_task(restore_tasks, repo, "rollback", "--env", "example", "--max-wait", "soon")
    assert code != 0 and "--max-wait 'soon' is not a duration" in capsys.readouterr().err
