"""STAND-IN jitsi-videobridge (jvb) for tests: XMPP brewery member + REST on 8080 + UDP port.

Contract kept from the real image (docker-jitsi-meet stable-11146-2):
- logs into prosody as ``${JVB_AUTH_USER:-jvb}@${XMPP_AUTH_DOMAIN}`` with ``JVB_AUTH_PASSWORD``
  (exits with FATAL when it is empty) and joins ``${JVB_BREWERY_MUC:-jvbbrewery}@
  ${XMPP_INTERNAL_MUC_DOMAIN}`` with nick ``JVB_INSTANCE_ID`` (random when unset), publishing a
  colibri ``<stats/>`` element (drain, shutting_down, version) in its presence; the XMPP
  server is ``JVB_XMPP_SERVER:JVB_XMPP_PORT``, falling back to ``XMPP_SERVER`` and 5222 like
  the real jvb.conf template (a bridge on another host sets them to the main host);
- REST on 0.0.0.0:8080: ``/about/health`` (200, empty body, when connected and in the brewery;
  500 otherwise), ``/about/version``, ``/colibri/drain`` (GET; POST ``/enable``, ``/disable``),
  ``/metrics``; ``/colibri/stats`` only with ``COLIBRI_REST_ENABLED``; ``POST /colibri/shutdown``
  only with both ``COLIBRI_REST_ENABLED`` and ``SHUTDOWN_REST_ENABLED`` (leaves the brewery and
  exits 0, there are never conferences to wait for);
- colibri2 REST (``/colibri/v2/conferences``, only with ``COLIBRI_REST_ENABLED``): conferences
  with ICE-UDP endpoints in the colibri2 JSON format, kept until expired (tests hold a "live
  meeting" with one), counted in ``/colibri/stats`` and in the brewery presence;
- drain (on by default, no ``COLIBRI_REST_ENABLED`` needed): ``GET /colibri/drain``,
  ``POST /colibri/drain/enable|disable``; reported in ``/colibri/stats`` and the presence;
- UDP on ``JVB_PORT`` (10000): answers STUN Binding Requests with valid ICE short-term
  credentials of a live endpoint (Binding Success with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
  FINGERPRINT) and drops every other datagram silently, like the real bridge.

The ``standin-broken`` image sets ``JITSI_STANDIN_BROKEN=1``: it logs in but never joins the
brewery, so jicofo sees no bridge and /about/health fails (rollback tests).
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import uuid
import xml.etree.ElementTree as ET
from typing import cast

from jitsi_standin.colibri import PREFIX as COLIBRI2_PREFIX
from jitsi_standin.colibri import Colibri
from jitsi_standin.common import (
    ALL_INTERFACES,
    copy_config_input,
    env,
    env_bool,
    fatal,
    layout,
    log,
    release,
)
from jitsi_standin.httpd import Response, serve
from jitsi_standin.xmpp import COLIBRI_NS, BrewerySession, configure_logging

COMPONENT = "jvb"
STATS_INTERVAL = 5.0


class Bridge:
    """State of the stand-in bridge."""

    def __init__(self) -> None:
        self.instance_id = env("JVB_INSTANCE_ID") or str(uuid.uuid4())
        self.drain = False
        self.shutting_down = False
        self.colibri_rest = env_bool("COLIBRI_REST_ENABLED", False)
        self.shutdown_rest = env_bool("SHUTDOWN_REST_ENABLED", False)
        self.broken = env_bool("JITSI_STANDIN_BROKEN", False)
        self.udp_port = int(env("JVB_PORT", "10000"))
        self.udp_packets = 0
        self.colibri = Colibri(self.udp_port, lambda text: log(COMPONENT, text))
        auth_domain = env("XMPP_AUTH_DOMAIN", "auth.meet.jitsi")
        brewery = env("JVB_BREWERY_MUC", "jvbbrewery")
        muc_domain = env("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi")
        password = env("JVB_AUTH_PASSWORD")
        if not password:
            fatal("JVB auth password must be set")
        self.session = BrewerySession(
            component=COMPONENT,
            jid=f"{env('JVB_AUTH_USER', 'jvb')}@{auth_domain}",
            password=password,
            server=env("JVB_XMPP_SERVER", env("XMPP_SERVER", "xmpp.meet.jitsi"))
            .split(",")[0]
            .strip(),
            port=int(env("JVB_XMPP_PORT", "5222")),
            room=f"{brewery}@{muc_domain}",
            nick=self.instance_id,
            presence_payload=self.stats_element,
            join_room=not self.broken,
        )

    @property
    def healthy(self) -> bool:
        """Connected to XMPP and a member of the brewery."""
        return self.session.connected and self.session.in_room

    def stats(self) -> dict[str, object]:
        """The subset of colibri stats the product looks at."""
        joined = 1 if self.session.in_room else 0
        return {
            "healthy": self.healthy,
            "drain": self.drain,
            "shutting_down": self.shutting_down,
            "graceful_shutdown": self.shutting_down,
            "conferences": len(self.colibri.conferences),
            "participants": self.colibri.endpoint_count,
            "endpoints": self.colibri.endpoint_count,
            "local_endpoints": self.colibri.endpoint_count,
            "octo_endpoints": 0,
            "stress_level": 0.0,
            "endpoints_ice_failed": 0,
            "muc_clients_configured": 1,
            "muc_clients_connected": 1 if self.session.connected else 0,
            "mucs_configured": 1,
            "mucs_joined": joined,
            "version": release(),
            "region": env("JVB_OCTO_REGION"),
            "relay_id": env("JVB_OCTO_RELAY_ID"),
        }

    def stats_element(self) -> ET.Element:
        """The colibri <stats/> element sent in the brewery presence. Its conference counts
        leave jitsi-ops' probe conferences out: the stand-in jicofo sums them as the
        conferences it hosts, and the real jicofo never counts a probe (an expired probe's
        presence could otherwise still be on its way when the conference guard reads)."""
        conferences, participants = self.colibri.meetings()
        stats = ET.Element(f"{{{COLIBRI_NS}}}stats")
        for name, value in (
            ("drain", str(self.drain).lower()),
            ("shutting_down", str(self.shutting_down).lower()),
            ("graceful_shutdown", str(self.shutting_down).lower()),
            ("stress_level", "0.0"),
            ("conferences", str(conferences)),
            ("participants", str(participants)),
            ("version", release()),
        ):
            ET.SubElement(stats, f"{{{COLIBRI_NS}}}stat", name=name, value=value)
        return stats

    def metrics(self) -> str:
        """Prometheus text, a few gauges named like the real bridge's."""
        lines = []
        for name, value in (
            ("jitsi_jvb_healthy", int(self.healthy)),
            ("jitsi_jvb_drain", int(self.drain)),
            ("jitsi_jvb_graceful_shutdown", int(self.shutting_down)),
            ("jitsi_jvb_conferences", len(self.colibri.conferences)),
            ("jitsi_jvb_endpoints", self.colibri.endpoint_count),
            ("jitsi_jvb_xmpp_connected", int(self.session.connected)),
            ("jitsi_jvb_mucs_joined", int(self.session.in_room)),
            ("jitsi_jvb_udp_packets_received_total", self.udp_packets),
        ):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"

    async def app(self, method: str, path: str, body: bytes = b"") -> Response:  # noqa: PLR0911
        """The REST API on 8080 (one return per route)."""
        path = path.rstrip("/") or "/"
        if path == COLIBRI2_PREFIX or path.startswith(COLIBRI2_PREFIX + "/"):
            if not self.colibri_rest:
                return Response.text("Not Found\n", 404)
            response = self.colibri.handle(method, path, body)
            if method != "GET":
                # The real bridge re-sends its stats to the brewery every few seconds; at once
                # here, so jicofo's /stats counts a conference as soon as it exists.
                self.session.send_presence_update()
            return response
        if path == "/about/health":
            return Response(200 if self.healthy else 500)
        if path == "/about/version":
            return Response.json({"name": "JVB", "version": release(), "os": platform.system()})
        if path == "/metrics":
            return Response(200, self.metrics().encode(), "text/plain; version=0.0.4")
        if path == "/colibri/drain" and method == "GET":
            return Response.json({"drain": self.drain})
        if path in ("/colibri/drain/enable", "/colibri/drain/disable"):
            if method != "POST":
                return Response.text("use POST\n", 405)
            self.drain = path.endswith("/enable")
            log(COMPONENT, f"drain {'enabled' if self.drain else 'disabled'}")
            self.session.send_presence_update()
            return Response(200)
        if path == "/colibri/stats" and self.colibri_rest:
            return Response.json(self.stats())
        if path == "/colibri/shutdown" and self.colibri_rest and self.shutdown_rest:
            if method != "POST":
                return Response.text("use POST\n", 405)
            asyncio.get_running_loop().call_soon(self.begin_shutdown)
            return Response(200)
        return Response.text("Not Found\n", 404)

    def begin_shutdown(self) -> None:
        """Graceful shutdown: announce it, leave the brewery, exit 0 (no conferences to drain)."""
        log(COMPONENT, "graceful shutdown requested")
        self.shutting_down = True
        self.session.send_presence_update()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, self.session.leave)
        loop.call_later(1.0, lambda: os._exit(0))


