"""media.ice: prove that a participant outside the host reaches a bridge's UDP media path.

Two participants talk peer to peer; from the third on, media goes through the bridge, at the
ICE candidates it advertises on JVB_PORT/udp. The check does what that third participant's
browser does first, in about a second:

1. through the host's SSH connection, create a short-lived colibri2 conference with one
   endpoint on the bridge's private REST (`jitsi-ops-probe-...`); the answer holds the
   endpoint's ICE ufrag/pwd and candidates;
2. from this machine, send each UDP candidate STUN Binding Requests with ICE short-term
   credentials (USERNAME `<bridge ufrag>:<ours>`, PRIORITY, ICE-CONTROLLED, MESSAGE-INTEGRITY
   keyed with the bridge's pwd, FINGERPRINT), built by aioice's STUN implementation;
3. expire the conference, whatever happened (also on failure and Ctrl-C).

The bridge answers only requests whose USERNAME names one of its ufrags and whose integrity
validates, so a Binding Success with valid MESSAGE-INTEGRITY from an advertised public address
proves the whole path: advertised address, firewall, NAT forward, published port, bridge.
What is ours is the sequence and the diagnosis of a failure.
"""

from __future__ import annotations

import ipaddress
import posixpath
import secrets
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aioice import stun
from aioice.candidate import candidate_priority
from aioice.utils import random_string

from jitsi_ops.bridge_rest import (
    BridgeRest,
    BridgeRestError,
    Candidate,
    IceTransport,
    ProbeConference,
    new_probe,
)
from jitsi_ops.envfile import parse_env
from jitsi_ops.errors import OpsError
from jitsi_ops.settings import Host
from jitsi_ops.verify import derive
from jitsi_ops.verify.facts import Facts
from jitsi_ops.verify.hostside import peer_address
from jitsi_ops.verify.model import CheckResult, failed, passed, warned

# 3 tries 0.5 s apart, to every candidate at once: a failing gate costs ~1.5 s per bridge.
TRIES = 3
RETRANSMIT = 0.5
THIRD = "a third participant will lose audio/video"
ENABLE_HINT = (
    "set COLIBRI_REST_ENABLED=1 in jitsi.env and deploy: the bridge's private REST stays bound "
    "to the host's 127.0.0.1 (JVB_COLIBRI_PORT) and verify reaches it through SSH"
)


@dataclass(frozen=True)
class Reply:
    """A STUN answer to the request sent to `candidate`."""

    candidate: Candidate
    source: tuple[str, int]
    rtt: float
    success: bool  # a Binding Success (not an error response)
    authentic: bool  # MESSAGE-INTEGRITY validates with the bridge's pwd
    error: str = ""

    @property
    def from_candidate(self) -> bool:
        """The answer came from the address it was sent to (no NAT mismatch)."""
        return _same(self.source[0], self.candidate.ip) and self.source[1] == self.candidate.port


@dataclass(frozen=True)
class ProbeOutcome:
    """What every candidate did: answered, stayed silent, or was not probed (not UDP), or was
    left alone (an address participants are not meant to use)."""

    replies: tuple[Reply, ...]
    silent: tuple[Candidate, ...]
    skipped: tuple[Candidate, ...]
    left_alone: tuple[Candidate, ...] = ()


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def binding_request(transport: IceTransport, local_ufrag: str, tie_breaker: int) -> stun.Message:
    """A Binding Request with ICE short-term credentials for the bridge's endpoint.

    The bridge was asked to be the controlling agent (as towards browsers), so the probe
    says ICE-CONTROLLED: no role conflict, no 487.
    """
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{transport.ufrag}:{local_ufrag}"
    request.attributes["PRIORITY"] = candidate_priority(1, "prflx")
    request.attributes["ICE-CONTROLLED"] = tie_breaker
    request.add_message_integrity(transport.pwd.encode())  # also adds FINGERPRINT, last
    return request


def _socket_for(family: int, sockets: dict[int, socket.socket]) -> socket.socket | None:
    if family not in sockets:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            return None
        sock.setblocking(False)
        sockets[family] = sock
    return sockets[family]


