"""The verify suite: every check as (id, host, description) -> CheckResult, built from the
environment (hosts and roles, rendered values, enabled components).

Groups, in the order they run and are reported:
  host.*        Docker/Compose versions, containers, restarts, images, .env, CONFIG dirs, disk
  sockets.*     published ports; jicofo/jvb REST on 127.0.0.1 only
  web.*         `/`, config.js against the rendered .env, custom-*.js served, HTTP->HTTPS redirect,
                TLS certificate
  signalling.*  BOSH session creation, XMPP websocket upgrade
  conference.*  jicofo bridges and health, jvb health and version on every JVB host
  collab.*      whiteboard through socket.io like the Jitsi client, etherpad pad page
  media.*       JVB_ADVERTISE_IPS against the JVB host's addresses (static; warning only);
                ICE connectivity checks from here to every bridge's candidates (media.ice)
Every failure says what was observed; hints say where to look next.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import requests
import socketio
import websocket

from jitsi_ops import commands
from jitsi_ops.errors import OpsError
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify import custom, derive, media
from jitsi_ops.verify.facts import Facts
from jitsi_ops.verify.hostside import peer_address
from jitsi_ops.verify.model import Check, CheckFunc, CheckResult, failed, passed, warned
from jitsi_ops.verify.tlstrust import cert_info, peer_certificate
from jitsi_ops.versions import Layout

Scope = Literal["main", "every_host"]


@dataclass(frozen=True)
class CheckDef:
    """A registered check: where it runs (the main host or every host), how it behaves."""

    id: str
    description: str
    func: CheckFunc
    scope: Scope
    settles: bool
    enabled: Callable[[Mapping[str, str]], bool]


REGISTRY: dict[str, CheckDef] = {}


def _always(_values: Mapping[str, str]) -> bool:
    return True


def check(
    check_id: str,
    description: str,
    *,
    scope: Scope,
    settles: bool = True,
    enabled: Callable[[Mapping[str, str]], bool] = _always,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check; the suite runs them in registration order (the report order)."""

    def register(func: CheckFunc) -> CheckFunc:
        if check_id in REGISTRY:
            raise ValueError(f"duplicate check id {check_id}")
        REGISTRY[check_id] = CheckDef(check_id, description, func, scope, settles, enabled)
        return func

    return register


# ---- host ----------------------------------------------------------------------------------


def _version_check(
    facts: Facts, host: Host, argv: list[str], what: str, floor: tuple[int, ...]
) -> CheckResult:
    result = facts.runner(host).run(argv, check=False, timeout=facts.timeout())
    if not result.ok:
        return failed(
            f"`{' '.join(argv)}` exited {result.exit_code}: {derive.excerpt(result.stderr)}",
            hint="is Docker installed and running, and may the deploy user use it?",
        )
    shown = result.stdout.strip()
    version = derive.parse_version(shown)
    if version is None:
        return failed(f"cannot read a version from {shown!r}", final=True)
    if not derive.at_least(version, floor):
        return failed(
            f"{what} {shown} is older than the supported minimum {derive.version_text(floor)}",
            hint=f"upgrade {what} on {host.label}",
            final=True,
        )
    return passed(f"{what} {shown} (minimum {derive.version_text(floor)})")


@check(
    "host.docker", "Docker Engine at least the supported minimum", scope="every_host", settles=False
)
def check_docker_version(facts: Facts, host: Host) -> CheckResult:
    """Docker Engine at least the supported minimum."""
    return _version_check(
        facts, host, commands.docker_version(), "Docker Engine", derive.MIN_DOCKER_VERSION
    )


@check(
    "host.compose",
    "Docker Compose at least the supported minimum",
    scope="every_host",
    settles=False,
)
def check_compose_version(facts: Facts, host: Host) -> CheckResult:
    """Compose v2 at least the supported minimum."""
    return _version_check(
        facts, host, commands.compose_version(), "Docker Compose", derive.MIN_COMPOSE_VERSION
    )


def _logs_hint(facts: Facts, host: Host, service: str) -> str:
    project = facts.env.deploy.project
    return (
        f"see `docker compose -p {project} logs {service}` on {host.label}; "
        f"`invoke apply --env {facts.env.name}` starts missing services"
    )


@check("host.containers", "every service of the project is running", scope="every_host")
def check_containers(facts: Facts, host: Host) -> CheckResult:
    """Every expected service has a running container."""
    containers = facts.compose_ps(host)
    problems = []
    running = []
    first_bad = ""
    for service in facts.run.expected_services(host):
        mine = [c for c in containers if c.service == service]
        if not mine:
            problems.append(f"{service}: no container")
        for container in mine:
            if container.state == "running":
                running.append(service)
            else:
                detail = container.status or container.state
                problems.append(f"{service}: {container.state} ({detail})")
        if problems and not first_bad:
            first_bad = service
    if problems:
        return failed("; ".join(problems), hint=_logs_hint(facts, host, first_bad))
    return passed(f"{len(running)} running: {', '.join(running)}")


