"""Pure derivations and parsers of the verify suite: no I/O, table-tested in tests/unit.

Two kinds of functions live here. Derivations say what a healthy deployment of an environment
must look like (the config.js values its rendered `.env` implies, the image references it pins,
the socket.io namespace a Jitsi client derives from the collab URL). Parsers read what a host
or a server reported (`docker compose ps`, `docker inspect`, `df`, `ip addr`, version strings).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from jitsi_ops import commands
from jitsi_ops.composeset import load_yaml
from jitsi_ops.versions import Layout, parse_release

# Supported floors. The testbed runs Engine 20.10 (Debian 12's docker.io) and Compose 2.26; 2.20
# is the oldest Compose v2 jitsi-ops supports by policy (it passes -p, -f, --env-file and
# --project-directory together and reads `ps --format json`, whose shape changed in 2.21:
# parse_compose_ps reads both shapes).
MIN_DOCKER_VERSION: tuple[int, ...] = (20, 10)
MIN_COMPOSE_VERSION: tuple[int, ...] = (2, 20)

# Upstream template default when PUBLIC_URL is unset (jitsi-facts 2.1).
DEFAULT_PUBLIC_URL = "https://localhost:8443"
DEFAULT_JICOFO_REST_PORT = 8888
DEFAULT_JVB_COLIBRI_PORT = 8080
DEFAULT_JVB_PORT = 10000
ROOTLESS_UID = 1000

_FALSE_WORDS = frozenset({"0", "false", "f"})
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_STABLE_TAG_RE = re.compile(r"stable-(\d{4,6})(?:-(\d{1,3}))?")


def flag(values: Mapping[str, str], key: str, default: bool) -> bool:
    """A flag as upstream's templates read it (jitsi/tpl toBool): unset or empty -> default."""
    word = values.get(key, "").strip().lower()
    if not word:
        return default
    # tpl treats any non-empty word other than 0/false/f as true (jitsi-facts 2.9).
    return word not in _FALSE_WORDS


def int_value(values: Mapping[str, str], key: str, default: int) -> int:
    """An integer setting, or the compose default when unset or not a number."""
    try:
        return int(values.get(key, "").strip())
    except ValueError:
        return default


def public_url(values: Mapping[str, str]) -> str:
    """PUBLIC_URL as the web container sees it (template default when unset)."""
    return values.get("PUBLIC_URL", "").strip() or DEFAULT_PUBLIC_URL


@dataclass(frozen=True)
class Origin:
    """scheme://host:port of a URL, with the port made explicit."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """host:port (IPv6 in brackets), as it appears in a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base(self) -> str:
        """scheme://host:port without a path."""
        return f"{self.scheme}://{self.netloc}"