def _read_reply(
    sock: socket.socket,
    transport: IceTransport,
    waiting: dict[bytes, tuple[Candidate, float]],
    clock: Callable[[], float],
) -> tuple[bytes, Reply] | None:
    try:
        data, addr = sock.recvfrom(4096)
    except OSError:
        return None
    try:
        message = stun.parse_message(data)
    except ValueError:  # not STUN, or a broken FINGERPRINT: not the bridge's answer
        return None
    entry = waiting.get(message.transaction_id)
    if entry is None or message.message_method != stun.Method.BINDING:
        return None
    candidate, sent = entry
    error = ""
    if message.message_class == stun.Class.ERROR:
        code = message.attributes.get("ERROR-CODE")
        error = f"{code[0]} {code[1]}" if code else "error response"
    return message.transaction_id, Reply(
        candidate=candidate,
        source=(str(addr[0]), int(addr[1])),
        rtt=clock() - sent,
        success=message.message_class == stun.Class.RESPONSE,
        authentic=message.check_message_integrity(transport.pwd.encode()),
        error=error,
    )


def _declared(
    candidates: Sequence[Candidate], only: Sequence[str] | None
) -> tuple[list[Candidate], list[Candidate]]:
    """(candidates to probe, UDP candidates left alone because `only` does not name them)."""
    if only is None:
        return list(candidates), []
    leave = [c for c in candidates if c.protocol == "udp" and not any(_same(c.ip, a) for a in only)]
    return [c for c in candidates if c not in leave], leave


def stun_probe(
    transport: IceTransport,
    *,
    tries: int = TRIES,
    interval: float = RETRANSMIT,
    clock: Callable[[], float] = time.monotonic,
    only: Sequence[str] | None = None,
) -> ProbeOutcome:
    """Send Binding Requests to every UDP candidate (retransmitted `tries` times `interval`
    apart, the same transaction each time) and collect the answers.

    With `only`, candidates at other addresses are left alone: a bridge's container or LAN
    addresses mean something else (or nothing) on the network jitsi-ops runs from, so packets
    go only to the addresses the operator declared for participants.
    """
    local_ufrag = random_string(8)
    tie_breaker = secrets.randbits(64)
    sockets: dict[int, socket.socket] = {}
    requests: list[tuple[Candidate, bytes, bytes, socket.socket]] = []
    skipped: list[Candidate] = []
    targets, left_alone = _declared(transport.candidates, only)
    for candidate in targets:
        family = socket.AF_INET6 if ":" in candidate.ip else socket.AF_INET
        sock = _socket_for(family, sockets) if candidate.protocol == "udp" else None
        if sock is None:
            skipped.append(candidate)
            continue
        request = binding_request(transport, local_ufrag, tie_breaker)
        requests.append((candidate, request.transaction_id, bytes(request), sock))
    waiting: dict[bytes, tuple[Candidate, float]] = {}
    replies: dict[bytes, Reply] = {}
    try:
        for _ in range(tries):
            for candidate, tid, data, sock in requests:
                if tid in replies:
                    continue
                waiting[tid] = (candidate, clock())
                try:
                    sock.sendto(data, candidate.address)
                except OSError:  # no route: the same, for a participant, as no answer
                    continue
            until = clock() + interval
            while len(replies) < len(requests) and (left := until - clock()) > 0:
                readable, _, _ = select.select(list(sockets.values()), [], [], left)
                for sock in readable:
                    got = _read_reply(sock, transport, waiting, clock)
                    if got is not None:
                        replies.setdefault(*got)
            if len(replies) == len(requests):
                break
    finally:
        for sock in sockets.values():
            sock.close()
    answered = {r.candidate for r in replies.values()}
    return ProbeOutcome(
        replies=tuple(replies.values()),
        silent=tuple(c for c, *_ in requests if c not in answered),
        skipped=tuple(skipped),
        left_alone=tuple(left_alone),
    )


