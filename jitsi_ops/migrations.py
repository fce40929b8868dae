"""Release migrations: what an upgrade across an upstream release boundary needs besides new images.

Modelled on Tutor's upgrade chain: an ordered registry of migrations, each keyed by the release
that introduced a change. An upgrade from release A to release B runs, in release order, every
migration whose boundary it crosses (A < since <= B), plus every older one whose `.env` change is
still outstanding (an install upgraded by hand, "download and overwrite", still carries
DOCKER_HOST_ADDRESS years after stable-7830 renamed it). A redeploy of the same release, a
downgrade or an unknown release (a custom tag) runs none: migrations belong to upgrades only,
so a redeploy stays a no-op.

A migration has two halves, both idempotent and both shown in the plan before anything runs:

- `env_changes(values)`: renames, drops, additions and newly required secrets, pure over the
  environment's values. The deploy renders the host's `.env` from the migrated values, and in its
  `migrate` phase (after backup and pre-pull, before apply) writes the same changes into
  env/NAME/jitsi.env and env/NAME/secrets.env, so the repository describes what was uploaded and
  the next deploy has nothing left to migrate. Shared files (env/common.env) and process
  overrides are never edited: the plan names them for the operator instead.
- `host_steps(env, config_dir)`: argv lists run on the host in that phase (mkdir, chown).

New secrets are generated once, in memory when the plan is made (masked everywhere), and written
to secrets.env before the `.env` that carries them is uploaded. Existing secrets never change.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from dotenv.parser import parse_stream

from jitsi_ops import commands, facts, hoststate
from jitsi_ops.envfile import parse_env, quote_value
from jitsi_ops.errors import OpsError
from jitsi_ops.localfiles import write_atomic, write_private
from jitsi_ops.runner import Runner
from jitsi_ops.secrets import is_secret_key, new_secret
from jitsi_ops.settings import Environment
from jitsi_ops.versions import ROOTLESS_SINCE, Release, parse_release

ROOTLESS_OWNER = f"{commands.ROOTLESS_UID}:{commands.ROOTLESS_UID}"
# Old CONFIG paths the first rootless start copies into storage/ (jitsi-facts §4.3, §8.2). Old
# images left them root-owned 0600 (web keys) or 0750 owned by the old prosody uid: unreadable
# by uid 1000, the copy then fails silently and internal-auth accounts and certificates are lost.
OLD_DATA_PATHS: tuple[str, ...] = (
    "web/keys",
    "web/acme.sh",
    "web/acme-certs",
    "prosody/config/data",
)
# JITSI_IMAGE_REPO values that name Docker Hub's jitsi namespace, which gets no release after
# stable-11031 (images only on ghcr.io since stable-11146).
DOCKER_HUB_REPOS = frozenset(
    {"jitsi", "docker.io/jitsi", "index.docker.io/jitsi", "registry-1.docker.io/jitsi"}
)
GHCR_REPO = "ghcr.io/jitsi"


# --- env changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvChanges:
    """What a migration does to an environment's values (names only: no value is secret here
    except generated ones, which are never stored in this object)."""

    renames: tuple[tuple[str, str], ...] = ()  # (old, new)
    drops: tuple[str, ...] = ()
    additions: Mapping[str, str] = field(default_factory=dict)  # non-secret literal values
    secrets: tuple[str, ...] = ()  # secrets to generate (only ever missing ones)

    @property
    def empty(self) -> bool:
        """Nothing to change."""
        return not (self.renames or self.drops or self.additions or self.secrets)

    def keys(self) -> set[str]:
        """Every key this touches (old and new names)."""
        names = {k for pair in self.renames for k in pair}
        return names | set(self.drops) | set(self.additions) | set(self.secrets)


def rename_value(old: str, new: str, value: str) -> str:
    """The value under its new name (DOCKER_HOST_ADDRESS held one address or a space-separated
    list; JVB_ADVERTISE_IPS is comma-separated)."""
    if (old, new) == ("DOCKER_HOST_ADDRESS", "JVB_ADVERTISE_IPS"):
        return ",".join(part for part in re.split(r"[\s,]+", value) if part)
    return value


def apply_env_changes(
    values: Mapping[str, str], changes: EnvChanges, generated: Mapping[str, str]
) -> dict[str, str]:
    """`values` after `changes`; `generated` holds the new secrets' values (pure)."""
    out = dict(values)
    for old, new in changes.renames:
        if old not in out:
            continue
        value = out.pop(old)
        if not out.get(new):  # a value already under the new name wins (upstream's precedence)
            out[new] = rename_value(old, new, value)
    for key in changes.drops:
        out.pop(key, None)
    out.update(changes.additions)
    for key in changes.secrets:
        if not out.get(key):
            out[key] = generated[key]
    return out


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One entry of the chain. Subclasses override what they need; every method is pure."""

    id: str
    since: Release
    title: str

    def applies_between(self, from_release: Release, to_release: Release) -> bool:
        """An upgrade from `from_release` to `to_release` crosses this migration's boundary."""
        return from_release < self.since <= to_release

    def env_changes(self, values: Mapping[str, str]) -> EnvChanges:
        """What this migration changes in `values` (empty once applied: idempotent)."""
        del values
        return EnvChanges()

    def host_steps(self, env: Environment, config_dir: str) -> list[list[str]]:
        """Commands to run on the main host (idempotent)."""
        del env, config_dir
        return []

    def notes(self) -> list[str]:
        """Lines for the plan that describe what is not a command or an env change."""
        return []

    def warnings(self, stack_files: Mapping[str, bytes]) -> list[str]:
        """Problems in the host's own files this migration cannot fix (custom overrides)."""
        del stack_files
        return []

    def describe(self, values: Mapping[str, str], env: Environment, config_dir: str) -> list[str]:
        """The plan's lines for this migration (no secret value can appear: only names)."""
        lines = [f"{self.since}: {self.title}"]
        lines += [f"  {note}" for note in self.notes()]
        lines += [f"  {line}" for line in describe_env_changes(self.env_changes(values), values)]
        for argv in self.host_steps(env, config_dir):
            lines.append(f"  $ {shlex.join(argv)}")
        return lines


