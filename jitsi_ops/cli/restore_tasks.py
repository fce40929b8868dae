"""`invoke restore`: put a backup back on the main host (see jitsi_ops.restore)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jitsi_ops import backup as backups_mod
from jitsi_ops import restore as restoring
from jitsi_ops.cli.common import ENV_HELP, boundary, emit_json, load, main_host
from jitsi_ops.deploy import default_verifier
from jitsi_ops.errors import ConfigError


def _ask(summary: Sequence[str]) -> bool:
    for line in summary:
        print(line)
    if not sys.stdin.isatty():
        print("refusing to restore without confirmation: pass --yes")
        return False
    return input("Restore this backup? The stack stops meanwhile. [y/N] ").strip().lower() in (
        "y",
        "yes",
    )


def _agree(summary: Sequence[str]) -> bool:
    for line in summary:
        print(line)
    return True


def _confirmation(*, yes: bool, quiet: bool) -> restoring.Confirm:
    """--yes agrees (printing the summary unless --json); --json without --yes cannot ask."""
    if yes:
        return (lambda _summary: True) if quiet else _agree
    return (lambda _summary: False) if quiet else _ask


@task(
    help={
        "env": ENV_HELP,
        "backup": "backup id to restore (see `invoke backups --env NAME`)",
        "yes": "do not ask for confirmation",
        "no_safety_backup": "skip the backup of the current state taken before restoring",
        "no_verify": "do not run the verify suite on the restored release",
        "timeout": "seconds the verification may take (default: verify.timeout)",
        "json": "print one JSON report instead of text",
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
) -> None:
    """Restore a backup: verify it, stop the stack, put CONFIG and the stack dir back, start it."""
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
) -> None:
    """Shared by restore and rollback: run the restore, print or emit its report."""
    loaded = load(c, env)
    with main_host(loaded) as runner:
        say: Callable[[str], None] = (
            (lambda _line: None) if json else (lambda line: print(f"  ... {line}", flush=True))
        )
        if not backup:
            usable = [b for b in backups_mod.list_backups(loaded, runner) if not b.problem]
            if not usable:
                raise ConfigError(
                    f"no backup of {loaded.name} to roll back to",
                    hint="a deploy takes one before it changes anything; see `invoke backups`",
                )
            backup = usable[0].id
            say(
                f"rolling back to {backup} ({usable[0].release or 'release unknown'}), the state before the last deploy"
            )
        report = restoring.restore(
            loaded,
            runner,
            backup,
            confirm=_confirmation(yes=yes, quiet=json),
            safety_backup=safety,
            verifier=default_verifier if verify else None,
            timeout=timeout,
            say=say,
        )
    if json:
        emit_json(report.as_dict())
    else:
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.safety_backup_id:
            print(f"the state before the restore is in backup {report.safety_backup_id}")
        if report.result == "restored":
            verified = " (verified)" if report.verification is not None else ""
            print(f"restored {report.backup_id} ({report.release or 'release unknown'}){verified}")
        else:
            print(f"{report.result.upper()}: {report.error}")
    if not report.ok:
        raise Exit(code=1)


@task(
    help={
        "env": ENV_HELP,
        "to": "backup / deploy id to go back to (default: the newest backup, i.e. the state before the last deploy)",
        "yes": "do not ask for confirmation",
        "timeout": "seconds the verification may take (default: verify.timeout)",
        "json": "print one JSON report instead of text",
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
) -> None:
    """Go back to the state before the last deploy (or --to an older one), verified."""
    _restore(c, env, to, yes=yes, safety=True, verify=True, timeout=timeout, json=json)
