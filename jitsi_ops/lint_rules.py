"""The check rules. Each is registered with @rule and unit-tested to fire and to stay quiet.

Conventions shared by every rule:
- a Finding's message states what was observed (the value, unless the key holds a secret),
  its hint says what to write instead;
- every message and hint goes through `_finding`, which masks any secret value that happens to
  appear in the text (a secret pasted into the wrong key, a password in a URL's userinfo);
- release-dependent rules compare against the pinned JITSI_IMAGE_VERSION; a floating or custom
  tag is treated as the newest release, the same way `versions.layout_for` picks the compose set.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from jitsi_ops import upstream
from jitsi_ops.envfile import FALSE_WORDS, TRUE_WORDS, is_boolean_key
from jitsi_ops.lint import Finding, LintContext, Severity, rule
from jitsi_ops.secrets import GENERATED_SECRETS, is_secret_key, scrub
from jitsi_ops.settings import config_path
from jitsi_ops.versions import (
    FLOATING_TAGS,
    LATEST_KNOWN,
    NEWEST_KNOWN,
    OLDEST_DEPLOYABLE,
    Layout,
    Release,
    described_by,
    layout_for,
    newer_than_known,
    older_than_compose_sets,
    parse_release,
)

# ---------------------------------------------------------------------------------------------
# helpers


def _finding(
    ctx: LintContext, rule_id: str, severity: Severity, key: str | None, *, message: str, hint: str
) -> Finding:
    """A Finding whose text can never carry a secret value of this environment."""
    return Finding(rule_id, severity, key, scrub(message, ctx.values), scrub(hint, ctx.values))


def _release_at_least(ctx: LintContext, since: Release) -> bool:
    """Whether the pinned release is `since` or newer (unpinned tags count as newest)."""
    release = parse_release(ctx.release or "")
    return release is None or release >= since


def _release_label(ctx: LintContext) -> str:
    return ctx.release or "no JITSI_IMAGE_VERSION"


# Optional scheme, then userinfo up to '@' (also without a scheme: "user:pw@host" is a typo too).
_USERINFO_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/?#@]*@")


def _show_url(url: str) -> str:
    """A URL fit for a message: user credentials in it are replaced, never shown."""
    return _USERINFO_RE.sub(lambda m: f"{m.group(1) or ''}***@", url)


# DNS names as TLS certificates and browsers accept them; internal Docker names may use '_'.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_INTERNAL_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,251}[a-z0-9])?")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split(url: str) -> tuple[SplitResult, int | None] | None:
    """urlsplit plus the port, or None when Python cannot even parse it."""
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        return None


@dataclass(frozen=True)
class _Problem:
    severity: Severity
    text: str


def _origin_problems(
    url: str, *, schemes: tuple[str, ...], internal: bool, root_path_ok: bool = False
) -> list[_Problem]:
    """Problems of a URL that must be exactly scheme://host[:port] (a lone '/' is a warning,
    or nothing at all with `root_path_ok`).

    `schemes=()` skips the scheme test (a separate rule reports it).
    """
    if any(ch.isspace() for ch in url):
        return [_Problem("error", "contains whitespace")]
    split = _split(url)
    if split is None:
        return [_Problem("error", "has an invalid port or host")]
    parts, port = split
    problems: list[_Problem] = []
    if schemes and parts.scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        problems.append(_Problem("error", f"does not start with {wanted}"))
    host = parts.hostname or ""
    name_re = _INTERNAL_NAME_RE if internal else _DNS_NAME_RE
    if not host:
        problems.append(_Problem("error", "has no host"))
    elif _ip(host) is None and not name_re.fullmatch(host):
        problems.append(_Problem("error", f"has an invalid host {host!r}"))
    if "@" in parts.netloc:
        problems.append(_Problem("error", "contains user credentials"))
    if port == 0:
        problems.append(_Problem("error", "has port 0"))
    if parts.query or parts.fragment or "?" in url or "#" in url:
        problems.append(_Problem("error", "has a query or fragment"))
    if parts.path == "/":
        if not root_path_ok:
            problems.append(_Problem("warning", "ends with a slash"))
    elif parts.path:
        problems.append(_Problem("error", f"has a path {parts.path!r}"))
    return problems


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, for hints."""
    split = _split(url)
    if split is None:
        return "https://meet.example.com"
    parts, _port = split
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme or 'https'}://{netloc or 'meet.example.com'}"


def _public_host(ctx: LintContext) -> str | None:
    split = _split(ctx.get("PUBLIC_URL"))
    if split is None:
        return None
    return split[0].hostname or None


def _port(value: str) -> int | None:
    """A TCP/UDP port number, or None if the text is not exactly one."""
    if not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 1 <= number <= 65535 else None


# ---------------------------------------------------------------------------------------------
# PUBLIC_URL