@check(
    "host.restarts",
    "nothing restarting; restart counts stable over two samples",
    scope="every_host",
)
def check_restarts(facts: Facts, host: Host) -> CheckResult:
    """No container restarting; restart counts unchanged across two samples."""
    expected = facts.run.expected_services(host)
    first = facts.inspect(host)
    facts.run.sleep(min(facts.run.restart_interval, facts.run.remaining()))
    second = facts.inspect(host, fresh=True)
    problems = []
    counts = []
    for service in expected:
        before, after = first.get(service), second.get(service)
        if before is None or after is None or after.status not in ("running", "restarting"):
            continue  # missing or stopped containers are host.containers' finding
        counts.append(f"{service} {after.restart_count}")
        if after.restarting or after.status == "restarting":
            problems.append(f"{service}: restarting (RestartCount {after.restart_count})")
        elif after.name != before.name:
            problems.append(f"{service}: container replaced between samples")
        elif after.restart_count > before.restart_count:
            problems.append(
                f"{service}: restarted during the check "
                f"(RestartCount {before.restart_count} -> {after.restart_count})"
            )
    if problems:
        first_bad = problems[0].split(":", 1)[0]
        return failed("; ".join(problems), hint=_logs_hint(facts, host, first_bad))
    return passed("restart counts stable: " + (", ".join(counts) or "no running containers"))


@check("host.images", "running images are the pinned release", scope="every_host")
def check_images(facts: Facts, host: Host) -> CheckResult:
    """Running image references equal the pinned ones, and still point at the same image."""
    expected = facts.run.expected_images()
    inspected = facts.inspect(host)
    problems = []
    checked = []
    for service in facts.run.expected_services(host):
        want, got = expected.get(service), inspected.get(service)
        if want is None or got is None:
            continue  # a missing container is host.containers' finding
        if derive.normalise_image(got.config_image) != derive.normalise_image(want):
            problems.append(f"{service} runs {got.config_image}, pinned {want}")
            continue
        current = facts.image_id(host, want)
        if current is not None and current != got.image_id:
            problems.append(
                f"{service} runs image {got.image_id[7:19]}, but {want} is now {current[7:19]} "
                "(pulled, not recreated)"
            )
            continue
        checked.append(f"{service}={want}")
    if problems:
        return failed(
            "; ".join(problems),
            hint=f"`invoke apply --env {facts.env.name}` recreates containers on the pinned images",
        )
    return passed(", ".join(checked) or "no containers to compare")


@check(
    "host.env_file",
    ".env is mode 0600 and owned by the deploy user",
    scope="every_host",
    settles=False,
)
def check_env_file(facts: Facts, host: Host) -> CheckResult:
    """The host's .env is mode 0600 and owned by the deploy user."""
    path = posixpath.join(facts.stack_dir(host), ".env")
    info = facts.testinfra(host).file(path)
    if not info.is_file:
        return failed(
            f"{path} does not exist",
            hint=f"`invoke apply --env {facts.env.name}` uploads it",
            final=True,
        )
    mode, owner, user = info.mode, info.user, facts.deploy_user(host)
    problems = []
    if mode != 0o600:
        problems.append(f"mode {mode:04o}, expected 0600")
    if owner != user:
        problems.append(f"owned by {owner}, expected the deploy user {user}")
    if problems:
        return failed(
            f"{path}: " + "; ".join(problems),
            hint=f"it holds every secret: `chmod 600 {path}` and `chown {user} {path}` on "
            f"{host.label} (apply writes it so)",
            final=True,
        )
    return passed(f"{path} 0600 {owner}")


@check(
    "host.config_dirs",
    "CONFIG dirs exist (rootless: writable by uid 1000)",
    scope="main",
    settles=False,
)
def check_config_dirs(facts: Facts, host: Host) -> CheckResult:
    """CONFIG dirs exist; on rootless releases the storage dirs are writable by uid 1000."""
    config = facts.config_dir(host)
    rootless = facts.env.layout is Layout.ROOTLESS
    subdirs = derive.layout_dirs(facts.env.layout)
    paths = [posixpath.join(config, sub) for sub in subdirs]
    # One `stat` for all dirs (a missing one only costs its line): a round trip per attribute
    # through testinfra's File would be ~20 SSH commands here.
    out = facts.runner(host).run(
        ["stat", "-L", "-c", derive.STAT_FORMAT, "--", *paths], check=False, timeout=facts.timeout()
    )
    found = derive.parse_stat(out.stdout)
    problems = []
    for sub, path in zip(subdirs, paths, strict=True):
        info = found.get(path)
        if info is None or info.kind != "directory":
            problems.append(f"{sub}: {'missing' if info is None else info.kind}")
        elif rootless and not derive.writable_by(info.uid, info.gid, info.mode):
            problems.append(
                f"{sub}: {info.uid}:{info.gid} mode {info.mode:04o}, not writable by uid 1000"
            )
    if problems:
        return failed(
            f"{config}: " + "; ".join(problems),
            hint="rootless containers (uid 1000) exit with FATAL ERROR on such dirs: "
            f"`invoke apply --env {facts.env.name}` creates them, or chown 1000:1000",
            final=True,
        )
    what = "writable by uid 1000" if rootless else "present"
    return passed(f"{len(subdirs)} dirs under {config} {what}")