def describe_env_changes(changes: EnvChanges, values: Mapping[str, str]) -> list[str]:
    """Human lines for an EnvChanges (names and non-secret values only)."""
    lines = []
    for old, new in changes.renames:
        if values.get(new):
            lines.append(f".env: drop {old} ({new} is already set, so {old} was ignored)")
        else:
            lines.append(f".env: rename {old} -> {new}")
    lines += [f".env: drop {key} (removed upstream)" for key in changes.drops]
    for key, value in sorted(changes.additions.items()):
        shown = "********" if is_secret_key(key) else value
        before = values.get(key)
        lines.append(
            f".env: set {key}={shown}"
            + (f" (was {before})" if before and not is_secret_key(key) else "")
        )
    lines += [f".env: generate the new secret {key}" for key in changes.secrets]
    return lines


@dataclass(frozen=True)
class _Rename(Migration):
    old: str = ""
    new: str = ""

    def env_changes(self, values: Mapping[str, str]) -> EnvChanges:
        return EnvChanges(renames=((self.old, self.new),)) if self.old in values else EnvChanges()


@dataclass(frozen=True)
class _Removed(Migration):
    patterns: tuple[str, ...] = ()  # names, or prefixes ending in '*'

    def matches(self, key: str) -> bool:
        """Whether `key` is one of the removed variables."""
        return any(key.startswith(p[:-1]) if p.endswith("*") else key == p for p in self.patterns)

    def env_changes(self, values: Mapping[str, str]) -> EnvChanges:
        return EnvChanges(drops=tuple(sorted(k for k in values if self.matches(k))))


@dataclass(frozen=True)
class _NewSecret(Migration):
    key: str = ""

    def env_changes(self, values: Mapping[str, str]) -> EnvChanges:
        return EnvChanges() if values.get(self.key) else EnvChanges(secrets=(self.key,))


