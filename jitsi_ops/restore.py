"""`invoke restore`: put one of an environment's backups back on every host that has it.

A backup id names a set: the deploy (or `invoke backup`) that took it wrote one archive under
that id into the backup dir of each host it backed up (a bridge host that did not change in
that deploy has none). A restore puts back every host of the set, leaves the hosts outside it
as they are (and says which), and verifies the whole environment afterwards.

Everything that can refuse does so, for every host of the set, while every stack still runs:

1. the manifest and the archive are downloaded to a private temporary directory here;
2. the manifest's roots must be the environment's own CONFIG and stack dir, as they resolve on
   the host now (`accepted_roots`): a manifest is data on the host, and a root it adds (or
   moves) would have its files removed and the archive's written there;
3. the archive must be exactly the one the manifest describes (size, sha256, every member's
   type, mode, owner and content: jitsi_ops.archive.verify_manifest_checksums) and safe to
   extract (jitsi_ops.archive.validate_archive: every member below an accepted root, no
   absolute names, no "..", no links leading out of the roots, no devices or fifos, nothing
   after the last member). A truncated or corrupt archive stops here;
4. the restored stack (`.env` and compose files, read out of the local archive) must be
   startable: it names its compose files;
5. GNU tar's own listing of the archive on the host (the file it will extract, whose sha256 is
   the validated one) must match the manifest member for member: the checks above read the
   archive with Python's tarfile, and where the two parsers disagree GNU tar's reading is the
   one that reaches the disk.

Then, under the deploy lock (the main host's: it guards the whole environment), host by host
(the main host first, then the bridge hosts): a safety backup of the current state (so a restore can itself be
undone), the backed-up images pulled by digest, `docker compose down` of the running project,
the archive's sha256 checked again on the host (it must still be the validated file), every path
under the backup's roots that the backup does not have removed (a newer `storage/` left behind
would be copied over the restored data by the next rootless start), the archive extracted with
GNU tar keeping numeric owners and modes, the image tags pointed at the backed-up digests, and
`up -d` with the restored `.env` and compose files. Paths the backup excluded (jibri recordings,
the lock, the audit log, the backup dir itself) are left alone throughout.

The download reads the archive into memory (Runner.get); CONFIG without recordings is small.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jitsi_ops import archive, backup, commands, facts, hoststate
from jitsi_ops import plan as planning
from jitsi_ops.deploy import Verifier
from jitsi_ops.deployreport import verification_dict
from jitsi_ops.envfile import parse_env
from jitsi_ops.errors import ConfigError, OpsError, RemoteCommandError
from jitsi_ops.hoststeps import environment_of
from jitsi_ops.rollback import UP_TIMEOUT
from jitsi_ops.runner import Result, Runner
from jitsi_ops.settings import Environment, Host, local_user
from jitsi_ops.verify.model import VerifyReport

Say = Callable[[str], None]
Confirm = Callable[[Sequence[str]], bool]
PULL_TIMEOUT = 900.0


def tar_extract(archive_file: str) -> list[str]:
    """`tar -xzpf ARCHIVE --numeric-owner -C /`, spelled out: owners by number (the backup's
    uids, not this host's names), modes including set-id bits, members under / (their names are
    root-relative host paths)."""
    return [
        "tar",
        "--extract",
        "--gzip",
        "--preserve-permissions",
        "--same-owner",
        "--numeric-owner",
        "--directory=/",
        f"--file={archive_file}",
    ]


def remove_listed(list_file: str) -> list[str]:
    """`rm -rf` every absolute path in a NUL-separated list file."""
    return ["xargs", "-0", "-r", "-a", list_file, "rm", "-rf", "--"]


def realpath_missing_ok(path: str) -> list[str]:
    """Canonical form of a path that may not exist (yet): symlinks in its existing part
    followed, the rest normalized."""
    return ["realpath", "-m", "--", path]


def compose_down_project(project: str) -> list[str]:
    """Stop and remove every container of a project by name (no compose file needed)."""
    return ["docker", "compose", "-p", project, "down", "--remove-orphans"]


# --- the backed-up stack, read out of the local archive (pure) ------------------------------------


@dataclass(frozen=True)
class RestoredStack:
    """The `.env` and compose files the backup holds for its stack dir."""

    stack_dir: str
    files: Mapping[str, bytes] = field(repr=False)  # name -> content (.env holds secrets)

    @property
    def env_text(self) -> str:
        """The restored `.env` (secrets inside: never print it)."""
        return self.files.get(".env", b"").decode("utf-8", errors="replace")

    @property
    def values(self) -> dict[str, str]:
        """The restored `.env` values (secrets inside)."""
        return parse_env(self.env_text, "restored .env") if ".env" in self.files else {}

    @property
    def compose_names(self) -> list[str]:
        """The compose files to start, in -f order: COMPOSE_FILE, else Compose's defaults."""
        separator = self.values.get("COMPOSE_PATH_SEPARATOR") or ":"
        listed = [
            posixpath.basename(n) for n in self.values.get("COMPOSE_FILE", "").split(separator)
        ]
        listed = [n for n in listed if n]
        if listed:
            return listed
        names = [n for n in facts.DEFAULT_COMPOSE_FILES if n in self.files][:1]
        names += [n for n in facts.DEFAULT_OVERRIDE_FILES if n in self.files][:1]
        return names


