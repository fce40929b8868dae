"""`invoke restore` and `invoke rollback`: put a backup set back on every host that has its part
(see jitsi_ops.restore)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jitsi_ops import backup as backups_mod
from jitsi_ops import guard as guarding
from jitsi_ops import restore as restoring
from jitsi_ops.cli.common import (
    ENV_HELP,
    GUARD_HELP,
    MAX_WAIT_HELP,
    boundary,
    bridge_hosts,
    conference_guard,
    emit_json,
    load,
    main_host,
)
from jitsi_ops.deploy import default_verifier
from jitsi_ops.errors import ConfigError
from jitsi_ops.output import TaskOutput
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Host


def _ask(out: TaskOutput, summary: Sequence[str]) -> bool:
    out.clear()  # a live line redrawing itself would garble the prompt
    for line in summary:
        out.line(line)
    if not sys.stdin.isatty():
        out.line("refusing to restore without confirmation: pass --yes")
        return False
    return input("Restore this backup? The stack stops meanwhile. [y/N] ").strip().lower() in (
        "y",
        "yes",
    )


def _agree(out: TaskOutput, summary: Sequence[str]) -> bool:
    for line in summary:
        out.line(line)
    return True


def _confirmation(out: TaskOutput, *, yes: bool, quiet: bool) -> restoring.Confirm:
    """--yes agrees (printing the summary unless --json); --json without --yes cannot ask."""
    if yes:
        return (lambda _summary: True) if quiet else (lambda summary: _agree(out, summary))
    return (lambda _summary: False) if quiet else (lambda summary: _ask(out, summary))


def _print_report(report: restoring.RestoreReport) -> None:
    """The outcome, with a line per host when the environment has bridge hosts."""
    for warning in report.warnings:
        print(f"warning: {warning}")
    if report.safety_backup_id:
        print(f"the state before the restore is in backup {report.safety_backup_id}")
    if len(report.hosts) > 1:
        for part in report.hosts:
            state = {"not-in-set": "not in this backup, left as it is"}.get(
                part.result, part.result
            )
            release = f" ({part.release or 'release unknown'})" if part.in_set else ""
            print(f"  {part.label}{release}: {state}")
    if report.result == "restored":
        verified = " (verified)" if report.verification is not None else ""
        where = (
            f" on {len(report.hosts) - len(report.not_in_set)} host(s)"
            if len(report.hosts) > 1
            else ""
        )
        print(
            f"restored {report.backup_id} ({report.release or 'release unknown'}){where}{verified}"
        )
    else:
        print(f"{report.result.upper()}: {report.error}")


@task(
    help={
        "env": ENV_HELP,
        "backup": "backup id to restore on every host that has it (see `invoke backups --env NAME`)",
        "yes": "do not ask for confirmation",
        "no_safety_backup": "skip the backup of the current state taken before restoring",
        "no_verify": "do not run the verify suite on the restored release",
        "timeout": "seconds the verification may take (default: verify.timeout)",
        "json": "print one JSON report instead of text",
        "guard": GUARD_HELP,
        "max_wait": MAX_WAIT_HELP,
    }
)
@boundary
def restore(
    c: Context,
    env: str = "",
    backup: str = "",
    yes: bool = False,
    no_safety_backup: bool = False,
    no_verify: bool = False,
    timeout: float = 0.0,
    json: bool = False,
    guard: str = "",
    max_wait: str = "",
) -> None:
    """Restore a backup set on every host it has: check all, then stop, put back and start each."""
    if not backup:
        raise ConfigError("--backup is required", hint=f"`invoke backups --env {env}` lists them")
    _restore(
        c,
        env,
        backup,
        yes=yes,
        safety=not no_safety_backup,
        verify=not no_verify,
        timeout=timeout,
        json=json,
        guard=(guard, max_wait),
    )


def _restore(
    c: Context,
    env: str,
    backup: str,
    *,
    yes: bool,
    safety: bool,
    verify: bool,
    timeout: float,
    json: bool,
    guard: tuple[str, str] = ("", ""),
    from_rollback: bool = False,
) -> None:
    """Shared by restore and rollback: the conference guard, then the restore; print or emit
    its report."""
    loaded = load(c, env)
    policy, max_wait = guard
    guarding.check_flags(policy, max_wait)  # bad flags: refused before connecting
    # Closed (live line gone) before the outcome below is printed.
    with (
        TaskOutput(sys.stdout, json=json) as out,
        main_host(loaded) as runner,
        bridge_hosts(loaded) as bridges,
    ):
        if not backup:
            usable = [b for b in backups_mod.list_backups(loaded, runner) if not b.problem]
            if not usable:
                raise ConfigError(
                    f"no backup of {loaded.name} to roll back to",
                    hint="a deploy takes one before it changes anything; see `invoke backups`",
                )
            backup = usable[0].id
            out.progress(
                f"rolling back to {backup} ({usable[0].release or 'release unknown'}), the state before the last deploy"
            )
        # Before the question and the safety backup: a refusal changes nothing at all.
        runners: dict[Host, Runner] = {loaded.deploy.main_host: runner, **bridges}
        action = "rollback" if from_rollback else "restore"
        conference = conference_guard(loaded, runners, policy, max_wait, action=action)
        record = conference.check(guarding.running_guarded(loaded, runners), say=out.progress)
        if record.outcome != "not needed":
            out.line(f"guard: {record.detail()}")
        guarding.audit_override(loaded, runner, record, action)
        report = restoring.restore(
            loaded,
            runner,
            backup,
            confirm=_confirmation(out, yes=yes, quiet=json),
            safety_backup=safety,
            verifier=default_verifier if verify else None,
            timeout=timeout,
            say=out.progress,
            bridges=bridges,
        )
    if json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise Exit(code=1)


@task(
    help={
        "env": ENV_HELP,
        "to": "backup / deploy id to go back to (default: the newest backup, i.e. the state before the last deploy)",
        "yes": "do not ask for confirmation",
        "timeout": "seconds the verification may take (default: verify.timeout)",
        "json": "print one JSON report instead of text",
        "guard": GUARD_HELP,
        "max_wait": MAX_WAIT_HELP,
    }
)
@boundary
def rollback(
    c: Context,
    env: str = "",
    to: str = "",
    yes: bool = False,
    timeout: float = 0.0,
    json: bool = False,
    guard: str = "",
    max_wait: str = "",
) -> None:
    """Go back to the state before the last deploy (or --to an older one) on every host it changed."""
    _restore(
        c,
        env,
        to,
        yes=yes,
        safety=True,
        verify=True,
        timeout=timeout,
        json=json,
        guard=(guard, max_wait),
        from_rollback=True,
    )