def _glob_escape(path: str) -> str:
    # find -path takes an fnmatch pattern: a literal path must not glob.
    return re.sub(r"([\\*?\[\]])", r"\\\1", path)


def chown_old_data(config_dir: str) -> list[str]:
    """`chown -R 1000:1000` of exactly those OLD_DATA_PATHS that exist (find skips missing ones,
    so the step is idempotent and never fails on an install without Let's Encrypt)."""
    paths = [posixpath.join(config_dir, sub) for sub in OLD_DATA_PATHS]
    expression: list[str] = []
    for index, path in enumerate(paths):
        expression += (["-o"] if index else []) + ["-path", _glob_escape(path)]
    depth = max(sub.count("/") + 1 for sub in OLD_DATA_PATHS)
    return [
        "find", "-P", config_dir, "-mindepth", "1", "-maxdepth", str(depth),
        "(", *expression, ")", "-prune",
        "-exec", "chown", "-R", ROOTLESS_OWNER, "--", "{}", "+",
    ]  # fmt: skip


_PORT_RE = re.compile(r"(?:^|:)(80|443)(?:/tcp)?$")


def _targets_old_web_port(entry: Any) -> bool:
    """A compose `ports:` entry whose container side is 80 or 443 (short or long syntax)."""
    if isinstance(entry, Mapping):
        return str(entry.get("target", "")) in ("80", "443")
    return bool(_PORT_RE.search(str(entry).strip()))


def override_warnings(stack_files: Mapping[str, bytes], ours: Iterable[str]) -> list[str]:
    """Warnings for the host's own compose files (not in jitsi-ops' set) that still map the old
    web container ports 80/443 or mention /colibri-ws."""
    mine = set(ours)
    warnings = []
    for name, data in sorted(stack_files.items()):
        if not name.endswith((".yml", ".yaml")) or name in mine:
            continue
        text = data.decode("utf-8", errors="replace")
        if "/colibri-ws" in text:
            warnings.append(
                f"warning: {name} mentions /colibri-ws: colibri websockets are gone in stable-11146"
            )
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            warnings.append(f"warning: {name} is not valid YAML: check its ports by hand")
            continue
        services = document.get("services") if isinstance(document, Mapping) else None
        for service, spec in (services or {}).items():
            ports = spec.get("ports") if isinstance(spec, Mapping) else None
            if any(_targets_old_web_port(p) for p in ports or ()):
                warnings.append(
                    f"warning: {name}: service {service} maps container port 80/443; the web "
                    "container listens on 8000/8443 since stable-11146"
                )
        warnings.append(
            f"warning: {name} is not part of jitsi-ops' compose set: it is not passed with -f and "
            "the apply phase removes it (it is in the backup)"
        )
    return warnings


_COLIBRI_REMOVED = _Removed(
    id="stable-11146-colibri-websockets",
    since=ROOTLESS_SINCE,
    title="colibri websockets removed (SCTP only)",
    patterns=(
        "ENABLE_COLIBRI_WEBSOCKET",
        "ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX",
        "DISABLE_COLIBRI_WEBSOCKET_JVB_LOOKUP",
        "COLIBRI_WEBSOCKET_*",
        "JVB_WS_*",
        "ENABLE_SCTP",
        "ENABLE_OCTO_SCTP",
    ),
)