@rule("public-url-required", "PUBLIC_URL must be set: every client URL is derived from it")
def public_url_required(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.get("PUBLIC_URL"):
        yield _finding(
            ctx,
            "public-url-required",
            "error",
            "PUBLIC_URL",
            message="PUBLIC_URL is not set; clients would be sent to https://localhost:8443",
            hint="set PUBLIC_URL=https://meet.example.com (the exact URL users type) in jitsi.env",
        )


@rule("public-url-scheme", "PUBLIC_URL must start with https://")
def public_url_scheme(ctx: LintContext) -> Iterator[Finding]:
    url = ctx.get("PUBLIC_URL")
    split = _split(url)
    scheme = split[0].scheme if split else ""
    if url and scheme != "https":
        yield _finding(
            ctx,
            "public-url-scheme",
            "error",
            "PUBLIC_URL",
            message=f"PUBLIC_URL {_show_url(url)!r} does not start with https:// (browsers grant "
            "camera and microphone only to secure origins)",
            hint="use https://; if TLS ends in a reverse proxy keep https:// here and set "
            "reverse_proxy = true in deploy.toml",
        )


@rule("public-url-ip-host", "PUBLIC_URL must name a DNS host, not an IP address")
def public_url_ip_host(ctx: LintContext) -> Iterator[Finding]:
    host = _public_host(ctx)
    if host is None or _ip(host) is None:
        return
    # A lab may live with a self-signed certificate on an IP; production clients cannot.
    severity: Severity = "warning" if ctx.deploy.test_environment else "error"
    yield _finding(
        ctx,
        "public-url-ip-host",
        severity,
        "PUBLIC_URL",
        message=f"PUBLIC_URL host {host} is an IP address: certificates, mobile apps and "
        "browsers' secure-origin rules need a DNS name",
        hint="point a DNS name at the host and use it (PUBLIC_URL=https://meet.example.com)"
        + ("" if ctx.deploy.test_environment else "; for a lab set test_environment = true"),
    )


@rule(
    "public-url-port",
    "HTTPS_PORT must be the port in PUBLIC_URL unless a reverse proxy is declared",
)
def public_url_port(ctx: LintContext) -> Iterator[Finding]:
    url = ctx.get("PUBLIC_URL")
    split = _split(url)
    https_port = _port(ctx.get("HTTPS_PORT"))
    # Behind a proxy (or with TLS off) the published port is not what users type.
    if ctx.deploy.reverse_proxy or ctx.get("DISABLE_HTTPS") == "1" or https_port is None:
        return
    if split is None or split[0].scheme != "https" or not split[0].hostname:
        return
    public_port = split[1] or 443
    if public_port != https_port:
        host = split[0].hostname
        # A warning, not an error: offline we cannot see a NAT port forward (443 -> 8443), and
        # upstream's env.example ports (8000/8443) with a port-less PUBLIC_URL are exactly that
        # common setup. Without a forward, clients connect to the wrong port (pitfall #931).
        yield _finding(
            ctx,
            "public-url-port",
            "warning",
            "PUBLIC_URL",
            message=f"HTTPS_PORT is {https_port} but PUBLIC_URL {_show_url(url)!r} sends clients "
            f"to port {public_port}; websocket and BOSH would go to the wrong port",
            hint=f"write PUBLIC_URL=https://{host}"
            + ("" if https_port == 443 else f":{https_port}")
            + " (or, if a reverse proxy or port forward serves the public port, set "
            "reverse_proxy = true in deploy.toml)",
        )


@rule("public-url-form", "PUBLIC_URL is exactly https://host[:port]: no path, query or credentials")
def public_url_form(ctx: LintContext) -> Iterator[Finding]:
    url = ctx.get("PUBLIC_URL")
    split = _split(url)
    # Without http(s):// the string is not a URL at all; public-url-scheme reports that.
    if not url or (split is not None and split[0].scheme not in ("http", "https")):
        return
    for problem in _origin_problems(url, schemes=(), internal=False):
        # A trailing slash only doubles slashes in derived URLs (//http-bind), which nginx
        # merges, so it works; everything else breaks config.js: that is an error.
        yield _finding(
            ctx,
            "public-url-form",
            problem.severity,
            "PUBLIC_URL",
            message=f"PUBLIC_URL {_show_url(url)!r} {problem.text}",
            hint="write only scheme, host and port, e.g. "
            f"PUBLIC_URL={_origin_of(_show_url(url))}; Jitsi serves from / and appends its own "
            "paths",
        )


# ---------------------------------------------------------------------------------------------
# whiteboard and etherpad


@rule(
    "whiteboard-public-url",
    "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL is http(s)://host[:port][/]; a deeper path breaks socket.io",
)
def whiteboard_public_url(ctx: LintContext) -> Iterator[Finding]:
    key = "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL"
    url = ctx.get(key)
    if not url:
        return
    # The client takes the URL's path as the socket.io namespace: "/" is the default one, which
    # the collab server serves, so only a deeper path breaks it.
    for problem in _origin_problems(
        url, schemes=("https", "http"), internal=False, root_path_ok=True
    ):
        why = (
            " (socket.io reads a path as a namespace: 'Invalid namespace', boards never sync)"
            if problem.text.startswith("has a path")
            else ""
        )
        yield _finding(
            ctx,
            "whiteboard-public-url",
            problem.severity,
            key,
            message=f"{key} {_show_url(url)!r} {problem.text}{why}",
            hint=f"write {key}={_origin_of(_show_url(url))} with no path; the client adds "
            "/socket.io/ itself",
        )
    split = _split(url)
    if (
        split is not None
        and split[0].scheme == "http"
        and ctx.get("PUBLIC_URL").startswith("https")
    ):
        yield _finding(
            ctx,
            "whiteboard-public-url",
            "warning",
            key,
            message=f"{key} {_show_url(url)!r} is http:// while PUBLIC_URL is https://: browsers "
            "block the insecure websocket as mixed content",
            hint=f"serve the collab server over TLS and write {key}=https://...",
        )


@rule(
    "whiteboard-url-base",
    "WHITEBOARD_COLLAB_SERVER_URL_BASE is the internal http(s)://host[:port] of the backend",
)
def whiteboard_url_base(ctx: LintContext) -> Iterator[Finding]:
    key = "WHITEBOARD_COLLAB_SERVER_URL_BASE"
    url = ctx.get(key)
    if not url:
        return
    for problem in _origin_problems(url, schemes=("http", "https"), internal=True):
        yield _finding(
            ctx,
            "whiteboard-url-base",
            problem.severity,
            key,
            message=f"{key} {_show_url(url)!r} {problem.text}; nginx appends /socket.io/ to it",
            hint=f"write {key}=http://whiteboard.meet.jitsi (the whiteboard service inside the "
            "compose network)",
        )


_WHITEBOARD_ENABLED_GONE = Release(9584)


@rule("whiteboard-enabled-ignored", "WHITEBOARD_ENABLED is ignored since stable-9584")
def whiteboard_enabled_ignored(ctx: LintContext) -> Iterator[Finding]:
    if "WHITEBOARD_ENABLED" not in ctx.values or not _release_at_least(
        ctx, _WHITEBOARD_ENABLED_GONE
    ):
        return
    value = ctx.get("WHITEBOARD_ENABLED")
    url_set = ctx.get("WHITEBOARD_COLLAB_SERVER_URL_BASE") or ctx.get(
        "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL"
    )
    effect = (
        "the whiteboard is enabled by the collab URL anyway"
        if url_set
        else "the whiteboard stays OFF because no collab server URL is set"
    )
    yield _finding(
        ctx,
        "whiteboard-enabled-ignored",
        "warning",
        "WHITEBOARD_ENABLED",
        message=f"WHITEBOARD_ENABLED={value!r} has had no effect since stable-9584 "
        f"({_release_label(ctx)}); {effect}",
        hint="delete WHITEBOARD_ENABLED; enable the whiteboard with "
        "WHITEBOARD_COLLAB_SERVER_URL_BASE=http://whiteboard.meet.jitsi",
    )


@rule("etherpad-public-url", "ETHERPAD_PUBLIC_URL is an http(s) URL ending in /p/")
def etherpad_public_url(ctx: LintContext) -> Iterator[Finding]:
    key = "ETHERPAD_PUBLIC_URL"
    url = ctx.get(key)
    if not url:
        return
    split = _split(url)
    if split is None or split[0].scheme not in ("http", "https") or not split[0].hostname:
        yield _finding(
            ctx,
            "etherpad-public-url",
            "error",
            key,
            message=f"{key} {_show_url(url)!r} is not an http(s) URL with a host",
            hint=f"write {key}=https://meet.example.com/etherpad/p/",
        )
    elif not split[0].path.endswith("/p/") or split[0].query or split[0].fragment:
        yield _finding(
            ctx,
            "etherpad-public-url",
            "error",
            key,
            message=f"{key} {_show_url(url)!r} does not end with /p/: Jitsi appends the pad name "
            "to it",
            hint=f"write {key}={_origin_of(_show_url(url))}/etherpad/p/ (or your pad server's "
            ".../p/)",
        )


@rule("etherpad-url-base", "ETHERPAD_URL_BASE is the internal http(s)://host[:port] of etherpad")
def etherpad_url_base(ctx: LintContext) -> Iterator[Finding]:
    key = "ETHERPAD_URL_BASE"
    url = ctx.get(key)
    if not url:
        return
    for problem in _origin_problems(url, schemes=("http", "https"), internal=True):
        yield _finding(
            ctx,
            "etherpad-url-base",
            problem.severity,
            key,
            message=f"{key} {_show_url(url)!r} {problem.text}; nginx proxies /etherpad/ to it",
            hint=f"write {key}=http://etherpad.meet.jitsi:9001",
        )


# ---------------------------------------------------------------------------------------------
# JVB_ADVERTISE_IPS

_ADVERTISE_PORT_SINCE = Release(10532)
# Addresses no client on the internet can reach. Documentation ranges (192.0.2.0/24,
# 2001:db8::/32...) deliberately count as public: they stand in for public addresses in examples.
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
    )
)


