"""Read-only probes of a host, each an (argv, parser) pair in the style of pyinfra facts.

A Fact names the command to run and the pure function that turns its stdout into data;
`gather(runner, fact)` is the only place that runs one. Parsers never see a Runner, so they are
unit-tested on output captured from a real Docker 20.10 engine + Compose 2.26 in
tests/fixtures/facts/. No probe reads container environments: `docker inspect` is always given
a narrow --format template, because a container's Config.Env holds the stack's passwords.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from jitsi_ops import commands
from jitsi_ops.errors import RemoteCommandError
from jitsi_ops.hoststate import DeployState, read_state
from jitsi_ops.runner import Runner

T = TypeVar("T")


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A probe: the argv to run, the parser of its stdout, and which exit codes still parse.

    `ok_codes` beyond 0 are for commands that report partial results (e.g. `sha256sum` with a
    missing file exits 1 but prints the hashes of the files that exist).
    """

    name: str
    argv: tuple[str, ...]
    parse: Callable[[str], T]
    ok_codes: frozenset[int] = frozenset({0})
    timeout: float = 60.0


def gather(runner: Runner, fact: Fact[T]) -> T:
    """Run a fact's command on the host and parse its output; other exit codes raise."""
    result = runner.run(fact.argv, check=False, timeout=fact.timeout)
    if result.exit_code not in fact.ok_codes:
        raise RemoteCommandError(
            result.argv, result.exit_code, result.stderr, hint=f"while probing {fact.name}"
        )
    return fact.parse(result.stdout)


# --- versions ---------------------------------------------------------------------------------


def parse_version_line(text: str) -> str:
    """The first non-empty line, without a leading `v` (`docker compose version --short`)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip().removeprefix("v")
    return ""


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric components: `20.10.24+dfsg1` -> (20, 10, 24), `2.26.1-4` -> (2, 26, 1)."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(part) for part in match[1].split(".")) if match else ()


def docker_server_version() -> Fact[str]:
    """Docker Engine (server) version."""
    return Fact("docker server version", tuple(commands.docker_version()), parse_version_line)


def compose_version() -> Fact[str]:
    """Docker Compose plugin version."""
    return Fact("docker compose version", tuple(commands.compose_version()), parse_version_line)


# --- compose containers -----------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host (from compose ps `Publishers`)."""

    address: str
    published: int
    target: int
    protocol: str


@dataclass(frozen=True)
class ContainerInfo:
    """One container of a compose project.

    The fields from `compose ps` are always set; `image_id` and `restart_count` come from
    `docker inspect` (see with_details) and stay None until merged.
    """

    service: str
    name: str
    id: str
    # The reference the container was created from (repo:tag). `compose ps` alone prints the
    # image id instead once that tag has moved to another image; with_details restores the
    # reference from Config.Image.
    image: str
    state: str  # created | running | restarting | exited | paused | dead | removing
    status: str  # human text, e.g. "Up 9 seconds (healthy)"
    health: str  # "" (no healthcheck) | starting | healthy | unhealthy
    exit_code: int
    created: str
    project: str = ""
    config_hash: str | None = None  # com.docker.compose.config-hash: what `up` compares
    published: tuple[PublishedPort, ...] = ()
    image_id: str | None = None
    restart_count: int | None = None

    @property
    def running(self) -> bool:
        """The container is up (whatever its health)."""
        return self.state == "running"


_CONFIG_HASH_RE = re.compile(r"(?:^|,)com\.docker\.compose\.config-hash=([0-9a-f]{64})(?:,|$)")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _container_from_ps(item: Mapping[str, Any]) -> ContainerInfo:
    labels = item.get("Labels")
    # Labels arrive as one comma-joined string whose values may contain commas themselves
    # (config_files); the config hash is matched by shape instead of split out.
    match = _CONFIG_HASH_RE.search(labels) if isinstance(labels, str) else None
    publishers = item.get("Publishers") or []
    published = tuple(
        PublishedPort(
            address=str(p.get("URL", "")),
            published=_int(p.get("PublishedPort")),
            target=_int(p.get("TargetPort")),
            protocol=str(p.get("Protocol", "tcp")),
        )
        for p in publishers
        if isinstance(p, dict) and _int(p.get("PublishedPort"))
    )
    return ContainerInfo(
        service=str(item.get("Service", "")),
        name=str(item.get("Name", "")),
        id=str(item.get("ID", "")),
        image=str(item.get("Image", "")),
        state=str(item.get("State", "")),
        status=str(item.get("Status", "")),
        health=str(item.get("Health", "")),
        exit_code=_int(item.get("ExitCode")),
        created=str(item.get("CreatedAt", "")),
        project=str(item.get("Project", "")),
        config_hash=match[1] if match else None,
        published=published,
    )


