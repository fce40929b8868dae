"""The jvb stand-in's colibri2 expiry (tests/testbed/images/jitsi_standin/colibri.py): idle
endpoints and conferences go after a minute, as on the real bridge (entity-expiration); a
connectivity check keeps a participant's endpoint alive."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from aioice import stun

from jitsi_ops import bridge_rest
from jitsi_ops.verify.media import binding_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed" / "images"))

from jitsi_standin.colibri import EXPIRE_AFTER, Colibri


def _conference(colibri: Colibri) -> tuple[bridge_rest.ProbeConference, bridge_rest.IceTransport]:
    probe = bridge_rest.new_probe()
    body = json.dumps(bridge_rest.create_request(probe)).encode()
    answer = colibri.handle("POST", bridge_rest.CONFERENCES_PATH, body)
    assert answer.status == 200
    return probe, bridge_rest.parse_conference_modified(answer.body.decode(), probe.endpoint_id)


def test_an_idle_conference_expires_after_the_timeout_and_not_before() -> None:
    colibri = Colibri(10000, lambda _text: None)
    _conference(colibri)
    now = time.monotonic()
    colibri.expire_idle(now + EXPIRE_AFTER - 5)
    assert len(colibri.conferences) == 1 and colibri.endpoint_count == 1
    colibri.expire_idle(now + EXPIRE_AFTER + 5)
    assert colibri.conferences == {}


def test_connectivity_checks_keep_the_endpoint_and_its_conference() -> None:
    colibri = Colibri(10000, lambda _text: None)
    _, transport = _conference(colibri)
    start = time.monotonic()
    check = binding_request(transport, "client", 7)
    answer = colibri.stun_answer(bytes(check), ("192.0.2.1", 5000))
    assert answer is not None
    assert stun.parse_message(answer).message_class == stun.Class.RESPONSE
    endpoint = colibri.by_ufrag(transport.ufrag)
    assert endpoint is not None and endpoint.active_at >= start
    colibri.expire_idle(endpoint.active_at + EXPIRE_AFTER - 1)
    assert colibri.endpoint_count == 1
