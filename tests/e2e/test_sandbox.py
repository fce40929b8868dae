"""The sandbox smoke: the product's compose files and rendered .env, applied over real SSH to a
real dockerd, serving the stand-in images, probed from outside like a user's browser would."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
import socketio

from jitsi_ops.configjs import lookup, parse_config_js
from jitsi_ops.settings import Environment
from jitsi_ops.verify.derive import origin_of
from jitsi_ops.verify.tlstrust import Trust, pem_to_der
from tests.e2e.conftest import run_invoke

BASE = "https://127.0.0.1:8443"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll `probe` until it returns a truthy value; fail with the last observation."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (requests.RequestException, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what} not reached within {timeout}s; last observation: {last!r}")


def pinned_session(cert_pem: str) -> requests.Session:
    """A session that trusts exactly the sandbox certificate (pinned by fingerprint), nothing else."""
    trust = Trust(
        mode="pinned", origin=origin_of(BASE), pinned_der=pem_to_der(cert_pem), pinned_source="host"
    )
    return trust.session()


def operational_bridges() -> int:
    """jicofo's count of bridges it can use (/stats -> bridge_selector)."""
    stats = requests.get("http://127.0.0.1:8888/stats", timeout=5).json()
    return int(stats["bridge_selector"]["operational_bridge_count"])


def apply(env: dict[str, str] | None = None) -> None:
    result = run_invoke("apply", "--env", "sandbox", env=env)
    assert result.returncode == 0, f"apply failed: {result.stdout}\n{result.stderr}"


def served_cert() -> str:
    return ssl.get_server_certificate(("127.0.0.1", 8443))


def test_sandbox_stack_serves_over_https_and_people_can_meet(
    clean_sandbox: Environment, sandbox_runner: Any
) -> None:
    apply()
    pem = wait_for("TLS on 127.0.0.1:8443", served_cert)
    # The certificate the web container created on first start lives in CONFIG on the host.
    host_pem = sandbox_runner.get(f"{clean_sandbox.config_dir}/storage/web/keys/cert.crt").decode()
    assert ssl.PEM_cert_to_DER_cert(host_pem) == ssl.PEM_cert_to_DER_cert(pem), (
        "served cert is not the host's"
    )
    session = pinned_session(host_pem)

    home = wait_for("HTTPS 200 on /", lambda: session.get(f"{BASE}/", timeout=5))
    assert home.status_code == 200, home.status_code

    config = parse_config_js(session.get(f"{BASE}/config.js", timeout=5).text)
    assert config.get("bosh") == "https://127.0.0.1:8443/http-bind", config.get("bosh")
    assert config.get("websocket") == "wss://127.0.0.1:8443/xmpp-websocket", config.get("websocket")
    assert lookup(config, "hosts.domain") == "meet.jitsi"
    assert lookup(config, "whiteboard.collabServerBaseUrl") == "https://127.0.0.1:8443"
    assert config.get("etherpad_base") == "https://127.0.0.1:8443/etherpad/p/"

    # BOSH through nginx to the real prosody: a session-creation request gets a sid.
    body = (
        "<body rid='4242' xmlns='http://jabber.org/protocol/httpbind' to='meet.jitsi' "
        "xml:lang='en' wait='10' hold='1' ver='1.6' xmpp:version='1.0' "
        "xmlns:xmpp='urn:xmpp:xbosh'/>"
    )
    bosh = session.post(
        f"{BASE}/http-bind", data=body, headers={"Content-Type": "text/xml"}, timeout=15
    )
    assert bosh.status_code == 200, bosh.text[:200]
    assert ElementTree.fromstring(bosh.text).get("sid"), bosh.text[:200]

    # Whiteboard: namespace "/" connects through PUBLIC_URL; "/socket.io/" is refused by the server.
    # The threaded socket.io client occasionally fails a wss handshake; one retry absorbs that.
    for attempt in range(2):
        client = socketio.Client(http_session=session, ssl_verify=False, reconnection=False)
        try:
            client.connect(BASE, transports=["websocket"], namespaces=["/"], wait_timeout=10)
            break
        except socketio.exceptions.ConnectionError:
            if attempt:
                raise
    assert client.connected
    client.disconnect()
    wrong = socketio.Client(http_session=session, ssl_verify=False, reconnection=False)
    refusals: list[Any] = []
    wrong.on("connect_error", refusals.append, namespace="/socket.io/")
    with pytest.raises(socketio.exceptions.ConnectionError):
        wrong.connect(BASE, transports=["websocket"], namespaces=["/socket.io/"], wait_timeout=10)
    assert refusals == [{"message": "Invalid namespace"}], refusals

    wait_for("jicofo sees one bridge", lambda: operational_bridges() == 1)

    # A rotated JVB password (what re-running gen-passwords.sh does) locks jvb out of prosody.
    apply(env={"JITSI_OPS_JVB_AUTH_PASSWORD": "0123456789abcdef0123456789abcdef"})
    wait_for("jicofo losing its bridge", lambda: operational_bridges() == 0)
    jvb_log = subprocess.run(
        ["docker", "logs", "jitsi-sandbox-jvb-1"], capture_output=True, text=True, check=False
    )
    assert "not-authorized" in jvb_log.stdout + jvb_log.stderr, "jvb did not log the auth failure"


def test_compose_config_round_trips_the_tricky_value(
    clean_sandbox: Environment, tmp_path: Path
) -> None:
    tricky = "a b#c$d'e\"f\\g$(id)"
    rendered = tmp_path / ".env"
    result = run_invoke(
        "render",
        "--env",
        "sandbox",
        "--output",
        str(rendered),
        env={"JITSI_OPS_ETHERPAD_TITLE": tricky},
    )
    assert result.returncode == 0, result.stderr
    compose_dir = Path(__file__).resolve().parents[2] / "compose" / "rootless"
    config = subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            "roundtrip",
            "--env-file",
            str(rendered),
            "-f",
            str(compose_dir / "docker-compose.yml"),
            "-f",
            str(compose_dir / "etherpad.yml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    environment = json.loads(config.stdout)["services"]["etherpad"]["environment"]
    # `config` escapes a literal $ as $$ in its output; anything else means it was interpolated.
    assert environment["TITLE"].replace("$$", "$") == tricky, environment["TITLE"]
    assert not (tmp_path / "id").exists()
