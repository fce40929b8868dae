"""`invoke adopt`: take over a docker-jitsi-meet install that was set up by hand.

Most operators who need jitsi-ops already run Jitsi: a release archive unpacked into a directory,
a `.env` next to the compose files, `docker compose up -d` run there. Adoption reads that install
(read-only), writes the environment locally and takes a verified backup; it changes nothing else
on the host.

What is read, and where the truth comes from when sources disagree:

- the project: the `com.docker.compose.project` label of the containers whose
  `com.docker.compose.project.working_dir` is the directory (what really runs), else
  COMPOSE_PROJECT_NAME, else the directory name as Compose derives it;
- the compose files: the running containers' `config_files` label, else COMPOSE_FILE, else the
  files Compose reads by default (not every `*.yml` present: a release archive ships every
  overlay, and only the ones passed with -f run);
- CONFIG: the `.env` value, unless the running containers' bind mounts show another directory
  (a `~` expanded for another user, #418): the mounts win, since that is where the data is;
- the release: JITSI_IMAGE_VERSION, else the running images' tags, else the compose default.

The adopted environment must render a `.env` that gives every service the configuration it
already runs, so that the first deploy recreates nothing. Hence: every non-secret value goes into
jitsi.env and every secret into secrets.env exactly as the host has them (resolved the way
Compose resolves `${VAR}`); nothing is generated (a new secret would reach prosody's environment);
and deploy.toml sets `use_common_env = false`, because env/common.env's shared defaults (TZ,
ENABLE_HTTP_REDIRECT, JVB_PORT, ...) would add keys the host never had. What still differs is
byte-level only and Compose ignores it: the header, the quoting, and the COMPOSE_PROJECT_NAME /
COMPOSE_FILE keys jitsi-ops pins. The first deploy therefore rewrites `.env` and the compose
files (its plan shows them) but recreates no container; it also removes the compose files that
were not in use. That holds for the releases jitsi-ops' compose sets describe exactly; an older
install is adopted all the same, but its only deploy is the upgrade to a described release
(migrations from the adopted release on, rollback to the host's own files), so adopt shows no
same-release plan for it and says so.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitsi_ops import backup, facts, hoststate, lint, migrations, stack
from jitsi_ops import plan as planning
from jitsi_ops.composeset import (
    COMPONENTS,
    COMPOSE_VARIABLES,
    UNSHIPPED_OVERLAYS,
    compose_dir,
    enabled_components,
)
from jitsi_ops.envfile import interpolate, parse_entries, quote_value
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import ConfigError, OpsError
from jitsi_ops.localfiles import PUBLIC_MODE, write_atomic, write_private
from jitsi_ops.plan import Plan
from jitsi_ops.runner import Runner
from jitsi_ops.secrets import is_secret_key
from jitsi_ops.settings import (
    Environment,
    config_path,
    load_environment,
    local_user,
    parse_deploy_toml,
    remote_path_problem,
    valid_address,
    validate_env_name,
)
from jitsi_ops.stack import remote_home
from jitsi_ops.versions import (
    OLDEST_DEPLOYABLE,
    layout_for,
    older_than_compose_sets,
    parse_release,
)

Say = Callable[[str], None]
_DEFAULT_TAG_RE = re.compile(r"\$\{JITSI_IMAGE_VERSION:-(stable-\d+(?:-\d+)?)\}")
# The /config mount of each core service, and how far below CONFIG it sits.
_CONFIG_MOUNTS: tuple[tuple[str, int], ...] = (
    ("prosody", 2),  # ${CONFIG}/prosody/config
    ("web", 1),  # ${CONFIG}/web
    ("jicofo", 1),
    ("jvb", 1),
)


@dataclass(frozen=True)
class Discovery:
    """What a hand-made install consists of, as read from its host (holds its secrets: repr
    shows none of them)."""

    host: str
    remote_dir: str
    canonical_dir: str
    env_values: Mapping[str, str] = field(repr=False)  # the host .env, resolved like Compose
    env_mode: str
    present_files: tuple[str, ...]
    compose_files: tuple[str, ...]
    compose_source: str
    project: str
    project_source: str
    containers: tuple[facts.ComposeContainer, ...]
    digests: Mapping[str, str]  # service -> repo@sha256:... (or image id)
    config_dir: str
    config_source: str
    release: str | None
    release_source: str
    running_release: str | None
    file_hashes: Mapping[str, str] = field(default_factory=dict)  # .env and *.yml by name
    warnings: tuple[str, ...] = ()
    managed: bool = False  # a state.json of jitsi-ops is already there

    @property
    def components(self) -> tuple[str, ...]:
        """Overlays in use (jibri.yml -> jibri, ...)."""
        return tuple(c for c in COMPONENTS if f"{c}.yml" in self.compose_files)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Names of the secrets found (values never leave env_values)."""
        return tuple(sorted(k for k in self.env_values if is_secret_key(k)))

    def as_dict(self) -> dict[str, Any]:
        """JSON shape (no secret value)."""
        return {
            "host": self.host,
            "remote_dir": self.remote_dir,
            "canonical_dir": self.canonical_dir,
            "project": self.project,
            "project_source": self.project_source,
            "compose_files": list(self.compose_files),
            "compose_source": self.compose_source,
            "present_files": list(self.present_files),
            "components": list(self.components),
            "config_dir": self.config_dir,
            "config_source": self.config_source,
            "release": self.release,
            "release_source": self.release_source,
            "running_release": self.running_release,
            "env_mode": self.env_mode,
            "values": len(self.env_values),
            "secret_keys": list(self.secret_keys),
            "services": {
                c.service: {
                    "container": c.name,
                    "id": c.id,
                    "image": c.ref,
                    "digest": self.digests.get(c.service),
                    "state": c.state,
                }
                for c in self.containers
            },
            "warnings": list(self.warnings),
            "managed": self.managed,
        }


