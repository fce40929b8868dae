"""Tasks for the backup phase on its own: `invoke backup` (take one now) and `invoke backups`.

The deploy pipeline calls jitsi_ops.backup.create_backup itself; these tasks are for operators
who want a backup before a manual change, or to see what a rollback or restore could use.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops import backup as backups_mod
from jitsi_ops import hoststate
from jitsi_ops.cli.common import ENV_HELP, boundary, emit_json, load, main_host
from jitsi_ops.errors import OpsError, RemoteCommandError
from jitsi_ops.output import TaskOutput
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, local_user


def _audit(runner: Runner, stack_dir: str, loaded: Environment, record: dict[str, Any]) -> None:
    hoststate.append_audit(
        runner,
        stack_dir,
        {"action": "backup", "env": loaded.name, "user": local_user(), **record},
        secret_values=loaded.values,
    )


def _take(
    loaded: Environment,
    runner: Runner,
    deploy_id: str,
    *,
    include_recordings: bool,
    out: TaskOutput,
) -> tuple[backups_mod.Manifest, list[str], str]:
    """Lock, back up, prune, audit; returns the manifest, the pruned ids and the archive path."""
    stack_dir = backups_mod.stack_dir_of(loaded, runner)
    # Under the deploy lock: a deploy changing files meanwhile would make the verification fail
    # anyway; the lock turns that into a clear "locked by ..." before anything is read.
    info = hoststate.LockInfo.for_this_process(deploy_id, "invoke backup")
    with hoststate.holding_lock(runner, stack_dir, info):
        try:
            try:
                digests = backups_mod.running_digests(loaded, runner)
            except RemoteCommandError as exc:
                # The files are worth backing up even when Docker cannot be asked.
                out.line(f"warning: image digests not recorded: {exc.message}")
                digests = {}
            manifest = backups_mod.create_backup(
                loaded,
                runner,
                deploy_id,
                release=backups_mod.deployed_release(loaded, runner),
                digests=digests,
                progress=lambda message: out.progress(f"backup: {message}"),
                include_recordings=include_recordings,
            )
            removed = backups_mod.prune(
                loaded, runner, loaded.deploy.backup.keep, protect={deploy_id}
            )
        except OpsError as exc:
            # Audited too; the original error matters more than a failed audit line.
            with contextlib.suppress(Exception):
                _audit(
                    runner,
                    stack_dir,
                    loaded,
                    {"deploy_id": deploy_id, "result": "failed", "error": exc.message},
                )
            raise
        _audit(
            runner,
            stack_dir,
            loaded,
            {
                "deploy_id": deploy_id,
                "release": manifest.release,
                "size": manifest.archive_size,
                "pruned": removed,
                "result": "ok",
            },
        )
    archive = backups_mod.archive_path(backups_mod.backup_dir_of(loaded, runner), deploy_id)
    return manifest, removed, archive


@task(
    help={
        "env": ENV_HELP,
        "include_recordings": "also archive jibri recordings (left out by default: they can be huge)",
    }
)
@boundary
def backup(c: Context, env: str = "", include_recordings: bool = False) -> None:
    """Take a verified backup of CONFIG and the stack dir on the main host now (then prune)."""
    loaded = load(c, env)
    # The live line (a terminal only) is gone before the summary below is printed.
    with TaskOutput(sys.stdout) as out, main_host(loaded) as runner:
        deploy_id = hoststate.new_deploy_id(loaded.name)
        started = time.monotonic()
        manifest, removed, archive = _take(
            loaded, runner, deploy_id, include_recordings=include_recordings, out=out
        )
    print(
        f"{runner.host}: backup {deploy_id} ({manifest.release or 'release unknown'}, "
        f"{backups_mod.human_size(manifest.archive_size)}, {len(manifest.files)} entries, "
        f"{len(manifest.digests)} image digests) verified in {time.monotonic() - started:.1f}s"
    )
    print(f"  archive  {archive}")
    print(f"  sha256   {manifest.archive_sha256}")
    if not include_recordings:
        print("  jibri recordings are not included (--include-recordings adds them)")
    for skipped in manifest.skipped:
        print(f"  skipped  {skipped.path}: {skipped.reason}")
    if removed:
        print(f"  pruned   {', '.join(removed)} (backup.keep = {loaded.deploy.backup.keep})")


@task(help={"env": ENV_HELP, "json": "print one JSON document instead of the table"})
@boundary
def backups(c: Context, env: str = "", json: bool = False) -> None:
    """List the environment's backups on its main host, newest first."""
    loaded = load(c, env)
    with main_host(loaded) as runner:
        directory = backups_mod.backup_dir_of(loaded, runner)
        found = backups_mod.list_backups(loaded, runner)
    if json:
        emit_json(
            {
                "env": loaded.name,
                "host": runner.host,
                "backup_dir": directory,
                "backups": [info.as_json() for info in found],
            }
        )
        return
    if not found:
        print(f"no backups of {loaded.name} in {directory} on {runner.host}")
        return
    rows = [
        (
            info.id,
            info.time.strftime("%Y-%m-%d %H:%M:%SZ"),
            info.release or "-",
            backups_mod.human_size(info.size),
        )
        for info in found
    ]
    widths = [
        max(len(row[i]) for row in [("ID", "TIME", "RELEASE", "SIZE"), *rows]) for i in range(4)
    ]
    header = ("ID", "TIME", "RELEASE", "SIZE")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for info, row in zip(found, rows, strict=True):
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        print(f"{line}  ! {info.problem}" if info.problem else line)
    print(f"{len(found)} backup(s) in {directory} on {runner.host}")