@dataclass(frozen=True)
class _AdvertiseItem:
    text: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    problem: str


def _advertise_items(value: str) -> list[_AdvertiseItem]:
    items = []
    for text in value.split(","):
        address, _, port_text = text.partition("#")
        ip = _ip(address)
        problem = ""
        if not text:
            problem = "is an empty item (doubled or trailing comma)"
        elif text != text.strip() or any(ch.isspace() for ch in text):
            problem = "contains spaces (upstream does not trim them)"
        elif ip is None:
            problem = (
                "is not an IP literal (write IPv6 without brackets)"
                if address.startswith("[")
                else "is not an IP literal (host names are not resolved)"
            )
        elif "#" in text and _port(port_text) is None:
            problem = "has an invalid #port (must be 1-65535)"
        items.append(_AdvertiseItem(text, ip, problem))
    return items


@rule(
    "jvb-advertise-ips-format",
    "JVB_ADVERTISE_IPS is a comma list of IP literals with optional #port",
)
def jvb_advertise_ips_format(ctx: LintContext) -> Iterator[Finding]:
    key = "JVB_ADVERTISE_IPS"
    value = ctx.get(key)
    if not value:
        return
    hint = (
        f"write {key}=<public IPv4>[,<IPv6>][#port] with no spaces, e.g. 198.51.100.7,2001:db8::7"
    )
    for item in _advertise_items(value):
        if item.problem:
            yield _finding(
                ctx,
                "jvb-advertise-ips-format",
                "error",
                key,
                message=f"{key} item {item.text!r} {item.problem} (value {value!r})",
                hint=hint,
            )
        elif "#" in item.text and not _release_at_least(ctx, _ADVERTISE_PORT_SINCE):
            yield _finding(
                ctx,
                "jvb-advertise-ips-format",
                "error",
                key,
                message=f"{key} item {item.text!r} uses #port, which {_release_label(ctx)} does "
                "not understand (added in stable-10532)",
                hint="drop the #port or pin stable-10532 or newer",
            )


def _is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == net.version and ip in net for net in _PRIVATE_NETS)


@rule(
    "jvb-advertise-ips-private",
    "an internet-facing deploy must advertise at least one public media address",
)
def jvb_advertise_ips_private(ctx: LintContext) -> Iterator[Finding]:
    key = "JVB_ADVERTISE_IPS"
    value = ctx.get(key)
    if not value or not ctx.deploy.internet_facing or ctx.deploy.test_environment:
        return
    ips = [item.ip for item in _advertise_items(value) if item.ip is not None and not item.problem]
    if ips and all(_is_private(ip) for ip in ips):
        yield _finding(
            ctx,
            "jvb-advertise-ips-private",
            "warning",
            key,
            message=f"{key}={value!r} lists only private or loopback addresses; clients on the "
            "internet cannot reach the bridge (calls break when the third participant joins)",
            hint=f"add the public (NAT) address of the host to {key}, or set internet_facing = "
            "false in deploy.toml for a LAN-only deploy",
        )


@rule("jvb-advertise-ips-missing", "JVB_ADVERTISE_IPS unset: the bridge relies on STUN discovery")
def jvb_advertise_ips_missing(ctx: LintContext) -> Iterator[Finding]:
    if ctx.get("JVB_ADVERTISE_IPS") or ctx.get("DOCKER_HOST_ADDRESS"):
        return
    stun_off = ctx.flag("JVB_DISABLE_STUN")
    severity: Severity = "warning" if stun_off else "info"
    state = "STUN is disabled, so it will only advertise" if stun_off else "it relies on STUN and"
    yield _finding(
        ctx,
        "jvb-advertise-ips-missing",
        severity,
        "JVB_ADVERTISE_IPS",
        message=f"JVB_ADVERTISE_IPS is not set; {state} its container address",
        hint="set JVB_ADVERTISE_IPS to the host's public (and LAN) address, e.g. "
        "JVB_ADVERTISE_IPS=198.51.100.7,192.168.1.10",
    )


@rule("colibri-rest", "COLIBRI_REST_ENABLED=1 lets verify prove the media path (media.ice)")
def colibri_rest(ctx: LintContext) -> Iterator[Finding]:
    if ctx.flag("COLIBRI_REST_ENABLED"):
        return
    shown = ctx.get("COLIBRI_REST_ENABLED")
    yield _finding(
        ctx,
        "colibri-rest",
        "info",
        "COLIBRI_REST_ENABLED",
        message=f"COLIBRI_REST_ENABLED is {repr(shown) if shown else 'unset'}: verify cannot probe "
        "the bridge, so the media path a third participant needs stays unproven",
        hint="set COLIBRI_REST_ENABLED=1: the bridge's private REST stays bound to the host's "
        "127.0.0.1 (JVB_COLIBRI_PORT) and verify reaches it through SSH",
    )


# ---------------------------------------------------------------------------------------------
# booleans

# Upstream shell scripts test these with `-eq 1` / `= 1`: `true` silently means off.
_STRICT_BOOLEANS = (
    "ENABLE_LETSENCRYPT",
    "DISABLE_HTTPS",
    "LETSENCRYPT_USE_STAGING",
    "ENABLE_JAAS_COMPONENTS",
)
_UNSAFE_REGEX_KEY = "ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX"
_TPL_WORDS = frozenset({"1", "0", "true", "false", "t", "f"})


def _strict_booleans(ctx: LintContext) -> tuple[str, ...]:
    # The colibri regex flag is shell-compared too, but exists only in the legacy layout.
    if ctx.layout is Layout.LEGACY:
        return (*_STRICT_BOOLEANS, _UNSAFE_REGEX_KEY)
    return _STRICT_BOOLEANS


@rule("boolean-strict", "flags compared to 1 by upstream shell must be exactly 0 or 1")
def boolean_strict(ctx: LintContext) -> Iterator[Finding]:
    for key in _strict_booleans(ctx):
        value = ctx.get(key)
        if value and value not in ("0", "1"):
            word = value.strip().lower()
            fix = "1" if word in TRUE_WORDS else "0" if word in FALSE_WORDS else "1 or 0"
            yield _finding(
                ctx,
                "boolean-strict",
                "error",
                key,
                message=f"{key}={value!r} is not 0 or 1: upstream scripts compare it to 1, so "
                "anything else means off while the templates may read it as on",
                hint=f"write {key}={fix}",
            )


def _loose_booleans(ctx: LintContext) -> Iterator[tuple[str, str]]:
    """(key, value) of the non-strict flags, minus keys a migration rule already reports."""
    skip = set(_strict_booleans(ctx)) | _migrated_keys(ctx)
    for key in sorted(ctx.values):
        value = ctx.values[key]
        if value and key not in skip and is_boolean_key(key):
            yield key, value