def stack_root(manifest: backup.Manifest) -> str:
    """The backup's stack dir (it must have one to bring anything up)."""
    root = next((r for r in manifest.roots if r.kind == "stack" and r.present), None)
    if root is None:
        raise archive.RestoreRefused(
            f"backup {manifest.deploy_id} has no stack dir: nothing to bring up",
            hint="restore a backup taken by `invoke backup`, `invoke adopt` or a deploy",
        )
    return root.path


def read_restored_stack(local_archive: Path, manifest: backup.Manifest) -> RestoredStack:
    """The stack dir's `.env` and compose files as the (already validated) archive holds them."""
    root = stack_root(manifest)
    prefix = backup.member_name(root) + "/"
    files: dict[str, bytes] = {}
    with tarfile.open(local_archive, "r:gz") as tar:
        for member in tar:
            name = member.name.rstrip("/")
            if not member.isreg() or not name.startswith(prefix):
                continue
            base = name[len(prefix) :]
            if "/" in base or not (base == ".env" or base.endswith((".yml", ".yaml"))):
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                files[base] = handle.read()
    stack = RestoredStack(root, files)
    missing = [n for n in stack.compose_names if n not in files]
    if ".env" not in files or not stack.compose_names or missing:
        what = ".env" if ".env" not in files else ", ".join(missing) or "a compose file"
        raise archive.RestoreRefused(
            f"backup {manifest.deploy_id} cannot be started: {what} missing from its stack dir",
            hint="this backup holds data only; restore its files by hand",
        )
    return stack


# --- which roots a restore may write (pure) ----------------------------------------------------

_ROOT_NAMES = {"config": "CONFIG", "stack": "stack dir"}


def check_roots(manifest: backup.Manifest, accepted: Sequence[backup.Root]) -> None:
    """Every root the manifest declares (present or not) must be one of `accepted` (the
    environment's own, resolved on the host), of the same kind and at the same canonical path;
    RestoreRefused naming the first other one. A manifest's path is taken only in normal form:
    a `..` or `//` in it would mean one thing here and maybe another after symlinks on the host."""
    own = {root.kind: posixpath.normpath(root.path) for root in accepted}
    for root in manifest.roots:
        expected = own.get(root.kind)
        if expected == root.path and root.path != "/":
            continue
        name = _ROOT_NAMES[root.kind]
        raise archive.RestoreRefused(
            f"backup {manifest.deploy_id} declares its {root.kind} root {root.path}, but this "
            f"environment's {name} is {expected or 'not set'}",
            hint=f"a restore writes only into the environment's own CONFIG and stack dir; if "
            f"{name} moved, point it back to {root.path} or restore the files by hand",
        )


# --- what to remove before extracting (pure) -----------------------------------------------------

_KINDS = {"d": "dir", "f": "file", "l": "symlink"}


def _ancestors(path: str) -> set[str]:
    found = set()
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        found.add(path)
    return found