def origin_of(url: str) -> Origin:
    """The origin of an http(s) URL; ValueError when it has no host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Origin(parts.scheme, parts.hostname, port)


def expected_config_js(values: Mapping[str, str]) -> dict[str, str | None]:
    """The config.js values the rendered `.env` implies; None means "must be absent".

    Mirrors upstream's web templates (jitsi-facts 5.2): system-config.js strips `https://` and a
    trailing `/` from PUBLIC_URL for bosh/websocket; settings-config.js uses the raw PUBLIC_URL
    for etherpad_base and the whiteboard. The tenant `subdir` is '' for /config.js at the root.
    """
    raw = public_url(values)
    stripped = raw.removeprefix("https://").removesuffix("/")
    domain = values.get("XMPP_DOMAIN", "").strip() or "meet.jitsi"
    muc = values.get("XMPP_MUC_DOMAIN", "").strip() or f"muc.{domain}"
    expected: dict[str, str | None] = {"hosts.domain": domain}
    if flag(values, "ENABLE_SUBDOMAINS", True):
        # Upstream builds it as '<first label of XMPP_MUC_DOMAIN>.' + subdomain + XMPP_DOMAIN.
        expected["hosts.muc"] = f"{muc.split('.')[0]}.{domain}"
    else:
        expected["hosts.muc"] = muc
    if flag(values, "BOSH_RELATIVE", False):
        expected["bosh"] = "/http-bind"
    else:
        expected["bosh"] = f"https://{stripped}/http-bind"
    if flag(values, "ENABLE_XMPP_WEBSOCKET", True):
        expected["websocket"] = f"wss://{stripped}/xmpp-websocket"
    else:
        expected["websocket"] = None
    collab = whiteboard_url(values)
    if collab:
        expected["whiteboard.collabServerBaseUrl"] = collab
    etherpad = etherpad_base(values)
    if etherpad:
        expected["etherpad_base"] = etherpad
    return expected


def whiteboard_url(values: Mapping[str, str]) -> str:
    """config.whiteboard.collabServerBaseUrl, or '' when the whiteboard is off."""
    public = values.get("WHITEBOARD_COLLAB_SERVER_PUBLIC_URL", "").strip()
    if public:
        return public
    if values.get("WHITEBOARD_COLLAB_SERVER_URL_BASE", "").strip():
        return public_url(values)
    return ""


def etherpad_base(values: Mapping[str, str]) -> str:
    """config.etherpad_base, or '' when etherpad is off."""
    public = values.get("ETHERPAD_PUBLIC_URL", "").strip()
    if public:
        return public
    if values.get("ETHERPAD_URL_BASE", "").strip():
        return f"{public_url(values)}/etherpad/p/"
    return ""


def config_mismatches(expected: Mapping[str, str | None], served: Mapping[str, Any]) -> list[str]:
    """One line per config.js key whose served value differs from the expected one."""
    lines = []
    for key, want in expected.items():
        node: Any = served
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        got = node if node not in ("", None) else None
        if got != want:
            shown = "absent" if got is None else repr(got)
            wanted = "absent" if want is None else repr(want)
            lines.append(f"{key}: served {shown}, expected {wanted}")
    return lines


def socketio_target(collab_url: str) -> tuple[str, str]:
    """(server URL, namespace) a socket.io client derives from a URL, like socket.io-client's io().

    io(uri) connects to scheme://host:port under the default `/socket.io` path and joins the
    URI's path as the namespace: `https://m.example/socket.io/` means namespace `/socket.io/`,
    which excalidraw-backend refuses with "Invalid namespace" (jitsi-facts 7 #8).
    """
    parts = urlsplit(collab_url.strip())
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"not a URL a socket.io client can connect to: {collab_url!r}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}", parts.path or "/"


@dataclass(frozen=True)
class Publisher:
    """One published port of a container, as `docker compose ps` reports it."""

    address: str
    target: int
    published: int
    protocol: str


@dataclass(frozen=True)
class Container:
    """One container of the compose project (`docker compose ps --all --format json`)."""

    name: str
    service: str
    state: str
    status: str
    exit_code: int
    image: str
    publishers: tuple[Publisher, ...]


def _json_documents(text: str) -> list[Any]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        document = json.loads(text)
        return list(document) if isinstance(document, list) else [document]
    # Compose >= 2.21 prints one JSON object per line.
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parse_compose_ps(text: str) -> list[Container]:
    """Containers from `compose ps --format json` output (a JSON array or JSON lines)."""
    containers = []
    for item in _json_documents(text):
        if not isinstance(item, dict):
            continue
        publishers = tuple(
            Publisher(
                address=str(p.get("URL") or ""),
                target=int(p.get("TargetPort") or 0),
                published=int(p.get("PublishedPort") or 0),
                protocol=str(p.get("Protocol") or "tcp"),
            )
            for p in item.get("Publishers") or ()
            if isinstance(p, dict) and p.get("PublishedPort")
        )
        containers.append(
            Container(
                name=str(item.get("Name", "")),
                service=str(item.get("Service", "")),
                state=str(item.get("State", "")),
                status=str(item.get("Status", "")),
                exit_code=int(item.get("ExitCode") or 0),
                image=str(item.get("Image", "")),
                publishers=publishers,
            )
        )
    return containers


@dataclass(frozen=True)
class Inspected:
    """What `docker inspect` says about one container."""

    name: str
    service: str
    status: str
    restarting: bool
    restart_count: int
    config_image: str
    image_id: str


def parse_inspect(text: str) -> dict[str, Inspected]:
    """Containers by compose service from `docker inspect` JSON."""
    found: dict[str, Inspected] = {}
    for item in _json_documents(text):
        if not isinstance(item, dict):
            continue
        config = item.get("Config") or {}
        state = item.get("State") or {}
        labels = config.get("Labels") or {}
        service = str(labels.get("com.docker.compose.service", ""))
        entry = Inspected(
            name=str(item.get("Name", "")).lstrip("/"),
            service=service,
            status=str(state.get("Status", "")),
            restarting=bool(state.get("Restarting", False)),
            restart_count=int(item.get("RestartCount") or 0),
            config_image=str(config.get("Image", "")),
            image_id=str(item.get("Image", "")),
        )
        found[service or entry.name] = entry
    return found


def parse_version(text: str) -> tuple[int, ...] | None:
    """(major, minor, patch) from `20.10.24+dfsg1`, `v2.26.1`, `2.26.1-4`; None if unreadable."""
    match = _VERSION_RE.search(text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def version_text(version: Sequence[int]) -> str:
    """1.2.3 from (1, 2, 3)."""
    return ".".join(str(part) for part in version)


def at_least(version: Sequence[int], floor: Sequence[int]) -> bool:
    """Whether `version` >= `floor`, comparing as many parts as the floor has."""
    padded = tuple(version) + (0,) * max(0, len(floor) - len(version))
    return padded[: len(floor)] >= tuple(floor)


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?\}", re.DOTALL)


def _find_close(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text.startswith("${", index):
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unterminated ${{ in {text!r}")


def interpolate_compose(text: str, values: Mapping[str, str]) -> str:
    """Compose-style `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}` (nested), `$$`."""
    out: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith("$$", index):
            out.append("$")
            index += 2
        elif text.startswith("${", index):
            close = _find_close(text, index)
            match = _VAR_RE.fullmatch(text[index : close + 1])
            if not match:
                raise ValueError(f"unsupported interpolation {text[index : close + 1]!r}")
            name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
            value = values.get(name)
            if operator == ":-":
                out.append(value if value else interpolate_compose(argument, values))
            elif operator == "-":
                out.append(value if value is not None else interpolate_compose(argument, values))
            elif operator == ":+":
                out.append(interpolate_compose(argument, values) if value else "")
            elif operator == "+":
                out.append(interpolate_compose(argument, values) if value is not None else "")
            else:
                out.append(value or "")
            index = close + 1
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def expected_images(
    compose_dir: Path, files: Iterable[str], values: Mapping[str, str]
) -> dict[str, str]:
    """Image reference of every service in the deployed compose files, interpolated like Compose.

    Reading the shipped compose files (rather than repeating their defaults here) keeps one
    source of truth for registries, tags and third-party pins.
    """
    images: dict[str, str] = {}
    for name in files:
        document = load_yaml((compose_dir / name).read_bytes())
        for service, spec in (document.get("services") or {}).items():
            if isinstance(spec, dict) and spec.get("image"):
                images[str(service)] = interpolate_compose(str(spec["image"]), values)
    return images


def normalise_image(ref: str) -> str:
    """Canonical form of an image reference: docker.io/library prefixes dropped, tag explicit."""
    ref = ref.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        digest = "@" + digest
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    ref = ref.removeprefix("library/")
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        ref += ":latest"
    return ref + digest


ALL_IPV4 = "0.0.0.0"  # noqa: S104 - compared with, never bound to


def is_wildcard(address: str) -> bool:
    """Whether a bind address means "all interfaces"."""
    return address.strip("[]") in ("", ALL_IPV4, "::", "*")


def is_loopback(address: str) -> bool:
    """Whether a bind address is a loopback address."""
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


def publishers_of(
    containers: Iterable[Container], service: str, target: int, protocol: str
) -> list[Publisher]:
    """Published bindings of one container port of a service."""
    return [
        p
        for c in containers
        if c.service == service
        for p in c.publishers
        if p.target == target and p.protocol == protocol
    ]


def binding_problems(
    bindings: Sequence[Publisher], port: int, publish_address: str, what: str
) -> list[str]:
    """Why the bindings of a public port are wrong: missing, other port, or other address.

    Upstream publishes on all interfaces; jitsi-ops' PUBLISH_ADDRESS narrows that to one address.
    """
    if not bindings:
        return [f"{what} is not published (no binding for host port {port})"]
    problems = []
    ports = sorted({b.published for b in bindings})
    if ports != [port]:
        problems.append(f"{what} published on host port(s) {ports}, expected {port}")
    addresses = sorted({b.address or ALL_IPV4 for b in bindings})
    if publish_address:
        if addresses != [publish_address]:
            problems.append(
                f"{what} bound to {addresses}, expected PUBLISH_ADDRESS {publish_address}"
            )
    elif not all(is_wildcard(a) for a in addresses):
        problems.append(f"{what} bound to {addresses}, expected all interfaces")
    return problems


def describe_bindings(bindings: Sequence[Publisher]) -> str:
    """`127.0.0.1:8443->8443/tcp, ...` for reports."""
    return ", ".join(
        f"{b.address or ALL_IPV4}:{b.published}->{b.target}/{b.protocol}" for b in bindings
    )


@dataclass(frozen=True)
class DiskFree:
    """Free space of the file system holding one path."""

    path: str
    mount: str
    available_mb: int


def parse_df(text: str, paths: Sequence[str]) -> list[DiskFree]:
    """`df -P -k PATH...` output, one entry per path in argument order."""
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    entries = []
    for path, line in zip(paths, lines, strict=False):
        fields = line.split()
        if len(fields) < 6:
            continue
        entries.append(DiskFree(path, fields[5], int(fields[3]) // 1024))
    return entries


def parse_ip_addresses(text: str) -> list[str]:
    """Addresses from `ip -o addr show` (no prefix length, no zone)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("inet", "inet6"):
            found.append(fields[3].split("/")[0].split("%")[0])
    return found


STAT_FORMAT = "%n|%F|%u|%g|%a"


@dataclass(frozen=True)
class StatInfo:
    """Kind, owner and mode of one path (`stat -L -c STAT_FORMAT`)."""

    kind: str
    uid: int
    gid: int
    mode: int


def parse_stat(text: str) -> dict[str, StatInfo]:
    """Paths to StatInfo from `stat -L -c '%n|%F|%u|%g|%a' PATH...` output (missing paths absent)."""
    found = {}
    for line in text.splitlines():
        parts = line.rsplit("|", 4)
        if len(parts) != 5:
            continue
        path, kind, uid, gid, mode = parts
        try:
            found[path] = StatInfo(kind, int(uid), int(gid), int(mode, 8))
        except ValueError:
            continue
    return found


def writable_by(uid: int, gid: int, mode: int, who: int = ROOTLESS_UID) -> bool:
    """Whether uid/gid `who` (containers run as 1000:1000) may create files in a directory."""
    if who == 0:
        return True
    if uid == who:
        return mode & 0o300 == 0o300
    if gid == who:
        return mode & 0o030 == 0o030
    return mode & 0o003 == 0o003


def advertised_addresses(value: str) -> list[str]:
    """Addresses of JVB_ADVERTISE_IPS: comma separated `IP` or `IP#port` items, empties dropped."""
    found = []
    for item in value.split(","):
        address = item.strip().split("#", 1)[0].strip().strip("[]")
        if address:
            found.append(address)
    return found


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def advertise_verdict(
    advertised: Sequence[str], host_addresses: Sequence[str], nat_addresses: Sequence[str]
) -> tuple[bool, str]:
    """(matches, observed): does JVB advertise an address of its host or of the host's NAT?"""
    if not advertised:
        return False, "JVB_ADVERTISE_IPS is not set"
    for address in advertised:
        if any(_same_address(address, h) for h in host_addresses):
            return True, f"{address} is an address of the host"
        if any(_same_address(address, n) for n in nat_addresses):
            return True, f"{address} is the address the host is reached at (NAT/public)"
    known = sorted(set(host_addresses) | set(nat_addresses))
    return False, f"advertised {list(advertised)}; host/NAT addresses {known}"


def jvb_version_verdict(reported: str, release: str | None) -> tuple[str, str]:
    """("pass" | "fail" | "warn", observed) for jvb /about/version against the pinned release.

    An image built as a release tag reports that tag (or its build number); upstream's jvb
    reports its own package version (e.g. 2.3.x-gHASH), which no table maps to a docker tag:
    that is a warning, never a silent pass.
    """
    if not reported:
        return "fail", "no version in the /about/version answer"
    if not release:
        return "warn", f"jvb reports {reported!r}; no release is pinned to compare with"
    pinned = parse_release(release)
    tag = _STABLE_TAG_RE.search(reported)
    if reported == release or (tag is not None and parse_release(tag.group(0)) == pinned):
        return "pass", f"jvb reports {reported}"
    if tag is not None:
        return "fail", f"jvb reports {reported}, pinned release is {release}"
    if pinned is not None and str(pinned.base) in reported:
        return "pass", f"jvb reports {reported} (build {pinned.base})"
    return "warn", f"jvb reports {reported!r}, which does not name a release; pinned {release}"


def bosh_session_request(domain: str, rid: int) -> str:
    """The XEP-0124/0206 session creation request a Jitsi client sends to /http-bind."""
    return (
        f"<body rid='{rid}' xmlns='http://jabber.org/protocol/httpbind' to='{domain}' "
        "xml:lang='en' wait='10' hold='1' ver='1.6' xmpp:version='1.0' "
        "xmlns:xmpp='urn:xmpp:xbosh'/>"
    )


def bosh_sid(text: str) -> str | None:
    """The session id of a BOSH session-creation response, None if it is not one."""
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - our own probe's response, no entities
    except ElementTree.ParseError:
        return None
    if root.get("type") == "terminate":
        return None
    return root.get("sid") or None


def bosh_condition(text: str) -> str:
    """The terminate condition of a refused BOSH request, or a short excerpt."""
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - our own probe's response
    except ElementTree.ParseError:
        return excerpt(text)
    return root.get("condition") or excerpt(text)


def excerpt(text: str, limit: int = 160) -> str:
    """One line of at most `limit` characters for reports."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def layout_dirs(layout: Layout) -> tuple[str, ...]:
    """CONFIG sub-directories that must exist (rootless: uid 1000 writable ones)."""
    return commands.ROOTLESS_WRITABLE if layout is Layout.ROOTLESS else commands.LEGACY_DIRS