def _list(candidates: Sequence[Candidate]) -> str:
    return ", ".join(c.describe() for c in candidates) or "none"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def diagnose(
    transport: IceTransport,
    outcome: ProbeOutcome,
    expected: Sequence[str],
    *,
    where: str,
    address_note: str = "",
) -> CheckResult:
    """The verdict: pass when an expected (public) candidate answered a Binding Success whose
    MESSAGE-INTEGRITY validates, from the address it was sent to; otherwise the cause."""
    udp = [c for c in transport.candidates if c not in outcome.skipped]
    if not udp:
        return failed(
            f"the bridge advertised no UDP candidate (got: {_list(transport.candidates)}): {THIRD}",
            hint="set JVB_ADVERTISE_IPS to the address participants reach this host at",
            final=True,
        )
    wanted = [c for c in udp if not expected or any(_same(c.ip, e) for e in expected)]
    if not wanted:
        return failed(
            f"no public candidate advertised: the bridge offers only {_list(udp)}, none of "
            f"{', '.join(expected)}: {THIRD}",
            hint="the classic container-address mistake: set JVB_ADVERTISE_IPS to the address "
            f"participants reach {where} at ({', '.join(expected)}), for the bridge host's own "
            "values in deploy.toml when it is a role 'jvb' host",
            final=True,
        )
    mine = [r for r in outcome.replies if r.candidate in wanted]
    good = [r for r in mine if r.success and r.authentic and r.from_candidate]
    others = [r for r in outcome.replies if r.candidate not in wanted and r.success]
    if good:
        best = min(good, key=lambda r: r.rtt)
        extra = [f"{r.candidate.describe()} in {_ms(r.rtt)}" for r in good if r is not best]
        extra += [f"{r.candidate.describe()} in {_ms(r.rtt)}" for r in others]
        return passed(
            f"{best.candidate.describe()} answered a Binding Success with valid "
            f"MESSAGE-INTEGRITY in {_ms(best.rtt)}"
            + (f"; also answered: {', '.join(extra)}" if extra else "")
            + (f"; no answer: {_list(outcome.silent)}" if outcome.silent else "")
            + (f"; not probed: {_list(outcome.left_alone)}" if outcome.left_alone else "")
        )
    return _failure(mine, others, wanted, where=where, address_note=address_note)


def _failure(
    mine: Sequence[Reply],
    others: Sequence[Reply],
    wanted: Sequence[Candidate],
    *,
    where: str,
    address_note: str,
) -> CheckResult:
    """Why no expected candidate passed: NAT mismatch, wrong integrity, STUN error, silence."""
    moved = [r for r in mine if r.success and not r.from_candidate]
    if moved:
        r = moved[0]
        return failed(
            f"the answer to {r.candidate.describe()} came from {r.source[0]}:{r.source[1]} "
            f"(NAT mismatch): a browser drops it and {THIRD}",
            hint=f"forward UDP {r.candidate.port} to the bridge 1:1 (same public address and "
            "port in both directions, no SNAT/hairpin in between) and advertise the address "
            "participants see",
            final=True,
        )
    broken = [r for r in mine if r.success and not r.authentic]
    if broken:
        return failed(
            f"{broken[0].candidate.describe()} answered, but its MESSAGE-INTEGRITY does not "
            f"validate with this bridge's pwd: another bridge or service holds that address "
            f"and port, {THIRD}",
            hint="check where the NAT/port forward of that UDP port points",
            final=True,
        )
    refused = [r for r in mine if not r.success]
    if refused:
        return failed(
            f"{refused[0].candidate.describe()} answered STUN error {refused[0].error}: {THIRD}",
            hint="see the jvb logs for ICE errors",
            final=True,
        )
    ports = sorted({c.port for c in wanted})
    also = f"; only {_list([r.candidate for r in others])} answered" if others else ""
    return failed(
        f"no answer from {_list(wanted)} after {TRIES} tries over {TRIES * RETRANSMIT:.1f} s"
        f"{also}: {THIRD}",
        hint=f"open UDP {'/'.join(map(str, ports))} to {where} at "
        f"{', '.join(sorted({c.ip for c in wanted}))}: host firewall, cloud security group, NAT "
        "port forward" + (f"; {address_note}" if address_note else ""),
        final=True,
    )