def stale_paths(
    found: Sequence[backup.HostEntry],
    manifest: backup.Manifest,
    existing_excluded: Collection[str] | None = None,
) -> list[str]:
    """Paths under the backup's roots that the backup does not have (or has as another kind of
    file), minimal: a removed directory takes its contents along. Never a root, never an
    excluded path nor anything above an existing one (recordings, lock and audit log stay).
    `existing_excluded`: which excluded paths exist on the host (default: assume all)."""
    roots = manifest.root_paths
    wanted = {entry.path: entry for entry in manifest.files}
    excluded = [o.path for o in manifest.excluded]
    present = excluded if existing_excluded is None else list(existing_excluded)
    keep = set().union(*(_ancestors(path) for path in present)) if present else set()
    candidates = set()
    for entry in found:
        path = entry.path
        if path in roots or path in keep or not any(backup.is_within(path, r) for r in roots):
            continue
        if any(backup.is_within(path, e) for e in excluded):
            continue
        kind = _KINDS.get(entry.kind, "other")
        want = wanted.get(path)
        if want is None:
            candidates.add(path)
            continue
        want_kind = "file" if want.type == "hardlink" else want.type
        if (want_kind == "dir") != (kind == "dir") or (
            want_kind == "symlink" and (kind != "symlink" or entry.target != want.target)
        ):
            candidates.add(path)
    return sorted(p for p in candidates if not (_ancestors(p) & candidates))


# --- the report ------------------------------------------------------------------------------


@dataclass
class HostRestore:
    """One host's part of a restore (no secret value)."""

    label: str
    role: str = "main"
    in_set: bool = True
    release: str | None = None
    compose_files: list[str] = field(default_factory=list)
    safety_backup_id: str | None = None
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False
    # restored | not-in-set | failed | pending (checked, not reached) | skipped (not checked)
    result: str = "pending"

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of one host."""
        return {
            "host": self.label,
            "role": self.role,
            "in_set": self.in_set,
            "release": self.release,
            "compose_files": self.compose_files,
            "safety_backup_id": self.safety_backup_id,
            "removed": self.removed,
            "warnings": self.warnings,
            "stopped": self.stopped,
            "result": self.result,
        }


@dataclass
class RestoreReport:
    """What a restore did (no secret value). The top-level fields describe the main host (as
    they did before bridge hosts); `hosts` has every host's part."""

    env: str
    backup_id: str
    release: str | None = None
    operation_id: str = ""
    compose_files: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    safety_backup_id: str | None = None
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: bool = False  # the lock was taken: from here on the host may change
    stopped: bool = False
    verification: VerifyReport | None = None
    result: str = "failed"  # restored | restored-unverified | refused | cancelled | failed
    error: str = ""
    hosts: list[HostRestore] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Restored (and verified when a verifier ran)."""
        return self.result == "restored"

    @property
    def not_in_set(self) -> list[str]:
        """The hosts the backup set has no archive for (left as they are)."""
        return [part.label for part in self.hosts if not part.in_set]

    def as_dict(self) -> dict[str, Any]:
        """The `--json` report."""
        return {
            "env": self.env,
            "backup_id": self.backup_id,
            "operation_id": self.operation_id,
            "release": self.release,
            "compose_files": self.compose_files,
            "safety_backup_id": self.safety_backup_id,
            "removed": self.removed,
            "warnings": self.warnings,
            "stopped": self.stopped,
            "result": self.result,
            "error": self.error,
            "not_in_set": self.not_in_set,
            "hosts": [part.as_dict() for part in self.hosts],
            "verification": verification_dict(self.verification),
        }

    def sync_from_hosts(self) -> None:
        """The top-level fields from the hosts' parts: the main host's files, any host stopped,
        every host's warnings (a bridge host's named)."""
        in_set = [p for p in self.hosts if p.in_set]
        # The main host's; a restore of one bridge host alone (restore_held) reports that one.
        main = next((p for p in in_set if p.role == "main"), in_set[0] if in_set else None)
        if main is not None:
            self.compose_files = main.compose_files
            self.removed = main.removed
        self.safety_backup_id = next(
            (p.safety_backup_id for p in self.hosts if p.safety_backup_id), None
        )
        self.stopped = any(p.stopped for p in self.hosts)
        many = len(self.hosts) > 1
        self.warnings = [
            f"{p.label}: {w}" if many and p.role != "main" else w
            for p in self.hosts
            for w in p.warnings
        ]


# --- orchestration -------------------------------------------------------------------------------


def fetch(
    env: Environment, runner: Runner, backup_id: str, workdir: Path
) -> tuple[backup.Manifest, Path]:
    """Download the manifest and the archive into `workdir` (private); nothing is written on
    the host."""
    if not backup.is_env_backup(env.name, backup_id):
        raise ConfigError(
            f"invalid backup id {backup_id!r} for environment {env.name!r}",
            hint=f"`invoke backups --env {env.name}` lists them",
        )
    directory = backup.backup_dir_of(env, runner)
    source = backup.manifest_path(directory, backup_id)
    try:
        text = runner.get(source).decode("utf-8")
    except FileNotFoundError:
        raise OpsError(
            f"no backup {backup_id} in {directory} on {runner.host}",
            hint=f"`invoke backups --env {env.name}` lists them",
        ) from None
    except UnicodeDecodeError:
        raise archive.RestoreRefused(f"{source} is not a readable manifest") from None
    manifest = backup.Manifest.from_json(text, source)
    if manifest.env != env.name or manifest.deploy_id != backup_id:
        raise archive.RestoreRefused(
            f"{source} describes backup {manifest.deploy_id} of {manifest.env}, not {backup_id}",
            hint="the manifest was copied or renamed: it cannot vouch for this archive",
        )
    try:
        data = runner.get(backup.archive_path(directory, backup_id))
    except FileNotFoundError:
        raise archive.RestoreRefused(
            f"the archive of {backup_id} is missing in {directory}",
            hint="this backup cannot be restored",
        ) from None
    local = workdir / manifest.archive_name
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return manifest, local


def accepted_roots(env: Environment, runner: Runner) -> tuple[backup.Root, ...]:
    """The only roots a restore through `runner` may touch: `env`'s CONFIG and stack dir as they
    resolve on that host now (`env` as that host gets it: Environment.for_host for a bridge).
    A root that does not exist is resolved as far as it does (`realpath -m`)."""
    out = []
    for root in backup.resolve_roots(env, runner):
        resolved = root.path
        if not root.present:
            result = runner.run(realpath_missing_ok(root.path), check=False)
            if result.ok and result.stdout.startswith("/"):
                resolved = result.stdout.rstrip("\n")
        out.append(replace(root, path=resolved))
    return tuple(out)


def check_archive(local: Path, manifest: backup.Manifest, accepted: Sequence[backup.Root]) -> None:
    """The manifest's roots are `accepted` ones, the archive is the manifest's and safe to
    extract, every member below one of those roots; RestoreRefused otherwise."""
    check_roots(manifest, accepted)
    archive.verify_manifest_checksums(local, manifest)
    archive.validate_archive(local, manifest.root_paths)


def check_gnu_listing(result: Result, manifest: backup.Manifest) -> None:
    """GNU tar's listing (`backup.tar_list`) of the archive to extract must be clean and describe
    exactly the manifest's files (names, types, modes, owners, sizes, link targets)."""
    name = manifest.archive_name
    hint = "GNU tar would extract something the checks did not see; nothing was stopped"
    if not result.ok:
        tail = " | ".join(line for line in result.stderr.strip().splitlines()[-2:] if line)
        raise archive.RestoreRefused(
            f"refusing {name}: GNU tar's listing of it exited {result.exit_code} "
            f"({tail[-200:] or 'no output'})",
            hint=hint,
        )
    try:
        backup.compare_listing(manifest.files, backup.parse_tar_listing(result.stdout))
    except OpsError as exc:
        why = exc.message.replace("archive verification failed: ", "")
        raise archive.RestoreRefused(
            f"refusing {name}: GNU tar's listing of it differs from the manifest: {why}",
            hint=hint,
        ) from None


