"""STAND-IN jicofo for tests: focus in the JVB brewery, counting bridges, REST on 8888.

Contract kept from the real image (docker-jitsi-meet stable-11146-2):
- logs into prosody as ``focus@${XMPP_AUTH_DOMAIN}`` with ``JICOFO_AUTH_PASSWORD`` (FATAL when
  empty), joins ``${JVB_BREWERY_MUC:-jvbbrewery}@${XMPP_INTERNAL_MUC_DOMAIN}`` and counts the
  occupants whose presence carries colibri stats as bridges;
- REST on port 8888, bound to 0.0.0.0 only with ``JICOFO_ENABLE_REST`` (else 127.0.0.1 inside
  the container, as in the real image, so the published 127.0.0.1:8888 answers only then);
- ``/about/health``: 404 unless ``JICOFO_ENABLE_HEALTH_CHECKS``; then 200 "OK" with at least
  one operational bridge, else 500; ``/about/version``; ``/stats`` JSON with
  ``bridge_selector.bridge_count``, ``.operational_bridge_count``, ``conferences``,
  ``participants``; ``/metrics``.
A wrong password is logged as ``SASLError using ...: not-authorized`` and retried; the count
then stays 0.
"""

from __future__ import annotations

import asyncio
import platform
import signal

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

COMPONENT = "jicofo"


class Focus:
    """State of the stand-in focus."""

    def __init__(self) -> None:
        password = env("JICOFO_AUTH_PASSWORD")
        if not password:
            fatal("Jicofo auth password must be set")
        auth_domain = env("XMPP_AUTH_DOMAIN", "auth.meet.jitsi")
        brewery = env("JVB_BREWERY_MUC", "jvbbrewery")
        muc_domain = env("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi")
        self.health_checks = env_bool("JICOFO_ENABLE_HEALTH_CHECKS", False)
        self.rest_public = env_bool("JICOFO_ENABLE_REST", False)
        self.session = BrewerySession(
            component=COMPONENT,
            jid=f"focus@{auth_domain}",
            password=password,
            server=env("XMPP_SERVER", "xmpp.meet.jitsi").split(",")[0].strip(),
            port=int(env("XMPP_PORT", "5222")),
            room=f"{brewery}@{muc_domain}",
            nick="focus",
        )

    def bridges(self) -> dict[str, dict[str, str]]:
        """nick -> stats of every bridge in the brewery (occupants with colibri stats)."""
        found: dict[str, dict[str, str]] = {}
        for nick, stats in self.session.occupants.items():
            if nick == self.session.nick or stats is None:
                continue
            found[nick] = {
                s.get("name", ""): s.get("value", "") for s in stats.iter(f"{{{COLIBRI_NS}}}stat")
            }
        return found

    def selector_stats(self) -> dict[str, int]:
        """``bridge_selector`` section of /stats."""
        bridges = self.bridges().values()
        shutting = sum(1 for b in bridges if b.get("shutting_down") == "true")
        return {
            "bridge_count": len(bridges),
            "operational_bridge_count": len(bridges) - shutting,
            "in_shutdown_bridge_count": shutting,
            "draining_bridge_count": sum(1 for b in bridges if b.get("drain") == "true"),
            "lost_bridges": 0,
        }

    async def app(self, method: str, path: str, _body: bytes = b"") -> Response:  # noqa: PLR0911 (one per route)
        """The REST API on 8888."""
        del method  # every endpoint here is read-only and answers GET and POST alike
        path = path.rstrip("/") or "/"
        if path == "/about/health":
            if not self.health_checks:
                return Response.text("Not Found\n", 404)
            if self.selector_stats()["operational_bridge_count"] >= 1:
                return Response.text("OK")
            return Response.text("No operational bridges available\n", 500)
        if path == "/about/version":
            return Response.json({"name": "Jicofo", "version": release(), "os": platform.system()})
        if path == "/stats":
            return Response.json(
                {
                    "bridge_selector": self.selector_stats(),
                    "conferences": 0,
                    "participants": 0,
                    "largest_conference": 0,
                    "total_conferences_created": 0,
                    "xmpp": {"connected": self.session.connected},
                    "version": release(),
                }
            )
        if path == "/metrics":
            sel = self.selector_stats()
            text = "".join(
                f"# TYPE jitsi_jicofo_{k} gauge\njitsi_jicofo_{k} {v}\n" for k, v in sel.items()
            )
            return Response(200, text.encode(), "text/plain; version=0.0.4")
        return Response.text("Not Found\n", 404)


async def main() -> None:
    """Run REST and the XMPP session until terminated."""
    configure_logging()
    if layout() == "rootless":
        copy_config_input("/run/jicofo/config", COMPONENT)
    focus = Focus()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    host = ALL_INTERFACES if focus.rest_public else "127.0.0.1"
    server = await serve(host, 8888, focus.app)
    log(COMPONENT, f"{release()} REST on {host}:8888 (JICOFO_ENABLE_REST={int(focus.rest_public)})")
    task = asyncio.create_task(focus.session.run_forever())
    await stop
    focus.session.leave()
    server.close()
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
