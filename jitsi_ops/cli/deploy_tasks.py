"""Tasks of the upgrade pipeline: deploy, plan, status, logs, lock, unlock."""

from __future__ import annotations

import sys
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jitsi_ops import commands, fleet, hoststate, stack
from jitsi_ops import deploy as pipeline
from jitsi_ops import guard as guarding
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
    one_host,
    select_hosts,
)
from jitsi_ops.deploy import DeployReport
from jitsi_ops.errors import OpsError
from jitsi_ops.facts import gather, project_containers
from jitsi_ops.output import TaskOutput, strip_terminal_codes
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify import mediapath

RESULT_LINES = {
    "deployed": "deployed {to} (verified)",
    "nothing-to-do": "nothing to do: {to} is deployed and unchanged",
    "dry-run": "dry run: nothing was changed",
    "failed": "FAILED: {error}",
    "interrupted": "interrupted: {lock}",
}
# Phases after which the stack is no longer what it was (a failure from the first of them on is
# rolled back; one after a verified deploy leaves the new release running).
CHANGING_PHASES = ("migrate", "apply", "gate", "record")
# What an interrupted run says about the lock: only what it saw (see DeployReport.lock).
LOCK_LINES = {
    "released": "lock released",
    "not held": "this run holds no lock",
    "": "no lock was taken",
    "held": "the deploy lock may still be held by this run (see `invoke lock --env {env}`; "
    "once this run is gone, `invoke unlock --env {env}` breaks it)",
}


def _print_plans(report: DeployReport, dry_run: bool) -> None:
    """The main host's plan, then each bridge host's, when there is something to show."""
    plans = [("", report.plan)] if report.plan is not None else []
    plans += [(label, plan) for label, plan in report.bridge_plans.items()]
    many = len(plans) > 1
    for label, plan in plans:
        if plan is None or not (dry_run or not plan.nothing_to_do):
            continue
        if many:
            print(f"{label or 'main host'}:")
        print(plan.render_text(), end="")


def _print_load(report: DeployReport) -> None:
    if report.load is not None:
        print(report.load.summary())