class _Udp(asyncio.DatagramProtocol):
    """The media port: answers valid ICE connectivity checks only, drops everything else."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.bridge.udp_packets += 1
        reply = self.bridge.colibri.stun_answer(data, (str(addr[0]), int(addr[1])))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def main() -> None:
    """Render, then run REST, UDP and the XMPP session until terminated."""
    configure_logging()
    if layout() == "rootless":
        copy_config_input("/run/jvb/config", COMPONENT)
    bridge = Bridge()
    _write_rendered_config(bridge)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    # The media port is bound before REST answers: a created endpoint is reachable at once.
    await loop.create_datagram_endpoint(
        lambda: _Udp(bridge), local_addr=(ALL_INTERFACES, bridge.udp_port)
    )
    server = await serve(ALL_INTERFACES, 8080, bridge.app)
    log(COMPONENT, f"{release()} REST on :8080, media UDP on :{bridge.udp_port}")
    if bridge.broken:
        log(COMPONENT, "STAND-IN BROKEN RELEASE: this bridge will never join the brewery")
    task = asyncio.create_task(bridge.session.run_forever())

    async def announce() -> None:
        # Like the real bridge, which re-sends its stats to the brewery periodically: jicofo
        # keeps its load current and notices a bridge that is gone without leaving.
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            bridge.session.send_presence_update()

    async def expire() -> None:
        # The real bridge's expire thread (entity-expiration.check-interval; shorter here).
        while True:
            await asyncio.sleep(10)
            bridge.colibri.expire_idle()

    announcer = asyncio.create_task(announce())
    expirer = asyncio.create_task(expire())
    await stop
    bridge.session.leave()
    server.close()
    task.cancel()
    announcer.cancel()
    expirer.cancel()


def _write_rendered_config(bridge: Bridge) -> None:
    """Write a jvb.conf-like summary where the real image renders its config (no secrets)."""
    target = "/run/jvb/config/jvb.conf" if layout() == "rootless" else "/config/jvb.conf"
    text = (
        "# STAND-IN jvb rendered config (jitsi-ops tests), no secrets\n"
        f"instance-id = {bridge.instance_id}\n"
        f"xmpp-server = {bridge.session.server}:{bridge.session.port}\n"
        f"brewery = {bridge.session.room}\n"
        f"udp-port = {bridge.udp_port}\n"
    )
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        log(COMPONENT, f"cannot write {target}: {exc.strerror}")


if __name__ == "__main__":
    asyncio.run(main())