def check_host_archive(runner: Runner, archive_file: str, manifest: backup.Manifest) -> None:
    """On the host, before anything changes: the archive is still the validated file, and GNU
    tar reads it as the manifest describes it."""
    if _host_sha256(runner, archive_file) != manifest.archive_sha256:
        raise archive.RestoreRefused(
            f"{archive_file} on {runner.host} is not the archive that was validated",
            hint="it changed after the download; nothing was stopped",
        )
    check_gnu_listing(runner.run(backup.tar_list(archive_file), check=False), manifest)


def _host_sha256(runner: Runner, path: str) -> str:
    result = runner.run(backup.sha256_of(path), check=False)
    sums = backup.parse_sha256sum(result.stdout) if result.ok else {}
    return next(iter(sums.values()), "")


def _current_down(env: Environment, runner: Runner, stack_dir: str) -> list[str]:
    """`down` of what runs now: its own files when they are all there, else by project name."""
    env_text = facts.read_remote_env(runner, stack_dir)
    hashes = facts.gather(runner, facts.stack_file_hashes(stack_dir))
    names: list[str] = []
    if env_text is not None:
        listed = parse_env(env_text, "host .env").get("COMPOSE_FILE", "")
        names = [posixpath.basename(n) for n in listed.split(":") if n]
        if not names:
            names = [n for n in facts.DEFAULT_COMPOSE_FILES if n in hashes][:1]
    if env_text is None or not names or any(n not in hashes for n in names):
        return compose_down_project(env.deploy.project)
    target = commands.ComposeTarget(stack_dir, env.deploy.project, tuple(names))
    return commands.compose_down(target)


