"""The private REST of the videobridge (colibri2 conferences, stats, drain) and of jicofo (stats).

The bridge serves it on the host's 127.0.0.1 only (`JVB_COLIBRI_PORT`), so the client takes a
`request(method, path, body)` function; verify passes one that goes through the host's SSH
connection (a direct-tcpip channel, see verify.hostside). Request bodies and answer parsers are
pure functions over the JSON of jitsi-xmpp-extensions' Colibri2JSONSerializer (the format
jitsi-videobridge's `/colibri/v2/conferences` reads and writes): top-level `meeting-id`,
`name`, `create`, `expire`, `endpoints[]`; an endpoint's `transport` wraps the ICE-UDP
`transport` with `ufrag`, `pwd`, `candidates[]` (attribute values as strings) and
`fingerprints[]`. Drain (`/colibri/drain`) is on by default and needs no COLIBRI_REST_ENABLED;
jicofo's `/stats` (port JICOFO_REST_PORT) sums the live load the conference guard reads.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jitsi_ops.errors import OpsError

CONFERENCES_PATH = "/colibri/v2/conferences"
STATS_PATH = "/colibri/stats"
DRAIN_PATH = "/colibri/drain"
JICOFO_STATS_PATH = "/stats"
PROBE_PREFIX = "jitsi-ops-probe-"
ICE_UDP_NS = "urn:xmpp:jingle:transports:ice-udp:1"


class Answer(Protocol):
    """An HTTP answer (verify.hostside.HttpAnswer is one)."""

    @property
    def status(self) -> int:
        """HTTP status."""
        ...

    @property
    def body(self) -> str:
        """Decoded body."""
        ...


# (method, path, JSON body or None) -> answer; verify sends it through the host's SSH connection.
Request = Callable[[str, str, bytes | None], Answer]


class BridgeRestError(OpsError):
    """The bridge's REST refused a request or answered something unreadable."""

    def __init__(self, message: str, hint: str = "", *, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


@dataclass(frozen=True)
class ProbeConference:
    """A short-lived conference with one endpoint, named so an operator recognises it."""

    meeting_id: str
    name: str
    endpoint_id: str


def new_probe() -> ProbeConference:
    """A probe conference with fresh random ids."""
    token = secrets.token_hex(4)
    return ProbeConference(str(uuid.uuid4()), f"{PROBE_PREFIX}{token}", f"probe{token}")


def create_request(probe: ProbeConference) -> dict[str, Any]:
    """conference-modify creating the conference and one endpoint that asks for ICE-UDP.

    The endpoint carries an audio media description like the ones jicofo sends (the bridge
    allocates a transport for any created endpoint). `ice-controlling: true` keeps the bridge
    the controlling agent, as it is towards browsers; the probe then acts as the controlled side.
    """
    return {
        "meeting-id": probe.meeting_id,
        "name": probe.name,
        "create": True,
        "endpoints": [
            {
                "id": probe.endpoint_id,
                "create": True,
                "medias": [
                    {
                        "type": "audio",
                        "payload-types": [
                            {"name": "opus", "id": "111", "clockrate": "48000", "channels": "2"}
                        ],
                    }
                ],
                "transport": {"ice-controlling": True},
            }
        ],
    }


def expire_request(probe: ProbeConference) -> dict[str, Any]:
    """conference-modify expiring the probe endpoint and the conference itself."""
    return {
        "meeting-id": probe.meeting_id,
        "endpoints": [{"id": probe.endpoint_id, "expire": True}],
        "expire": True,
    }


@dataclass(frozen=True)
class Candidate:
    """One ICE candidate the bridge advertised."""

    ip: str
    port: int
    type: str
    protocol: str
    priority: int = 0
    foundation: str = ""
    component: int = 1
    generation: int = 0

    @property
    def address(self) -> tuple[str, int]:
        """(ip, port)."""
        return self.ip, self.port

    def describe(self) -> str:
        """`ip:port/udp (type)`, IPv6 in brackets."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}/{self.protocol} ({self.type})"


@dataclass(frozen=True)
class IceTransport:
    """The ICE-UDP transport of one endpoint: short-term credentials and candidates.

    `pwd` keys MESSAGE-INTEGRITY; it is never shown (repr=False).
    """

    ufrag: str
    pwd: str = ""
    candidates: tuple[Candidate, ...] = ()

    def __repr__(self) -> str:
        return f"IceTransport(ufrag={self.ufrag!r}, candidates={self.candidates!r})"


@dataclass(frozen=True)
class BridgeStats:
    """The counters of `/colibri/stats` (the probe compares them, the guard sums them)."""

    conferences: int
    endpoints: int
    participants: int
    drain: bool = False


@dataclass(frozen=True)
class JicofoStats:
    """jicofo `/stats`: the environment's live load and its bridge selector's counts."""

    conferences: int
    participants: int
    bridge_count: int
    operational_bridge_count: int
    draining_bridge_count: int = 0


def _load_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise BridgeRestError(f"{what} is not JSON: {text[:120]!r}") from None
    if not isinstance(data, dict):
        raise BridgeRestError(f"{what} is not a JSON object: {text[:120]!r}")
    return data


def _int(value: object, default: int = 0) -> int:
    # The serializer writes candidate attributes as strings ("port": "10000").
    try:
        return int(str(value))
    except ValueError:
        return default


def parse_candidate(item: Mapping[str, Any]) -> Candidate:
    """One element of `candidates[]`; BridgeRestError without ip or port."""
    ip, port = str(item.get("ip", "")).strip(), _int(item.get("port"), -1)
    if not ip or not 0 < port < 65536:
        raise BridgeRestError(f"candidate without ip/port: {dict(item)!r}")
    return Candidate(
        ip=ip,
        port=port,
        type=str(item.get("type", "host")),
        protocol=str(item.get("protocol", "udp")).lower(),
        priority=_int(item.get("priority")),
        foundation=str(item.get("foundation", "")),
        component=_int(item.get("component"), 1),
        generation=_int(item.get("generation")),
    )


def parse_conference_modified(text: str, endpoint_id: str) -> IceTransport:
    """The ICE-UDP transport the bridge allocated for `endpoint_id` in a conference-modified."""
    data = _load_object(text, "conference-modified")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list):
        raise BridgeRestError("conference-modified has no endpoints[]")
    for endpoint in endpoints:
        if not isinstance(endpoint, dict) or endpoint.get("id") != endpoint_id:
            continue
        outer = endpoint.get("transport")
        ice = outer.get("transport") if isinstance(outer, dict) else None
        if not isinstance(ice, dict):
            raise BridgeRestError(f"endpoint {endpoint_id} has no ICE-UDP transport")
        ufrag, pwd = str(ice.get("ufrag", "")), str(ice.get("pwd", ""))
        if not ufrag or not pwd:
            raise BridgeRestError(f"endpoint {endpoint_id}'s transport has no ufrag/pwd")
        raw = ice.get("candidates", [])
        candidates = tuple(parse_candidate(c) for c in raw if isinstance(c, dict))
        return IceTransport(ufrag, pwd, candidates)
    raise BridgeRestError(f"conference-modified does not mention endpoint {endpoint_id}")


def _flag(value: object) -> bool:
    # JSON true, or the "true" of a colibri <stat/> copied into JSON.
    return value is True or str(value).strip().lower() == "true"


def parse_stats(text: str) -> BridgeStats:
    """conferences / endpoints / participants / drain of `/colibri/stats`."""
    data = _load_object(text, "/colibri/stats")
    return BridgeStats(
        conferences=_int(data.get("conferences")),
        endpoints=_int(data.get("endpoints")),
        participants=_int(data.get("participants")),
        drain=_flag(data.get("drain")),
    )


def parse_drain(text: str) -> bool:
    """`GET /colibri/drain` -> `{"drain": bool}`."""
    data = _load_object(text, "/colibri/drain")
    if "drain" not in data:
        raise BridgeRestError(f"/colibri/drain has no 'drain': {text[:120]!r}")
    return _flag(data["drain"])


def parse_jicofo_stats(text: str) -> JicofoStats:
    """jicofo `/stats`: conferences, participants and `bridge_selector` (older jicofo versions
    put the selector's counts at the top level: read there as a fallback)."""
    data = _load_object(text, "jicofo /stats")
    raw = data.get("bridge_selector")
    selector: Mapping[str, Any] = raw if isinstance(raw, dict) else data
    return JicofoStats(
        conferences=_int(data.get("conferences")),
        participants=_int(data.get("participants")),
        bridge_count=_int(selector.get("bridge_count")),
        operational_bridge_count=_int(selector.get("operational_bridge_count")),
        draining_bridge_count=_int(selector.get("draining_bridge_count")),
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:160] + ("..." if len(flat) > 160 else "")


class BridgeRest:
    """A small client of one bridge's private REST over a `request` function."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> str:
        body = None if payload is None else json.dumps(payload).encode()
        answer = self._request(method, path, body)
        if answer.status != 200:
            detail = f": {_excerpt(answer.body)}" if answer.body.strip() else ""
            raise BridgeRestError(
                f"{method} {path} answered {answer.status}{detail}", status=answer.status
            )
        return answer.body

    def create(self, probe: ProbeConference) -> IceTransport:
        """Create the probe conference; the endpoint's ICE transport."""
        text = self._call("POST", CONFERENCES_PATH, create_request(probe))
        return parse_conference_modified(text, probe.endpoint_id)

    def expire(self, probe: ProbeConference) -> None:
        """Expire the probe's endpoint and conference."""
        self._call("PATCH", f"{CONFERENCES_PATH}/{probe.meeting_id}", expire_request(probe))

    def stats(self) -> BridgeStats:
        """The bridge's conference counters."""
        return parse_stats(self._call("GET", STATS_PATH, None))

    def draining(self) -> bool:
        """Whether the bridge is draining (takes no new conferences)."""
        return parse_drain(self._call("GET", DRAIN_PATH, None))

    def set_drain(self, enabled: bool) -> None:
        """`POST /colibri/drain/enable` or `/disable` (idempotent on the bridge)."""
        self._call("POST", f"{DRAIN_PATH}/{'enable' if enabled else 'disable'}", None)


def jicofo_stats(request: Request) -> JicofoStats:
    """jicofo's `/stats` over `request` (the main host's JICOFO_REST_PORT)."""
    answer = request("GET", JICOFO_STATS_PATH, None)
    if answer.status != 200:
        raise BridgeRestError(f"jicofo GET /stats answered {answer.status}", status=answer.status)
    return parse_jicofo_stats(answer.body)