@check("host.disk", "free disk above verify.min_free_disk_mb", scope="every_host", settles=False)
def check_disk(facts: Facts, host: Host) -> CheckResult:
    """Free disk above the floor where the stack, CONFIG and Docker's data live."""
    floor = facts.env.deploy.verify.min_free_disk_mb
    paths = [facts.stack_dir(host)]
    if host == facts.run.main:
        paths.append(facts.config_dir(host))
    root = facts.runner(host).run(
        ["docker", "info", "--format", "{{.DockerRootDir}}"], check=False, timeout=facts.timeout()
    )
    if root.ok and root.stdout.strip():
        paths.append(root.stdout.strip())
    entries = []
    for path in paths:
        out = facts.runner(host).run(
            ["df", "-P", "-k", "--", path], check=False, timeout=facts.timeout()
        )
        if out.ok:
            entries += derive.parse_df(out.stdout, [path])
    if not entries:
        return failed(f"`df` gave no answer for {', '.join(paths)}", final=True)
    low = [e for e in entries if e.available_mb < floor]
    shown = ", ".join(f"{e.path} {e.available_mb} MB" for e in entries)
    if low:
        return failed(
            f"below {floor} MB free: "
            + ", ".join(f"{e.path} ({e.mount}) {e.available_mb} MB" for e in low),
            hint="free space (e.g. `docker image prune`) or lower verify.min_free_disk_mb",
            final=True,
        )
    return passed(f"free: {shown} (floor {floor} MB)")


# ---- sockets -------------------------------------------------------------------------------


def _public_port_check(
    facts: Facts, host: Host, *, service: str, target: int, port: int, protocol: str, what: str
) -> CheckResult:
    bindings = derive.publishers_of(facts.compose_ps(host), service, target, protocol)
    publish = facts.host_values(host).get("PUBLISH_ADDRESS", "").strip()
    problems = derive.binding_problems(bindings, port, publish, what)
    if problems:
        return failed(
            "; ".join(problems),
            hint=f"is {service} running? compare {what} with the compose ports and PUBLISH_ADDRESS",
        )
    return passed(derive.describe_bindings(bindings))


def _web_ports(facts: Facts) -> tuple[int, int]:
    return (8000, 8443) if facts.env.layout is Layout.ROOTLESS else (80, 443)


@check("sockets.http", "HTTP_PORT published", scope="main")
def check_http_published(facts: Facts, host: Host) -> CheckResult:
    """HTTP_PORT published by the web container."""
    port = derive.int_value(facts.values, "HTTP_PORT", 80)
    return _public_port_check(
        facts,
        host,
        service="web",
        target=_web_ports(facts)[0],
        port=port,
        protocol="tcp",
        what="HTTP_PORT",
    )


@check("sockets.https", "HTTPS_PORT published", scope="main")
def check_https_published(facts: Facts, host: Host) -> CheckResult:
    """HTTPS_PORT published by the web container."""
    port = derive.int_value(facts.values, "HTTPS_PORT", 443)
    return _public_port_check(
        facts,
        host,
        service="web",
        target=_web_ports(facts)[1],
        port=port,
        protocol="tcp",
        what="HTTPS_PORT",
    )


@check(
    "sockets.jvb_udp",
    "JVB_PORT/udp published (all interfaces or PUBLISH_ADDRESS)",
    scope="every_host",
)
def check_jvb_udp(facts: Facts, host: Host) -> CheckResult:
    """JVB_PORT/udp published on all interfaces (or on PUBLISH_ADDRESS when set)."""
    port = derive.int_value(facts.host_values(host), "JVB_PORT", derive.DEFAULT_JVB_PORT)
    return _public_port_check(
        facts, host, service="jvb", target=port, port=port, protocol="udp", what="JVB_PORT/udp"
    )


def _wildcard_listeners(facts: Facts, host: Host, port: int) -> list[str]:
    listening = facts.testinfra(host).socket.get_listening_sockets()
    found = []
    for spec in listening:
        if not spec.startswith("tcp://"):
            continue
        address, _, number = spec[len("tcp://") :].rpartition(":")
        if number == str(port) and derive.is_wildcard(address):
            found.append(spec)
    return found


