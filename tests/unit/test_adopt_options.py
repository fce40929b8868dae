"""adopt refuses a host or backup dir that deploy.toml would refuse, before it connects or
writes anything (issue 10 items 6 and 9: no `~` remote paths, no injected addresses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.cli import adopt_tasks
from tests.unit.taskrun import run_task


@pytest.mark.parametrize(
    "case",
    [
        ("--backup-dir", "~/backups", "absolute path"),
        ("--backup-dir", "backups", "absolute path"),
        ("--host", 'meet"\nproject = "x', "SSH address"),
        ("--host", "-oProxyCommand=x", "SSH address"),
    ],
)
def test_adopt_refuses_bad_options_before_connecting(
    scratch_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    flag, value, hint = case
    connected: list[object] = []
    monkeypatch.setattr(adopt_tasks, "SshRunner", lambda *a, **_k: connected.append(a))
    args = {"--host": "sandbox", "--backup-dir": "/var/backups/jitsi-ops", flag: value}
    code = run_task(
        adopt_tasks,
        scratch_repo,
        "adopt",
        "--env",
        "seed",
        "--from",
        "/opt/handmade",
        *[item for pair in args.items() for item in pair],
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"error: {flag} "), err
    assert hint in err, err
    assert connected == [], "connected before validating the options"
    assert not (scratch_repo / "env" / "seed").exists()