def _stale(runner: Runner, manifest: backup.Manifest) -> list[str]:
    """What to remove before extracting, as the host is now."""
    present = [r for r in manifest.roots if r.present]
    roots = [r.path for r in present if runner.run(["test", "-e", r.path], check=False).ok]
    if not roots:
        return []
    excluded = [o.path for o in manifest.excluded]
    argv = backup.find_listing(
        backup.traversal_roots([r for r in present if r.path in roots]), excluded
    )
    found = backup.parse_find_listing(runner.run(argv).stdout)
    # find prunes excluded paths without printing them: ask which of them exist.
    existing = [p for p in excluded if runner.run(["test", "-e", p], check=False).ok]
    return stale_paths(found, manifest, existing)


def _remove(runner: Runner, manifest: backup.Manifest, paths: Sequence[str], scratch: str) -> None:
    roots = manifest.root_paths
    for path in paths:  # defensive: stale_paths already guarantees this
        if path in roots or not any(backup.is_within(path, r) for r in roots):
            raise OpsError(f"refusing to remove {path}: not strictly below a backup root")
    if not paths:
        return
    runner.put(b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths), scratch)
    try:
        runner.run(remove_listed(scratch), timeout=600)
    finally:
        runner.run(backup.remove([scratch]), check=False)


def _pinned_refs(manifest: backup.Manifest, stack: RestoredStack) -> dict[str, tuple[str, str]]:
    """service -> (configured image reference, backed-up digest or image id)."""
    targets = planning.target_images(stack.values, stack.files)
    return {
        service: (ref, manifest.digests[service])
        for service, ref in targets.items()
        if manifest.digests.get(service)
    }


@dataclass
class _Target:
    """One host of the restore: its view of the environment, connection and checked backup."""

    host: Host
    view: Environment
    runner: Runner
    part: HostRestore
    manifest: backup.Manifest | None = None
    stack: RestoredStack | None = None


def _targets(
    env: Environment, runner: Runner, bridges: Mapping[Host, Runner] | None
) -> list[_Target]:
    """The main host, then every bridge host that has a connection, in deploy.toml order."""
    main = env.deploy.main_host
    targets = [_Target(main, env, runner, HostRestore(main.label))]
    for host in env.deploy.bridge_hosts:
        if bridges is not None and host in bridges:
            part = HostRestore(host.label, role=host.role)
            targets.append(_Target(host, env.for_host(host), bridges[host], part))
    return targets


def _has_backup(view: Environment, runner: Runner, backup_id: str) -> bool:
    """Whether the host's backup dir has the backup's manifest or archive (an archive without
    manifest is still this host's part of the set: fetch() refuses it with its reason)."""
    directory = backup.backup_dir_of(view, runner)
    paths = (backup.manifest_path(directory, backup_id), backup.archive_path(directory, backup_id))
    return any(runner.run(["test", "-e", path], check=False).ok for path in paths)


def _named(target: _Target, many: bool, exc: OpsError) -> OpsError:
    """The error with the host named in front when the environment has several hosts."""
    if not many or exc.message.startswith(f"{target.part.label}: "):
        return exc
    return type(exc)(f"{target.part.label}: {exc.message}", hint=exc.hint)