def _rest_local_check(
    facts: Facts, host: Host, service: str, target: int, port: int
) -> CheckResult:
    bindings = derive.publishers_of(facts.compose_ps(host), service, target, "tcp")
    if not bindings:
        return failed(
            f"{service} REST is not published on 127.0.0.1:{port}",
            hint=f"is {service} running? the compose file publishes it on 127.0.0.1 only",
        )
    public = [b for b in bindings if not derive.is_loopback(b.address)]
    if public:
        return failed(
            f"{service} REST published on {derive.describe_bindings(public)}: reachable from outside",
            hint="jicofo/jvb REST must stay on 127.0.0.1; remove the override that publishes it",
            final=True,
        )
    wildcard = _wildcard_listeners(facts, host, port)
    if wildcard:
        return failed(
            f"something listens on {', '.join(wildcard)} on the host (port {port} on all interfaces)",
            hint=f"find it with `ss -ltnp 'sport = :{port}'` on {host.label}",
            final=True,
        )
    return passed(f"{derive.describe_bindings(bindings)}; no wildcard listener on {port}")


@check("sockets.jicofo_rest", "jicofo REST on 127.0.0.1 only", scope="main")
def check_jicofo_rest_local(facts: Facts, host: Host) -> CheckResult:
    """jicofo REST bound to 127.0.0.1 only."""
    port = derive.int_value(facts.values, "JICOFO_REST_PORT", derive.DEFAULT_JICOFO_REST_PORT)
    return _rest_local_check(facts, host, "jicofo", 8888, port)


@check("sockets.jvb_rest", "jvb REST on 127.0.0.1 only", scope="every_host")
def check_jvb_rest_local(facts: Facts, host: Host) -> CheckResult:
    """jvb REST (colibri) bound to 127.0.0.1 only."""
    port = derive.int_value(
        facts.host_values(host), "JVB_COLIBRI_PORT", derive.DEFAULT_JVB_COLIBRI_PORT
    )
    return _rest_local_check(facts, host, "jvb", 8080, port)


# ---- web -----------------------------------------------------------------------------------


def _redirect_enabled(values: Mapping[str, str]) -> bool:
    return derive.flag(values, "ENABLE_HTTP_REDIRECT", False)


def _websocket_enabled(values: Mapping[str, str]) -> bool:
    return derive.flag(values, "ENABLE_XMPP_WEBSOCKET", True)


def _jicofo_health_enabled(values: Mapping[str, str]) -> bool:
    return derive.flag(values, "JICOFO_ENABLE_HEALTH_CHECKS", False)


def _whiteboard_enabled(values: Mapping[str, str]) -> bool:
    return bool(derive.whiteboard_url(values))


def _etherpad_enabled(values: Mapping[str, str]) -> bool:
    return bool(derive.etherpad_base(values))


@check("web.root", "GET / over PUBLIC_URL answers 200", scope="main")
def check_web_root(facts: Facts, _host: Host) -> CheckResult:
    """GET / over PUBLIC_URL answers 200."""
    url = facts.base_url()
    response = facts.session().get(url, timeout=facts.timeout(), allow_redirects=False)
    if response.status_code != 200:
        return failed(
            f"GET {url} answered {response.status_code}", hint="see the web container logs"
        )
    return passed(f"GET {url} 200 ({len(response.content)} bytes)")


@check("web.config_js", "config.js values equal what the rendered .env implies", scope="main")
def check_config_js(facts: Facts, _host: Host) -> CheckResult:
    """config.js values equal what the rendered .env implies."""
    served = facts.served_config()
    expected = derive.expected_config_js(facts.values)
    mismatches = derive.config_mismatches(expected, served)
    if mismatches:
        return failed(
            "; ".join(mismatches),
            hint="the web container renders config.js from its .env at start: a stale or "
            f"unapplied PUBLIC_URL shows here; `invoke apply --env {facts.env.name}` recreates web",
            final=True,
        )
    return passed(", ".join(f"{k}={v if v is not None else 'absent'}" for k, v in expected.items()))


# The operator's CONFIG/web/custom-*.js survive upgrades only if web still appends them (custom.py).
check(custom.CHECK_ID, custom.DESCRIPTION, scope="main")(custom.check_custom_config)


