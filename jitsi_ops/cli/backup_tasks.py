"""Tasks for the backup phase on its own: `invoke backup` (take one now) and `invoke backups`.

A backup id names a set: one archive per host, each in that host's backup dir (a deploy backs up
the main host and every bridge host it changes under its deploy id; `invoke backup` every host).

The deploy pipeline calls jitsi_ops.backup.create_backup itself; these tasks are for operators
who want a backup before a manual change, or to see what a rollback or restore could use.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invoke.context import Context
from invoke.tasks import task

from jitsi_ops import backup as backups_mod
from jitsi_ops import hoststate
from jitsi_ops.cli.common import ENV_HELP, boundary, bridge_hosts, emit_json, load, main_host
from jitsi_ops.errors import OpsError, RemoteCommandError
from jitsi_ops.output import TaskOutput
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host, local_user


def _audit(runner: Runner, stack_dir: str, loaded: Environment, record: dict[str, Any]) -> None:
    hoststate.append_audit(
        runner,
        stack_dir,
        {"action": "backup", "env": loaded.name, "user": local_user(), **record},
        secret_values=loaded.values,
    )


@dataclass(frozen=True)
class _Taken:
    """One host's part of a backup set (manifest None: the host had nothing to back up)."""

    label: str  # the host as the runner names it
    manifest: backups_mod.Manifest | None
    removed: list[str]
    archive: str
    seconds: float = 0.0


def _take_one(
    view: Environment,
    runner: Runner,
    deploy_id: str,
    *,
    include_recordings: bool,
    out: TaskOutput,
    prefix: str,
) -> tuple[backups_mod.Manifest, list[str]]:
    """Back up and prune one host (under the main host's lock)."""
    try:
        digests = backups_mod.running_digests(view, runner)
    except RemoteCommandError as exc:
        # The files are worth backing up even when Docker cannot be asked.
        out.line(f"{prefix}warning: image digests not recorded: {exc.message}")
        digests = {}
    manifest = backups_mod.create_backup(
        view,
        runner,
        deploy_id,
        release=backups_mod.deployed_release(view, runner),
        digests=digests,
        progress=lambda message: out.progress(f"{prefix}backup: {message}"),
        include_recordings=include_recordings,
    )
    removed = backups_mod.prune(view, runner, view.deploy.backup.keep, protect={deploy_id})
    return manifest, removed


def _take(
    loaded: Environment,
    runner: Runner,
    deploy_id: str,
    *,
    include_recordings: bool,
    out: TaskOutput,
    bridges: Mapping[Host, Runner],
) -> list[_Taken]:
    """Lock, back up every host under one id (a set, like a deploy's), prune, audit."""
    stack_dir = backups_mod.stack_dir_of(loaded, runner)
    hosts: list[tuple[Host, Environment, Runner]] = [(loaded.deploy.main_host, loaded, runner)]
    hosts += [(h, loaded.for_host(h), bridges[h]) for h in loaded.deploy.bridge_hosts]
    many = len(hosts) > 1
    taken: list[_Taken] = []
    # Under the deploy lock (the main host's guards the whole environment): a deploy changing
    # files meanwhile would make the verification fail anyway; the lock turns that into a
    # clear "locked by ..." before anything is read.
    info = hoststate.LockInfo.for_this_process(deploy_id, "invoke backup")
    with hoststate.holding_lock(runner, stack_dir, info):
        try:
            for host, view, host_runner in hosts:
                archive = backups_mod.archive_path(
                    backups_mod.backup_dir_of(view, host_runner), deploy_id
                )
                if host.role != "main" and not any(
                    root.present for root in backups_mod.resolve_roots(view, host_runner)
                ):
                    taken.append(_Taken(host_runner.host, None, [], archive))
                    continue
                started = time.monotonic()
                try:
                    manifest, removed = _take_one(
                        view,
                        host_runner,
                        deploy_id,
                        include_recordings=include_recordings,
                        out=out,
                        prefix=f"{host.label}: " if many else "",
                    )
                except OpsError as exc:
                    if many and not exc.message.startswith(f"{host.label}: "):
                        raise type(exc)(f"{host.label}: {exc.message}", hint=exc.hint) from None
                    raise
                seconds = time.monotonic() - started
                taken.append(_Taken(host_runner.host, manifest, removed, archive, seconds))
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
        main = taken[0].manifest
        assert main is not None  # the main host is always backed up
        _audit(
            runner,
            stack_dir,
            loaded,
            {
                "deploy_id": deploy_id,
                "release": main.release,
                "size": sum(t.manifest.archive_size for t in taken if t.manifest),
                "hosts": [t.label for t in taken if t.manifest],
                "pruned": sorted({r for t in taken for r in t.removed}),
                "result": "ok",
            },
        )
    return taken


