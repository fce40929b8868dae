"""`invoke adopt`: take over a hand-made docker-jitsi-meet install (see jitsi_ops.adopt)."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops import adopt as adoption
from jitsi_ops.backup import human_size
from jitsi_ops.cli.common import SUDO_PASSWORD, boundary, connect, emit_json, repo_root
from jitsi_ops.errors import ConfigError
from jitsi_ops.output import TaskOutput
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Host, SshOptions, load_environment, validate_env_name
from jitsi_ops.ssh import SshRunner
from jitsi_ops.versions import OLDEST_DEPLOYABLE, older_than_compose_sets


def _runner(root: Path, name: str, options: adoption.HostOptions | None) -> Runner:
    """The env's main host when env/NAME/deploy.toml exists, else the host given on the line."""
    if (root / "env" / name / "deploy.toml").exists():
        loaded = load_environment(name, root)
        return connect(loaded, loaded.deploy.main_host)
    if options is None:
        raise ConfigError(
            f"env/{name} does not exist", hint="pass --host ADDRESS so adopt can create it"
        )
    ssh = SshOptions(config_file=options.ssh_config, known_hosts=options.known_hosts)
    host = Host(options.address, "main", options.user, options.port, sudo=options.sudo)
    return SshRunner(host, ssh, SUDO_PASSWORD)


def _absolute(path: str) -> Path | None:
    return Path(path).expanduser().resolve() if path else None


@task(
    help={
        "env": "name of the environment to create or fill (folder env/NAME)",
        "from": "directory on the host where the install's .env and compose files are",
        "host": "SSH address of the host (needed when env/NAME/deploy.toml does not exist yet)",
        "user": "SSH user for a new deploy.toml (default: ssh_config, else your local user)",
        "port": "SSH port for a new deploy.toml (default 22 or ssh_config)",
        "project": "compose project to adopt when several run from that directory",
        "ssh_config": "ssh_config file written into a new deploy.toml ([ssh] config)",
        "known_hosts": "known_hosts file written into a new deploy.toml ([ssh] known_hosts)",
        "backup_dir": "backup dir on the host written into a new deploy.toml ([backup] dir)",
        "sudo": "the SSH user needs sudo (asks for its password once); written into deploy.toml",
        "json": "print one JSON report instead of text",
    }
)
@boundary
def adopt(
    c: Context,
    env: str = "",
    from_: str = "",
    host: str = "",
    user: str = "",
    port: int = 0,
    project: str = "",
    ssh_config: str = "",
    known_hosts: str = "",
    backup_dir: str = "",
    sudo: bool = False,
    json: bool = False,
) -> None:
    """Take over a hand-made install: write env/NAME from the host, back it up, change nothing."""
    validate_env_name(env)
    if not from_:
        raise ConfigError("--from is required", hint="e.g. --from /opt/docker-jitsi-meet")
    root = repo_root(c)
    options = (
        adoption.HostOptions(
            address=host,
            user=user or None,
            port=port or None,
            ssh_config=_absolute(ssh_config),
            known_hosts=_absolute(known_hosts),
            backup_dir=backup_dir or None,
            sudo=sudo,
        )
        if host
        else None
    )
    if options is not None:
        adoption.check_host_options(options)
    runner = _runner(root, env, options)
    # Closed (live line gone) before the report below is printed.
    with TaskOutput(sys.stdout, json=json) as out:
        try:
            report = adoption.adopt(
                root,
                env,
                runner,
                from_,
                options=options,
                project=project or None,
                say=out.line,
                progress=out.progress,
            )
        finally:
            runner.close()
    if json:
        emit_json(report.as_dict())
        return
    print("wrote:")
    for label in report.written:
        print(f"  {label}" + (" (mode 0600)" if label.endswith("secrets.env") else ""))
    manifest = report.backup
    if manifest is not None:
        print(
            f"backup {manifest.deploy_id}: {human_size(manifest.archive_size)}, "
            f"{len(manifest.files)} entries of {', '.join(r.path for r in manifest.roots if r.present)}, verified"
        )
    if report.drift:
        print(f"values the rendered .env changes: {', '.join(report.drift)}")
    if report.plan is not None:
        print(f"a deploy of {report.discovery.release or 'this release'} would do:")
        print(report.plan.render_text(), end="")
    else:
        print(f"no plan: {report.plan_error}")
    if report.check_errors:
        print(
            f"`invoke check --env {env}` reports {len(report.check_errors)} error(s) a deploy "
            f"would stop at, first: {report.check_errors[0]}"
        )
    print("nothing on the host was changed but the backup.")
    if older_than_compose_sets(report.discovery.release) is not None:
        print(
            f"next: review env/{env}/, set JITSI_IMAGE_VERSION={OLDEST_DEPLOYABLE} or later in "
            f"env/{env}/jitsi.env, then `invoke deploy --env {env}`: one upgrade, migrations "
            f"from {report.discovery.release} on, rolled back to this host's files if it fails"
        )
        return
    print(
        f"next: review env/{env}/, then `invoke deploy --env {env}` (same release: it rewrites "
        ".env and the compose files, recreates no container)"
    )
