"""The verify task's boundary: flags parsed, a bad --only refused before any host is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke.collection import Collection
from invoke.program import Program

from jitsi_ops.cli import verify_tasks

REPO = Path(__file__).resolve().parents[2]


def run_task(*argv: str) -> int:
    namespace = Collection.from_module(verify_tasks)
    namespace.configure({"jitsi_ops": {"root": str(REPO)}})
    with pytest.raises(SystemExit) as exited:
        Program(namespace=namespace).run(["invoke", *argv])
    return int(exited.value.code or 0)


def test_every_flag_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    # First in this module: invoke pops a task's help texts when it builds its flags once.
    assert run_task("--help", "verify") == 0
    out = capsys.readouterr().out
    # Options are "  -x, --flag[=TYPE]   help", wrapped onto the next line when the flag is long.
    options = " ".join(out.split("Options:", 1)[1].split())
    for flag, words in (
        ("--env", "environment name"),
        ("--junit", "JUnit XML"),
        ("--json", "one JSON document"),
        ("--only", "run only these checks"),
        ("--timeout", "seconds to wait"),
    ):
        assert flag in options and words in options, f"{flag} without help: {options}"


def test_unknown_check_is_refused_with_the_known_ids(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_task("verify", "--env", "sandbox", "--only", "web.tls", "--only", "web.tsl")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: --only 'web.tsl' matches no check" in err, err
    assert "hint: checks: " in err and "conference.bridges" in err, err