def parse_compose_ps(text: str) -> list[ContainerInfo]:
    """`docker compose ps --format json`: one object per line (2.26) or one JSON array (newer)."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        items = json.loads(stripped)
    else:
        items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    containers = [_container_from_ps(item) for item in items if isinstance(item, dict)]
    return sorted(containers, key=lambda c: (c.service, c.name, c.id))


def project_containers(project: str) -> Fact[list[ContainerInfo]]:
    """Every container of the compose project, whatever compose files it came from.

    Asked by project name only (no -f): that works before the first upload and still lists
    services the target set no longer has (the orphans `up --remove-orphans` will remove).
    Compose would read a compose file in the SSH user's working directory, so none should be
    there; the user's home is the usual working directory and holds none.
    """
    argv = ("docker", "compose", "-p", project, "ps", "--all", "--format", "json")
    return Fact("compose containers", argv, parse_compose_ps)


def target_containers(target: commands.ComposeTarget) -> Fact[list[ContainerInfo]]:
    """The containers of the services in `target`'s files (needs those files on the host)."""
    return Fact("compose containers", tuple(commands.compose_ps(target)), parse_compose_ps)


def parse_config_hashes(text: str) -> dict[str, str]:
    """`docker compose config --hash '*'`: `service hash` per line."""
    hashes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            hashes[parts[0]] = parts[1]
    return hashes


def config_hashes(target: commands.ComposeTarget) -> Fact[dict[str, str]]:
    """The config hash Compose would give each service of `target` (exactly what `up` compares).

    Needs the target files and `.env` on the host; compare with ContainerInfo.config_hash.
    """
    return Fact(
        "compose config hashes", (*target.base(), "config", "--hash", "*"), parse_config_hashes
    )


# --- docker inspect: containers and images ----------------------------------------------------


# A JSON object per container with only what we need; never `{{json .}}` (Config.Env = secrets).
CONTAINER_TEMPLATE = (
    '{"id":{{json .Id}},"name":{{json .Name}},"image_id":{{json .Image}},'
    '"ref":{{json .Config.Image}},"restart_count":{{json .RestartCount}},'
    '"service":{{json (index .Config.Labels "com.docker.compose.service")}},'
    '"config_hash":{{json (index .Config.Labels "com.docker.compose.config-hash")}}}'
)
IMAGE_TEMPLATE = (
    '{"id":{{json .Id}},"repo_tags":{{json .RepoTags}},"repo_digests":{{json .RepoDigests}}}'
)


@dataclass(frozen=True)
class ContainerImage:
    """What `docker inspect` says about a container's image."""

    id: str
    name: str
    service: str
    image_id: str  # sha256:... of the image the container runs
    ref: str  # Config.Image: the reference it was created from
    restart_count: int
    config_hash: str


@dataclass(frozen=True)
class ImageInfo:
    """A local image: its id, tags and registry digests."""

    id: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()

    def digest_for(self, ref: str) -> str | None:
        """The `repo@sha256:...` of this image in `ref`'s repository, if it came from a registry."""
        repo = repository_of(ref)
        for digest in self.repo_digests:
            if digest.split("@", 1)[0] == repo:
                return digest
        return None