# --- discovery (read-only) ------------------------------------------------------------------------


def compose_project_name(directory: str) -> str:
    """The project name Compose derives from a directory (lowercase, [a-z0-9_-] only)."""
    name = re.sub(r"[^a-z0-9_-]", "", posixpath.basename(directory.rstrip("/")).lower())
    return name.lstrip("_-") or "default"


def _realpath(runner: Runner, path: str) -> str:
    result = runner.run(backup.realpath(path), check=False)
    if not result.ok:
        raise OpsError(
            f"{runner.host}: {path} does not exist",
            hint="pass the directory where the install's .env and compose files are (--from)",
        )
    return result.stdout.rstrip("\n")


def _read_env(runner: Runner, directory: str) -> tuple[dict[str, str], str]:
    path = posixpath.join(directory, ".env")
    try:
        text = runner.get(path).decode("utf-8")
    except FileNotFoundError:
        raise OpsError(
            f"{runner.host}: no .env in {directory}",
            hint="adopt needs the directory where `docker compose up` runs, with its .env",
        ) from None
    except UnicodeDecodeError:
        raise OpsError(f"{runner.host}: {path} is not UTF-8 text") from None
    # Compose's own reading: `${VAR}` resolved in unquoted and double-quoted values, single
    # quotes literal. Unlike Compose, the SSH session's environment is never consulted.
    values = interpolate(parse_entries(text, f"{runner.host}:{path}"))
    mode = runner.run(["stat", "-c", "%a %U:%G", "--", path], check=False).stdout.strip()
    return values, mode