@rule("boolean-words", "flags written as true/false/yes/no/on/off should be 1/0")
def boolean_words(ctx: LintContext) -> Iterator[Finding]:
    for key, value in _loose_booleans(ctx):
        word = value.strip().lower()
        if word in ("0", "1") and word == value:
            continue
        if word in TRUE_WORDS or word in FALSE_WORDS:
            fix = "1" if word in TRUE_WORDS else "0"
            # tpl's toBool knows only 1/0/true/false/t/f; any other text counts as true.
            danger = (
                f" and upstream templates would read {value!r} as TRUE"
                if word in FALSE_WORDS and word not in _TPL_WORDS
                else ""
            )
            yield _finding(
                ctx,
                "boolean-words",
                "warning",
                key,
                message=f"{key}={value!r} is not written as 1/0{danger}",
                hint=f"write {key}={fix} (jitsi-ops render writes 1/0, but a copied .env or "
                "upstream tooling reads the raw word, and `no`/`off` mean true there)",
            )


@rule("boolean-unknown-word", "a flag holds a word that is neither true nor false")
def boolean_unknown_word(ctx: LintContext) -> Iterator[Finding]:
    for key, value in _loose_booleans(ctx):
        word = value.strip().lower()
        if word not in TRUE_WORDS and word not in FALSE_WORDS:
            yield _finding(
                ctx,
                "boolean-unknown-word",
                "warning",
                key,
                message=f"{key}={value!r} is not a flag value; upstream templates read any "
                "non-empty text as true",
                hint=f"write {key}=1 or {key}=0",
            )


# ---------------------------------------------------------------------------------------------
# release


