"""plan(): what a deploy would change on one host, computed purely from the rendered target and
the host's facts (design.md section 3, convention 4). `--dry-run` prints it and stops.

Which services `docker compose up -d` recreates is decided by Compose from each service's
config hash and image. When the orchestrator has Compose's own hashes of the target set
(HostFacts.target_config_hashes, from facts.config_hashes), plan() uses them and is exact.
Otherwise it approximates, conservatively:

- a service whose image reference changes, or whose tag now names another local image;
- a service that consumes a `.env` key whose value changes, where "consumes" means the key is
  listed bare under its `environment:` or interpolated anywhere in its definition (image,
  ports, volumes, environment values); keys interpolated outside `services:` count for all;
- every service defined in a compose file that was added or changed;
- a missing container is created, a stopped one started, an orphan removed.

Keys Compose reads itself (COMPOSE_*) count for no service: the project is pinned with -p and
the file list shows up as file changes. The approximation errs towards over-reporting (a
changed compose comment recreates nothing in reality); what it cannot see are inputs outside
the `.env` and the compose files, such as variables in the SSH session's own environment.

No secret value ever enters a Plan: the `.env` diff masks every secret value (a changed secret
shows as `KEY=******** (previous value)` -> `KEY=******** (changed)`) and every
text is scrubbed of the secret values of both the current and the target `.env`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from jitsi_ops.composeset import load_yaml
from jitsi_ops.envfile import interpolate as interpolate_env
from jitsi_ops.envfile import masked_diff, parse_entries
from jitsi_ops.errors import ConfigError
from jitsi_ops.facts import ContainerInfo, HostFacts
from jitsi_ops.secrets import scrub

ENV_FILE = ".env"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Two-character operators first: `:-` must not be read as `:` + `-default`.
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")


# --- Compose-style interpolation --------------------------------------------------------------


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing a `${` whose body starts at `start` (nested `${...}` allowed)."""
    depth, j = 1, start
    while j < len(text):
        if text.startswith("$$", j):
            j += 2
        elif text.startswith("${", j):
            depth += 1
            j += 2
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
            j += 1
        else:
            j += 1
    return -1


