"""`invoke verify`: prove a deployment serves meetings, on every host of an environment."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops.cli.common import ENV_HELP, boundary, connect, emit_json, load
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import ConfigError, VerifyFailed
from jitsi_ops.output import TaskOutput
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Host
from jitsi_ops.verify import as_json, human_lines, select, write_junit
from jitsi_ops.verify import verify as run_verify
from jitsi_ops.verify.checks import build_suite
from jitsi_ops.verify.model import Check
from jitsi_ops.verify.report import scrubbed


def _waiting(round_no: int, pending: Sequence[Check], remaining: float) -> str:
    """One progress message per retry round, so a long wait is never silent."""
    names = ", ".join(f"{c.id}@{c.host.label}" for c in pending[:4])
    more = f" and {len(pending) - 4} more" if len(pending) > 4 else ""
    return f"verify: round {round_no}: waiting for {names}{more} to settle ({remaining:.0f}s left)"


@task(
    iterable=["only"],
    help={
        "env": ENV_HELP,
        "junit": "also write the results as JUnit XML to this file",
        "json": "print one JSON document instead of the check lines",
        "only": "run only these checks: an id (web.tls), a group (conference) or a glob; repeatable",
        "timeout": "seconds to wait for services to settle (default: verify.timeout of deploy.toml)",
    },
)
@boundary
def verify(
    c: Context,
    *,
    env: str = "",
    junit: str = "",
    json: bool = False,
    only: list[str] | None = None,
    timeout: float = 0.0,
) -> None:
    """Verify a deployment end to end (host, sockets, web, signalling, conference, collab, media)."""
    loaded = load(c, env)
    # Refuse a mistyped --only before any host is contacted.
    select(build_suite(loaded, rendered_values(loaded)), only or [])
    ssh_config = loaded.deploy.ssh.config_file
    if ssh_config is not None and not ssh_config.is_file():
        raise ConfigError(
            f"ssh config {ssh_config} (deploy.toml [ssh] config) does not exist",
            hint="fix the path in deploy.toml, or bring the testbed up for env/sandbox",
        )
    runners: dict[Host, Runner] = {host: connect(loaded, host) for host in loaded.deploy.hosts}
    # Progress goes to stderr, also with --json: stdout carries only the report, and a long
    # wait should not look like a hang.
    with TaskOutput(sys.stderr) as out:
        try:
            report = run_verify(
                loaded,
                runners,
                only=only or [],
                timeout=timeout if timeout > 0 else None,
                parallel=loaded.deploy.fleet.parallel,
                progress=lambda round_no, pending, remaining: out.progress(
                    _waiting(round_no, pending, remaining)
                ),
            )
        finally:
            for runner in runners.values():
                runner.close()
    # Outcomes are scrubbed as they are made; once more here, before anything leaves the process.
    report = scrubbed(report, rendered_values(loaded))
    if junit:
        write_junit(report, Path(junit))
    if json:
        emit_json(as_json(report))
    else:
        print("\n".join(human_lines(report)))
    if not report.ok:
        failures = report.failures
        named = ", ".join(f"{o.id}@{o.host}" for o in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise VerifyFailed(
            f"{len(failures)} of {len(report.outcomes)} checks failed: {named}{more}",
            hint="the lines above say what each check observed; re-run a single check with "
            f"`invoke verify --env {loaded.name} --only CHECK`",
        )