@check("web.redirect", "HTTP redirects to HTTPS", scope="main", enabled=_redirect_enabled)
def check_redirect(facts: Facts, _host: Host) -> CheckResult:
    """HTTP_PORT redirects to HTTPS (ENABLE_HTTP_REDIRECT)."""
    origin = derive.origin_of(facts.public_url())
    port = derive.int_value(facts.values, "HTTP_PORT", 80)
    url = f"http://{derive.Origin('http', origin.host, port).netloc}/"
    response = facts.session().get(url, timeout=facts.timeout(), allow_redirects=False)
    location = response.headers.get("Location", "")
    if response.status_code not in (301, 302, 307, 308) or not location.startswith("https://"):
        return failed(
            f"GET {url} answered {response.status_code}"
            + (f" to {location}" if location else " without a redirect"),
            hint="ENABLE_HTTP_REDIRECT=1 makes the web container answer HTTP with a redirect",
        )
    try:
        target = derive.origin_of(location)
    except ValueError:
        return failed(f"GET {url} redirects to an unusable {location!r}", final=True)
    if target != origin:
        return warned(
            f"{url} redirects to {location}, but PUBLIC_URL is {facts.public_url()}",
            hint="upstream's redirect drops a non-443 port; users following it miss the port",
        )
    return passed(f"{url} -> {response.status_code} {location}")


@check(
    "web.tls",
    "TLS certificate trusted, valid for the PUBLIC_URL host, not expiring soon",
    scope="main",
)
def check_tls(facts: Facts, _host: Host) -> CheckResult:
    """The certificate served for PUBLIC_URL is trusted, valid for its host, not expiring soon."""
    origin = derive.origin_of(facts.public_url())
    if origin.scheme != "https":
        return failed(f"PUBLIC_URL {facts.public_url()} is not https://", final=True)
    trust = facts.trust()
    try:
        der = peer_certificate(origin, trust.ssl_context(), facts.timeout())
        trust.check_peer(der)
    except ssl.SSLError as exc:
        # A verification failure is the finding itself (wrong name, unknown CA, not the pin).
        return failed(
            f"{origin.netloc}: {getattr(exc, 'verify_message', '') or exc}",
            hint=f"trust: {trust.describe()}; fix the certificate or deploy.toml [verify]",
        )
    info = cert_info(der)
    days = info.days_left()
    expires = f"{info.not_after:%Y-%m-%d} ({days} days)"
    if days < 0:
        return failed(f"certificate expired {expires}", hint="renew the certificate", final=True)
    names = (
        "host name not checked: certificate pinned by fingerprint"
        if trust.mode == "pinned"
        else f"valid for {origin.host}"
    )
    warn_days = facts.env.deploy.verify.cert_warning_days
    if days < warn_days:
        return warned(
            f"certificate for {info.names()} expires {expires}, within {warn_days} days",
            hint="renew it (ENABLE_LETSENCRYPT renews automatically when HTTP_PORT 80 is reachable)",
        )
    return passed(f"{trust.describe()}; {names}; names {info.names()}; expires {expires}")


# ---- signalling ----------------------------------------------------------------------------


def _domain(facts: Facts) -> str:
    return facts.values.get("XMPP_DOMAIN", "").strip() or "meet.jitsi"


@check("signalling.bosh", "BOSH session creation through /http-bind", scope="main")
def check_bosh(facts: Facts, _host: Host) -> CheckResult:
    """A BOSH session is created through /http-bind."""
    url = facts.base_url() + "http-bind"
    domain = _domain(facts)
    rid = secrets.randbelow(10**9) + 10**6
    session = facts.session()
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    response = session.post(
        url, data=derive.bosh_session_request(domain, rid), headers=headers, timeout=facts.timeout()
    )
    if response.status_code != 200:
        return failed(
            f"POST {url} answered {response.status_code}: {derive.excerpt(response.text)}",
            hint="web proxies /http-bind to prosody (XMPP_BOSH_URL_BASE): see web and prosody logs",
        )
    sid = derive.bosh_sid(response.text)
    if not sid:
        return failed(
            f"POST {url}: no session for {domain}: {derive.bosh_condition(response.text)}",
            hint="prosody refused the session: is XMPP_DOMAIN the domain prosody serves?",
        )
    # Be polite: end the probe's session instead of leaving it to prosody's inactivity timer.
    terminate = (
        f"<body rid='{rid + 1}' sid='{sid}' type='terminate' "
        "xmlns='http://jabber.org/protocol/httpbind'/>"
    )
    with contextlib.suppress(requests.RequestException):
        session.post(url, data=terminate, headers=headers, timeout=facts.timeout())
    return passed(f"POST {url}: BOSH session created for {domain}")