@dataclass(frozen=True)
class _Rootless(Migration):
    """stable-11146: rootless images (uid 1000), new storage/ and tmp/ dirs, ghcr.io, no colibri
    websockets, web container ports 8000/8443."""

    def env_changes(self, values: Mapping[str, str]) -> EnvChanges:
        drops = _COLIBRI_REMOVED.env_changes(values).drops
        additions = {}
        if values.get("JITSI_IMAGE_REPO", "").strip().rstrip("/") in DOCKER_HUB_REPOS:
            additions["JITSI_IMAGE_REPO"] = GHCR_REPO
        return EnvChanges(drops=drops, additions=additions)

    def host_steps(self, env: Environment, config_dir: str) -> list[list[str]]:
        del env
        writable = [posixpath.join(config_dir, sub) for sub in commands.ROOTLESS_WRITABLE]
        return [
            commands.mkdirs(writable),
            # Not recursive: only the new, empty dirs; what is already inside stays as it is.
            commands.chown(writable, ROOTLESS_OWNER),
            chown_old_data(config_dir),
        ]

    def notes(self) -> list[str]:
        return [
            "compose set: legacy -> rootless (web container ports 80/443 -> 8000/8443; host "
            "ports HTTP_PORT/HTTPS_PORT unchanged)",
            "the first rootless start copies prosody data and web TLS material into storage/; "
            "the old paths stay for a rollback (owner 1000:1000, modes unchanged)",
            "transcripts and jibri recordings are not moved (move them by hand if you use them)",
        ]

    def warnings(self, stack_files: Mapping[str, bytes]) -> list[str]:
        from jitsi_ops.composeset import COMPONENTS, compose_files  # noqa: PLC0415

        found = override_warnings(stack_files, compose_files(list(COMPONENTS)))
        repo = parse_env(stack_files.get(".env", b"").decode("utf-8", errors="replace")).get(
            "JITSI_IMAGE_REPO", ""
        )
        if repo and repo.rstrip("/") not in DOCKER_HUB_REPOS and repo.rstrip("/") != GHCR_REPO:
            found.append(
                f"warning: JITSI_IMAGE_REPO={repo} is a mirror: it must carry the stable-11146+ "
                "images (the pull phase fails otherwise, with nothing changed)"
            )
        return found


MIGRATIONS: tuple[Migration, ...] = (
    _Rename(
        old="DOCKER_HOST_ADDRESS",
        new="JVB_ADVERTISE_IPS",
        since=Release(7830),
        title="DOCKER_HOST_ADDRESS renamed to JVB_ADVERTISE_IPS (comma-separated)",
        id="stable-7830-jvb-advertise-ips",
    ),
    _Removed(
        patterns=("JICOFO_AUTH_USER",),
        since=Release(8218),
        title="JICOFO_AUTH_USER removed (jicofo always logs in as focus)",
        id="stable-8218-jicofo-auth-user",
    ),
    _Removed(
        patterns=("WHITEBOARD_ENABLED",),
        since=Release(9584),
        title="WHITEBOARD_ENABLED removed (the whiteboard follows its URL variables)",
        id="stable-9584-whiteboard-enabled",
    ),
    _NewSecret(
        key="JIGASI_TRANSCRIBER_PASSWORD",
        since=Release(9753),
        title="new secret JIGASI_TRANSCRIBER_PASSWORD",
        id="stable-9753-transcriber-password",
    ),
    _Rename(
        old="XMPP_RECORDER_DOMAIN",
        new="XMPP_HIDDEN_DOMAIN",
        since=Release(9823),
        title="XMPP_RECORDER_DOMAIN renamed to XMPP_HIDDEN_DOMAIN (value kept: accounts stay)",
        id="stable-9823-hidden-domain",
    ),
    _Rootless(
        id="stable-11146-rootless",
        since=ROOTLESS_SINCE,
        title="rootless images (uid 1000), storage/ + tmp/ dirs, ghcr.io, SCTP only",
    ),
)


def select(
    from_tag: str | None,
    to_tag: str | None,
    values: Mapping[str, str],
    registry: Sequence[Migration] = MIGRATIONS,
) -> list[Migration]:
    """The migrations an upgrade from `from_tag` to `to_tag` runs, in release order."""
    frm, to = parse_release(from_tag or ""), parse_release(to_tag or "")
    if frm is None or to is None or to <= frm:
        return []
    chosen = []
    current = dict(values)
    for migration in sorted(registry, key=lambda m: m.since):
        if migration.since > to:
            continue
        changes = migration.env_changes(current)
        if migration.applies_between(frm, to) or not changes.empty:
            chosen.append(migration)
            # Later migrations see the values as the earlier ones left them (a chain).
            current = apply_env_changes(current, changes, dict.fromkeys(changes.secrets, "x"))
    return chosen