def advertise_setting(facts: Facts, host: Host) -> str:
    """JVB_ADVERTISE_IPS (or DOCKER_HOST_ADDRESS) as the running bridge was started with: the
    host's deployed `.env` when it has one, else this environment's values.

    The deployed file decides what the bridge advertises; after a rollback the local files may
    still hold the value that was just rolled back.
    """
    path = posixpath.join(facts.stack_dir(host), ".env")
    try:
        deployed = parse_env(facts.runner(host).get(path).decode("utf-8", "replace"), path)
    except (OSError, OpsError):
        deployed = {}
    values = deployed or facts.host_values(host)
    return values.get("JVB_ADVERTISE_IPS", "") or values.get("DOCKER_HOST_ADDRESS", "")


def expected_addresses(facts: Facts, host: Host) -> list[str]:
    """Where participants should reach this bridge: its advertised addresses, else the address
    SSH reached the host at (and PUBLIC_URL's, on the main host)."""
    advertised = derive.advertised_addresses(advertise_setting(facts, host))
    if advertised:
        return advertised
    found = [a for a in [peer_address(facts.runner(host))] if a]
    if host == facts.run.main:
        try:
            name = derive.origin_of(facts.public_url()).host
            found += [str(i[4][0]) for i in socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)]
        except (OSError, ValueError):
            pass
    return sorted(set(found))


def _address_note(facts: Facts, host: Host, expected: Sequence[str]) -> str:
    """Whether the advertised address belongs to the host at all (the other common cause)."""
    out = facts.runner(host).run(["ip", "-o", "addr", "show"], check=False, timeout=facts.timeout())
    own = derive.parse_ip_addresses(out.stdout) if out.ok else []
    nat = [a for a in [peer_address(facts.runner(host))] if a]
    ok, observed = derive.advertise_verdict(list(expected), own, nat)
    return "" if ok or not own else f"JVB_ADVERTISE_IPS is not this host's: {observed}"


def media_ice(facts: Facts, host: Host) -> CheckResult:
    """Create a probe conference, send ICE connectivity checks to its candidates, expire it."""
    values = facts.host_values(host)
    if not derive.flag(values, "COLIBRI_REST_ENABLED", False):
        return warned(
            "COLIBRI_REST_ENABLED is not 1: the media path (what a third participant needs) "
            "is unproven",
            hint=ENABLE_HINT,
        )
    port = derive.int_value(values, "JVB_COLIBRI_PORT", derive.DEFAULT_JVB_COLIBRI_PORT)
    runner = facts.runner(host)
    rest = BridgeRest(
        lambda method, path, body: facts.run.rest(
            runner, port, path, facts.timeout(), method=method, body=body
        )
    )
    probe = new_probe()
    try:
        try:
            transport = rest.create(probe)
        except ConnectionError as exc:
            raise OpsError(
                f"jvb REST: {exc}",
                hint=f"is jvb running on {host.label}? see host.containers and sockets.jvb_rest",
            ) from None
        except BridgeRestError as exc:
            if exc.status == 404:
                return warned(
                    f"the running bridge does not serve colibri2 REST ({exc.message}): the media "
                    "path is unproven",
                    hint=ENABLE_HINT,
                )
            raise
        except OpsError as exc:  # no way to reach the REST at all: waiting cannot help
            return failed(exc.message, exc.hint, final=True)
        expected = expected_addresses(facts, host)
        outcome = stun_probe(transport, only=expected)
        result = diagnose(transport, outcome, expected, where=host.label)
        if result.status == "fail" and result.observed.startswith("no answer"):
            note = _address_note(facts, host, expected)
            result = diagnose(transport, outcome, expected, where=host.label, address_note=note)
    finally:
        expired = _expire(rest, probe)
    if expired:
        return failed(
            f"{result.observed}; the probe conference {probe.name} could not be expired: {expired}",
            hint="the bridge expires idle conferences by itself after a while; see the jvb logs",
            final=True,
        )
    return result


def _expire(rest: BridgeRest, probe: ProbeConference) -> str:
    """Expire the probe conference; '' when done, else what went wrong (never raises)."""
    try:
        rest.expire(probe)
    except BridgeRestError as exc:
        if exc.status == 404:  # never created (or already gone): nothing left behind
            return ""
        return exc.message
    except (OSError, OpsError) as exc:
        return str(exc)
    return ""