@task(
    help={
        "env": ENV_HELP,
        "include_recordings": "also archive jibri recordings (left out by default: they can be huge)",
    }
)
@boundary
def backup(c: Context, env: str = "", include_recordings: bool = False) -> None:
    """Take a verified backup of CONFIG and the stack dir on every host now (one id, then prune)."""
    loaded = load(c, env)
    # The live line (a terminal only) is gone before the summary below is printed.
    with (
        TaskOutput(sys.stdout) as out,
        main_host(loaded) as runner,
        bridge_hosts(loaded) as bridges,
    ):
        deploy_id = hoststate.new_deploy_id(loaded.name)
        taken = _take(
            loaded,
            runner,
            deploy_id,
            include_recordings=include_recordings,
            out=out,
            bridges=bridges,
        )
    for part in taken:
        manifest = part.manifest
        if manifest is None:
            print(f"{part.label}: nothing to back up (no CONFIG or stack dir yet)")
            continue
        print(
            f"{part.label}: backup {deploy_id} ({manifest.release or 'release unknown'}, "
            f"{backups_mod.human_size(manifest.archive_size)}, {len(manifest.files)} entries, "
            f"{len(manifest.digests)} image digests) verified in {part.seconds:.1f}s"
        )
        print(f"  archive  {part.archive}")
        print(f"  sha256   {manifest.archive_sha256}")
        for skipped in manifest.skipped:
            print(f"  skipped  {skipped.path}: {skipped.reason}")
        if part.removed:
            print(
                f"  pruned   {', '.join(part.removed)} (backup.keep = {loaded.deploy.backup.keep})"
            )
    if len(taken) > 1:
        done = [part.label for part in taken if part.manifest]
        print(f"backup set {deploy_id}: {', '.join(done)}")
    if not include_recordings:
        print("  jibri recordings are not included (--include-recordings adds them)")


_HEADER = ("ID", "TIME", "RELEASE", "HOST", "SIZE")
_HOST_COLUMN = 3


@task(help={"env": ENV_HELP, "json": "print one JSON document instead of the table"})
@boundary
def backups(c: Context, env: str = "", json: bool = False) -> None:
    """List the environment's backups on every host, newest first (one id: one set of hosts)."""
    loaded = load(c, env)
    listed: list[tuple[Host, str, list[backups_mod.BackupInfo]]] = []
    with main_host(loaded) as runner, bridge_hosts(loaded) as bridges:
        for host, view, host_runner in [
            (loaded.deploy.main_host, loaded, runner),
            *((h, loaded.for_host(h), bridges[h]) for h in loaded.deploy.bridge_hosts),
        ]:
            directory = backups_mod.backup_dir_of(view, host_runner)
            listed.append((host, directory, backups_mod.list_backups(view, host_runner)))
    if json:
        main_dir, main_found = listed[0][1], listed[0][2]
        emit_json(
            {
                "env": loaded.name,
                "host": runner.host,
                "backup_dir": main_dir,
                "backups": [info.as_json() for info in main_found],
                "hosts": [
                    {
                        "host": host.label,
                        "role": host.role,
                        "backup_dir": directory,
                        "backups": [info.as_json() for info in found],
                    }
                    for host, directory, found in listed
                ],
            }
        )
        return
    print_backup_table(listed)


def print_backup_table(
    listed: Sequence[tuple[Host, str, Sequence[backups_mod.BackupInfo]]],
) -> None:
    """One row per backup and host, the hosts of one id together, newest id first."""
    order = {host: index for index, (host, _d, _f) in enumerate(listed)}
    entries = [(info, host) for host, _d, found in listed for info in found]
    entries.sort(key=lambda e: order[e[1]])
    # Stable: within one id the hosts stay in deploy.toml order.
    # By the id's time (the set's; one host's part is written later than another's), ties
    # within its second broken by the main host's manifest time, as its own listing orders them.
    main_time = {info.id: info.time for info in listed[0][2]}

    def newest_first(entry: tuple[backups_mod.BackupInfo, Host]) -> tuple[Any, ...]:
        info = entry[0]
        stamp = main_time.get(info.id, info.time)
        return (backups_mod.deploy_id_time(info.id) or stamp, stamp, info.id)

    entries.sort(key=newest_first, reverse=True)
    for host, directory, found in listed:
        if not found:
            print(f"no backups in {directory} on {host.label}")
    if not entries:
        return
    rows: list[tuple[str, ...]] = [
        (
            info.id,
            info.time.strftime("%Y-%m-%d %H:%M:%SZ"),
            info.release or "-",
            host.label,
            backups_mod.human_size(info.size),
        )
        for info, host in entries
    ]
    header: tuple[str, ...] = _HEADER
    if len(listed) == 1:  # one host: no HOST column
        header = _HEADER[:_HOST_COLUMN] + _HEADER[_HOST_COLUMN + 1 :]
        rows = [row[:_HOST_COLUMN] + row[_HOST_COLUMN + 1 :] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for (info, _host), row in zip(entries, rows, strict=True):
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        print(f"{line}  ! {info.problem}" if info.problem else line)
    for host, directory, found in listed:
        if found:
            print(f"{len(found)} backup(s) in {directory} on {host.label}")