def downgrade_warning(from_tag: str | None, to_tag: str | None) -> str | None:
    """A deploy that goes back across stable-11146 cannot be migrated backwards."""
    frm, to = parse_release(from_tag or ""), parse_release(to_tag or "")
    if frm is None or to is None or not to < ROOTLESS_SINCE <= frm:
        return None
    return (
        f"warning: {from_tag} -> {to_tag} goes back across stable-11146: data written since the "
        "upgrade lives only in storage/; prefer `invoke restore` with the backup taken before it"
    )


# --- one upgrade's step: what the deploy renders and what its migrate phase does ------------------


@dataclass(frozen=True)
class ReleaseStep:
    """The migrations of one deploy and their combined effect on the environment."""

    from_release: str | None
    from_source: str
    to_release: str | None
    migrations: tuple[Migration, ...]
    changes: tuple[EnvChanges, ...]  # per migration, in order
    values_before: Mapping[str, str] = field(repr=False)
    values: Mapping[str, str] = field(repr=False)  # after every change (new secrets included)
    generated: Mapping[str, str] = field(repr=False)  # the new secrets' values

    @property
    def empty(self) -> bool:
        """No migration runs."""
        return not self.migrations

    def environment(self, env: Environment) -> Environment:
        """`env` with the migrated values (what the deploy renders and uploads)."""
        if self.empty:
            return env
        origins = dict(env.origins)
        for key in set(self.values) - set(self.values_before):
            origins[key] = f"migration to {self.to_release}"
        for key in set(self.values_before) - set(self.values):
            origins.pop(key, None)
        return dataclasses.replace(
            env, values=MappingProxyType(dict(self.values)), origins=MappingProxyType(origins)
        )

    def lines(
        self,
        env: Environment,
        config_dir: str,
        stack_files: Mapping[str, bytes] | None = None,
    ) -> list[str]:
        """Everything the plan shows for this step: per migration its notes, env changes and
        commands, then where the env changes are written, then warnings."""
        lines: list[str] = []
        if self.empty:
            return lines
        lines.append(
            f"{self.from_release} ({self.from_source}) -> {self.to_release}: "
            f"{len(self.migrations)} migration(s)"
        )
        values: Mapping[str, str] = self.values_before
        for migration, changes in zip(self.migrations, self.changes, strict=True):
            lines += migration.describe(values, env, config_dir)
            values = apply_env_changes(values, changes, self.generated)
        edits, notes = local_edits(env, self)
        lines += [f"env file: {edit.label} is rewritten in the migrate phase" for edit in edits]
        lines += notes
        for migration in self.migrations:
            lines += migration.warnings(stack_files or {})
        return lines


def prepare(
    env: Environment,
    from_release: str | None,
    from_source: str = "",
    *,
    secret_factory: Callable[[], str] = new_secret,
    registry: Sequence[Migration] = MIGRATIONS,
) -> ReleaseStep:
    """Select the migrations from the deployed release to the environment's pinned one and
    compute their effect on the values (new secrets generated here, in memory only)."""
    chosen = select(from_release, env.release, env.values, registry)
    values: dict[str, str] = dict(env.values)
    per_migration = []
    generated: dict[str, str] = {}
    for migration in chosen:
        changes = migration.env_changes(values)
        for key in changes.secrets:
            generated.setdefault(key, secret_factory())
        values = apply_env_changes(values, changes, generated)
        per_migration.append(changes)
    return ReleaseStep(
        from_release=from_release,
        from_source=from_source,
        to_release=env.release,
        migrations=tuple(chosen),
        changes=tuple(per_migration),
        values_before=MappingProxyType(dict(env.values)),
        values=MappingProxyType(values),
        generated=MappingProxyType(generated),
    )