def _project_of(
    found: Sequence[facts.ComposeContainer],
    directory: str,
    values: Mapping[str, str],
    wanted: str | None,
) -> tuple[str, str]:
    projects = sorted({c.project for c in found})
    if wanted:
        if projects and wanted not in projects:
            raise ConfigError(
                f"the containers started from {directory} belong to project(s) "
                f"{', '.join(projects)}, not {wanted}",
                hint=f"drop --project, or pass --project {projects[0]}",
            )
        return wanted, "--project" + (" (running containers agree)" if projects else "")
    if len(projects) > 1:
        raise ConfigError(
            f"several compose projects run from {directory}: {', '.join(projects)}",
            hint="pass --project NAME to say which one to adopt",
        )
    if projects:
        return projects[0], "running containers' com.docker.compose.project label"
    if values.get("COMPOSE_PROJECT_NAME"):
        return values["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME in .env (nothing runs)"
    return compose_project_name(directory), "the directory name (nothing runs)"


def _compose_files(
    containers: Sequence[facts.ComposeContainer],
    values: Mapping[str, str],
    present: Sequence[str],
    dirs: set[str],
    warnings: list[str],
) -> tuple[tuple[str, ...], str]:
    labelled = next((c.config_files for c in containers if c.config_files), ())
    separator = values.get("COMPOSE_PATH_SEPARATOR") or ":"
    listed = tuple(
        posixpath.basename(p) for p in values.get("COMPOSE_FILE", "").split(separator) if p
    )
    if labelled:
        outside = [p for p in labelled if posixpath.dirname(p) not in dirs]
        if outside:
            warnings.append(
                f"compose files outside the directory are in use: {', '.join(outside)}; only "
                "files in the directory are adopted"
            )
        names = tuple(posixpath.basename(p) for p in labelled)
        if listed and listed != names:
            warnings.append(
                f"COMPOSE_FILE in .env lists {':'.join(listed)} but the containers were started "
                f"with {', '.join(names)}: adopting what runs"
            )
        return names, "running containers' config_files label"
    if listed:
        return listed, "COMPOSE_FILE in .env"
    default = [n for n in facts.DEFAULT_COMPOSE_FILES if n in present][:1]
    default += [n for n in facts.DEFAULT_OVERRIDE_FILES if n in present][:1]
    if not default:
        raise OpsError(
            "no compose file in use and none of Compose's default names present",
            hint="pass the directory that holds docker-compose.yml (--from)",
        )
    return tuple(default), "Compose's default file names (nothing runs)"


def _config_dir(
    runner: Runner,
    directory: str,
    values: Mapping[str, str],
    containers: Sequence[facts.ComposeContainer],
    warnings: list[str],
) -> tuple[str, str]:
    configured = values.get("CONFIG", "")
    mounted = None
    by_service = {c.service: c for c in containers}
    for service, depth in _CONFIG_MOUNTS:
        container = by_service.get(service)
        source = container.mount_source("/config") if container else None
        if source:
            mounted = posixpath.normpath(source)
            for _ in range(depth):
                mounted = posixpath.dirname(mounted)
            break
    # Relative to the install's directory, which becomes stack_dir: Compose's reading.
    expanded = config_path(configured, directory)
    if configured == "~" or configured.startswith("~/"):
        expanded = remote_home(runner) + configured[1:]
    if mounted and (not configured or posixpath.normpath(expanded) != mounted):
        if configured:
            warnings.append(
                f"CONFIG={configured} in .env, but the running containers mount {mounted}: "
                "adopting where the data is"
            )
        return mounted, "running containers' bind mounts"
    if not configured:
        raise OpsError(
            "CONFIG is not set in .env and no running container shows where it is",
            hint="set CONFIG in the host's .env (an absolute path) and adopt again",
        )
    return configured, ".env" + (" (matches the running mounts)" if mounted else "")


def _release(
    runner: Runner,
    directory: str,
    values: Mapping[str, str],
    compose_files: Sequence[str],
    *,
    running: str | None,
    warnings: list[str],
) -> tuple[str | None, str]:
    tag = values.get("JITSI_IMAGE_VERSION", "")
    if tag:
        if running and running != tag:
            warnings.append(
                f"JITSI_IMAGE_VERSION={tag} in .env, but {running} runs: the first deploy "
                f"switches to {tag} (pin {running} in jitsi.env to avoid that)"
            )
        return tag, ".env JITSI_IMAGE_VERSION"
    if running:
        return running, "running images' tags (no JITSI_IMAGE_VERSION in .env)"
    for name in compose_files:
        try:
            text = runner.get(posixpath.join(directory, name)).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        match = _DEFAULT_TAG_RE.search(text)
        if match:
            return match[1], f"{name}'s default (nothing runs, no JITSI_IMAGE_VERSION in .env)"
    return None, "unknown"


def discover(runner: Runner, remote_dir: str, *, project: str | None = None) -> Discovery:
    """Read a hand-made install in `remote_dir` on the host; changes nothing."""
    if not remote_dir.startswith("/"):
        raise ConfigError(f"--from {remote_dir!r} is not an absolute path", hint="e.g. /opt/jitsi")
    directory = posixpath.normpath(remote_dir)
    canonical = _realpath(runner, directory)
    if not runner.run(["test", "-d", canonical], check=False).ok:
        raise OpsError(f"{runner.host}: {directory} is not a directory")
    values, mode = _read_env(runner, directory)
    warnings: list[str] = []
    hashes = facts.gather(runner, facts.stack_file_hashes(directory))
    present = tuple(sorted(n for n in hashes if n.endswith((".yml", ".yaml"))))

    ids = facts.gather(runner, facts.compose_container_ids())
    every = facts.gather(runner, facts.inspect_compose_labels(ids)) if ids else []
    dirs = {directory, canonical}
    here = [c for c in every if posixpath.normpath(c.working_dir or "/") in dirs]
    name, project_source = _project_of(here, directory, values, project)
    containers = tuple(c for c in here if c.project == name)
    if not containers:
        warnings.append(f"no container of project {name} exists: adopting the files only")
    elif not any(c.state == "running" for c in containers):
        warnings.append(f"no container of project {name} is running")

    files, compose_source = _compose_files(containers, values, present, dirs, warnings)
    missing = [n for n in files if n not in present]
    if missing:
        warnings.append(f"compose files in use but not in {directory}: {', '.join(missing)}")
    config_dir, config_source = _config_dir(runner, directory, values, containers, warnings)
    running = migrations.release_of_images(
        c.ref for c in containers if c.service in migrations.CORE_SERVICES
    )
    release, release_source = _release(
        runner, directory, values, files, running=running, warnings=warnings
    )
    if release is not None and parse_release(release) is None:
        warnings.append(
            f"release {release} is not a stable-NNNN[-N] tag: jitsi-ops assumes the "
            f"{layout_for(release)} compose set for it"
        )

    image_ids = sorted({c.image_id for c in containers if c.image_id})
    images = (
        {i.id: i for i in facts.gather(runner, facts.inspect_images(image_ids))}
        if image_ids
        else {}
    )
    digests = {}
    for container in containers:
        image = images.get(container.image_id)
        digests[container.service] = (image.digest_for(container.ref) if image else None) or (
            container.image_id
        )
    if mode and not mode.startswith("600"):
        warnings.append(
            f".env has mode {mode.split()[0]} (it holds every secret): the first deploy writes it 0600"
        )
    managed = runner.run(["test", "-e", hoststate.state_path(canonical)], check=False).ok
    if managed:
        warnings.append("a jitsi-ops state.json is already there: this stack was deployed before")
    return Discovery(
        host=runner.host,
        remote_dir=directory,
        canonical_dir=canonical,
        env_values=values,
        env_mode=mode,
        present_files=present,
        compose_files=files,
        compose_source=compose_source,
        project=name,
        project_source=project_source,
        containers=containers,
        digests=digests,
        config_dir=config_dir,
        config_source=config_source,
        release=release,
        release_source=release_source,
        running_release=running,
        file_hashes=hashes,
        warnings=tuple(warnings),
        managed=managed,
    )


def compare_with_shipped(discovery: Discovery, root: Path) -> list[str]:
    """Warnings about the host's compose files against jitsi-ops' set for the same release."""
    import hashlib  # noqa: PLC0415

    older = older_than_compose_sets(discovery.release)
    if older is not None:
        # Its files are not ours to compare: the only deploy it can get is the upgrade.
        return [
            f"{older} is older than the releases jitsi-ops' compose sets describe (from "
            f"{OLDEST_DEPLOYABLE} on): it cannot be redeployed as it is; pin {OLDEST_DEPLOYABLE} "
            "or later in jitsi.env: the next deploy upgrades in one step (migrations from "
            f"{older} on), and a failed one rolls back to this host's own files"
        ]
    shipped = compose_dir(root, layout_for(discovery.release))
    ours = {p.name for p in shipped.glob("*.yml")}
    warnings = []
    for name in discovery.compose_files:
        if name in UNSHIPPED_OVERLAYS:
            services = ", ".join(UNSHIPPED_OVERLAYS[name])
            warnings.append(
                f"{name} (upstream's monitoring: {services}) is in use; jitsi-ops does not ship "
                f"it, and `deploy` refuses while {services} run in project {discovery.project} "
                "(`up --remove-orphans` would remove them): move them to a compose project of "
                "their own first (README, Components)"
            )
            continue
        if name not in ours:
            warnings.append(
                f"{name} is in use but not part of jitsi-ops' compose set: the first deploy no "
                "longer passes it (it stays in the backup); port what it changes first"
            )
            continue
        digest = hashlib.sha256((shipped / name).read_bytes()).hexdigest()
        found = discovery.file_hashes.get(name)
        if found and found != digest:
            warnings.append(
                f"{name} differs from jitsi-ops' {layout_for(discovery.release)} set: the first "
                "deploy replaces it; Compose recreates only services whose configuration changes"
            )
    auto = set(enabled_components(discovery.env_values))
    for component in sorted(auto - set(discovery.components)):
        warnings.append(
            f"{component}: its URL variable is set but {component}.yml was not in use: the first "
            f"deploy starts the {component} service"
        )
    return warnings


# --- the local environment ------------------------------------------------------------------------


def _toml(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(value)


@dataclass(frozen=True)
class HostOptions:
    """How to reach the host when adopt creates deploy.toml."""

    address: str
    user: str | None = None
    port: int | None = None
    ssh_config: Path | None = None
    known_hosts: Path | None = None
    backup_dir: str | None = None
    sudo: bool = False


def check_host_options(options: HostOptions) -> None:
    """Refuse, before anything connects or is written, what deploy.toml would refuse later."""
    if not valid_address(options.address):
        raise ConfigError(
            f"--host {options.address!r} is not a host name, IP address or ssh_config Host alias",
            hint="pass the SSH address alone (user and port have flags of their own)",
        )
    problem = remote_path_problem(options.backup_dir) if options.backup_dir else None
    if problem:
        raise ConfigError(
            f"--backup-dir {options.backup_dir!r} {problem}",
            hint="use an absolute path on the host, e.g. --backup-dir /var/backups/jitsi-ops",
        )


def deploy_toml_text(name: str, discovery: Discovery, options: HostOptions, when: str) -> str:
    """deploy.toml for an adopted environment."""
    requested = [
        c for c in discovery.components if c not in enabled_components(discovery.env_values)
    ]
    lines = [
        f"# jitsi-ops deployment settings for the '{name}' environment, created by `invoke adopt`",
        f"# on {when} from {discovery.host}:{discovery.remote_dir} (compose files in use: "
        f"{', '.join(discovery.compose_files)}).",
        "# See env/example/deploy.toml for every key.",
        "",
        f"project = {_toml(discovery.project)}   # the compose project that was running",
        f"stack_dir = {_toml(discovery.remote_dir)}",
        f"components = [{', '.join(_toml(c) for c in requested)}]",
        "# The adopted values are exactly the host's. env/common.env's shared defaults would add",
        "# keys the host never had (and recreate containers); set this to true (and look at the",
        "# plan) once you want them.",
        "use_common_env = false",
        "",
        "[[hosts]]",
        f"address = {_toml(options.address)}",
    ]
    if options.user:
        lines.append(f"user = {_toml(options.user)}")
    if options.port:
        lines.append(f"port = {options.port}")
    if options.sudo:
        lines.append("sudo = true")
    lines.append('role = "main"')
    ssh = []
    if options.ssh_config:
        ssh.append(f"config = {_toml(str(options.ssh_config))}")
    if options.known_hosts:
        ssh.append(f"known_hosts = {_toml(str(options.known_hosts))}")
    if ssh:
        lines += ["", "[ssh]", *ssh]
    lines += ["", "[backup]"]
    if options.backup_dir:
        lines.append(f"dir = {_toml(options.backup_dir)}")
    else:
        lines.append('# dir = "/var/backups/jitsi-ops"')
    lines.append("# keep = 5")
    return "\n".join(lines) + "\n"


def adopted_values(discovery: Discovery) -> dict[str, str]:
    """The values the environment gets: the host's, minus the keys Compose reads itself, with
    CONFIG where the data is and the release pinned."""
    values = {
        k: v
        for k, v in discovery.env_values.items()
        if k not in COMPOSE_VARIABLES and not k.startswith("COMPOSE_")
    }
    values["CONFIG"] = discovery.config_dir
    if discovery.release and not values.get("JITSI_IMAGE_VERSION"):
        values["JITSI_IMAGE_VERSION"] = discovery.release
    return values


def env_file_texts(discovery: Discovery, when: str, *, common_env_used: bool) -> tuple[str, str]:
    """(jitsi.env, secrets.env) texts of the adopted values."""
    values = adopted_values(discovery)
    source = f"{discovery.host}:{discovery.remote_dir}/.env"
    settings = [
        f"# Adopted by jitsi-ops from {source} on {when}",
        f"# (compose project {discovery.project}, release {discovery.release or 'unknown'}).",
        "# The host's non-secret values, unchanged and sorted; its secrets are in secrets.env.",
        (
            "# env/common.env applies too (deploy.toml): check the plan for keys it adds."
            if common_env_used
            else "# env/common.env does not apply to this environment (use_common_env = false)."
        ),
        "",
    ]
    settings += [
        f"{k}={quote_value(k, v)}" for k, v in sorted(values.items()) if not is_secret_key(k)
    ]
    secrets = [
        f"# Secrets adopted by jitsi-ops from {source} on {when}: the existing values,",
        "# unchanged (prosody keeps the accounts made with them). jitsi-ops never rotates them.",
        "# Keep this file out of git (it is in .gitignore) and at mode 0600.",
        "",
    ]
    secrets += [f"{k}={quote_value(k, v)}" for k, v in sorted(values.items()) if is_secret_key(k)]
    return "\n".join(settings) + "\n", "\n".join(secrets) + "\n"


def value_drift(env: Environment, discovery: Discovery) -> list[str]:
    """Keys whose value in the rendered `.env` differs from the host's (names only)."""
    rendered = {k: v for k, v in rendered_values(env).items() if not k.startswith("COMPOSE_")}
    host = {k: v for k, v in discovery.env_values.items() if not k.startswith("COMPOSE_")}
    return sorted(k for k in set(rendered) | set(host) if rendered.get(k) != host.get(k))


# --- orchestration -------------------------------------------------------------------------------


@dataclass
class AdoptReport:
    """What adopt found, wrote and backed up, and what a deploy would change."""

    env: str
    discovery: Discovery
    written: list[str] = field(default_factory=list)
    created_deploy_toml: bool = False
    drift: list[str] = field(default_factory=list)
    backup: backup.Manifest | None = None
    plan: Plan | None = None
    plan_error: str = ""
    check_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The `--json` report (no secret value)."""
        manifest = self.backup
        return {
            "env": self.env,
            "discovered": self.discovery.as_dict(),
            "written": self.written,
            "created_deploy_toml": self.created_deploy_toml,
            "drift": self.drift,
            "backup": None
            if manifest is None
            else {
                "id": manifest.deploy_id,
                "archive": manifest.archive_name,
                "size": manifest.archive_size,
                "sha256": manifest.archive_sha256,
                "roots": [r.path for r in manifest.roots if r.present],
                "entries": len(manifest.files),
            },
            "plan": self.plan.as_dict() if self.plan else None,
            "plan_error": self.plan_error,
            "check_errors": self.check_errors,
        }


def _existing_settings(root: Path, name: str, discovery: Discovery) -> bool:
    """Check an existing env/NAME/deploy.toml against the discovery; returns use_common_env."""
    path = root / "env" / name / "deploy.toml"
    deploy = parse_deploy_toml(
        path.read_text(encoding="utf-8"), f"env/{name}/deploy.toml", path.parent
    )
    wrong = []
    if posixpath.normpath(deploy.stack_dir) not in (discovery.remote_dir, discovery.canonical_dir):
        wrong.append(f"stack_dir = {_toml(discovery.remote_dir)}")
    if deploy.project != discovery.project:
        wrong.append(f"project = {_toml(discovery.project)}")
    if wrong:
        raise ConfigError(
            f"env/{name}/deploy.toml does not describe the install in {discovery.remote_dir}",
            hint="set " + " and ".join(wrong) + " in it (or adopt into a new environment name)",
        )
    return deploy.use_common_env


def adopt(
    root: Path,
    name: str,
    runner: Runner,
    remote_dir: str,
    *,
    options: HostOptions | None = None,
    project: str | None = None,
    environ: Mapping[str, str] | None = None,
    say: Say | None = None,
    progress: Say | None = None,
) -> AdoptReport:
    """Discover, write env/NAME, back up, plan. On any failure the files written here are
    removed again (the host had nothing but the backup dir written to).

    `say` gets the discovery summary; `progress` (default: `say`) the steps of the backup, which
    a terminal shows on a transient live line."""
    emit: Say = say or (lambda _line: None)
    step: Say = progress or emit
    validate_env_name(name)
    env_dir = root / "env" / name
    toml = env_dir / "deploy.toml"
    for existing in (env_dir / "jitsi.env", env_dir / "secrets.env"):
        if existing.exists():
            raise ConfigError(
                f"env/{name}/{existing.name} already exists; refusing to overwrite it",
                hint="adopt into a new environment name, or remove the file first",
            )
    if not toml.exists() and options is None:
        raise ConfigError(
            f"env/{name} does not exist", hint="pass --host ADDRESS so adopt can create it"
        )
    discovery = discover(runner, remote_dir, project=project)
    extra = compare_with_shipped(discovery, root)
    if extra:
        discovery = _with_warnings(discovery, extra)
    emit_discovery(discovery, emit)
    common_used = _existing_settings(root, name, discovery) if toml.exists() else False
    report = AdoptReport(name, discovery)
    when = hoststate.iso_utc()
    created: list[Path] = []
    made_dir = not env_dir.exists()
    try:
        if not toml.exists():
            assert options is not None  # checked above
            env_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(toml, deploy_toml_text(name, discovery, options, when), PUBLIC_MODE)
            created.append(toml)
            report.created_deploy_toml = True
        jitsi_text, secrets_text = env_file_texts(discovery, when, common_env_used=common_used)
        write_atomic(env_dir / "jitsi.env", jitsi_text, PUBLIC_MODE)
        created.append(env_dir / "jitsi.env")
        write_private(env_dir / "secrets.env", secrets_text)
        created.append(env_dir / "secrets.env")
        report.written = [f"env/{name}/{p.name}" for p in created]
        env = load_environment(name, root, environ)
        report.drift = value_drift(env, discovery)
        deploy_id = hoststate.new_deploy_id(name)
        step(f"backup: archiving {discovery.config_dir} and {discovery.remote_dir}")
        report.backup = backup.create_backup(
            env,
            runner,
            deploy_id,
            release=discovery.release,
            digests=discovery.digests,
            progress=lambda message: step(f"backup: {message}"),
        )
    except BaseException:
        for path in reversed(created):
            path.unlink(missing_ok=True)
        if made_dir and env_dir.exists() and not any(env_dir.iterdir()):
            env_dir.rmdir()
        raise
    report.check_errors = [
        f"{f.key}: {f.message}" if f.key else f.message
        for f in lint.run_checks(lint.context_for(env))
        if f.severity == "error"
    ]
    report.plan, report.plan_error = _same_release_plan(env, runner, discovery.release)
    hoststate.append_history(
        hoststate.history_path(root),
        {
            "action": "adopt",
            "env": name,
            "user": local_user(),
            "host": discovery.host,
            "remote_dir": discovery.remote_dir,
            "project": discovery.project,
            "release": discovery.release,
            "backup_id": report.backup.deploy_id,
            "result": "adopted",
        },
        secret_values=env.values,
    )
    return report


def _same_release_plan(
    env: Environment, runner: Runner, release: str | None
) -> tuple[Plan | None, str]:
    """(plan, why there is none) of a deploy of the adopted release as it is."""
    older = older_than_compose_sets(release)
    if older is not None:
        return None, (
            f"no deploy of {older}: it predates jitsi-ops' compose sets; pin "
            f"{OLDEST_DEPLOYABLE} or later and the plan upgrades in one step"
        )
    try:
        return deploy_plan(env, runner), ""
    except OpsError as exc:
        return None, exc.message


def deploy_plan(env: Environment, runner: Runner) -> Plan:
    """The plan phase of a deploy of the environment as it is (read-only; no preflight, whose
    findings adopt reports separately, and no migrations: the release does not change)."""
    values = rendered_values(env)
    target = stack.stack_files(env)
    current = facts.gather_host_facts(
        runner,
        project=env.deploy.project,
        stack_dir=env.deploy.stack_dir,
        target_refs=planning.target_images(values, target).values(),
    )
    # The deploy would refuse here (services of an overlay jitsi-ops does not ship): say so.
    stack.refuse_foreign_services(
        env, current.containers, current.state.compose_files if current.state else ()
    )
    return planning.plan(values, target, current)


def _with_warnings(discovery: Discovery, extra: Sequence[str]) -> Discovery:
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(discovery, warnings=(*discovery.warnings, *extra))


def emit_discovery(discovery: Discovery, emit: Say) -> None:
    """The human summary of a discovery (names and non-secret values only)."""
    emit(f"found on {discovery.host}:{discovery.remote_dir}")
    running = ", ".join(sorted(c.service for c in discovery.containers)) or "none"
    emit(
        f"  project        {discovery.project} ({discovery.project_source}; containers: {running})"
    )
    others = [n for n in discovery.present_files if n not in discovery.compose_files]
    emit(
        f"  compose files  {', '.join(discovery.compose_files)} ({discovery.compose_source})"
        + (f"; not in use: {', '.join(others)}" if others else "")
    )
    emit(f"  CONFIG         {discovery.config_dir} ({discovery.config_source})")
    emit(
        f"  release        {discovery.release or 'unknown'} ({discovery.release_source}"
        + (f"; running: {discovery.running_release}" if discovery.running_release else "")
        + ")"
    )
    for container in discovery.containers:
        digest = discovery.digests.get(container.service) or "unknown digest"
        emit(f"  {container.service:<14} {container.ref} ({digest}) {container.state}")
    emit(
        f"  .env           {len(discovery.env_values)} values, {len(discovery.secret_keys)} "
        f"secrets ({', '.join(discovery.secret_keys) or 'none'}), mode {discovery.env_mode or '?'}"
    )
    for warning in discovery.warnings:
        emit(f"  warning: {warning}")