@rule("image-version-required", "JITSI_IMAGE_VERSION must pin the release")
def image_version_required(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.get("JITSI_IMAGE_VERSION"):
        yield _finding(
            ctx,
            "image-version-required",
            "error",
            "JITSI_IMAGE_VERSION",
            message="JITSI_IMAGE_VERSION is not set: the deployed release would depend on the "
            "compose files' default",
            hint=f"pin it in jitsi.env, e.g. JITSI_IMAGE_VERSION={LATEST_KNOWN}",
        )


@rule(
    "image-version-pinned", "JITSI_IMAGE_VERSION is stable-NNNN[-N], not a floating or custom tag"
)
def image_version_pinned(ctx: LintContext) -> Iterator[Finding]:
    tag = ctx.get("JITSI_IMAGE_VERSION")
    if not tag or (tag == tag.strip() and parse_release(tag) is not None):
        return
    test = ctx.deploy.test_environment
    if tag in FLOATING_TAGS:
        # A floating tag changes under a running deploy: no rollback target, no known layout.
        severity: Severity = "warning" if test else "error"
        what = f"the floating tag {tag!r}, which moves with every upstream release"
    else:
        severity = "info" if test else "error"
        what = f"the custom tag {tag!r}, not a stable-NNNN[-N] release"
    yield _finding(
        ctx,
        "image-version-pinned",
        severity,
        "JITSI_IMAGE_VERSION",
        message=f"JITSI_IMAGE_VERSION is {what}; jitsi-ops assumes the {ctx.layout} compose set "
        "for it",
        hint=f"pin a release, e.g. JITSI_IMAGE_VERSION={LATEST_KNOWN} (test environments may set "
        "test_environment = true in deploy.toml)",
    )


# ---------------------------------------------------------------------------------------------
# releases the compose sets describe


def _described() -> str:
    return "; ".join(f"{layout}: {described_by(layout)}" for layout in Layout)


@rule("release-unknown", "JITSI_IMAGE_VERSION is not newer than the newest release jitsi-ops knows")
def release_unknown(ctx: LintContext) -> Iterator[Finding]:
    release = newer_than_known(ctx.release)
    if release is None:
        return
    # A warning here; `deploy` refuses it unless --allow-unknown-release (deploy.preflight).
    yield _finding(
        ctx,
        "release-unknown",
        "warning",
        "JITSI_IMAGE_VERSION",
        message=f"JITSI_IMAGE_VERSION {release} is newer than {NEWEST_KNOWN}, the newest release "
        f"jitsi-ops knows: its compose files, migrations and variables are unknown here (`deploy` "
        f"refuses it; allowed, it would use the {layout_for(str(release))} compose set of "
        f"{NEWEST_KNOWN} and run no migration for it)",
        hint=f"pin {NEWEST_KNOWN}, or update jitsi-ops; to deploy it anyway with "
        f"{NEWEST_KNOWN}'s files, `invoke deploy --allow-unknown-release`",
    )


@rule(
    "release-before-compose-sets",
    "JITSI_IMAGE_VERSION is not older than the releases jitsi-ops' compose sets describe",
)
def release_before_compose_sets(ctx: LintContext) -> Iterator[Finding]:
    release = older_than_compose_sets(ctx.release)
    if release is None:
        return
    yield _finding(
        ctx,
        "release-before-compose-sets",
        "error",
        "JITSI_IMAGE_VERSION",
        message=f"JITSI_IMAGE_VERSION {release} is older than every compose set jitsi-ops ships "
        f"({_described()}): a deploy would run {release}'s images with compose files that pass "
        "them other variables",
        hint=f"pin {OLDEST_DEPLOYABLE} or later: the plan upgrades in one step (the migrations "
        f"from {release} on), and a failed deploy rolls back to the host's own files",
    )


# ---------------------------------------------------------------------------------------------
# secrets

_WEAK_DEFAULTS = frozenset(
    {
        "passw0rd",
        "password",
        "changeme",
        "change_me",
        "secret",
        "admin",
        "jitsi",
        "123456",
        "12345678",
        "letmein",
        "qwerty",
    }
)
_MIN_SECRET_LENGTH = 16


def _required_secrets(ctx: LintContext) -> list[tuple[str, str]]:
    """(key, why) of the secrets this environment cannot start without."""
    required = [
        ("JICOFO_AUTH_PASSWORD", "prosody and jicofo exit with FATAL ERROR without it"),
        ("JVB_AUTH_PASSWORD", "prosody and jvb exit with FATAL ERROR without it"),
    ]
    if "jibri" in ctx.deploy.components:
        required += [
            ("JIBRI_RECORDER_PASSWORD", "jibri exits without it"),
            ("JIBRI_XMPP_PASSWORD", "jibri exits without it"),
        ]
    if "jigasi" in ctx.deploy.components:
        required.append(("JIGASI_XMPP_PASSWORD", "jigasi exits without it"))
    elif "transcriber" in ctx.deploy.components:
        required.append(("JIGASI_XMPP_PASSWORD", "the transcriber (jigasi) exits without it"))
    if ctx.flag("ENABLE_TRANSCRIPTIONS") or "transcriber" in ctx.deploy.components:
        required.append(
            (
                "JIGASI_TRANSCRIBER_PASSWORD",
                "the transcriber account needs it (ENABLE_TRANSCRIPTIONS, transcriber)",
            )
        )
    return required


@rule("secret-required", "service passwords needed by the enabled components are set")
def secret_required(ctx: LintContext) -> Iterator[Finding]:
    # secrets.env is gitignored, so a fresh clone of the operator repository has none: that is
    # the normal state before `invoke secrets`, not a broken environment (and `check --env
    # example` must pass on a clean clone). A secrets file that exists but lacks one is an error.
    no_file = ctx.secrets_file_mode is None
    severity: Severity = "warning" if no_file else "error"
    state = f"; env/{ctx.env_name}/secrets.env does not exist yet" if no_file else ""
    for key, why in _required_secrets(ctx):
        if not ctx.get(key):
            yield _finding(
                ctx,
                "secret-required",
                severity,
                key,
                message=f"{key} is not set: {why}{state}",
                hint=f"run `invoke secrets --env {ctx.env_name}` (generates only the missing ones)",
            )


def _weakness(value: str) -> str:
    if value.lower() in _WEAK_DEFAULTS:
        return "is a well-known default value"
    if len(set(value)) == 1:
        return "repeats a single character"
    if len(value) < _MIN_SECRET_LENGTH:
        return f"is only {len(value)} characters long (fewer than {_MIN_SECRET_LENGTH})"
    return ""


@rule("secret-weak", "secrets are not short, repetitive or well-known defaults")
def secret_weak(ctx: LintContext) -> Iterator[Finding]:
    for key in sorted(ctx.values):
        value = ctx.values[key]
        # *_DSN values are URLs naming a service, not passwords.
        if not value or not is_secret_key(key) or key.endswith("_DSN"):
            continue
        weakness = _weakness(value)
        if not weakness:
            continue
        if key in GENERATED_SECRETS:
            hint = (
                f"delete {key} from secrets.env and run `invoke secrets --env {ctx.env_name}`; on "
                "a live install also reset the prosody account (existing accounts keep the old "
                "value since stable-10741)"
            )
        else:
            hint = (
                f"use a random value of at least {_MIN_SECRET_LENGTH} characters, e.g. `openssl "
                "rand -hex 16`"
            )
        # Never the value itself: only what is wrong with it.
        yield _finding(ctx, "secret-weak", "warning", key, message=f"{key} {weakness}", hint=hint)


@rule("secrets-file-mode", "secrets.env is readable by its owner only (0600)")
def secrets_file_mode(ctx: LintContext) -> Iterator[Finding]:
    mode = ctx.secrets_file_mode
    if mode is not None and mode & 0o077:
        yield _finding(
            ctx,
            "secrets-file-mode",
            "warning",
            None,
            message=f"env/{ctx.env_name}/secrets.env has mode {mode:04o}: group or others can "
            "read the passwords",
            hint=f"chmod 600 env/{ctx.env_name}/secrets.env",
        )


# ---------------------------------------------------------------------------------------------
# removed, renamed and legacy variables (release-dependent), then unknown keys


@dataclass(frozen=True)
class _Rename:
    old: str
    new: str
    since: Release
    # When the compose set no longer passes the old name, its value is simply lost.
    dropped_severity: Severity
    dropped_effect: str


_RENAMES = (
    _Rename(
        "XMPP_RECORDER_DOMAIN",
        "XMPP_HIDDEN_DOMAIN",
        Release(9823),
        "warning",
        "the recorder account moves to hidden.meet.jitsi",
    ),
    _Rename(
        "DOCKER_HOST_ADDRESS",
        "JVB_ADVERTISE_IPS",
        Release(7830),
        "error",
        "the bridge advertises no host address and calls with three or more people fail",
    ),
)

_UNUSED_LEGACY = {
    "JICOFO_COMPONENT_SECRET": "still passed to prosody, but no template has read it since 2021"
}


def _target_release(ctx: LintContext) -> Release:
    """The pinned release; a floating or custom tag counts as the newest one jitsi-ops knows."""
    return parse_release(ctx.release or "") or NEWEST_KNOWN


def _removal_for(ctx: LintContext, key: str) -> upstream.UpstreamVariable | None:
    """The upstream variable `key` when the pinned release no longer has it."""
    variable = upstream.variables().get(key)
    if variable is None or not variable.removed_by(_target_release(ctx)):
        return None
    return variable


def _rename_for(ctx: LintContext, key: str) -> _Rename | None:
    for rename in _RENAMES:
        if rename.old == key and _release_at_least(ctx, rename.since):
            return rename
    return None


def _migrated_keys(ctx: LintContext) -> set[str]:
    """Keys a specific migration rule reports for this release, so unknown-key stays silent."""
    keys = {k for k in ctx.values if _removal_for(ctx, k) or _rename_for(ctx, k)}
    keys.update(k for k in _UNUSED_LEGACY if k in ctx.values)
    if "WHITEBOARD_ENABLED" in ctx.values and _release_at_least(ctx, _WHITEBOARD_ENABLED_GONE):
        keys.add("WHITEBOARD_ENABLED")
    return keys


# Removed variables a more specific rule reports (with the release that removed them).
_REPORTED_ELSEWHERE = frozenset({"WHITEBOARD_ENABLED"})


@rule("removed-variable", "variables upstream removed in or before the pinned release")
def removed_variable(ctx: LintContext) -> Iterator[Finding]:
    for key in sorted(ctx.values):
        removal = _removal_for(ctx, key)
        if removal is None or key in _REPORTED_ELSEWHERE:
            continue
        shown = "(secret)" if is_secret_key(key) else repr(ctx.values[key])
        curated = upstream.REMOVAL_HINTS.get(key)
        why = curated.why if curated else f"{removal.last} was the last release with it"
        yield _finding(
            ctx,
            "removed-variable",
            "warning",
            key,
            message=f"{key}={shown} was removed in {removal.removed_in} ({why}); "
            f"{_release_label(ctx)} ignores it",
            hint=curated.fix
            if curated
            else f"delete it: nothing in {_release_label(ctx)} reads it (upstream names no "
            "replacement)",
        )


@rule("renamed-variable", "variables upstream renamed (XMPP_RECORDER_DOMAIN, DOCKER_HOST_ADDRESS)")
def renamed_variable(ctx: LintContext) -> Iterator[Finding]:
    for key in sorted(ctx.values):
        rename = _rename_for(ctx, key)
        if rename is None:
            continue
        value = ctx.values[key]
        fix_value = ",".join(value.split()) if rename.new == "JVB_ADVERTISE_IPS" else value
        if ctx.get(rename.new):
            yield _finding(
                ctx,
                "renamed-variable",
                "warning",
                key,
                message=f"{key}={value!r} is ignored because {rename.new}={ctx.get(rename.new)!r} "
                f"is set (renamed in {rename.since})",
                hint=f"delete {key}",
            )
        elif key in ctx.known:
            # Upstream still copies the old name over as a fallback: works, but deprecated.
            yield _finding(
                ctx,
                "renamed-variable",
                "warning",
                key,
                message=f"{key}={value!r} was renamed to {rename.new} in {rename.since}; it works "
                "only as a deprecated fallback",
                hint=f"rename it: {rename.new}={fix_value}",
            )
        else:
            yield _finding(
                ctx,
                "renamed-variable",
                rename.dropped_severity,
                key,
                message=f"{key}={value!r} was renamed to {rename.new} in {rename.since} and the "
                f"{ctx.layout} compose set no longer passes it: {rename.dropped_effect}",
                hint=f"rename it: {rename.new}={fix_value}",
            )


@rule("unused-legacy-variable", "legacy variables nothing reads any more (JICOFO_COMPONENT_SECRET)")
def unused_legacy_variable(ctx: LintContext) -> Iterator[Finding]:
    for key, why in _UNUSED_LEGACY.items():
        if key in ctx.values:
            yield _finding(
                ctx,
                "unused-legacy-variable",
                "info",
                key,
                message=f"{key} is set "
                f"({'secret, not shown' if is_secret_key(key) else ctx.values[key]}); it is {why}",
                hint=f"delete {key} from jitsi.env / secrets.env",
            )


@rule("unknown-key", "variables neither the pinned release nor our compose set knows")
def unknown_key(ctx: LintContext) -> Iterator[Finding]:
    skip = _migrated_keys(ctx)
    release = _target_release(ctx)
    # Upstream's variables of the pinned release count even when no file of ours passes them
    # (env.example lists many that only the images' own scripts or overlays read).
    known = ctx.known | upstream.present_in(release)
    candidates = sorted(known)
    for key in sorted(ctx.values):
        if key in known or key in skip:
            continue
        later = upstream.variables().get(key)
        if later is not None and later.first > release:
            message = (
                f"{key} arrived in {later.first}: {_release_label(ctx)} does not know it yet; "
                "Compose drops it silently"
            )
            hint = f"pin {later.first} or later to use it, or delete it"
        else:
            message = (
                f"{key} is not used by any compose file of the {ctx.layout} set "
                f"({_release_label(ctx)}); Compose drops it silently"
            )
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
            # A name upstream ever had is no typo: never offer another variable for it.
            hint = (
                f"did you mean {close[0]}? rename the variable"
                if close and later is None
                else "delete it, or check the spelling against upstream's env.example"
            )
        # Compose silently drops it: nothing breaks, but the operator's intent is lost, so a
        # warning rather than an error. The value is not shown: it may be a misspelt secret.
        yield _finding(ctx, "unknown-key", "warning", key, message=message, hint=hint)


# ---------------------------------------------------------------------------------------------
# CONFIG and ports


@rule("config-dir", "CONFIG is set, absolute (or ~-based); a relative one is read from stack_dir")
def config_dir(ctx: LintContext) -> Iterator[Finding]:
    value = ctx.get("CONFIG")
    where = config_path(value, ctx.deploy.stack_dir)
    if not value:
        message = "CONFIG is not set: bind mounts would land at the filesystem root (/web, /jvb...)"
    elif value.strip() != value:
        message = f"CONFIG={value!r} has leading or trailing whitespace"
    elif where.rstrip("/") == "":
        message = f"CONFIG={value!r} is the filesystem root"
    elif not value.startswith(("/", "~")):
        # Compose reads it against the project directory, which jitsi-ops pins to stack_dir:
        # it works (real installs use CONFIG=./jitsi-config), so this is a warning.
        yield _finding(
            ctx,
            "config-dir",
            "warning",
            "CONFIG",
            message=f"CONFIG={value!r} is relative: Compose and jitsi-ops read it from "
            f"stack_dir, so it is {where} on the host",
            hint=f"write CONFIG={where} to say so without depending on stack_dir",
        )
        return
    else:
        return
    yield _finding(
        ctx,
        "config-dir",
        "error",
        "CONFIG",
        message=message,
        hint="set CONFIG to an absolute directory, e.g. CONFIG=/srv/jitsi-meet-cfg",
    )


_REQUIRED_PORTS = ("HTTP_PORT", "HTTPS_PORT")
_PORT_KEYS = (
    "HTTP_PORT",
    "HTTPS_PORT",
    "JVB_PORT",
    "JVB_COLIBRI_PORT",
    "JICOFO_REST_PORT",
    "XMPP_PORT",
    "PROSODY_HTTP_PORT",
    "PROSODY_S2S_PORT",
    "JIGASI_PORT_MIN",
    "JIGASI_PORT_MAX",
)


@rule("port-required", "HTTP_PORT and HTTPS_PORT are set (compose has no default for them)")
def port_required(ctx: LintContext) -> Iterator[Finding]:
    for key in _REQUIRED_PORTS:
        if not ctx.get(key):
            yield _finding(
                ctx,
                "port-required",
                "error",
                key,
                message=f"{key} is not set; the compose files have no default and `up` fails",
                hint=f"set {key}=" + ("80" if key == "HTTP_PORT" else "443") + " in jitsi.env",
            )


@rule("port-range", "port variables are integers 1-65535")
def port_range(ctx: LintContext) -> Iterator[Finding]:
    for key in _PORT_KEYS:
        value = ctx.get(key)
        if value and _port(value) is None:
            yield _finding(
                ctx,
                "port-range",
                "error",
                key,
                message=f"{key}={value!r} is not a port number 1-65535",
                hint=f"write {key} as a plain integer, e.g. {key}="
                + ("443" if "HTTPS" in key else "10000"),
            )


@rule("port-conflict", "HTTP_PORT and HTTPS_PORT differ")
def port_conflict(ctx: LintContext) -> Iterator[Finding]:
    http, https = _port(ctx.get("HTTP_PORT")), _port(ctx.get("HTTPS_PORT"))
    if http is not None and http == https:
        yield _finding(
            ctx,
            "port-conflict",
            "error",
            "HTTPS_PORT",
            message=f"HTTP_PORT and HTTPS_PORT are both {http}; Docker cannot publish one port "
            "twice",
            hint="use different ports, e.g. HTTP_PORT=80 and HTTPS_PORT=443",
        )


# ---------------------------------------------------------------------------------------------
# authentication


@rule("guests-without-auth", "ENABLE_GUESTS does nothing without ENABLE_AUTH")
def guests_without_auth(ctx: LintContext) -> Iterator[Finding]:
    if ctx.flag("ENABLE_GUESTS") and not ctx.flag("ENABLE_AUTH"):
        yield _finding(
            ctx,
            "guests-without-auth",
            "warning",
            "ENABLE_GUESTS",
            message=f"ENABLE_GUESTS={ctx.get('ENABLE_GUESTS')!r} has no effect while ENABLE_AUTH "
            f"is {ctx.get('ENABLE_AUTH') or 'unset'!r}: without auth everyone may already create "
            "rooms",
            hint="set ENABLE_AUTH=1 for authenticated hosts with guest access, or delete "
            "ENABLE_GUESTS",
        )


_AUTH_TYPES = ("internal", "jwt", "ldap", "matrix", "hybrid_matrix_token")


@rule("auth-type", "AUTH_TYPE / PROSODY_AUTH_TYPE name a supported backend")
def auth_type(ctx: LintContext) -> Iterator[Finding]:
    for key in ("AUTH_TYPE", "PROSODY_AUTH_TYPE"):
        value = ctx.get(key)
        if not value or value in _AUTH_TYPES:
            continue
        extra = " (shibboleth was removed in stable-8922)" if value.lower() == "shibboleth" else ""
        yield _finding(
            ctx,
            "auth-type",
            "error",
            key,
            message=f"{key}={value!r} is not a supported authentication type{extra}",
            hint=f"use one of: {', '.join(_AUTH_TYPES)} (lowercase)",
        )


def _effective_auth(ctx: LintContext) -> str:
    return ctx.get("PROSODY_AUTH_TYPE") or ctx.get("AUTH_TYPE") or "internal"


@rule("auth-jwt-settings", "JWT authentication has JWT_APP_ID and a secret or key server")
def auth_jwt_settings(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.flag("ENABLE_AUTH") or _effective_auth(ctx) != "jwt":
        return
    if not ctx.get("JWT_APP_ID"):
        yield _finding(
            ctx,
            "auth-jwt-settings",
            "error",
            "JWT_APP_ID",
            message="JWT_APP_ID is not set while ENABLE_AUTH is on with AUTH_TYPE 'jwt'",
            hint="set JWT_APP_ID to the 'iss'/'aud' id your token issuer uses",
        )
    if not ctx.get("JWT_APP_SECRET") and not ctx.get("JWT_ASAP_KEYSERVER"):
        yield _finding(
            ctx,
            "auth-jwt-settings",
            "error",
            "JWT_APP_SECRET",
            message="JWT_APP_SECRET is not set (and no JWT_ASAP_KEYSERVER) while AUTH_TYPE is "
            "'jwt': no token can be verified",
            hint="put JWT_APP_SECRET in secrets.env, or set JWT_ASAP_KEYSERVER for RS256 tokens",
        )


@rule("auth-ldap-settings", "LDAP authentication has an ldap:// or ldaps:// LDAP_URL")
def auth_ldap_settings(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.flag("ENABLE_AUTH") or _effective_auth(ctx) != "ldap":
        return
    url = ctx.get("LDAP_URL")
    if not url:
        message = "LDAP_URL is not set while ENABLE_AUTH is on with AUTH_TYPE 'ldap'"
    elif not url.lower().startswith(("ldap://", "ldaps://")):
        message = f"LDAP_URL {_show_url(url)!r} does not start with ldap:// or ldaps://"
    else:
        return
    yield _finding(
        ctx,
        "auth-ldap-settings",
        "error",
        "LDAP_URL",
        message=message,
        hint="set LDAP_URL=ldaps://ldap.example.com (and LDAP_BASE, LDAP_BINDDN, LDAP_BINDPW)",
    )


# ---------------------------------------------------------------------------------------------
# Let's Encrypt


def _letsencrypt(ctx: LintContext) -> bool:
    # Exactly as upstream's start script decides; boolean-strict reports other spellings.
    return ctx.get("ENABLE_LETSENCRYPT") == "1"


@rule("letsencrypt-domain", "LETSENCRYPT_DOMAIN is the PUBLIC_URL host")
def letsencrypt_domain(ctx: LintContext) -> Iterator[Finding]:
    if not _letsencrypt(ctx):
        return
    domain = ctx.get("LETSENCRYPT_DOMAIN")
    host = _public_host(ctx)
    if not domain:
        message = "LETSENCRYPT_DOMAIN is not set while ENABLE_LETSENCRYPT=1"
    elif host is not None and domain.lower() != host:
        message = (
            f"LETSENCRYPT_DOMAIN {domain!r} differs from the PUBLIC_URL host {host!r}: the "
            "certificate would not match the name users type"
        )
    else:
        return
    yield _finding(
        ctx,
        "letsencrypt-domain",
        "error",
        "LETSENCRYPT_DOMAIN",
        message=message,
        hint=f"set LETSENCRYPT_DOMAIN={host}"
        if host and _ip(host) is None
        else "use the same DNS name in PUBLIC_URL and LETSENCRYPT_DOMAIN (e.g. meet.example.com)",
    )


@rule("letsencrypt-email", "Let's Encrypt needs LETSENCRYPT_EMAIL")
def letsencrypt_email(ctx: LintContext) -> Iterator[Finding]:
    if not _letsencrypt(ctx):
        return
    email = ctx.get("LETSENCRYPT_EMAIL")
    if email and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return
    yield _finding(
        ctx,
        "letsencrypt-email",
        "error",
        "LETSENCRYPT_EMAIL",
        message=f"LETSENCRYPT_EMAIL is {email!r}, not an e-mail address; upstream refuses to "
        "request a certificate without one"
        if email
        else "LETSENCRYPT_EMAIL is not set; upstream refuses to request a certificate without it",
        hint="set LETSENCRYPT_EMAIL=ops@example.com (expiry notices go there)",
    )


@rule("letsencrypt-ports", "Let's Encrypt needs HTTP_PORT 80 (and HTTPS_PORT 443)")
def letsencrypt_ports(ctx: LintContext) -> Iterator[Finding]:
    if not _letsencrypt(ctx):
        return
    http, https = ctx.get("HTTP_PORT"), ctx.get("HTTPS_PORT")
    if http != "80":
        # Behind a proxy the challenge may still arrive if the proxy forwards it.
        severity: Severity = "warning" if ctx.deploy.reverse_proxy else "error"
        yield _finding(
            ctx,
            "letsencrypt-ports",
            severity,
            "HTTP_PORT",
            message=f"HTTP_PORT is {http or 'unset'!r} with ENABLE_LETSENCRYPT=1: the HTTP-01 "
            "challenge arrives on port 80",
            hint="set HTTP_PORT=80 (or make the reverse proxy forward "
            "/.well-known/acme-challenge/)",
        )
    if https != "443" and not ctx.deploy.reverse_proxy:
        yield _finding(
            ctx,
            "letsencrypt-ports",
            "warning",
            "HTTPS_PORT",
            message=f"HTTPS_PORT is {https or 'unset'!r} with ENABLE_LETSENCRYPT=1; upstream "
            "documents Let's Encrypt only with 443",
            hint="set HTTPS_PORT=443 and PUBLIC_URL without a port",
        )


@rule("letsencrypt-acme-server", "with Let's Encrypt on, LETSENCRYPT_ACME_SERVER chooses the CA")
def letsencrypt_acme_server(ctx: LintContext) -> Iterator[Finding]:
    if _letsencrypt(ctx) and not ctx.get("LETSENCRYPT_ACME_SERVER"):
        yield _finding(
            ctx,
            "letsencrypt-acme-server",
            "info",
            "LETSENCRYPT_ACME_SERVER",
            message="LETSENCRYPT_ACME_SERVER is not set: acme.sh defaults to ZeroSSL, not Let's "
            "Encrypt",
            hint="set LETSENCRYPT_ACME_SERVER=letsencrypt to get a Let's Encrypt certificate",
        )


@rule("letsencrypt-staging", "LETSENCRYPT_USE_STAGING issues untrusted certificates")
def letsencrypt_staging(ctx: LintContext) -> Iterator[Finding]:
    if (
        _letsencrypt(ctx)
        and ctx.get("LETSENCRYPT_USE_STAGING") == "1"
        and not ctx.deploy.test_environment
    ):
        yield _finding(
            ctx,
            "letsencrypt-staging",
            "warning",
            "LETSENCRYPT_USE_STAGING",
            message="LETSENCRYPT_USE_STAGING='1' on an environment not marked as test: browsers "
            "will not trust the staging certificate",
            hint="set LETSENCRYPT_USE_STAGING=0 (keep staging for test environments)",
        )


# ---------------------------------------------------------------------------------------------
# TLS termination


@rule("disable-https-without-proxy", "DISABLE_HTTPS=1 only makes sense behind a TLS reverse proxy")
def disable_https_without_proxy(ctx: LintContext) -> Iterator[Finding]:
    if ctx.get("DISABLE_HTTPS") == "1" and not ctx.deploy.reverse_proxy:
        severity: Severity = "info" if ctx.deploy.test_environment else "warning"
        yield _finding(
            ctx,
            "disable-https-without-proxy",
            severity,
            "DISABLE_HTTPS",
            message="DISABLE_HTTPS='1' but no reverse proxy is declared: users would get plain "
            "HTTP, and browsers refuse camera and microphone there",
            hint="remove DISABLE_HTTPS, or declare the TLS proxy with reverse_proxy = true in "
            "deploy.toml",
        )


@rule("http-redirect-loop", "ENABLE_HTTP_REDIRECT with DISABLE_HTTPS redirects in a loop")
def http_redirect_loop(ctx: LintContext) -> Iterator[Finding]:
    if ctx.get("DISABLE_HTTPS") == "1" and ctx.flag("ENABLE_HTTP_REDIRECT"):
        yield _finding(
            ctx,
            "http-redirect-loop",
            "warning",
            "ENABLE_HTTP_REDIRECT",
            message=f"ENABLE_HTTP_REDIRECT={ctx.get('ENABLE_HTTP_REDIRECT')!r} with "
            "DISABLE_HTTPS='1': nginx redirects every request to https, which the proxy sends "
            "back to HTTP",
            hint="set ENABLE_HTTP_REDIRECT=0 and let the reverse proxy redirect",
        )


# ---------------------------------------------------------------------------------------------
# other operational rules

_XMPP_DEFAULTS = {
    "XMPP_DOMAIN": "meet.jitsi",
    "XMPP_AUTH_DOMAIN": "auth.meet.jitsi",
    "XMPP_GUEST_DOMAIN": "guest.meet.jitsi",
    "XMPP_MUC_DOMAIN": "muc.meet.jitsi",
    "XMPP_INTERNAL_MUC_DOMAIN": "internal-muc.meet.jitsi",
    "XMPP_HIDDEN_DOMAIN": "hidden.meet.jitsi",
}


@rule("xmpp-domain-changed", "non-default XMPP domains must stay stable (accounts live per domain)")
def xmpp_domain_changed(ctx: LintContext) -> Iterator[Finding]:
    for key, default in _XMPP_DEFAULTS.items():
        value = ctx.get(key)
        if value and value != default:
            yield _finding(
                ctx,
                "xmpp-domain-changed",
                "info",
                key,
                message=f"{key}={value!r} differs from the default {default!r}; prosody stores "
                "accounts per domain, so changing it on a live install orphans them",
                hint=f"keep {key} unchanged across upgrades (these are internal names, not public "
                "DNS)",
            )


_TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")


@rule("timezone", "TZ is set to a zoneinfo name")
def timezone(ctx: LintContext) -> Iterator[Finding]:
    value = ctx.get("TZ")
    if not value:
        yield _finding(
            ctx,
            "timezone",
            "info",
            "TZ",
            message="TZ is not set: containers log in UTC",
            hint="set TZ to a zoneinfo name, e.g. TZ=Europe/Berlin (or TZ=UTC to make it explicit)",
        )
    elif not _TZ_RE.fullmatch(value):
        yield _finding(
            ctx,
            "timezone",
            "warning",
            "TZ",
            message=f"TZ={value!r} is not a zoneinfo name",
            hint="use a name such as UTC or Europe/Berlin",
        )


_RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(:[0-9]+)?")


@rule("restart-policy", "RESTART_POLICY is a valid Docker restart policy")
def restart_policy(ctx: LintContext) -> Iterator[Finding]:
    value = ctx.get("RESTART_POLICY")
    if value and not _RESTART_RE.fullmatch(value):
        yield _finding(
            ctx,
            "restart-policy",
            "error",
            "RESTART_POLICY",
            message=f"RESTART_POLICY={value!r} is not a Docker restart policy; compose refuses "
            "the file",
            hint="use unless-stopped (upstream default), always, on-failure[:N] or no",
        )


@rule("recording-jibri", "ENABLE_RECORDING and the jibri component go together")
def recording_jibri(ctx: LintContext) -> Iterator[Finding]:
    recording = ctx.flag("ENABLE_RECORDING")
    jibri = "jibri" in ctx.deploy.components
    if recording and not jibri:
        yield _finding(
            ctx,
            "recording-jibri",
            "warning",
            "ENABLE_RECORDING",
            message=f"ENABLE_RECORDING={ctx.get('ENABLE_RECORDING')!r} but 'jibri' is not in the "
            "components: the record button will find no recorder",
            hint='add "jibri" to components in deploy.toml (ignore this if jibri runs elsewhere)',
        )
    elif jibri and not recording:
        yield _finding(
            ctx,
            "recording-jibri",
            "warning",
            "ENABLE_RECORDING",
            message="'jibri' is deployed but ENABLE_RECORDING is "
            f"{ctx.get('ENABLE_RECORDING') or 'unset'!r}: prosody creates no recorder account and "
            "the record button stays hidden",
            hint="set ENABLE_RECORDING=1",
        )


@rule("bridge-xmpp-server", "a role 'jvb' host sets JVB_XMPP_SERVER: where it reaches prosody")
def bridge_xmpp_server(ctx: LintContext) -> Iterator[Finding]:
    for host in ctx.deploy.bridge_hosts:
        own = dict(host.values)
        if not (own.get("JVB_XMPP_SERVER") or ctx.get("JVB_XMPP_SERVER")):
            yield _finding(
                ctx,
                "bridge-xmpp-server",
                "error",
                "JVB_XMPP_SERVER",
                message=f"bridge host {host.label} has no JVB_XMPP_SERVER: its jvb would look for "
                "prosody at xmpp.meet.jitsi, which exists only on the main host's network",
                hint=f'in deploy.toml give {host.label} values = {{ JVB_XMPP_SERVER = "<the main '
                'host address it can reach>" }}',
            )
        elif ctx.get("JVB_XMPP_SERVER") and "JVB_XMPP_SERVER" not in own:
            yield _finding(
                ctx,
                "bridge-xmpp-server",
                "warning",
                "JVB_XMPP_SERVER",
                message=f"JVB_XMPP_SERVER={ctx.get('JVB_XMPP_SERVER')!r} is set for the whole "
                "environment: the main host's own jvb then leaves the internal network too",
                hint="set it only in the bridge hosts' values in deploy.toml",
            )


@rule(
    "bridge-advertise-ips",
    "each role 'jvb' host advertises its own JVB_ADVERTISE_IPS, not the main host's",
)
def bridge_advertise_ips(ctx: LintContext) -> Iterator[Finding]:
    for host in ctx.deploy.bridge_hosts:
        if "JVB_ADVERTISE_IPS" not in dict(host.values):
            shared = ctx.get("JVB_ADVERTISE_IPS")
            yield _finding(
                ctx,
                "bridge-advertise-ips",
                "error" if shared else "warning",
                "JVB_ADVERTISE_IPS",
                message=f"bridge host {host.label} would advertise "
                + (f"the main host's JVB_ADVERTISE_IPS {shared!r}" if shared else "no address")
                + ": clients send its media to the wrong machine (calls break at 3 people)",
                hint=f'in deploy.toml give {host.label} values = {{ JVB_ADVERTISE_IPS = "<its '
                'public IP>" }}',
            )


@rule(
    "bridge-xmpp-exposure",
    "with bridge hosts, prosody's published XMPP port is bound to XMPP_PUBLISH_ADDRESS",
)
def bridge_xmpp_exposure(ctx: LintContext) -> Iterator[Finding]:
    if ctx.deploy.bridge_hosts and not ctx.get("XMPP_PUBLISH_ADDRESS"):
        yield _finding(
            ctx,
            "bridge-xmpp-exposure",
            "warning",
            "XMPP_PUBLISH_ADDRESS",
            message=f"bridge hosts need prosody's port {ctx.get('XMPP_PORT') or '5222'}: without "
            "XMPP_PUBLISH_ADDRESS it is published on every interface of the main host",
            hint="set XMPP_PUBLISH_ADDRESS to the address the bridges reach (a private one) and "
            "firewall the port to the bridge hosts",
        )