def deployed_release(
    runner: Runner, env: Environment, env_text: str | None = None
) -> tuple[str | None, str]:
    """(release, where it was found): state.json, else the host `.env`'s JITSI_IMAGE_VERSION,
    else the tag of the running core images; (None, "") when nothing tells."""
    try:
        state = hoststate.read_state(runner, env.deploy.stack_dir)
    except OpsError:
        state = None
    if state is not None and state.release:
        return state.release, "state.json"
    if env_text is None:
        env_text = facts.read_remote_env(runner, env.deploy.stack_dir)
    if env_text:
        tag = parse_env(env_text, "host .env").get("JITSI_IMAGE_VERSION", "")
        if tag:
            return tag, "host .env"
    containers = facts.gather(runner, facts.project_containers(env.deploy.project))
    running = release_of_images(c.image for c in containers if c.service in CORE_SERVICES)
    return (running, "running images") if running else (None, "")


CORE_SERVICES = ("web", "prosody", "jicofo", "jvb")


def release_of_images(refs: Iterable[str]) -> str | None:
    """The newest pinned release among image references' tags (`.../web:stable-11031`)."""
    found = []
    for ref in refs:
        name = ref.split("@", 1)[0]
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash and (release := parse_release(name[colon + 1 :])) is not None:
            found.append(release)
    return str(max(found)) if found else None


# --- writing the env changes into the operator's files -----------------------------------------


@dataclass(frozen=True)
class FileEdit:
    """A rewritten env file of the environment."""

    path: Path
    label: str  # env/NAME/jitsi.env
    old_text: str = field(repr=False)
    new_text: str = field(repr=False)
    private: bool = False  # secrets.env: written 0600


def _comment_out(original: str, reason: str) -> str:
    lead, body = _split_lead(original)
    lines = body.rstrip("\n").split("\n")
    return lead + f"# {reason}\n" + "".join(f"# {line}\n" for line in lines)


def _split_lead(original: str) -> tuple[str, str]:
    # python-dotenv folds the blank lines before a binding into its original text.
    stripped = original.lstrip("\r\n")
    return original[: len(original) - len(stripped)], stripped


def rewrite_env_text(
    text: str,
    *,
    renames: Mapping[str, tuple[str, str | None]],
    drops: Mapping[str, str],
    sets: Mapping[str, str],
    note: str,
) -> str:
    """`text` with keys renamed (old -> (new, value); value None = just comment the old line
    out), dropped (commented out with the reason) and set (value replaced or appended), every
    other line byte for byte as it was."""
    out: list[str] = []
    done: set[str] = set()
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        key = binding.key
        if key is None or binding.error:
            out.append(original)
            continue
        lead, _body = _split_lead(original)
        if key in drops:
            out.append(_comment_out(original, f"{note}: {drops[key]}"))
        elif key in renames:
            new, value = renames[key]
            if value is None:
                out.append(_comment_out(original, f"{note}: {new} is set, so {key} was ignored"))
            else:
                out.append(f"{lead}# {note}: renamed from {key}\n{new}={quote_value(new, value)}\n")
        elif key in sets:
            out.append(f"{lead}{key}={quote_value(key, sets[key])}\n")
            done.add(key)
        else:
            out.append(original)
    result = "".join(out)
    missing = [key for key in sets if key not in done]
    if missing:
        if result and not result.endswith("\n"):
            result += "\n"
        result += f"# {note}\n" + "".join(f"{k}={quote_value(k, sets[k])}\n" for k in missing)
    return result


def _defining_layers(env: Environment, key: str) -> list[str]:
    return [layer.name for layer in env.layers if any(e.key == key for e in layer.entries)]


@dataclass
class _FilePlan:
    """What one env file of the environment must get."""

    renames: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    drops: dict[str, str] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.renames or self.drops or self.sets)


