"""Tasks that act on hosts over SSH."""

from __future__ import annotations

import time

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops import facts, lint, stack
from jitsi_ops import guard as guarding
from jitsi_ops import plan as planning
from jitsi_ops.cli.common import (
    ENV_HELP,
    GUARD_HELP,
    MAX_WAIT_HELP,
    boundary,
    conference_guard,
    connect,
    load,
)
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import PreflightError
from jitsi_ops.hoststeps import refuse_unknown_release
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment


@task(
    help={
        "env": ENV_HELP,
        "allow_unknown_release": "apply a release newer than the newest jitsi-ops knows, with "
        "the newest known release's compose set",
        "guard": GUARD_HELP,
        "max_wait": MAX_WAIT_HELP,
    }
)
@boundary
def apply(
    c: Context,
    env: str = "",
    allow_unknown_release: bool = False,
    guard: str = "",
    max_wait: str = "",
) -> None:
    """Upload .env + compose set to the main host and `docker compose up -d` (no backup, no gate)."""
    loaded = load(c, env)
    guarding.check_flags(guard, max_wait)  # bad flags: refused before connecting
    findings = lint.run_checks(lint.context_for(loaded))
    if lint.has_errors(findings):
        first = next(f for f in findings if f.severity == "error")
        raise PreflightError(
            f"`invoke check --env {env}` reports errors, first: {first.key}: {first.message}",
            hint=first.hint,
        )
    refuse_unknown_release(loaded, allow=allow_unknown_release)
    host = loaded.deploy.main_host
    runner = connect(loaded, host)
    started = time.monotonic()
    try:
        conference = conference_guard(loaded, {host: runner}, guard, max_wait, action="apply")
        record = conference.check({host.label: _recreations(loaded, runner)}, say=print)
        if record.outcome != "not needed":
            print(f"guard: {record.detail()}")
        guarding.audit_override(loaded, runner, record, "apply")
        result = stack.apply(loaded, runner)
    finally:
        runner.close()
    print(
        f"{runner.host}: applied {loaded.release} ({', '.join(result.uploaded)}) "
        f"CONFIG={result.config_dir} in {time.monotonic() - started:.1f}s"
    )


def _recreations(env: Environment, runner: Runner) -> tuple[str, ...]:
    """The services `up -d` would recreate on the main host (the deploy plan's estimate)."""
    values = rendered_values(env)
    files = stack.stack_files(env)
    current = facts.gather_host_facts(
        runner,
        project=env.deploy.project,
        stack_dir=env.deploy.stack_dir,
        target_refs=planning.target_images(values, files).values(),
    )
    return tuple(planning.plan(values, files, current).services_to_recreate)