def _expand(text: str, values: Mapping[str, str], names: set[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                out.append(text[i:])
                break
            out.append(_expand_braced(text[i + 2 : end], values, names))
            i = end + 1
        elif match := _NAME_RE.match(text, i + 1):
            names.add(match[0])
            out.append(values.get(match[0], ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _expand_braced(body: str, values: Mapping[str, str], names: set[str]) -> str:
    match = _NAME_RE.match(body)
    if not match:
        return ""
    name, rest = match[0], body[match.end() :]
    names.add(name)
    value = values.get(name)
    operator = next((op for op in _OPERATORS if rest.startswith(op)), "")
    # Expanded even when unused: every name it mentions is an input of this string.
    argument = _expand(rest[len(operator) :], values, names) if operator else ""
    if operator == ":-":
        return value if value else argument
    if operator == "-":
        return value if value is not None else argument
    if operator == ":+":
        return argument if value else ""
    if operator == "+":
        return argument if value is not None else ""
    # Plain `${NAME}` and the `?` forms (Compose itself reports a missing required variable).
    return value or ""


def interpolate(template: str, values: Mapping[str, str]) -> str:
    """Expand `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:+a}`, `${VAR+a}`, `$$` like Compose."""
    return _expand(template, values, set())


def referenced_variables(template: str) -> set[str]:
    """Every variable name a Compose string mentions (including inside defaults)."""
    names: set[str] = set()
    _expand(template, {}, names)
    return names


# --- the target compose set -------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the target compose set, as far as planning needs it."""

    name: str
    image: str  # the uninterpolated `image:` template
    files: tuple[str, ...]  # files that define or extend it
    consumes: frozenset[str]  # .env keys whose value reaches this service's config
    all_env: bool = False  # `env_file:` hands it every key


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _bare_environment_names(environment: Any) -> set[str]:
    # `- KEY` (list) or `KEY:` with no value (map) passes the .env value through unchanged;
    # `KEY=value` does not read KEY, only the variables inside value (found by interpolation).
    if isinstance(environment, list):
        return {item for item in environment if isinstance(item, str) and "=" not in item}
    if isinstance(environment, Mapping):
        return {str(key) for key, value in environment.items() if value is None}
    return set()


def compose_file_names(names: Iterable[str]) -> list[str]:
    """The compose files among stack file names."""
    return [name for name in names if name.endswith((".yml", ".yaml"))]


def parse_services(target_files: Mapping[str, bytes]) -> dict[str, ServiceSpec]:
    """Services of the target compose files (in -f order; later files extend earlier ones)."""
    specs: dict[str, ServiceSpec] = {}
    global_names: set[str] = set()
    for file_name in compose_file_names(target_files):
        try:
            document = load_yaml(target_files[file_name])
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{file_name}: not valid YAML ({exc.__class__.__name__})",
                hint="fix the compose file under compose/",
            ) from None
        if not isinstance(document, Mapping):
            continue
        for key, value in document.items():
            if key != "services":
                for text in _strings(value):
                    global_names |= referenced_variables(text)
        for name, raw in (document.get("services") or {}).items():
            service = raw if isinstance(raw, Mapping) else {}
            names = {n for text in _strings(service) for n in referenced_variables(text)}
            names |= _bare_environment_names(service.get("environment"))
            previous = specs.get(str(name))
            specs[str(name)] = ServiceSpec(
                name=str(name),
                image=str(service.get("image") or (previous.image if previous else "")),
                files=(*(previous.files if previous else ()), file_name),
                consumes=frozenset(names | (previous.consumes if previous else set())),
                all_env=bool(service.get("env_file")) or bool(previous and previous.all_env),
            )
    if global_names:
        specs = {n: replace(s, consumes=s.consumes | global_names) for n, s in specs.items()}
    return specs


def normalise_ref(ref: str) -> str:
    """`repo` -> `repo:latest` (how Docker lists an untagged reference in RepoTags)."""
    if "@" in ref:
        return ref
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref if colon > slash else f"{ref}:latest"


def target_images(
    env_values: Mapping[str, str], target_files: Mapping[str, bytes]
) -> dict[str, str]:
    """Service -> the image reference the target set runs (the pre-pull list)."""
    return {
        name: interpolate(spec.image, env_values)
        for name, spec in sorted(parse_services(target_files).items())
        if spec.image
    }


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """A compose file that is added to, changed in or removed from the stack's set."""

    name: str
    change: str  # added | changed | removed


@dataclass(frozen=True)
class ImageChange:
    """A service whose image will change: what runs now (ref and digest) -> the target ref."""

    service: str
    current_ref: str | None
    current_digest: str | None
    target_ref: str

    def describe(self, *, short: bool = True) -> str:
        """`current (digest) -> target`."""
        if self.current_ref is None:
            return f"(none) -> {self.target_ref}"
        digest = self.current_digest or "unknown digest"
        if short and "sha256:" in digest:
            digest = digest.split("sha256:", 1)[0] + "sha256:" + digest.split("sha256:", 1)[1][:12]
        return f"{self.current_ref} ({digest}) -> {self.target_ref}"


@dataclass(frozen=True)
class ServiceChange:
    """What `up -d --remove-orphans` will do to one service, and why."""

    service: str
    action: str  # create | recreate | start | remove
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The difference between the host and the rendered target; contains no secret value."""

    first_deploy: bool
    env_changed: bool  # the .env bytes differ (a values change or only comments/format)
    env_diff: str  # masked unified diff of the values ("" when the values are equal)
    changed_keys: tuple[str, ...]  # names of keys whose value changes (names are not secret)
    files_changed: tuple[FileChange, ...]
    image_changes: tuple[ImageChange, ...]
    service_changes: tuple[ServiceChange, ...]
    target_images: Mapping[str, str] = field(default_factory=dict)
    migrations: tuple[str, ...] = ()
    exact: bool = False  # recreation predicted from Compose's own config hashes

    @property
    def services_to_recreate(self) -> tuple[str, ...]:
        """Services whose containers will be (re)created."""
        return tuple(c.service for c in self.service_changes if c.action in ("create", "recreate"))

    @property
    def nothing_to_do(self) -> bool:
        """The .env and compose files are identical and every target service runs its target image."""
        return not (
            self.env_changed
            or self.files_changed
            or self.image_changes
            or self.service_changes
            or self.migrations
        )

    def with_migrations(self, migrations: Iterable[str]) -> Plan:
        """The same plan with the migrations the release step found."""
        return replace(self, migrations=tuple(migrations))

    def as_dict(self) -> dict[str, Any]:
        """The `--json` shape."""
        return {
            "nothing_to_do": self.nothing_to_do,
            "first_deploy": self.first_deploy,
            "exact": self.exact,
            "env": {
                "changed": self.env_changed,
                "changed_keys": list(self.changed_keys),
                "diff": self.env_diff,
            },
            "files_changed": [{"name": f.name, "change": f.change} for f in self.files_changed],
            "image_changes": [
                {
                    "service": i.service,
                    "current_ref": i.current_ref,
                    "current_digest": i.current_digest,
                    "target_ref": i.target_ref,
                }
                for i in self.image_changes
            ],
            "services": [
                {"service": c.service, "action": c.action, "reasons": list(c.reasons)}
                for c in self.service_changes
            ],
            "services_to_recreate": list(self.services_to_recreate),
            "target_images": dict(sorted(self.target_images.items())),
            "migrations": list(self.migrations),
        }

    def render_text(self) -> str:
        """The plan for humans (secrets masked)."""
        if self.nothing_to_do:
            return "Nothing to do: .env and compose files are identical and every service runs its target image.\n"
        lines = ["Plan (first deploy on this host):" if self.first_deploy else "Plan:"]
        if not self.env_changed:
            lines.append("  .env: unchanged")
        elif self.changed_keys:
            lines.append(
                f"  .env: {len(self.changed_keys)} key(s) change: {', '.join(self.changed_keys)}"
            )
            lines.extend(f"    {line}" for line in self.env_diff.rstrip("\n").splitlines())
        else:
            lines.append("  .env: comments or formatting only (same values)")
        if self.files_changed:
            lines.append("  compose files:")
            lines.extend(f"    {f.change:<8} {f.name}" for f in self.files_changed)
        else:
            lines.append("  compose files: unchanged")
        if self.image_changes:
            lines.append("  images:")
            lines.extend(f"    {i.service}: {i.describe()}" for i in self.image_changes)
        else:
            lines.append("  images: unchanged")
        if self.service_changes:
            how = (
                "from Compose config hashes"
                if self.exact
                else "estimated from the inputs that changed"
            )
            lines.append(f"  services ({how}):")
            lines.extend(
                f"    {c.action:<8} {c.service}: {'; '.join(c.reasons)}"
                for c in self.service_changes
            )
        else:
            lines.append("  services: none recreated")
        if self.migrations:
            lines.append("  migrations (run in the migrate phase, after backup and pull):")
            lines.extend(f"    {line}" for line in self.migrations)
        else:
            lines.append("  migrations: none")
        return "\n".join(lines) + "\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _primary(containers: list[ContainerInfo]) -> ContainerInfo:
    # During a recreate Compose briefly has two containers per service: the running one is
    # what serves; otherwise the newest is what `up` will act on.
    running = [c for c in containers if c.running]
    pool = running or containers
    return max(pool, key=lambda c: (c.created, c.name))


def _current_set(current: HostFacts, current_values: Mapping[str, str]) -> set[str]:
    """The compose files the host's stack uses now (state.json, else COMPOSE_FILE, else on disk)."""
    if current.state is not None and current.state.compose_files:
        return set(current.state.compose_files)
    if current_values.get("COMPOSE_FILE"):
        separator = current_values.get("COMPOSE_PATH_SEPARATOR") or ":"
        return {
            name.rsplit("/", 1)[-1]
            for name in current_values["COMPOSE_FILE"].split(separator)
            if name
        }
    return set(compose_file_names(current.file_hashes))


def _file_changes(
    target_files: Mapping[str, bytes], current: HostFacts, current_values: Mapping[str, str]
) -> list[FileChange]:
    changes = []
    targets = compose_file_names(target_files)
    for name in targets:
        remote = current.file_hashes.get(name)
        if remote is None:
            changes.append(FileChange(name, "added"))
        elif remote != _sha256(target_files[name]):
            changes.append(FileChange(name, "changed"))
    changes.extend(
        FileChange(name, "removed")
        for name in sorted(_current_set(current, current_values) - set(targets))
    )
    return changes


def _env_changed(
    target_files: Mapping[str, bytes],
    current: HostFacts,
    target_values: Mapping[str, str],
    current_values: Mapping[str, str],
) -> bool:
    if current.env_text is None:
        return True
    if ENV_FILE not in target_files:
        return dict(current_values) != dict(target_values)
    remote = current.file_hashes.get(ENV_FILE) or _sha256(current.env_text.encode())
    return remote != _sha256(target_files[ENV_FILE])


def _plan_service(
    spec: ServiceSpec,
    containers: list[ContainerInfo],
    target_ref: str,
    current: HostFacts,
    *,
    changed_keys: set[str],
    touched_files: set[str],
) -> tuple[ImageChange | None, ServiceChange | None]:
    """The image change and the container action for one target service."""
    name = spec.name
    if not containers:
        return ImageChange(name, None, None, target_ref), ServiceChange(
            name, "create", ("no container yet",)
        )
    running = _primary(containers)
    reasons: list[str] = []
    image_change = None
    local_id = current.ref_ids.get(normalise_ref(target_ref))
    if target_ref and running.image != target_ref:
        reasons.append(f"image {running.image} -> {target_ref}")
    elif target_ref and local_id and running.image_id and local_id != running.image_id:
        # Same tag, another image (re-pushed tag already pulled): Compose recreates on image id.
        reasons.append(f"tag {target_ref} now names another image")
    if reasons:
        image_change = ImageChange(name, running.image, current.pinned_ref(running), target_ref)
    hashes = current.target_config_hashes
    if hashes is not None:
        target_hash = hashes.get(name)
        if target_hash is not None and target_hash != running.config_hash:
            reasons.append("compose config hash differs")
    else:
        keys = sorted(changed_keys if spec.all_env else changed_keys & spec.consumes)
        if keys:
            reasons.append("env: " + ", ".join(keys))
        reasons.extend(f"compose file {f} changed" for f in spec.files if f in touched_files)
    if reasons:
        return image_change, ServiceChange(name, "recreate", tuple(reasons))
    if not running.running:
        return None, ServiceChange(name, "start", (f"container is {running.state}",))
    return None, None


def plan(
    env_values_rendered: Mapping[str, str],
    target_files: Mapping[str, bytes],
    current: HostFacts,
) -> Plan:
    """What deploying `target_files` (rendered `.env` + compose set) would change on the host."""
    # Resolved the way Compose reads the host's file: a hand-made `.env` may say
    # PUBLIC_URL=https://meet.example.com:${HTTPS_PORT} (jitsi-ops' own are literal already).
    current_values = (
        interpolate_env(parse_entries(current.env_text, "host .env"))
        if current.env_text is not None
        else {}
    )
    target_values = dict(env_values_rendered)
    # Both sides' secrets: a rotated or removed secret must be masked too. Prefixing keeps the
    # key's suffix, which is what marks it as a secret.
    secret_pool = {f"CURRENT_{k}": v for k, v in current_values.items()}
    secret_pool.update({f"TARGET_{k}": v for k, v in target_values.items()})

    def clean(text: str) -> str:
        return scrub(text, secret_pool)

    env_changed = _env_changed(target_files, current, target_values, current_values)
    changed_keys = sorted(
        key
        for key in set(current_values) | set(target_values)
        if current_values.get(key) != target_values.get(key)
    )
    env_diff = ""
    if changed_keys:
        env_diff = clean(
            masked_diff(
                current_values, target_values, current_name="host .env", target_name="rendered .env"
            )
        )
    files = _file_changes(target_files, current, current_values)
    touched = {f.name for f in files if f.change != "removed"}
    specs = parse_services(target_files)
    images = {name: clean(ref) for name, ref in target_images(target_values, target_files).items()}
    relevant_keys = {key for key in changed_keys if not key.startswith("COMPOSE_")}

    by_service: dict[str, list[ContainerInfo]] = {}
    for container in current.containers:
        by_service.setdefault(container.service, []).append(container)

    image_changes: list[ImageChange] = []
    service_changes: list[ServiceChange] = []
    for name, spec in sorted(specs.items()):
        image_change, service_change = _plan_service(
            spec,
            by_service.get(name, []),
            images.get(name, ""),
            current,
            changed_keys=relevant_keys,
            touched_files=touched,
        )
        image_changes.extend([image_change] if image_change else [])
        service_changes.extend([service_change] if service_change else [])
    service_changes.extend(
        ServiceChange(name, "remove", ("not in the target compose set (orphan)",))
        for name in sorted(set(by_service) - set(specs))
    )

    return Plan(
        first_deploy=current.env_text is None and not current.containers and current.state is None,
        env_changed=env_changed,
        env_diff=env_diff,
        changed_keys=tuple(changed_keys),
        files_changed=tuple(files),
        image_changes=tuple(image_changes),
        service_changes=tuple(service_changes),
        target_images=images,
        exact=current.target_config_hashes is not None,
    )