@dataclass
class _EditPlanner:
    """Distributes a step's env changes over the files that define each key."""

    env: Environment
    jitsi_label: str
    secrets_label: str
    files: dict[str, _FilePlan]
    notes: list[str] = field(default_factory=list)

    def layers(self, key: str) -> list[str]:
        return _defining_layers(self.env, key)

    def foreign(self, key: str, layers: list[str], what: str) -> None:
        for name in layers:
            if name not in self.files:
                self.notes.append(
                    f"note: {key} is set in {name}, which jitsi-ops does not edit: {what} there "
                    "yourself (this deploy already renders the .env without it)"
                )

    def add(
        self,
        migration: Migration,
        changes: EnvChanges,
        values: Mapping[str, str],
        generated: Mapping[str, str],
    ) -> None:
        reason = f"removed in {migration.since} ({migration.title})"
        for old, new in changes.renames:
            layers = self.layers(old)
            value = None if values.get(new) else rename_value(old, new, values.get(old, ""))
            for label in (n for n in layers if n in self.files):
                self.files[label].renames[old] = (new, value)
                value = None  # the new name is written once; other files only lose the old
            self.foreign(old, layers, f"rename {old} to {new}")
        for key in changes.drops:
            layers = self.layers(key)
            for label in (n for n in layers if n in self.files):
                self.files[label].drops[key] = reason
            self.foreign(key, layers, f"remove {key}")
        for key, value in changes.additions.items():
            for label in [n for n in self.layers(key) if n in self.files] or [self.jitsi_label]:
                self.files[label].sets[key] = value
        for key in changes.secrets:
            self.files[self.secrets_label].sets[key] = generated[key]


def local_edits(env: Environment, step: ReleaseStep) -> tuple[list[FileEdit], list[str]]:
    """The rewrites of env/NAME/jitsi.env and secrets.env that persist the step's env changes,
    plus notes for keys that live in files jitsi-ops does not edit (env/common.env, process
    overrides)."""
    if step.empty:
        return [], []
    jitsi_label = f"env/{env.name}/jitsi.env"
    secrets_label = f"env/{env.name}/secrets.env"
    paths = {jitsi_label: env.env_dir / "jitsi.env", secrets_label: env.secrets_file}
    planner = _EditPlanner(env, jitsi_label, secrets_label, {label: _FilePlan() for label in paths})
    values: Mapping[str, str] = step.values_before
    for migration, changes in zip(step.migrations, step.changes, strict=True):
        planner.add(migration, changes, values, step.generated)
        values = apply_env_changes(values, changes, step.generated)
    edits = []
    note = f"jitsi-ops migration {step.from_release} -> {step.to_release}"
    for label, path in paths.items():
        wanted = planner.files[label]
        if not wanted:
            continue
        try:
            old_text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old_text = ""
        new_text = rewrite_env_text(
            old_text, renames=wanted.renames, drops=wanted.drops, sets=wanted.sets, note=note
        )
        if new_text != old_text:
            edits.append(FileEdit(path, label, old_text, new_text, private=label == secrets_label))
    return edits, planner.notes


def write_edits(edits: Sequence[FileEdit]) -> list[str]:
    """Write the rewritten env files (secrets.env at 0600); returns their labels. A file that
    changed since the plan was made is refused (the operator edited it meanwhile)."""
    written = []
    for edit in edits:
        try:
            current = edit.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current != edit.old_text:
            raise OpsError(
                f"{edit.label} changed while the deploy was running; not rewriting it",
                hint="run the deploy again: its plan is made from the file as it is then",
            )
        if edit.private:
            write_private(edit.path, edit.new_text)
        else:
            mode = edit.path.stat().st_mode & 0o777 if edit.path.exists() else 0o644
            write_atomic(edit.path, edit.new_text, mode)
        written.append(edit.label)
    return written


def run_step(
    env: Environment,
    runner: Runner,
    step: ReleaseStep,
    config_dir: str,
    edits: Sequence[FileEdit],
    *,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The migrate phase: persist the env changes into env/NAME (`edits`, made with the plan),
    then run the host steps in order."""
    written = write_edits(edits)
    commands_run = 0
    for migration in step.migrations:
        for argv in migration.host_steps(env, config_dir):
            if progress:
                progress(f"{migration.since}: {shlex.join(argv)[:120]}")
            runner.run(argv, timeout=600)
            commands_run += 1
    ids = ", ".join(str(m.since) for m in step.migrations)
    detail = f"{ids}: {commands_run} host step(s)"
    return detail + (f"; rewrote {', '.join(written)}" if written else "")
