"""verify.derive: what a healthy deployment must look like, and parsers of what hosts report."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.verify import derive
from jitsi_ops.versions import Layout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verify"
REPO = Path(__file__).resolve().parents[2]

SANDBOX = {
    "PUBLIC_URL": "https://127.0.0.1:8443",
    "ETHERPAD_URL_BASE": "http://etherpad.meet.jitsi:9001",
    "WHITEBOARD_COLLAB_SERVER_URL_BASE": "http://whiteboard.meet.jitsi",
}

CONFIG_CASES = [
    (
        "sandbox: every URL from PUBLIC_URL",
        SANDBOX,
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "muc.meet.jitsi",
            "bosh": "https://127.0.0.1:8443/http-bind",
            "websocket": "wss://127.0.0.1:8443/xmpp-websocket",
            "whiteboard.collabServerBaseUrl": "https://127.0.0.1:8443",
            "etherpad_base": "https://127.0.0.1:8443/etherpad/p/",
        },
    ),
    (
        "trailing slash: stripped for bosh/websocket, raw for etherpad and whiteboard",
        {**SANDBOX, "PUBLIC_URL": "https://meet.example.com/"},
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "muc.meet.jitsi",
            "bosh": "https://meet.example.com/http-bind",
            "websocket": "wss://meet.example.com/xmpp-websocket",
            "whiteboard.collabServerBaseUrl": "https://meet.example.com/",
            "etherpad_base": "https://meet.example.com//etherpad/p/",
        },
    ),
    (
        "unset PUBLIC_URL: the template default",
        {},
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "muc.meet.jitsi",
            "bosh": "https://localhost:8443/http-bind",
            "websocket": "wss://localhost:8443/xmpp-websocket",
        },
    ),
    (
        "relative BOSH, websocket off",
        {"PUBLIC_URL": "https://m.example", "BOSH_RELATIVE": "1", "ENABLE_XMPP_WEBSOCKET": "0"},
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "muc.meet.jitsi",
            "bosh": "/http-bind",
            "websocket": None,
        },
    ),
    (
        "subdomains: muc is the first label of XMPP_MUC_DOMAIN + XMPP_DOMAIN",
        {
            "PUBLIC_URL": "https://m.example",
            "XMPP_DOMAIN": "example.org",
            "XMPP_MUC_DOMAIN": "conference.chat.example.org",
        },
        {
            "hosts.domain": "example.org",
            "hosts.muc": "conference.example.org",
            "bosh": "https://m.example/http-bind",
            "websocket": "wss://m.example/xmpp-websocket",
        },
    ),
    (
        "no subdomains: muc verbatim",
        {
            "PUBLIC_URL": "https://m.example",
            "ENABLE_SUBDOMAINS": "0",
            "XMPP_MUC_DOMAIN": "conference.chat.example.org",
        },
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "conference.chat.example.org",
            "bosh": "https://m.example/http-bind",
            "websocket": "wss://m.example/xmpp-websocket",
        },
    ),
    (
        "public collab and etherpad URLs are used verbatim",
        {
            "PUBLIC_URL": "https://m.example",
            "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL": "https://wb.example",
            "ETHERPAD_PUBLIC_URL": "https://pad.example/p/",
        },
        {
            "hosts.domain": "meet.jitsi",
            "hosts.muc": "muc.meet.jitsi",
            "bosh": "https://m.example/http-bind",
            "websocket": "wss://m.example/xmpp-websocket",
            "whiteboard.collabServerBaseUrl": "https://wb.example",
            "etherpad_base": "https://pad.example/p/",
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "values", "expected"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_expected_config_js(name: str, values: dict[str, str], expected: dict[str, str]) -> None:
    got = derive.expected_config_js(values)
    assert got == expected, f"{name}: {got}"


def test_config_mismatches_name_served_and_expected_values() -> None:
    expected = derive.expected_config_js(SANDBOX)
    served = {
        "hosts": {"domain": "meet.jitsi", "muc": "muc.meet.jitsi"},
        "bosh": "https://localhost:8443/http-bind",
        "whiteboard": {"collabServerBaseUrl": "https://127.0.0.1:8443"},
        "etherpad_base": "https://127.0.0.1:8443/etherpad/p/",
    }
    lines = derive.config_mismatches(expected, served)
    assert lines == [
        "bosh: served 'https://localhost:8443/http-bind', "
        "expected 'https://127.0.0.1:8443/http-bind'",
        "websocket: served absent, expected 'wss://127.0.0.1:8443/xmpp-websocket'",
    ], lines
    assert derive.config_mismatches({"websocket": None}, {"websocket": ""}) == []


SOCKETIO_CASES = [
    ("https://m.example:8443", ("https://m.example:8443", "/")),
    ("https://m.example/", ("https://m.example", "/")),
    ("https://m.example/socket.io/", ("https://m.example", "/socket.io/")),
    ("https://m.example/whiteboard?room=1", ("https://m.example", "/whiteboard")),
    ("wss://wb.example", ("https://wb.example", "/")),
    ("http://127.0.0.1:8000", ("http://127.0.0.1:8000", "/")),
]


@pytest.mark.parametrize(("url", "expected"), SOCKETIO_CASES)
def test_socketio_target_namespace_is_the_url_path(url: str, expected: tuple[str, str]) -> None:
    assert derive.socketio_target(url) == expected, url


@pytest.mark.parametrize("url", ["", "m.example", "ftp://m.example/"])
def test_socketio_target_refuses_non_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"socket\.io"):
        derive.socketio_target(url)


def test_parse_compose_ps_json_lines() -> None:
    containers = derive.parse_compose_ps((FIXTURES / "compose-ps-healthy.jsonl").read_text())
    services = {c.service: c for c in containers}
    assert sorted(services) == ["etherpad", "jicofo", "jvb", "prosody", "web", "whiteboard"]
    assert all(c.state == "running" for c in containers), [c.state for c in containers]
    # Exposed-only ports (PublishedPort 0) are not publications.
    assert services["prosody"].publishers == (), services["prosody"].publishers
    assert services["jvb"].publishers == (
        derive.Publisher("127.0.0.1", 8080, 8080, "tcp"),
        derive.Publisher("127.0.0.1", 10000, 10000, "udp"),
    ), services["jvb"].publishers


def test_parse_compose_ps_json_array_of_older_compose() -> None:
    containers = derive.parse_compose_ps((FIXTURES / "compose-ps-array.json").read_text())
    assert [c.service for c in containers] == ["web", "jvb"]
    udp = derive.publishers_of(containers, "jvb", 10000, "udp")
    assert [p.address for p in udp] == [derive.ALL_IPV4, "::"], udp
    assert derive.parse_compose_ps("") == []


def test_parse_compose_ps_exited_container_has_no_publishers() -> None:
    containers = derive.parse_compose_ps((FIXTURES / "compose-ps-jvb-exited.jsonl").read_text())
    jvb = next(c for c in containers if c.service == "jvb")
    assert (jvb.state, jvb.publishers) == ("exited", ()), jvb


def test_parse_inspect_by_service() -> None:
    found = derive.parse_inspect((FIXTURES / "docker-inspect.json").read_text())
    assert sorted(found) == ["jicofo", "jvb", "prosody", "web"], sorted(found)
    jvb = found["jvb"]
    assert (jvb.name, jvb.status, jvb.restarting, jvb.restart_count) == (
        "jitsi-sandbox-jvb-1",
        "restarting",
        True,
        3,
    ), jvb
    assert found["web"].config_image == "127.0.0.1:5000/jitsi/web:stable-11146-2"
    assert found["web"].image_id == "sha256:" + "a1" * 32


VERSION_CASES = [
    ("20.10.24+dfsg1", (20, 10, 24)),
    ("v2.26.1", (2, 26, 1)),
    ("2.26.1-4", (2, 26, 1)),
    ("27.3", (27, 3)),
    ("Docker Compose version v2.29.7", (2, 29, 7)),
    ("unknown", None),
]


@pytest.mark.parametrize(("text", "expected"), VERSION_CASES)
def test_parse_version(text: str, expected: tuple[int, ...] | None) -> None:
    assert derive.parse_version(text) == expected, text


AT_LEAST_CASES = [
    ((20, 10, 24), (20, 10), True),
    ((20, 9, 99), (20, 10), False),
    ((27,), (20, 10), True),
    ((2, 20), (2, 20), True),
    ((2, 19, 1), (2, 20), False),
]


@pytest.mark.parametrize(("version", "floor", "expected"), AT_LEAST_CASES)
def test_at_least(version: tuple[int, ...], floor: tuple[int, ...], expected: bool) -> None:
    assert derive.at_least(version, floor) is expected, (version, floor)


INTERPOLATION_CASES = [
    ("${A:-x}/web:${B:-y}", {}, "x/web:y"),
    ("${A:-x}/web:${B:-y}", {"A": "r", "B": "t"}, "r/web:t"),
    ("${A:-x}", {"A": ""}, "x"),
    ("${A-x}", {"A": ""}, ""),
    ("${A-x}", {}, "x"),
    ("${P:+${P:-}:}${H}:8000", {"P": "127.0.0.1", "H": "8000"}, "127.0.0.1:8000:8000"),
    ("${P:+${P:-}:}${H}:8000", {"H": "80"}, "80:8000"),
    ("$${NOT}", {"NOT": "x"}, "${NOT}"),
]


@pytest.mark.parametrize(("text", "values", "expected"), INTERPOLATION_CASES)
def test_interpolate_compose(text: str, values: dict[str, str], expected: str) -> None:
    assert derive.interpolate_compose(text, values) == expected, (text, values)


def test_expected_images_follow_the_shipped_compose_files() -> None:
    files = ["docker-compose.yml", "etherpad.yml", "whiteboard.yml"]
    rootless = derive.expected_images(REPO / "compose" / "rootless", files, {})
    assert rootless == {
        "web": "ghcr.io/jitsi/web:stable-11146-2",
        "prosody": "ghcr.io/jitsi/prosody:stable-11146-2",
        "jicofo": "ghcr.io/jitsi/jicofo:stable-11146-2",
        "jvb": "ghcr.io/jitsi/jvb:stable-11146-2",
        "etherpad": "etherpad/etherpad:2.0.3",
        "whiteboard": "jitsi/excalidraw-backend:2026.3.0",
    }, rootless
    sandbox = derive.expected_images(
        REPO / "compose" / "rootless",
        files[:1],
        {"JITSI_IMAGE_REPO": "127.0.0.1:5000/jitsi", "JITSI_IMAGE_VERSION": "standin-broken"},
    )
    assert sandbox["jvb"] == "127.0.0.1:5000/jitsi/jvb:standin-broken", sandbox
    legacy = derive.expected_images(REPO / "compose" / "legacy", files[:1], {})
    assert legacy["web"] == "jitsi/web:stable-11031", legacy


NORMALISE_CASES = [
    ("jitsi/web:stable-11031", "jitsi/web:stable-11031"),
    ("docker.io/jitsi/web:stable-11031", "jitsi/web:stable-11031"),
    ("docker.io/library/nginx", "nginx:latest"),
    ("127.0.0.1:5000/jitsi/web", "127.0.0.1:5000/jitsi/web:latest"),
    ("ghcr.io/jitsi/web@sha256:abc", "ghcr.io/jitsi/web@sha256:abc"),
]


@pytest.mark.parametrize(("ref", "expected"), NORMALISE_CASES)
def test_normalise_image(ref: str, expected: str) -> None:
    assert derive.normalise_image(ref) == expected, ref


P = derive.Publisher
BINDING_CASES = [
    (
        "all interfaces, upstream",
        [P(derive.ALL_IPV4, 443, 443, "tcp"), P("::", 443, 443, "tcp")],
        443,
        "",
        [],
    ),
    ("PUBLISH_ADDRESS honoured", [P("127.0.0.1", 8443, 8443, "tcp")], 8443, "127.0.0.1", []),
    (
        "narrowed without PUBLISH_ADDRESS",
        [P("127.0.0.1", 8443, 8443, "tcp")],
        8443,
        "",
        ["HTTPS_PORT bound to ['127.0.0.1'], expected all interfaces"],
    ),
    (
        "wrong host port",
        [P(derive.ALL_IPV4, 8443, 9443, "tcp")],
        443,
        "",
        ["HTTPS_PORT published on host port(s) [9443], expected 443"],
    ),
    ("not published", [], 443, "", ["HTTPS_PORT is not published (no binding for host port 443)"]),
]


@pytest.mark.parametrize(
    ("name", "bindings", "port", "publish", "expected"),
    BINDING_CASES,
    ids=[c[0] for c in BINDING_CASES],
)
def test_binding_problems(
    name: str, bindings: list[derive.Publisher], port: int, publish: str, expected: list[str]
) -> None:
    got = derive.binding_problems(bindings, port, publish, "HTTPS_PORT")
    assert got == expected, f"{name}: {got}"


def test_parse_df_in_argument_order() -> None:
    text = (
        "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
        "/dev/vda1         30787492 12069152  17129156      42% /\n"
        "tmpfs              1024000       12   1023988       1% /srv\n"
    )
    entries = derive.parse_df(text, ["/opt/jitsi", "/srv/config"])
    assert entries == [
        derive.DiskFree("/opt/jitsi", "/", 16727),
        derive.DiskFree("/srv/config", "/srv", 999),
    ], entries


def test_parse_ip_addresses() -> None:
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n"
        "2: eth0    inet 203.0.113.7/24 brd 203.0.113.255 scope global eth0\\ ...\n"
        "2: eth0    inet6 fe80::1%eth0/64 scope link \\ ...\n"
    )
    assert derive.parse_ip_addresses(text) == ["127.0.0.1", "::1", "203.0.113.7", "fe80::1"]


WRITABLE_CASES = [
    ("owned by 1000, 0755", 1000, 1000, 0o755, True),
    ("owned by 1000, 0555", 1000, 1000, 0o555, False),
    ("root, group 1000, 0775", 0, 1000, 0o775, True),
    ("root, 0755", 0, 0, 0o755, False),
    ("root, 0777", 0, 0, 0o777, True),
    ("root, 1777 (sticky)", 0, 0, 0o1777, True),
]


@pytest.mark.parametrize(
    ("name", "uid", "gid", "mode", "expected"), WRITABLE_CASES, ids=[c[0] for c in WRITABLE_CASES]
)
def test_writable_by_uid_1000(name: str, uid: int, gid: int, mode: int, expected: bool) -> None:
    assert derive.writable_by(uid, gid, mode) is expected, name


def test_advertised_addresses_and_verdict() -> None:
    advertised = derive.advertised_addresses("192.168.1.1, 1.2.3.4#12000,,[fe80::1]#12000")
    assert advertised == ["192.168.1.1", "1.2.3.4", "fe80::1"], advertised
    ok, observed = derive.advertise_verdict(["1.2.3.4"], ["10.0.0.5"], ["1.2.3.4"])
    assert ok and "NAT" in observed, observed
    ok, observed = derive.advertise_verdict(["127.0.0.1"], ["127.0.0.1", "::1"], [])
    assert ok and "address of the host" in observed, observed
    ok, observed = derive.advertise_verdict(["198.51.100.9"], ["10.0.0.5"], ["203.0.113.7"])
    assert not ok and "198.51.100.9" in observed and "203.0.113.7" in observed, observed
    assert derive.advertise_verdict([], ["10.0.0.5"], []) == (False, "JVB_ADVERTISE_IPS is not set")


JVB_VERSION_CASES = [
    ("stand-in image reports the tag", "stable-11146-2", "stable-11146-2", "pass"),
    ("another release", "stable-11031", "stable-11146-2", "fail"),
    ("tag inside a longer string", "jvb stable-11146-2 (docker)", "stable-11146-2", "pass"),
    ("build number only", "2.3.11146-1", "stable-11146-2", "pass"),
    ("upstream package version", "2.3.225-g9fc73a5f", "stable-11146-2", "warn"),
    ("nothing pinned", "2.3.225-g9fc73a5f", None, "warn"),
    ("empty answer", "", "stable-11146-2", "fail"),
]


@pytest.mark.parametrize(
    ("name", "reported", "release", "expected"),
    JVB_VERSION_CASES,
    ids=[c[0] for c in JVB_VERSION_CASES],
)
def test_jvb_version_verdict(name: str, reported: str, release: str | None, expected: str) -> None:
    verdict, observed = derive.jvb_version_verdict(reported, release)
    assert verdict == expected, f"{name}: {verdict} ({observed})"


def test_bosh_session_and_terminate_answers() -> None:
    request = derive.bosh_session_request("meet.jitsi", 4242)
    assert "to='meet.jitsi'" in request and "rid='4242'" in request, request
    created = "<body xmlns='http://jabber.org/protocol/httpbind' sid='abc123' wait='60'/>"
    assert derive.bosh_sid(created) == "abc123"
    refused = (
        "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' "
        "condition='host-unknown'/>"
    )
    assert derive.bosh_sid(refused) is None
    assert derive.bosh_condition(refused) == "host-unknown"
    assert derive.bosh_sid("<html>It works!</html>") is None
    assert derive.bosh_condition("not xml at all") == "not xml at all"


def test_flags_read_like_upstream_templates() -> None:
    values = {"A": "1", "B": "0", "C": "false", "D": "no", "E": ""}
    got = [derive.flag(values, k, default=True) for k in "ABCDEF"]
    # "no" is true for tpl's toBool (jitsi-facts 2.9); empty and unset take the default.
    assert got == [True, False, False, True, True, True], got


def test_layout_dirs() -> None:
    assert "storage/web" in derive.layout_dirs(Layout.ROOTLESS)
    assert "storage/web" not in derive.layout_dirs(Layout.LEGACY)


def test_parse_stat_skips_missing_paths() -> None:
    text = (
        "/srv/c/storage/web|directory|1000|1000|755\n"
        "/srv/c/a|b/weird|directory|0|0|1777\n"
        "/srv/c/.env|regular file|0|0|600\n"
    )
    found = derive.parse_stat(text)
    assert found == {
        "/srv/c/storage/web": derive.StatInfo("directory", 1000, 1000, 0o755),
        "/srv/c/a|b/weird": derive.StatInfo("directory", 0, 0, 0o1777),
        "/srv/c/.env": derive.StatInfo("regular file", 0, 0, 0o600),
    }, found
