"""STAND-IN colibri2 conferences and ICE connectivity checks of the jvb stand-in (tests only).

What the real bridge does, reduced to what a media probe sees (see ../README.md for the list of
what is faithful and what is not):
- ``POST /colibri/v2/conferences`` takes a conference-modify in the JSON of jitsi-xmpp-extensions'
  Colibri2JSONSerializer and answers a conference-modified; a created endpoint gets an ICE-UDP
  transport (``ufrag``, ``pwd``, ``fingerprints``, ``candidates`` with string attribute values)
  wrapped in the colibri2 ``transport``; ``PATCH /colibri/v2/conferences/{meetingId}`` modifies
  (creates or expires endpoints, expires the conference); ``GET`` on the collection answers 501.
- candidates: the container's own addresses as host candidates when
  ``JVB_ADVERTISE_PRIVATE_CANDIDATES`` (default true), then every ``JVB_ADVERTISE_IPS`` item
  (``IP`` or ``IP#port``; else a deprecated ``DOCKER_HOST_ADDRESS``) as srflx related to the
  container address, on ``JVB_PORT`` (the shape of jitsi-videobridge's doc/rest-colibri2.md).
- on ``JVB_PORT``/udp one socket serves every endpoint: a STUN Binding Request is answered only
  when its USERNAME's first part is a live ufrag and its MESSAGE-INTEGRITY validates with that
  endpoint's pwd; the Binding Success carries XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY (same key)
  and FINGERPRINT. Anything else is dropped silently.
- expiry of idle entities, as the real bridge's ``videobridge.entity-expiration`` (timeout 1
  minute): an endpoint with no valid connectivity check (nor colibri2 request) for that long
  is expired, and a conference without endpoints idle as long goes with it. A participant's
  browser keeps its endpoint alive with ICE consent checks; a test's "live meeting" sends them.
STUN encoding comes from aioice (a maintained implementation), as in the product's probe.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import string
import time
from dataclasses import dataclass, field
from typing import Any

from aioice import stun

from jitsi_standin.common import env, env_bool
from jitsi_standin.httpd import Response

PREFIX = "/colibri/v2/conferences"
EXPIRE_AFTER = 60.0  # videobridge.entity-expiration.timeout of the real bridge
_ICE_CHARS = string.ascii_letters + string.digits


def _token(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


@dataclass
class Endpoint:
    """One endpoint: its ICE short-term credentials."""

    id: str
    ufrag: str = field(default_factory=lambda: _token(14))
    pwd: str = field(default_factory=lambda: _token(26))
    active_at: float = field(default_factory=time.monotonic)


@dataclass
class Conference:
    """A colibri2 conference."""

    meeting_id: str
    name: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    active_at: float = field(default_factory=time.monotonic)


def _container_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({str(i[4][0]) for i in infos if not str(i[4][0]).startswith("127.")})


def advertised_candidates(udp_port: int) -> list[tuple[str, int, str, str]]:
    """(ip, port, type, related address) of every candidate, in the real bridge's order: the
    container's host candidates first (when JVB_ADVERTISE_PRIVATE_CANDIDATES), then one srflx
    per JVB_ADVERTISE_IPS item, related to the container address like the static mapping."""
    local = _container_addresses()
    found: list[tuple[str, int, str, str]] = []
    if env_bool("JVB_ADVERTISE_PRIVATE_CANDIDATES", True):
        found += [(ip, udp_port, "host", "") for ip in local]
    # Upstream's start script still copies a deprecated DOCKER_HOST_ADDRESS into an unset
    # JVB_ADVERTISE_IPS (with a warning), even in stable-11146-2.
    for item in env("JVB_ADVERTISE_IPS", env("DOCKER_HOST_ADDRESS")).split(","):
        address, _, port = item.strip().partition("#")
        address = address.strip("[] ")
        if address and all(address != f[0] for f in found):
            public_port = int(port) if port.isdigit() else udp_port
            found.append((address, public_port, "srflx", local[0] if local else "0.0.0.0"))  # noqa: S104
    return found


# jitsi-ops names its media probe's conferences so (jitsi_ops.bridge_rest.PROBE_PREFIX).
PROBE_PREFIX = "jitsi-ops-probe-"


class Colibri:
    """Conferences by meeting id, endpoints by ufrag, and the REST handlers."""

    def __init__(self, udp_port: int, log: Any) -> None:
        self.udp_port = udp_port
        self.conferences: dict[str, Conference] = {}
        self.log = log
        # A stable DTLS fingerprint shape (the stand-in does no DTLS).
        self.fingerprint = ":".join(
            f"{b:02X}" for b in hashlib.sha256(env("JVB_INSTANCE_ID", "jvb").encode()).digest()
        )

    # ---- counters --------------------------------------------------------------------------

    @property
    def endpoint_count(self) -> int:
        """Endpoints of every conference."""
        return sum(len(c.endpoints) for c in self.conferences.values())

    def meetings(self) -> tuple[int, int]:
        """(conferences, endpoints) without jitsi-ops' probe conferences (`jitsi-ops-probe-*`):
        what the stand-in jicofo counts as its own (the real jicofo never sees a probe, which
        is created on the bridge directly)."""
        meetings = [c for c in self.conferences.values() if not c.name.startswith(PROBE_PREFIX)]
        return len(meetings), sum(len(c.endpoints) for c in meetings)

    def by_ufrag(self, ufrag: str) -> Endpoint | None:
        """The live endpoint with this ufrag."""
        for conference in self.conferences.values():
            for endpoint in conference.endpoints.values():
                if endpoint.ufrag == ufrag:
                    return endpoint
        return None

    def expire_idle(self, now: float | None = None) -> None:
        """Expire endpoints, then empty conferences, idle for EXPIRE_AFTER seconds."""
        now = time.monotonic() if now is None else now
        for meeting_id, conference in list(self.conferences.items()):
            for endpoint_id, endpoint in list(conference.endpoints.items()):
                if now - endpoint.active_at > EXPIRE_AFTER:
                    del conference.endpoints[endpoint_id]
                    conference.active_at = max(conference.active_at, endpoint.active_at)
                    self.log(f"endpoint {endpoint_id} expired (no activity)")
            if not conference.endpoints and now - conference.active_at > EXPIRE_AFTER:
                del self.conferences[meeting_id]
                self.log(f"conference {conference.name or meeting_id} expired (no activity)")

    # ---- REST ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes) -> Response:  # noqa: PLR0911
        """``/colibri/v2/conferences[/{meetingId}]``."""
        meeting_id = path[len(PREFIX) :].strip("/")
        if method == "GET":
            if meeting_id and meeting_id not in self.conferences:
                return Response.text("Not Found\n", 404)
            return Response.text("Not Implemented\n", 501)
        if method == "POST" and not meeting_id:
            request = self._parse(body)
            if isinstance(request, Response):
                return request
            return self._modify(request, str(request.get("meeting-id", "")))
        if method == "PATCH" and meeting_id:
            if meeting_id not in self.conferences:
                return Response.text("Not Found\n", 404)
            request = self._parse(body)
            if isinstance(request, Response):
                return request
            return self._modify(request, meeting_id)
        return Response.text("Method Not Allowed\n", 405)

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any] | Response:
        try:
            request = json.loads(body or b"null")
        except ValueError as exc:
            return Response.text(f"Failed to create conference, could not parse JSON: {exc}\n", 400)
        if not isinstance(request, dict):
            return Response.text("Bad Request\n", 400)
        return request

    def _modify(self, request: dict[str, Any], meeting_id: str) -> Response:  # noqa: PLR0911
        if not meeting_id:
            return Response.text("Failed to parse ConferenceModify JSON: no meeting-id\n", 400)
        conference = self.conferences.get(meeting_id)
        if request.get("create") is True:
            if conference is not None:
                return Response.text(
                    "Failed to create conference: Conference already exists\n", 400
                )
            conference = Conference(meeting_id, str(request.get("name", "")))
            self.conferences[meeting_id] = conference
            self.log(f"conference {conference.name or meeting_id} created")
        elif conference is None:
            return Response.text("Failed to create conference: Conference not found\n", 400)
        conference.active_at = time.monotonic()
        answered: list[dict[str, Any]] = []
        for item in request.get("endpoints", []) or []:
            if not isinstance(item, dict) or not item.get("id"):
                return Response.text("Failed to parse ConferenceModify JSON: endpoint id\n", 400)
            endpoint_id = str(item["id"])
            if item.get("expire") is True:
                conference.endpoints.pop(endpoint_id, None)
                continue
            if item.get("create") is True:
                endpoint = Endpoint(endpoint_id)
                conference.endpoints[endpoint_id] = endpoint
                answered.append(self._endpoint_json(endpoint))
            elif endpoint_id not in conference.endpoints:
                return Response.text(f"Failed: unknown endpoint {endpoint_id}\n", 400)
            else:
                conference.endpoints[endpoint_id].active_at = time.monotonic()
        if request.get("expire") is True:
            del self.conferences[meeting_id]
            self.log(f"conference {conference.name or meeting_id} expired")
            return Response.json({})
        answer: dict[str, Any] = {}
        if answered:
            answer["endpoints"] = answered
            answer["sources"] = [
                {
                    "type": "audio",
                    "id": "jvb-a0",
                    "sources": [{"ssrc": 411312308, "name": "jvb-a0"}],
                },
                {
                    "type": "video",
                    "id": "jvb-v0",
                    "sources": [{"ssrc": 3929652146, "name": "jvb-v0"}],
                },
            ]
        return Response.json(answer)

    def _endpoint_json(self, endpoint: Endpoint) -> dict[str, Any]:
        candidates = []
        for ip, port, kind, related in advertised_candidates(self.udp_port):
            preference = 126 if kind == "host" else 100
            candidate = {
                "component": "1",
                "foundation": "1" if kind == "host" else "2",
                "generation": "0",
                "id": _token(16),
                "network": "0",
                "priority": str((preference << 24) + (65535 << 8) + 255),
                "protocol": "udp",
                "type": kind,
                "ip": ip,
                "port": str(port),
            }
            if kind == "srflx":
                candidate.update({"rel-addr": related, "rel-port": str(self.udp_port)})
            candidates.append(candidate)
        return {
            "id": endpoint.id,
            "transport": {
                "transport": {
                    "xmlns": "urn:xmpp:jingle:transports:ice-udp:1",
                    "ufrag": endpoint.ufrag,
                    "pwd": endpoint.pwd,
                    "rtcp-mux": True,
                    "fingerprints": [
                        {"fingerprint": self.fingerprint, "setup": "actpass", "hash": "sha-256"}
                    ],
                    "candidates": candidates,
                }
            },
        }

    # ---- STUN ------------------------------------------------------------------------------

    def stun_answer(self, data: bytes, source: tuple[str, int]) -> bytes | None:
        """The Binding Success for a valid connectivity check, None for anything else."""
        try:
            request = stun.parse_message(data)
        except ValueError:
            return None
        if (
            request.message_method != stun.Method.BINDING
            or request.message_class != stun.Class.REQUEST
        ):
            return None
        username = str(request.attributes.get("USERNAME", ""))
        endpoint = self.by_ufrag(username.split(":", 1)[0]) if ":" in username else None
        if endpoint is None or not request.check_message_integrity(endpoint.pwd.encode()):
            return None
        if "FINGERPRINT" not in request.attributes:
            return None
        endpoint.active_at = time.monotonic()
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.add_message_integrity(endpoint.pwd.encode())
        return bytes(response)