def repository_of(ref: str) -> str:
    """`host:5000/ns/web:tag` -> `host:5000/ns/web` (a port is not a tag; digests are dropped)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def _json_lines(text: str) -> Iterable[dict[str, Any]]:
    for line in text.splitlines():
        if line.strip().startswith("{"):
            item = json.loads(line)
            if isinstance(item, dict):
                yield item


def parse_container_inspect(text: str) -> dict[str, ContainerImage]:
    """Output of `docker inspect --format CONTAINER_TEMPLATE`, by full container id."""
    result = {}
    for item in _json_lines(text):
        image = ContainerImage(
            id=str(item.get("id", "")),
            name=str(item.get("name", "")).lstrip("/"),
            service=str(item.get("service") or ""),
            image_id=str(item.get("image_id", "")),
            ref=str(item.get("ref", "")),
            restart_count=_int(item.get("restart_count")),
            config_hash=str(item.get("config_hash") or ""),
        )
        result[image.id] = image
    return result


def parse_image_inspect(text: str) -> list[ImageInfo]:
    """Output of `docker image inspect --format IMAGE_TEMPLATE` (`null` lists become empty)."""
    return [
        ImageInfo(
            id=str(item.get("id", "")),
            repo_tags=tuple(str(t) for t in item.get("repo_tags") or ()),
            repo_digests=tuple(str(d) for d in item.get("repo_digests") or ()),
        )
        for item in _json_lines(text)
    ]


def inspect_containers(ids: Sequence[str]) -> Fact[dict[str, ContainerImage]]:
    """Image id, reference, restart count and config hash of containers.

    Exit 1 still parses: a container removed between `ps` and `inspect` is simply absent.
    """
    argv = ("docker", "inspect", "--type", "container", "--format", CONTAINER_TEMPLATE, *ids)
    return Fact("container images", argv, parse_container_inspect, frozenset({0, 1}))


def inspect_images(refs: Sequence[str]) -> Fact[list[ImageInfo]]:
    """Id, tags and repo digests of local images by reference or id.

    Exit 1 still parses: an image not pulled yet is simply absent from the result.
    """
    argv = ("docker", "image", "inspect", "--format", IMAGE_TEMPLATE, *refs)
    return Fact("image digests", argv, parse_image_inspect, frozenset({0, 1}))


def with_details(
    containers: Iterable[ContainerInfo], details: Mapping[str, ContainerImage]
) -> list[ContainerInfo]:
    """Merge `docker inspect` details into `compose ps` rows (ps shows short ids).

    Config.Image replaces ps's Image column, which shows the image id when the tag the
    container was created from now names another image (a re-pushed tag that was pulled).
    """
    merged = []
    for container in containers:
        found = (
            next((d for cid, d in details.items() if cid.startswith(container.id)), None)
            if container.id
            else None
        )
        if found is None:
            merged.append(container)
            continue
        merged.append(
            replace(
                container,
                image=found.ref or container.image,
                image_id=found.image_id or None,
                restart_count=found.restart_count,
                config_hash=container.config_hash or found.config_hash or None,
            )
        )
    return merged


# --- files ------------------------------------------------------------------------------------


def _unescape_sha256sum_name(name: str) -> str:
    # GNU coreutils escapes "\" and newline in names and marks such lines with a leading "\".
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            out.append({"n": "\n", "\\": "\\", "r": "\r"}.get(name[i + 1], name[i + 1]))
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def parse_sha256sum(text: str) -> dict[str, str]:
    """`sha256sum` output -> {path: hex digest} (text `  ` and binary ` *` separators)."""
    hashes = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.*)", body)
        if not match:
            continue
        path = _unescape_sha256sum_name(match[2]) if escaped else match[2]
        hashes[path] = match[1]
    return hashes


def file_hashes(paths: Sequence[str]) -> Fact[dict[str, str]]:
    """sha256 of files by path; a missing or unreadable file is absent from the result."""
    return Fact("file hashes", ("sha256sum", "--", *paths), parse_sha256sum, frozenset({0, 1}))


def parse_stack_hashes(text: str) -> dict[str, str]:
    """Hashes of stack files keyed by file name (the stack dir is flat)."""
    return {posixpath.basename(path): digest for path, digest in parse_sha256sum(text).items()}


def stack_file_hashes(stack_dir: str) -> Fact[dict[str, str]]:
    """sha256 of `.env` and every compose file in the stack dir, by name ({} if it is missing).

    `find -exec sha256sum {} +` covers files we did not put there (a removed overlay, an
    operator's own override) in one command without a shell to expand globs.
    """
    argv = (
        "find", stack_dir, "-maxdepth", "1", "-type", "f",
        "(", "-name", "*.yml", "-o", "-name", "*.yaml", "-o", "-name", ".env", ")",
        "-exec", "sha256sum", "--", "{}", "+",
    )  # fmt: skip
    return Fact("stack file hashes", argv, parse_stack_hashes, frozenset({0, 1}))


def read_remote_file(runner: Runner, path: str) -> str | None:
    """A text file on the host, or None when it does not exist."""
    try:
        return runner.get(path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_remote_env(runner: Runner, stack_dir: str) -> str | None:
    """The host's current `.env` text (it holds secrets: never print it), or None before the first deploy."""
    return read_remote_file(runner, posixpath.join(stack_dir, ".env"))


# --- disk, ports, identity --------------------------------------------------------------------


@dataclass(frozen=True)
class DiskUsage:
    """One line of `df -Pk`, sizes in KiB."""

    filesystem: str
    total_kb: int
    used_kb: int
    available_kb: int
    capacity_percent: int
    mount: str

    @property
    def available_mb(self) -> int:
        """Free space for unprivileged writes, in MiB."""
        return self.available_kb // 1024


_DF_RE = re.compile(
    r"(?P<fs>.*?)\s+(?P<total>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?P<cap>\d+|-)%?\s+(?P<mount>/.*)"
)


def parse_df(text: str) -> list[DiskUsage]:
    """`df -Pk` lines after the header (POSIX format: one line per filesystem, never wrapped)."""
    usages = []
    for line in text.splitlines()[1:]:
        match = _DF_RE.fullmatch(line.strip())
        if match:
            usages.append(
                DiskUsage(
                    filesystem=match["fs"],
                    total_kb=int(match["total"]),
                    used_kb=int(match["used"]),
                    available_kb=int(match["avail"]),
                    capacity_percent=_int(match["cap"]),
                    mount=match["mount"],
                )
            )
    return usages


def _first_df(text: str) -> DiskUsage:
    usages = parse_df(text)
    if not usages:
        raise ValueError("df printed no filesystem line")
    return usages[0]


def disk_free(path: str) -> Fact[DiskUsage]:
    """Free space on the filesystem holding `path`, which must exist (probe a parent if not)."""
    return Fact("disk free", ("df", "-Pk", "--", path), _first_df)


@dataclass(frozen=True)
class ProcessRef:
    """A process holding a socket, as `ss -p` names it."""

    name: str
    pid: int


# Compared against, never bound to.
_ANY_ADDRESSES = frozenset({"*", "0.0.0.0", "::"})  # noqa: S104


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket or bound UDP socket on the host."""

    protocol: str  # tcp | udp
    address: str  # 127.0.0.1, ::1, 0.0.0.0, ::, * (any)
    port: int
    processes: tuple[ProcessRef, ...] = ()

    @property
    def any_address(self) -> bool:
        """Bound to every interface (so it collides with any address on this port)."""
        return self.address in _ANY_ADDRESSES


_PROCESS_RE = re.compile(r'\("(?P<name>(?:[^"\\]|\\.)*)",pid=(?P<pid>\d+)')


def _split_address(local: str) -> tuple[str, int] | None:
    host, _, port = local.rpartition(":")
    if not port.isdigit():
        return None
    host = host.removeprefix("[").removesuffix("]")
    return host.split("%", 1)[0], int(port)  # drop the interface scope (127.0.0.53%lo)


def parse_ss(text: str) -> list[Listener]:
    """`ss -H -ltnup`: netid, state, recv-q, send-q, local, peer, [users:((...))].

    Without root, ss shows no process column for other users' sockets: processes is empty then.
    """
    listeners = []
    for line in text.splitlines():
        parts = line.split(None, 6)
        if len(parts) < 6 or parts[0] not in ("tcp", "udp"):
            continue
        address = _split_address(parts[4])
        if address is None:
            continue
        processes = tuple(
            ProcessRef(m["name"], int(m["pid"]))
            for m in _PROCESS_RE.finditer(parts[6] if len(parts) > 6 else "")
        )
        listeners.append(Listener(parts[0], address[0], address[1], processes))
    return listeners


def listeners() -> Fact[list[Listener]]:
    """Listening TCP and bound UDP sockets with their processes (numeric, no DNS)."""
    return Fact("port listeners", ("ss", "-H", "-ltnup"), parse_ss)


def port_holders(found: Iterable[Listener], port: int, protocol: str = "tcp") -> list[Listener]:
    """Listeners on `port`/`protocol` (any address)."""
    return [item for item in found if item.port == port and item.protocol == protocol]


@dataclass(frozen=True)
class Identity:
    """The SSH user on the host."""

    uid: int
    user: str
    gid: int
    group: str
    groups: tuple[str, ...] = ()

    @property
    def is_root(self) -> bool:
        """uid 0."""
        return self.uid == 0


_ID_PART_RE = re.compile(r"(?P<num>\d+)(?:\((?P<name>[^)]*)\))?")


def parse_id(text: str) -> Identity:
    """`id` output: `uid=0(root) gid=0(root) groups=0(root),998(docker)`."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        fields[key] = value
    uid = _ID_PART_RE.match(fields.get("uid", ""))
    gid = _ID_PART_RE.match(fields.get("gid", ""))
    if uid is None or gid is None:
        raise ValueError(f"unexpected `id` output: {text.strip()[:80]!r}")
    groups = tuple(
        m["name"] or m["num"]
        for part in fields.get("groups", "").split(",")
        if part and (m := _ID_PART_RE.match(part))
    )
    return Identity(
        int(uid["num"]),
        uid["name"] or uid["num"],
        int(gid["num"]),
        gid["name"] or gid["num"],
        groups,
    )


def identity() -> Fact[Identity]:
    """uid/gid and groups of the SSH user (docker group membership, root or not)."""
    return Fact("ssh user identity", ("id",), parse_id)


# --- everything plan() needs, in one go -------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What is on a host now, as plan() sees it.

    `file_hashes` is keyed by file name in the stack dir. `images` holds the images of the
    running containers and those target references already present, keyed by image id;
    `ref_ids` maps each target reference found locally to its image id. `target_config_hashes`
    is optional: when the orchestrator computed Compose's own hashes of the target set
    (config_hashes), plan() uses them instead of its approximation.
    """

    # The host's .env holds its secrets: kept out of repr() so a logged HostFacts shows none.
    env_text: str | None = field(default=None, repr=False)
    file_hashes: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[ContainerInfo, ...] = ()
    images: Mapping[str, ImageInfo] = field(default_factory=dict)
    ref_ids: Mapping[str, str] = field(default_factory=dict)
    state: DeployState | None = None
    target_config_hashes: Mapping[str, str] | None = None

    def image_of(self, container: ContainerInfo) -> ImageInfo | None:
        """The local image a container runs, if known."""
        return self.images.get(container.image_id or "")

    def pinned_ref(self, container: ContainerInfo) -> str | None:
        """`repo@sha256:...` of what a container runs (falls back to the image id)."""
        image = self.image_of(container)
        digest = image.digest_for(container.image) if image else None
        return digest or container.image_id


def gather_host_facts(
    runner: Runner, *, project: str, stack_dir: str, target_refs: Iterable[str] = ()
) -> HostFacts:
    """Probe everything plan() needs (read-only): .env, stack file hashes, containers, images, state."""
    env_text = read_remote_env(runner, stack_dir)
    hashes = gather(runner, stack_file_hashes(stack_dir))
    containers = gather(runner, project_containers(project))
    ids = [c.id for c in containers if c.id]
    if ids:
        details = gather(runner, inspect_containers(ids))
        containers = with_details(containers, details)
    wanted = sorted({c.image_id for c in containers if c.image_id} | set(target_refs))
    images = gather(runner, inspect_images(wanted)) if wanted else []
    by_id = {image.id: image for image in images}
    ref_ids = {tag: image.id for image in images for tag in image.repo_tags}
    return HostFacts(
        env_text=env_text,
        file_hashes=hashes,
        containers=tuple(containers),
        images=by_id,
        ref_ids=ref_ids,
        state=read_state(runner, stack_dir),
    )


# --- compose labels and mounts (stacks jitsi-ops did not deploy: adopt, rollback fallback) -----

# What `docker compose` reads in a project directory when no -f is given, in Compose's order.
DEFAULT_COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
DEFAULT_OVERRIDE_FILES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)

# Labels, state and bind mounts only: never `{{json .}}` (Config.Env holds the passwords).
LABELS_TEMPLATE = (
    '{"id":{{json .Id}},"name":{{json .Name}},"image_id":{{json .Image}},'
    '"ref":{{json .Config.Image}},"state":{{json .State.Status}},'
    '"project":{{json (index .Config.Labels "com.docker.compose.project")}},'
    '"service":{{json (index .Config.Labels "com.docker.compose.service")}},'
    '"working_dir":{{json (index .Config.Labels "com.docker.compose.project.working_dir")}},'
    '"config_files":{{json (index .Config.Labels "com.docker.compose.project.config_files")}},'
    '"mounts":{{json .Mounts}}}'
)


@dataclass(frozen=True)
class Mount:
    """A container mount: host source -> container destination."""

    type: str
    source: str
    destination: str


@dataclass(frozen=True)
class ComposeContainer:
    """A container created by Compose, as its labels describe it."""

    id: str
    name: str
    image_id: str
    ref: str
    state: str
    project: str
    service: str
    working_dir: str
    config_files: tuple[str, ...]  # absolute paths, in -f order
    mounts: tuple[Mount, ...] = ()

    def mount_source(self, destination: str) -> str | None:
        """The host path mounted at `destination`, if any."""
        return next((m.source for m in self.mounts if m.destination == destination), None)


def parse_compose_labels(text: str) -> list[ComposeContainer]:
    """Output of `docker inspect --format LABELS_TEMPLATE` (one JSON object per line)."""
    found = []
    for item in _json_lines(text):
        files = str(item.get("config_files") or "")
        mounts = tuple(
            Mount(str(m.get("Type", "")), str(m.get("Source", "")), str(m.get("Destination", "")))
            for m in item.get("mounts") or ()
            if isinstance(m, dict)
        )
        found.append(
            ComposeContainer(
                id=str(item.get("id", "")),
                name=str(item.get("name", "")).lstrip("/"),
                image_id=str(item.get("image_id", "")),
                ref=str(item.get("ref", "")),
                state=str(item.get("state", "")),
                project=str(item.get("project") or ""),
                service=str(item.get("service") or ""),
                working_dir=str(item.get("working_dir") or ""),
                # Compose joins the paths with commas.
                config_files=tuple(f for f in files.split(",") if f),
                mounts=mounts,
            )
        )
    return sorted(found, key=lambda c: (c.project, c.service, c.name))


def compose_container_ids() -> Fact[list[str]]:
    """Ids of every container any Compose project created on the host."""
    argv = (
        "docker", "ps", "--all", "--quiet", "--no-trunc",
        "--filter", "label=com.docker.compose.project",
    )  # fmt: skip
    return Fact("compose container ids", argv, lambda out: out.split())


def inspect_compose_labels(ids: Sequence[str]) -> Fact[list[ComposeContainer]]:
    """Compose labels, state and mounts of containers (exit 1: a vanished one is absent)."""
    argv = ("docker", "inspect", "--type", "container", "--format", LABELS_TEMPLATE, *ids)
    return Fact("compose labels", argv, parse_compose_labels, frozenset({0, 1}))


def running_compose_files(runner: Runner, ids: Sequence[str]) -> tuple[str, ...]:
    """File names (in -f order) the given containers were created from; () when unknown."""
    if not ids:
        return ()
    for container in gather(runner, inspect_compose_labels(ids)):
        if container.config_files:
            return tuple(posixpath.basename(f) for f in container.config_files)
    return ()
