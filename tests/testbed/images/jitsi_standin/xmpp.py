"""One XMPP client session kept alive and joined to the JVB brewery MUC (jicofo, jvb stand-ins).

Logs into the real prosody with SASL (SCRAM over STARTTLS). Like the real Java components it
does not verify prosody's self-signed certificate. Failures are logged the way operators grep
for them (``SASLError ... not-authorized``) and retried forever, so a rotated password shows up
as a bridge missing from the brewery.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import slixmpp

from jitsi_standin.common import log

MUC_NS = "http://jabber.org/protocol/muc"
COLIBRI_NS = "http://jitsi.org/protocol/colibri"
RETRY_SECONDS = 2.0


def configure_logging() -> None:
    """slixmpp's own warnings on stdout, in one line each, next to our log lines."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stdout,
    )


class BrewerySession:
    """Connects as ``jid``, joins ``room`` as ``nick`` and tracks the room's occupants."""

    def __init__(
        self,
        *,
        component: str,
        jid: str,
        password: str,
        server: str,
        port: int,
        room: str,
        nick: str,
        presence_payload: Callable[[], ET.Element | None] = lambda: None,
        join_room: bool = True,
    ) -> None:
        self.component = component
        self.jid = jid
        self._password = password
        self.server = server
        self.port = port
        self.room = room
        self.nick = nick
        self.presence_payload = presence_payload
        self.join_room = join_room
        self.connected = False
        self.in_room = False
        # nick -> the colibri <stats/> element of that occupant's presence (None without one)
        self.occupants: dict[str, ET.Element | None] = {}
        # nick -> when its last presence arrived (bridges re-send theirs every few seconds)
        self.seen: dict[str, float] = {}
        self._client: slixmpp.ClientXMPP | None = None
        self._stopping = False

    # -- public -------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Connect, stay connected, reconnect after any failure."""
        while not self._stopping:
            if not await self._reachable():
                await asyncio.sleep(0.5)
                continue
            await self._one_session()
            if not self._stopping:
                await asyncio.sleep(RETRY_SECONDS)

    def send_presence_update(self) -> None:
        """Re-send our room presence (e.g. after the drain state changed)."""
        if self._client is not None and self.in_room:
            self._send_room_presence(self._client)

    def leave(self) -> None:
        """Leave the room and stop reconnecting (graceful shutdown)."""
        self._stopping = True
        client = self._client
        if client is not None and self.in_room:
            client.send_presence(pto=f"{self.room}/{self.nick}", ptype="unavailable")
        if client is not None:
            client.disconnect(wait=0.5)

    # -- internals ----------------------------------------------------------------------

    async def _reachable(self) -> bool:
        """Whether prosody accepts TCP yet (cheaper than a full slixmpp attempt)."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.server, self.port), timeout=2
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def _make_client(self) -> slixmpp.ClientXMPP:
        client = slixmpp.ClientXMPP(self.jid, self._password)
        # Like jicofo/jvb against the image's self-signed prosody certificate: no verification.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.ssl_context = context
        client.whitespace_keepalive_interval = 30
        # STARTTLS on the c2s port only, like jicofo/jvb; no direct-TLS attempt first.
        client.enable_direct_tls = False
        client.enable_plaintext = False
        return client

    async def _one_session(self) -> None:
        """Run one connection until it drops."""
        client = self._make_client()
        self._client = client
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finish(*_args: Any) -> None:
            if not done.done():
                done.set_result(None)

        def on_session_start(_event: Any) -> None:
            self.connected = True
            log(self.component, f"XMPP connected as {self.jid}")
            if self.join_room:
                self._send_room_presence(client)
            else:
                log(self.component, f"not joining {self.room}")

        def on_failed_auth(stanza: Any) -> None:
            condition = stanza["condition"] or "unknown"
            current = getattr(client.plugin.get("feature_mechanisms", None), "mech", None)
            mech = str(getattr(current, "name", "SASL"))
            log(self.component, f"SASLError using {mech}: {condition} (as {self.jid})")

        def on_failed_all_auth(_event: Any) -> None:
            log(
                self.component,
                f"XMPP login failed: not-authorized; retrying in {RETRY_SECONDS:g} s",
            )

        def on_disconnected(_event: Any) -> None:
            if self.connected:
                log(self.component, "XMPP disconnected")
            self.connected = False
            self.in_room = False
            self.occupants.clear()
            finish()

        client.add_event_handler("session_start", on_session_start)
        client.add_event_handler("failed_auth", on_failed_auth)
        client.add_event_handler("failed_all_auth", on_failed_all_auth)
        client.add_event_handler("disconnected", on_disconnected)
        # connection_failed is not terminal: slixmpp retries by itself; only a drop ends us.
        client.add_event_handler("presence", self._on_presence)
        client.connect(host=self.server, port=self.port)
        try:
            await done
        finally:
            self.connected = False
            self.in_room = False
            self._client = None

    def _send_room_presence(self, client: slixmpp.ClientXMPP) -> None:
        presence = client.make_presence(pto=f"{self.room}/{self.nick}")
        presence.append(ET.Element(f"{{{MUC_NS}}}x"))
        payload = self.presence_payload()
        if payload is not None:
            presence.append(payload)
        presence.send()

    def _on_presence(self, presence: Any) -> None:
        sender = presence["from"]
        if sender.bare != self.room:
            return
        nick = sender.resource
        kind = presence["type"]
        if kind == "error":
            condition = presence["error"]["condition"]
            log(self.component, f"joining {self.room} failed: {condition}; retrying")
            if nick == self.nick:
                self.in_room = False
                asyncio.get_running_loop().call_later(
                    RETRY_SECONDS, self.send_presence_update_force
                )
            return
        if kind == "unavailable":
            self.occupants.pop(nick, None)
            if nick == self.nick:
                self.in_room = False
            return
        self.occupants[nick] = presence.xml.find(f"{{{COLIBRI_NS}}}stats")
        self.seen[nick] = time.monotonic()
        if nick == self.nick and not self.in_room:
            self.in_room = True
            log(self.component, f"joined {self.room} as {self.nick}")

    def send_presence_update_force(self) -> None:
        """Retry joining the room after an error presence."""
        if self._client is not None and self.connected:
            self._send_room_presence(self._client)
