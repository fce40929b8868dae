"""STAND-IN jicofo for tests: focus in the JVB brewery, counting bridges, REST on 8888.

Contract kept from the real image (docker-jitsi-meet stable-11146-2):
- logs into prosody as ``focus@${XMPP_AUTH_DOMAIN}`` with ``JICOFO_AUTH_PASSWORD`` (FATAL when
  empty), joins ``${JVB_BREWERY_MUC:-jvbbrewery}@${XMPP_INTERNAL_MUC_DOMAIN}`` and counts the
  occupants whose presence carries colibri stats as bridges;
- REST on port 8888, bound to 0.0.0.0 only with ``JICOFO_ENABLE_REST`` (else 127.0.0.1 inside
  the container, as in the real image, so the published 127.0.0.1:8888 answers only then);
- ``/about/health``: 404 unless ``JICOFO_ENABLE_HEALTH_CHECKS``; then 200 "OK" with at least
  one operational bridge, else 500; ``/about/version``; ``/stats`` JSON with
  ``bridge_selector.bridge_count``, ``.operational_bridge_count`` (shutting-down bridges not
  counted), ``.draining_bridge_count``, ``.available_bridge_count`` (what the real selector would
  place a new conference on: not draining, unless every bridge drains), and ``conferences``,
  ``participants`` summed over the bridges' presence stats (the stand-in hosts no conference
  itself: a test's "live meeting" is a colibri2 conference on a bridge); ``/metrics``.
A wrong password is logged as ``SASLError using ...: not-authorized`` and retried; the count
then stays 0.
"""

from __future__ import annotations

import asyncio
import platform
import signal
import time

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
STALE_AFTER = 20.0  # seconds without a bridge presence (bridges re-send theirs every 5 s)


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
        now = time.monotonic()
        for nick, stats in self.session.occupants.items():
            if nick == self.session.nick or stats is None:
                continue
            if now - self.session.seen.get(nick, now) > STALE_AFTER:
                continue  # gone without leaving (killed): lost, as the real jicofo decides
            found[nick] = {
                s.get("name", ""): s.get("value", "") for s in stats.iter(f"{{{COLIBRI_NS}}}stat")
            }
        return found

    def selector_stats(self) -> dict[str, int]:
        """``bridge_selector`` section of /stats."""
        bridges = self.bridges().values()
        shutting = sum(1 for b in bridges if b.get("shutting_down") == "true")
        operational = len(bridges) - shutting
        draining = sum(
            1 for b in bridges if b.get("drain") == "true" and b.get("shutting_down") != "true"
        )
        return {
            "bridge_count": len(bridges),
            "operational_bridge_count": operational,
            "in_shutdown_bridge_count": shutting,
            "draining_bridge_count": draining,
            # The real selector prefers non-draining bridges and uses a draining one only
            # when it is the only choice.
            "available_bridge_count": (operational - draining) or operational,
            "lost_bridges": 0,
        }

    def load(self) -> tuple[int, int]:
        """(conferences, participants) summed over the bridges' presence stats."""
        conferences = participants = 0
        for stats in self.bridges().values():
            conferences += _count(stats.get("conferences"))
            participants += _count(stats.get("participants"))
        return conferences, participants

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
            conferences, participants = self.load()
            return Response.json(
                {
                    "bridge_selector": self.selector_stats(),
                    "conferences": conferences,
                    "participants": participants,
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


def _count(text: str | None) -> int:
    try:
        return max(0, int(text or "0"))
    except ValueError:
        return 0


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