@check(
    "signalling.websocket",
    "XMPP websocket upgrade (101) on /xmpp-websocket",
    scope="main",
    enabled=_websocket_enabled,
)
def check_xmpp_websocket(facts: Facts, _host: Host) -> CheckResult:
    """An XMPP websocket upgrade on /xmpp-websocket answers 101 and opens a stream."""
    stripped = facts.public_url().removeprefix("https://").removesuffix("/")
    url = f"wss://{stripped}/xmpp-websocket"
    trust = facts.trust()
    domain = _domain(facts)
    try:
        ws = websocket.create_connection(
            url,
            timeout=facts.timeout(),
            subprotocols=["xmpp"],
            sslopt={"context": trust.ssl_context()},
            http_no_proxy=["*"],  # like trust_env=False: no proxy from the shell
        )
    except websocket.WebSocketBadStatusException as exc:
        return failed(
            f"{url}: upgrade refused with HTTP {exc.status_code}",
            hint="ENABLE_XMPP_WEBSOCKET must be on in web and prosody; a proxy in front must "
            "forward Upgrade headers",
        )
    try:
        sock = ws.sock
        trust.check_peer(
            sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        )
        status = ws.getstatus()
        ws.send(f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>")
        reply = ws.recv()
    finally:
        ws.close()
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    if status != 101 or "<open" not in text:
        return failed(f"{url}: status {status}, stream answer {derive.excerpt(text)!r}")
    return passed(f"{url}: 101, prosody opened an XMPP stream for {domain}")


# ---- conference ----------------------------------------------------------------------------


def _jicofo_get(facts: Facts, path: str) -> tuple[int, str]:
    """(status, body) of a jicofo REST path, via SSH to 127.0.0.1 or, without JICOFO_ENABLE_REST,
    from inside the container (jicofo then binds 127.0.0.1 in its own network namespace)."""
    main = facts.run.main
    if derive.flag(facts.values, "JICOFO_ENABLE_REST", False):
        port = derive.int_value(facts.values, "JICOFO_REST_PORT", derive.DEFAULT_JICOFO_REST_PORT)
        try:
            answer = facts.loopback(main, port, path)
        except ConnectionError as exc:
            raise OpsError(
                f"jicofo REST: {exc}",
                hint="is jicofo running? see host.containers and sockets.jicofo_rest",
            ) from None
        return answer.status, answer.body
    argv = [
        *facts.compose_target().base(),
        "exec",
        "-T",
        "jicofo",
        "curl",
        "-sS",
        "--max-time",
        str(int(facts.timeout())),
        "-w",
        "\n%{http_code}",
        f"http://127.0.0.1:8888{path}",
    ]
    result = facts.runner(main).run(argv, check=False, timeout=facts.timeout() + 5)
    if not result.ok:
        raise ConnectionError(f"curl in jicofo failed: {derive.excerpt(result.stderr)}")
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


@check("conference.bridges", "jicofo operational_bridge_count >= JVB hosts", scope="main")
def check_bridges(facts: Facts, _host: Host) -> CheckResult:
    """jicofo /stats operational_bridge_count >= number of JVB hosts."""
    wanted = len(facts.run.jvb_hosts)
    what = "one per JVB host"
    if facts.run.expected_bridges is not None and facts.run.expected_bridges < wanted:
        wanted, what = facts.run.expected_bridges, "one per JVB host deployed so far"
    status, body = _jicofo_get(facts, "/stats")
    if status != 200:
        return failed(f"jicofo /stats answered {status}: {derive.excerpt(body)}")
    stats = json.loads(body)
    selector = (
        stats.get("bridge_selector") if isinstance(stats.get("bridge_selector"), dict) else {}
    )
    count = selector.get("operational_bridge_count", stats.get("operational_bridge_count"))
    total = selector.get("bridge_count", stats.get("bridge_count"))
    if not isinstance(count, int):
        return failed(f"jicofo /stats has no operational_bridge_count: {derive.excerpt(body)}")
    if count < wanted:
        return failed(
            f"operational_bridge_count {count} (bridge_count {total}), expected >= {wanted} "
            f"({what})",
            hint="is every jvb running (host.containers, conference.jvb_health)? A running JVB "
            "that cannot log into prosody never joins the brewery: JVB_AUTH_PASSWORD must match "
            "the account prosody stored (changed passwords need a prosody account reset); look "
            "for not-authorized in the jvb logs",
        )
    return passed(f"operational_bridge_count {count} >= {wanted} JVB host(s)")


@check(
    "conference.jicofo_health",
    "jicofo /about/health answers 200",
    scope="main",
    enabled=_jicofo_health_enabled,
)
def check_jicofo_health(facts: Facts, _host: Host) -> CheckResult:
    """jicofo /about/health answers 200 (JICOFO_ENABLE_HEALTH_CHECKS)."""
    if derive.flag(facts.values, "JICOFO_ENABLE_REST", False):
        status, body = _jicofo_get(facts, "/about/health")
        if status != 200:
            return failed(
                f"jicofo /about/health answered {status}: {derive.excerpt(body)}",
                hint="see conference.bridges and the jicofo logs",
            )
        return passed("jicofo /about/health 200")
    argv = [*facts.compose_target().base(), "exec", "-T", "jicofo", "healthcheck.sh"]
    result = facts.runner(facts.run.main).run(argv, check=False, timeout=facts.timeout() + 5)
    if not result.ok:
        return failed(
            f"jicofo healthcheck.sh exited {result.exit_code}: "
            f"{derive.excerpt(result.stdout + ' ' + result.stderr)}",
            hint="see conference.bridges and the jicofo logs",
        )
    return passed("jicofo healthcheck.sh OK")


def _jvb_get(facts: Facts, host: Host, path: str) -> tuple[int, str]:
    port = derive.int_value(
        facts.host_values(host), "JVB_COLIBRI_PORT", derive.DEFAULT_JVB_COLIBRI_PORT
    )
    try:
        answer = facts.loopback(host, port, path)
    except ConnectionError as exc:
        raise OpsError(
            f"jvb REST: {exc}",
            hint=f"is jvb running on {host.label}? see host.containers and sockets.jvb_rest",
        ) from None
    return answer.status, answer.body


@check("conference.jvb_health", "jvb /about/health answers 200", scope="every_host")
def check_jvb_health(facts: Facts, host: Host) -> CheckResult:
    """jvb /about/health answers 200 on this JVB host."""
    status, body = _jvb_get(facts, host, "/about/health")
    if status != 200:
        return failed(
            f"jvb /about/health answered {status}" + (f": {derive.excerpt(body)}" if body else ""),
            hint="an unhealthy bridge is usually not in the brewery (see conference.bridges) "
            "or its media port is unusable; see the jvb logs",
        )
    return passed("jvb /about/health 200")


@check("conference.jvb_version", "jvb /about/version matches the release", scope="every_host")
def check_jvb_version(facts: Facts, host: Host) -> CheckResult:
    """jvb /about/version matches the pinned release."""
    status, body = _jvb_get(facts, host, "/about/version")
    if status != 200:
        return failed(f"jvb /about/version answered {status}: {derive.excerpt(body)}")
    reported = str(json.loads(body).get("version", ""))
    verdict, observed = derive.jvb_version_verdict(reported, facts.env.release)
    if verdict == "pass":
        return passed(observed)
    if verdict == "warn":
        return warned(observed, hint="host.images compares the running image references")
    return failed(
        observed,
        hint=f"this bridge runs another release: `invoke apply --env {facts.env.name}`",
        final=True,
    )


# ---- collaboration -------------------------------------------------------------------------


class _CollabClient:
    """One socket.io client configured like the Jitsi whiteboard, recording room events."""

    def __init__(self, facts: Facts, origin: derive.Origin) -> None:
        trust = facts.trust()
        self.events: dict[str, threading.Event] = {
            name: threading.Event() for name in ("first-in-room", "new-user", "client-broadcast")
        }
        self.client = socketio.Client(
            reconnection=False,
            http_session=facts.session(),
            request_timeout=facts.timeout(),
            websocket_extra_options={
                "sslopt": {"context": trust.ssl_context(origin)},
                "http_no_proxy": ["*"],
            },
        )
        self.trust = trust
        self.origin = origin
        self.refusals: list[str] = []

    def _refused(self, *data: object) -> None:
        # socket.io v4 CONNECT_ERROR carries {"message": ...}: the server's own words.
        for item in data:
            message = item.get("message") if isinstance(item, dict) else item
            self.refusals.append(str(message))

    def connect(self, server: str, namespace: str, timeout: float) -> None:
        """Connect with the websocket transport only (excalidraw-backend refuses polling)."""
        for name, event in self.events.items():
            self.client.on(name, lambda *_args, _e=event: _e.set(), namespace=namespace)
        self.client.on("connect_error", self._refused, namespace=namespace)
        self.client.connect(
            server, transports=["websocket"], namespaces=[namespace], wait_timeout=timeout
        )
        ws = getattr(getattr(self.client, "eio", None), "ws", None)
        sock = getattr(ws, "sock", None)
        if sock is not None and hasattr(sock, "getpeercert"):
            self.trust.check_peer(sock.getpeercert(binary_form=True), self.origin)

    def close(self) -> None:
        """Disconnect (ignoring a connection that never opened)."""
        with contextlib.suppress(Exception):
            self.client.disconnect()


@check(
    "collab.whiteboard",
    "whiteboard socket.io through the configured collab URL",
    scope="main",
    enabled=_whiteboard_enabled,
)
def check_whiteboard(facts: Facts, _host: Host) -> CheckResult:
    """A socket.io client joins the whiteboard like Jitsi does and relays to a second client."""
    # The URL the rendered .env gives clients; web.config_js proves config.js serves exactly it,
    # so a stale config.js fails there once instead of here too.
    collab = derive.whiteboard_url(facts.values)
    server, namespace = derive.socketio_target(collab)
    origin = derive.origin_of(server)
    timeout = facts.timeout()
    room = "jitsi-ops-verify-" + secrets.token_hex(6)
    first, second = _CollabClient(facts, origin), _CollabClient(facts, origin)
    try:
        try:
            first.connect(server, namespace, timeout)
        except socketio.exceptions.ConnectionError as exc:
            if namespace != "/":
                hint = (
                    "the collab URL must be scheme://host[:port] with no path: socket.io turns a "
                    "path into a namespace the whiteboard backend does not serve"
                )
            else:
                hint = (
                    "web proxies /socket.io/ to WHITEBOARD_COLLAB_SERVER_URL_BASE: see the web "
                    "and whiteboard logs"
                )
            # The server's refusal ("Invalid namespace") is definitive; a failed connection
            # (backend still starting) is not.
            # Only a namespace the server rejected lands in failed_namespaces.
            rejected = bool(getattr(first.client, "failed_namespaces", None))
            said = "; ".join(first.refusals) or str(exc)
            return failed(
                f"socket.io {server} namespace {namespace!r} (from {collab}): "
                + (f"server refused: {said}" if rejected else said),
                hint=hint,
                final=rejected,
            )
        first.client.emit("join-room", room, namespace=namespace)
        if not first.events["first-in-room"].wait(timeout):
            return failed(f"connected to {server}{namespace}, but join-room got no first-in-room")
        second.connect(server, namespace, timeout)
        second.client.emit("join-room", room, namespace=namespace)
        if not first.events["new-user"].wait(timeout):
            return failed("a second client joined the room, but the first was not told")
        second.client.emit(
            "server-broadcast", (room, {"probe": room}, [0] * 12), namespace=namespace
        )
        if not first.events["client-broadcast"].wait(timeout):
            return failed("a drawing broadcast from the second client never reached the first")
    finally:
        second.close()
        first.close()
    return passed(
        f"socket.io namespace {namespace} via {server}: two clients joined a room and relayed"
    )


@check("collab.etherpad", "etherpad pad page answers", scope="main", enabled=_etherpad_enabled)
def check_etherpad(facts: Facts, _host: Host) -> CheckResult:
    """The etherpad pad page answers through PUBLIC_URL."""
    base = derive.etherpad_base(facts.values)  # served value: see check_whiteboard
    url = base + "jitsi-ops-verify-" + secrets.token_hex(6)
    response = facts.session().get(url, timeout=facts.timeout(), allow_redirects=False)
    if response.status_code != 200:
        return failed(
            f"GET {url} answered {response.status_code}",
            hint="web proxies /etherpad/ to ETHERPAD_URL_BASE: see the web and etherpad logs",
        )
    return passed(f"GET {url} 200")


# ---- media ---------------------------------------------------------------------------------


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


@check(
    "media.advertise_ips",
    "JVB_ADVERTISE_IPS has an address of the JVB host or its NAT",
    scope="every_host",
    settles=False,
)
def check_advertise_ips(facts: Facts, host: Host) -> CheckResult:
    """JVB_ADVERTISE_IPS holds an address of this JVB host or of its NAT (warning otherwise)."""
    values = facts.host_values(host)
    value = values.get("JVB_ADVERTISE_IPS", "") or values.get("DOCKER_HOST_ADDRESS", "")
    advertised = derive.advertised_addresses(value)
    out = facts.runner(host).run(["ip", "-o", "addr", "show"], check=False, timeout=facts.timeout())
    host_addresses = derive.parse_ip_addresses(out.stdout) if out.ok else []
    nat = [a for a in [peer_address(facts.runner(host))] if a]
    if host == facts.run.main:
        nat += _resolve(derive.origin_of(facts.public_url()).host)
    ok, observed = derive.advertise_verdict(advertised, host_addresses, nat)
    if ok:
        return passed(observed)
    return warned(
        observed,
        hint="clients reach the bridge at an advertised address: set JVB_ADVERTISE_IPS to this "
        "host's public (NAT) address; the third participant is where this breaks",
    )


@check(
    "media.ice",
    "a participant outside reaches the bridge's media port (ICE connectivity check)",
    scope="every_host",
)
def check_media_ice(facts: Facts, host: Host) -> CheckResult:
    """STUN Binding with ICE credentials to the candidates of a probe conference."""
    return media.media_ice(facts, host)


# ---- the suite -----------------------------------------------------------------------------


def build_suite(env: Environment, values: Mapping[str, str]) -> list[Check]:
    """Every enabled check for this environment, in registration order, once per host in scope.

    The main host runs web, prosody, jicofo and a jvb; every other host (role 'jvb') runs a
    bridge, so per-bridge checks run on every host.
    """
    main = env.deploy.main_host
    checks: list[Check] = []
    for definition in REGISTRY.values():
        if not definition.enabled(values):
            continue
        hosts = (main,) if definition.scope == "main" else env.deploy.hosts
        checks.extend(
            Check(definition.id, host, definition.description, definition.func, definition.settles)
            for host in hosts
        )
    return checks