def restore(
    env: Environment,
    runner: Runner,
    backup_id: str,
    *,
    confirm: Confirm,
    safety_backup: bool = True,
    verifier: Verifier | None = None,
    timeout: float | None = None,
    say: Say | None = None,
    bridges: Mapping[Host, Runner] | None = None,
) -> RestoreReport:
    """Restore backup set `backup_id` of `env` on its main host and on every bridge host in
    `bridges` that has its part (see the module docstring); never raises for an expected
    failure: see report.result and report.error."""
    emit: Say = say or (lambda _line: None)
    report = RestoreReport(env.name, backup_id, operation_id=hoststate.new_deploy_id(env.name))
    targets = _targets(env, runner, bridges)
    report.hosts = [t.part for t in targets]
    many = len(targets) > 1
    workdir = Path(tempfile.mkdtemp(prefix="jitsi-ops-restore-"))  # 0700
    stack_dir = ""
    try:
        members = _check_set(env, targets, backup_id, workdir, emit=emit, many=many)
        report.release = members[0].part.release
        stack_dir = backup.stack_dir_of(env, runner)
        report.summary = [line for t in members for line in _target_summary(t)]
        if report.not_in_set:
            report.summary.append(
                f"not in backup {backup_id}, left as they are: {', '.join(report.not_in_set)}"
            )
        if not confirm(report.summary):
            report.result = "cancelled"
            report.error = "cancelled: nothing was changed (--yes restores without asking)"
            return report
        info = hoststate.LockInfo.for_this_process(report.operation_id, f"restore {backup_id}")
        # The main host's lock guards the whole environment, bridge hosts included.
        with hoststate.holding_lock(runner, stack_dir, info):
            report.started = True
            safety_id = hoststate.new_deploy_id(env.name) if safety_backup else ""
            for target in members:
                _restore_host(target, report, emit=emit, many=many, safety_id=safety_id)
        _verify(env, targets, report, verifier=verifier, timeout=timeout, emit=emit)
    except archive.RestoreRefused as exc:
        report.result = "refused"
        report.error = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    except OpsError as exc:
        report.result = "failed"
        report.error = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        report.sync_from_hosts()
        report.error += _where_it_stopped(report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report.sync_from_hosts()
        # A refusal changed nothing on the host: only the local history records it.
        _audit(env, runner, report, stack_dir if report.started else "")
    return report


def _validated(
    env: Environment,
    runner: Runner,
    backup_id: str,
    workdir: Path,
    *,
    report: RestoreReport,
    emit: Say,
) -> tuple[backup.Manifest, RestoredStack, str]:
    """Download and check the backup (nothing on the host changes): its manifest, the stack it
    restores and the environment's stack dir on the host."""
    emit(f"downloading backup {backup_id} from {runner.host}")
    manifest, local = fetch(env, runner, backup_id, workdir)
    report.release = manifest.release
    emit(f"checking {manifest.archive_name} against its manifest ({len(manifest.files)} entries)")
    check_archive(local, manifest, accepted_roots(env, runner))
    stack = read_restored_stack(local, manifest)
    report.compose_files = stack.compose_names
    stack_dir = backup.stack_dir_of(env, runner)
    emit(f"checking GNU tar's listing of {manifest.archive_name} on {runner.host}")
    check_host_archive(
        runner,
        backup.archive_path(backup.backup_dir_of(env, runner), backup_id),
        manifest,
    )
    return manifest, stack, stack_dir


def restore_held(
    env: Environment, runner: Runner, backup_id: str, *, say: Say | None = None
) -> RestoreReport:
    """Put backup `backup_id` back on a host whose deploy lock the caller already holds (a
    deploy undoing its own upgrade): validated exactly like `restore`, but without asking,
    without a safety backup (the backup is the caller's own, taken minutes ago) and without
    verifying (the caller gates every host at once). Raises OpsError (RestoreRefused before
    anything stops)."""
    emit: Say = say or (lambda _line: None)
    report = RestoreReport(env.name, backup_id, operation_id=hoststate.new_deploy_id(env.name))
    workdir = Path(tempfile.mkdtemp(prefix="jitsi-ops-restore-"))  # 0700
    try:
        manifest, stack, _stack_dir = _validated(
            env, runner, backup_id, workdir, report=report, emit=emit
        )
        report.started = True
        part = HostRestore(
            env.deploy.main_host.label if env.role == "main" else runner.host,
            role=env.role,
            release=manifest.release,
            compose_files=stack.compose_names,
        )
        report.hosts = [part]
        _apply(
            env,
            runner,
            manifest,
            stack,
            part,
            operation_id=report.operation_id,
            emit=emit,
            safety_id="",
        )
        part.result = "restored"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report.sync_from_hosts()
    report.result = "restored"
    return report


def _check_set(
    env: Environment,
    targets: Sequence[_Target],
    backup_id: str,
    workdir: Path,
    *,
    emit: Say,
    many: bool,
) -> list[_Target]:
    """Every check of every host's part of the set, before anything changes anywhere; the
    targets that have a part, each with its manifest and restored stack."""
    if not backup.is_env_backup(env.name, backup_id):
        raise ConfigError(
            f"invalid backup id {backup_id!r} for environment {env.name!r}",
            hint=f"`invoke backups --env {env.name}` lists them",
        )
    # The main host's part is required (every deploy and `invoke backup` takes it: fetch()
    # says "no backup ..." without it); a bridge host's is not: one that did not change in the
    # deploy, or did not exist yet, has none, and is left as it is.
    members = []
    for target in targets:
        if target.part.role == "main" or _has_backup(target.view, target.runner, backup_id):
            members.append(target)
        else:
            target.part.in_set = False
            target.part.result = "not-in-set"
    for index, target in enumerate(members):
        try:
            _check_host(target, backup_id, workdir / str(index), emit=emit, many=many)
        except OpsError as exc:
            raise _named(target, many, exc) from None
    return members


def _check_host(target: _Target, backup_id: str, workdir: Path, *, emit: Say, many: bool) -> None:
    """Download and check one host's part (modules docstring, steps 1-5)."""
    view, runner, part = target.view, target.runner, target.part
    prefix = f"{part.label}: " if many else ""
    workdir.mkdir(mode=0o700)
    emit(f"{prefix}downloading backup {backup_id} from {runner.host}")
    manifest, local = fetch(view, runner, backup_id, workdir)
    part.release = manifest.release
    emit(
        f"{prefix}checking {manifest.archive_name} against its manifest "
        f"({len(manifest.files)} entries)"
    )
    check_archive(local, manifest, accepted_roots(view, runner))
    restored = read_restored_stack(local, manifest)
    part.compose_files = restored.compose_names
    emit(f"{prefix}checking GNU tar's listing of {manifest.archive_name} on {runner.host}")
    check_host_archive(
        runner, backup.archive_path(backup.backup_dir_of(view, runner), backup_id), manifest
    )
    target.manifest, target.stack = manifest, restored


def _target_summary(target: _Target) -> list[str]:
    assert target.manifest is not None and target.stack is not None  # checked
    return _summary(target.view, target.runner, target.manifest, target.stack)


def _restore_host(
    target: _Target, report: RestoreReport, *, emit: Say, many: bool, safety_id: str
) -> None:
    """The changing part on one host (under the main host's lock)."""
    assert target.manifest is not None and target.stack is not None  # checked
    prefix = f"{target.part.label}: " if many else ""
    try:
        _apply(
            target.view,
            target.runner,
            target.manifest,
            target.stack,
            target.part,
            operation_id=report.operation_id,
            emit=lambda line: emit(prefix + line),
            safety_id=safety_id,
        )
    except OpsError as exc:
        target.part.result = "failed"
        raise _named(target, many, exc) from None
    target.part.result = "restored"


def _verify(
    env: Environment,
    targets: Sequence[_Target],
    report: RestoreReport,
    *,
    verifier: Verifier | None,
    timeout: float | None,
    emit: Say,
) -> None:
    """The verify suite over every host of the environment, with the restored main `.env`."""
    if verifier is None:
        report.result = "restored"
        return
    emit("verifying the restored release")
    main = targets[0]
    restored_env = environment_of(env, main.stack.env_text) if main.stack is not None else env
    report.verification = verifier(
        restored_env,
        {t.host: t.runner for t in targets},
        timeout if timeout and timeout > 0 else env.deploy.verify.timeout,
    )
    report.result = "restored" if report.verification.ok else "restored-unverified"
    if not report.verification.ok:
        first = report.verification.failures[0]
        report.error = f"verification failed ({first.id}: {first.observed})"


def _where_it_stopped(report: RestoreReport) -> str:
    """What a failed restore left behind: stopped stacks, restored hosts, the safety backup."""
    text = ""
    many = len(report.hosts) > 1
    stopped = [p.label for p in report.hosts if p.stopped and p.result != "restored"]
    if stopped:
        text += (
            f"; the stack is stopped on {', '.join(stopped)}" if many else "; the stack is stopped"
        )
    restored = [p.label for p in report.hosts if p.result == "restored"]
    if many and restored:
        text += f"; restored before that: {', '.join(restored)}"
    if report.stopped and report.safety_backup_id:
        text += f"; backup {report.safety_backup_id} holds the state before this restore"
    return text


def _summary(
    env: Environment, runner: Runner, manifest: backup.Manifest, stack: RestoredStack
) -> list[str]:
    """What the restore will do, for the confirmation prompt."""
    running = facts.gather(runner, facts.project_containers(env.deploy.project))
    stale = _stale(runner, manifest)
    created = manifest.created.strftime("%Y-%m-%d %H:%M:%SZ")
    lines = [
        f"restore {manifest.deploy_id} (release {manifest.release or 'unknown'}, taken {created}) "
        f"on {runner.host}:",
        f"  stop project {env.deploy.project} ({len(running)} container(s))",
    ]
    if stale:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        lines.append(f"  remove {len(stale)} path(s) the backup does not have: {shown}")
    roots = ", ".join(manifest.root_paths)
    lines.append(f"  extract {len(manifest.files)} entries into {roots} (numeric owners, modes)")
    if manifest.excluded:
        lines.append(f"  leave alone: {', '.join(o.path for o in manifest.excluded)}")
    lines.append(
        f"  start {', '.join(stack.compose_names)} with the restored .env "
        f"(release {stack.values.get('JITSI_IMAGE_VERSION') or manifest.release or 'unknown'})"
    )
    return lines


def _apply(
    env: Environment,
    runner: Runner,
    manifest: backup.Manifest,
    stack: RestoredStack,
    report: HostRestore,
    *,
    operation_id: str,
    emit: Say,
    safety_id: str,
) -> None:
    """The changing part on one host, under the lock. `safety_id`: the id the current state is
    backed up under first ("" for none; one id for every host: the safety backup is a set too)."""
    directory = backup.backup_dir_of(env, runner)
    archive_file = backup.archive_path(directory, manifest.deploy_id)
    if safety_id and any(r.present for r in backup.resolve_roots(env, runner)):
        emit(f"safety backup {safety_id} of the current state")
        try:
            digests = backup.running_digests(env, runner)
        except RemoteCommandError:
            digests = {}
        backup.create_backup(
            env,
            runner,
            safety_id,
            release=backup.deployed_release(env, runner),
            digests=digests,
            progress=lambda message: emit(f"safety backup: {message}"),
        )
        report.safety_backup_id = safety_id
    pinned = _pinned_refs(manifest, stack)
    for service, (_ref, digest) in sorted(pinned.items()):
        if "@sha256:" in digest:
            emit(f"pulling {digest}")
            pulled = runner.run(
                ["docker", "pull", "--quiet", digest], check=False, timeout=PULL_TIMEOUT
            )
            if not pulled.ok:
                report.warnings.append(f"{service}: could not pull {digest}; using the local tag")
    if _host_sha256(runner, archive_file) != manifest.archive_sha256:
        raise archive.RestoreRefused(
            f"{archive_file} on {runner.host} is not the archive that was validated",
            hint="it changed after the download; nothing was stopped",
        )
    emit(f"stopping project {env.deploy.project}")
    runner.run(_current_down(env, runner, stack.stack_dir), timeout=UP_TIMEOUT)
    report.stopped = True
    # Checked again after the stop: the file tar reads must be the one validated above.
    if _host_sha256(runner, archive_file) != manifest.archive_sha256:
        raise OpsError(f"{archive_file} changed on {runner.host} while the stack was stopped")
    stale = _stale(runner, manifest)
    if stale:
        emit(f"removing {len(stale)} path(s) the backup does not have")
        scratch = posixpath.join(directory, f".{operation_id}.remove")
        _remove(runner, manifest, stale, scratch)
    report.removed = stale
    emit(f"extracting {len(manifest.files)} entries")
    runner.run(tar_extract(archive_file), timeout=UP_TIMEOUT)
    for service, (ref, digest) in sorted(pinned.items()):
        tagged = runner.run(["docker", "tag", digest, ref], check=False)
        if not tagged.ok:
            report.warnings.append(f"{service}: {ref} could not be pointed at {digest}")
    target = commands.ComposeTarget(stack.stack_dir, env.deploy.project, tuple(stack.compose_names))
    emit(f"starting {', '.join(stack.compose_names)}")
    runner.run(commands.compose_up(target), timeout=UP_TIMEOUT)


def _audit(env: Environment, runner: Runner, report: RestoreReport, stack_dir: str) -> None:
    record = {
        "action": "restore",
        "deploy_id": report.operation_id,
        "env": env.name,
        "user": local_user(),
        "from_host": socket.gethostname(),
        "backup_id": report.backup_id,
        "to_release": report.release,
        "safety_backup_id": report.safety_backup_id,
        "removed": len(report.removed),
        "hosts": {p.label: p.result for p in report.hosts},
        "result": report.result,
        "error": report.error,
    }
    if stack_dir:
        with contextlib.suppress(OpsError):
            hoststate.append_audit(runner, stack_dir, record, secret_values=env.values)
    hoststate.append_history(hoststate.history_path(env.root), record, secret_values=env.values)