def _asker(out: TaskOutput) -> pipeline.Confirm:
    """The question before the first change, on a terminal: the plan and the load, then y/N."""

    def confirm(report: DeployReport) -> bool:
        out.clear()
        _print_plans(report, dry_run=False)
        _print_load(report)
        answer = input(f"Deploy {report.to_release} to {report.env} now? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return confirm


def _releases_line(report: DeployReport) -> str:
    """`releases now: meet stable-11146-2, jvb1 stable-11146-1` (which host runs what)."""
    parts = [f"{host} {release or 'unknown'}" for host, release in report.releases.items()]
    return "releases now: " + ", ".join(parts)


def _summary(report: DeployReport) -> str:
    """One line that says where the hosts are now, truthfully."""
    frm = report.from_release or "the previous stack"
    lock = LOCK_LINES.get(report.lock, LOCK_LINES["held"]).format(env=report.env)
    rollback = report.rollback
    if rollback is None:
        line = RESULT_LINES.get(report.result, "{error}").format(
            to=report.to_release, error=report.error, lock=lock
        )
        changed = any(p.name in CHANGING_PHASES and p.status == "ok" for p in report.phases)
        if report.result in ("failed", "interrupted") and not changed:
            line += "; the stack was not changed"
        elif report.result == "interrupted":
            line += f"; {report.error}"
        return line
    head = "INTERRUPTED" if rollback.cause == "interrupted" else "FAILED"
    line = f"{head}: {report.error}; "
    restore = (
        f"`invoke restore --env {report.env} --backup {report.backup_id}`"
        if report.backup_id
        else "`invoke backups` lists the backups to restore"
    )
    files = f"; {', '.join(rollback.env_files)} put back" if rollback.env_files else ""
    held = f"; {lock}" if report.lock == "held" else ""
    if report.result == "rolled-back":
        return line + f"rolled back to {frm} (verified){files}{held}"
    if report.result == "rolled-back-unverified":
        return (
            line + f"rolled back to {frm}{files}, but it did not pass verification"
            f"{f' ({rollback.error})' if rollback.error else ''}: check `invoke verify --env "
            f"{report.env}`; the state before this deploy is in {restore}{held}"
        )
    return (
        line + f"ROLLBACK FAILED ({rollback.error or 'unknown'}){files}: the hosts may run a mix "
        f"of both releases; manual action needed: {restore}{held}"
    )


@task(
    help={
        "env": ENV_HELP,
        "dry_run": "print the plan and stop; nothing on the host changes",
        "json": "print one JSON report instead of the timeline",
        "message": "a note stored in the lock and the audit log",
        "timeout": "seconds the verification gate may take (default: verify.timeout)",
        "allow_unknown_release": "deploy a release newer than the newest jitsi-ops knows, with "
        "the newest known release's compose set and no migrations for it",
        "guard": GUARD_HELP,
        "max_wait": MAX_WAIT_HELP,
        "yes": "do not ask before changing anything (a run without a terminal never asks)",
    }
)
@boundary
def deploy(
    c: Context,
    env: str = "",
    dry_run: bool = False,
    json: bool = False,
    message: str = "",
    timeout: float = 0.0,
    allow_unknown_release: bool = False,
    guard: str = "",
    max_wait: str = "",
    yes: bool = False,
) -> None:
    """Upgrade safely: lock, preflight, plan, backup, pull, apply, verify, roll back on failure."""
    loaded = load(c, env)
    guarding.check_flags(guard, max_wait)  # bad flags: refused before connecting
    with (
        TaskOutput(sys.stdout, json=json) as out,
        main_host(loaded) as runner,
        bridge_hosts(loaded) as bridges,
    ):
        where = ", ".join([runner.host, *(f"{b.host} (jvb)" for b in bridges.values())])
        out.line(f"deploy {loaded.name} -> {loaded.release} on {where}")
        runners: dict[Host, Runner] = {loaded.deploy.main_host: runner, **bridges}
        ask = not (yes or json or dry_run) and sys.stdin.isatty() and sys.stdout.isatty()
        conference = conference_guard(loaded, runners, guard, max_wait)
        roller = (
            fleet.RollingUpgrade(
                loaded,
                (loaded.deploy.main_host, runner),
                conference.policy,
                conference.max_wait,
                timeout if timeout > 0 else loaded.deploy.verify.timeout,
                batch=loaded.deploy.rolling.batch,
            )
            if bridges
            else None
        )
        report = pipeline.deploy(
            loaded,
            runner,
            dry_run=dry_run,
            message=message,
            timeout=timeout,
            on_phase=None if json else out.phase,
            progress=None if json else out.progress,
            bridges=bridges,
            allow_unknown_release=allow_unknown_release,
            guard=conference,
            confirm=_asker(out) if ask else None,
            roll=roller,
        )
    if json:
        emit_json(report.as_dict())
    else:
        _print_plans(report, dry_run)
        if dry_run:
            _print_load(report)
        if bridges and not dry_run and report.result != "nothing-to-do":
            print(_releases_line(report))
        print(_summary(report))
    if not report.ok:
        raise Exit(code=1)


@task(help={"env": ENV_HELP, "json": "print the plan as JSON"})
@boundary
def plan(c: Context, env: str = "", json: bool = False) -> None:
    """Show what a deploy would change (masked .env diff, files, images, recreations)."""
    loaded = load(c, env)
    with main_host(loaded) as runner, bridge_hosts(loaded) as bridges:
        runners: dict[Host, Runner] = {loaded.deploy.main_host: runner, **bridges}
        report = pipeline.deploy(
            loaded,
            runner,
            dry_run=True,
            bridges=bridges,
            guard=conference_guard(loaded, runners),
        )
    if report.plan is None:
        raise OpsError(report.error or "could not compute a plan", hint="see the error above")
    if json:
        data = report.plan.as_dict()
        if report.bridge_plans:
            data["bridge_plans"] = {k: p.as_dict() for k, p in report.bridge_plans.items()}
        data["media_before"] = mediapath.as_dict(report.media_before)
        data["load"] = report.load.as_dict() if report.load else None
        emit_json(data)
    else:
        _print_plans(report, dry_run=True)
        _print_load(report)
        if report.media_before:  # probed only when something runs
            print(mediapath.summary(report.media_before))


@task(help={"env": ENV_HELP, "json": "print one JSON object"})
@boundary
def status(c: Context, env: str = "", json: bool = False) -> None:
    """Deployed release, per-service state, last deploy and lock of an environment (and the
    release and services of each bridge host)."""
    loaded = load(c, env)
    with main_host(loaded) as runner, bridge_hosts(loaded) as bridges:
        stack_dir = loaded.deploy.stack_dir
        data: dict[str, Any] = {"env": loaded.name, **_host_status(loaded, runner)}
        lock = hoststate.read_lock(runner, stack_dir)
        audit = hoststate.read_audit(runner, stack_dir, last=1)
        data["lock"] = lock.as_dict() if lock else None
        data["last_action"] = audit[-1] if audit else None
        data["bridges"] = [
            _host_status(loaded.for_host(host), bridge) for host, bridge in bridges.items()
        ]
    if json:
        emit_json(data)
        return
    for index, host_data in enumerate([data, *data["bridges"]]):
        release = host_data["release"] or "unknown (never deployed by jitsi-ops)"
        where = host_data["host"] + (" (jvb)" if index else "")
        print(f"{loaded.name} on {where}: release {release}")
        for svc in host_data["services"]:
            print(f"  {svc['service']:<12} {svc['state']:<10} {svc['status']:<28} {svc['image']}")
        if not host_data["services"]:
            print("  no containers in project " + loaded.deploy.project)
    print(f"  lock: {lock.describe() if lock else 'free'}")
    if lock and lock.problem:
        print(f"  hint: {hoststate.lock_hint(lock, loaded.name)}")
    if audit:
        last = audit[-1]
        print(
            f"  last: {last.get('action')} {last.get('result')} {last.get('time', '')} "
            f"by {last.get('user')} ({last.get('to_release') or ''})"
        )


def _host_status(view: Environment, runner: Runner) -> dict[str, Any]:
    """Release (state.json) and containers of one host."""
    try:
        state = hoststate.read_state(runner, view.deploy.stack_dir)
    except OpsError as exc:
        state, state_error = None, exc.message
    else:
        state_error = ""
    containers = gather(runner, project_containers(view.deploy.project))
    return {
        "host": runner.host,
        "release": state.release if state else None,
        "deploy_id": state.deploy_id if state else None,
        "state_error": state_error,
        "services": [
            {"service": c.service, "state": c.state, "status": c.status, "image": c.image}
            for c in containers
        ],
    }


@task(
    help={
        "env": ENV_HELP,
        "service": "only this service (web, prosody, jicofo, jvb, ...)",
        "since": "only newer than this (e.g. 10m, 2h, an RFC 3339 time)",
        "tail": "lines per service (default 200)",
        "host": "only this host: its address as deploy.toml names it, or 'main' (default: every "
        "host, each line prefixed by the host)",
    }
)
@boundary
def logs(
    c: Context, env: str = "", service: str = "", since: str = "", tail: int = 200, host: str = ""
) -> None:
    """Recent container logs of the stack on every host, or --host one (secrets scrubbed)."""
    from jitsi_ops.environments import rendered_values  # noqa: PLC0415
    from jitsi_ops.secrets import scrub  # noqa: PLC0415

    loaded = load(c, env)
    selected = [(h, loaded.for_host(h)) for h in select_hosts(loaded, host)]
    if service:
        having = [(h, view) for h, view in selected if service in stack.services(view)]
        if not having:
            # Names the service list of the (first) selected host in its error.
            stack.check_service(selected[0][1], service)
        selected = having
    # The main host's values hold every secret a bridge host's .env could hold.
    secrets = {**rendered_values(loaded)}
    prefixed = len(select_hosts(loaded, "")) > 1 and not host
    for target, view in selected:
        with one_host(loaded, target) as runner:
            result = runner.run(
                commands.compose_logs(stack.target_for(view), service, since, tail), timeout=120
            )
        text = scrub(result.stdout + result.stderr, {**secrets, **rendered_values(view)})
        if prefixed:
            text = "".join(f"{target.label}: {line}" for line in text.splitlines(keepends=True))
        # A pipe or a file gets the text only: `ESC[2K` and colours are noise in a saved log.
        sys.stdout.write(text if sys.stdout.isatty() else strip_terminal_codes(text))
        sys.stdout.flush()


@task(help={"env": ENV_HELP})
@boundary
def lock(c: Context, env: str = "") -> None:
    """Show who holds the deploy lock of an environment, if anyone."""
    loaded = load(c, env)
    with main_host(loaded) as runner:
        holder = hoststate.read_lock(runner, loaded.deploy.stack_dir)
    if holder is None:
        print(f"{loaded.name}: not locked")
        return
    print(f"locked: {holder.describe()}")
    print(f"hint: {hoststate.lock_hint(holder, loaded.name)}")


@task(help={"env": ENV_HELP, "yes": "do not ask for confirmation"})
@boundary
def unlock(c: Context, env: str = "", yes: bool = False) -> None:
    """Break the deploy lock (after checking that its holder is really gone)."""
    loaded = load(c, env)
    with main_host(loaded) as runner:
        holder = hoststate.read_lock(runner, loaded.deploy.stack_dir)
        if holder is None:
            print(f"{loaded.name}: not locked")
            return
        print(f"locked: {holder.describe()}")
        if not yes:
            if not sys.stdin.isatty():
                raise OpsError("refusing to break the lock without confirmation", hint="pass --yes")
            answer = input("Break this lock? Only if that run is really gone. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise Exit("lock kept", code=1)
        hoststate.break_lock(runner, loaded.deploy.stack_dir)
        print("lock broken")
