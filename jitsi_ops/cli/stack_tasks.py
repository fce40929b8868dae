"""Tasks that act on hosts over SSH."""

from __future__ import annotations

import time

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops import lint, stack
from jitsi_ops.cli.common import ENV_HELP, boundary, connect, load
from jitsi_ops.deploy import refuse_unknown_release
from jitsi_ops.errors import PreflightError


@task(
    help={
        "env": ENV_HELP,
        "allow_unknown_release": "apply a release newer than the newest jitsi-ops knows, with "
        "the newest known release's compose set",
    }
)
@boundary
def apply(c: Context, env: str = "", allow_unknown_release: bool = False) -> None:
    """Upload .env + compose set to the main host and `docker compose up -d` (no backup, no gate)."""
    loaded = load(c, env)
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
        result = stack.apply(loaded, runner)
    finally:
        runner.close()
    print(
        f"{runner.host}: applied {loaded.release} ({', '.join(result.uploaded)}) "
        f"CONFIG={result.config_dir} in {time.monotonic() - started:.1f}s"
    )
