"""The bridge's private REST: colibri2 request bodies and answer parsers against JSON written in
jitsi-xmpp-extensions' Colibri2JSONSerializer format (tests/fixtures/colibri2), and the client's
calls over a recorded request function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitsi_ops.bridge_rest import (
    BridgeRest,
    BridgeRestError,
    BridgeStats,
    Candidate,
    IceTransport,
    ProbeConference,
    create_request,
    expire_request,
    new_probe,
    parse_conference_modified,
    parse_stats,
)
from jitsi_ops.verify.hostside import HttpAnswer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "colibri2"
PROBE = ProbeConference(
    "0c1d2e3f-4a5b-4c7d-8e9f-0a1b2c3d4e5f", "jitsi-ops-probe-5f3a9c1e", "probe5f3a9c1e"
)


def test_create_request_is_a_colibri2_conference_modify_with_one_ice_endpoint() -> None:
    assert create_request(PROBE) == {
        "meeting-id": "0c1d2e3f-4a5b-4c7d-8e9f-0a1b2c3d4e5f",
        "name": "jitsi-ops-probe-5f3a9c1e",
        "create": True,
        "endpoints": [
            {
                "id": "probe5f3a9c1e",
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


def test_expire_request_expires_the_endpoint_and_the_conference() -> None:
    assert expire_request(PROBE) == {
        "meeting-id": "0c1d2e3f-4a5b-4c7d-8e9f-0a1b2c3d4e5f",
        "endpoints": [{"id": "probe5f3a9c1e", "expire": True}],
        "expire": True,
    }


def test_new_probes_are_recognisable_and_unique() -> None:
    first, second = new_probe(), new_probe()
    assert first.name.startswith("jitsi-ops-probe-"), first
    assert first.meeting_id != second.meeting_id and first.endpoint_id != second.endpoint_id


def test_conference_modified_gives_credentials_and_typed_candidates() -> None:
    text = (FIXTURES / "conference-modified.json").read_text()
    transport = parse_conference_modified(text, "probe5f3a9c1e")
    assert transport.ufrag == "4kq2b1fvtf0l3h"
    assert transport.pwd == "2b7cjbent91k6io6a3fauikg77"
    assert transport.candidates == (
        Candidate("172.18.0.5", 10000, "host", "udp", 2130706431, "1", 1, 0),
        Candidate("203.0.113.10", 10000, "srflx", "udp", 1694498815, "2", 1, 0),
    )
    assert transport.candidates[1].describe() == "203.0.113.10:10000/udp (srflx)"


def test_the_ice_pwd_never_shows_in_repr() -> None:
    transport = IceTransport("u", "s3cr3tpwd", ())
    assert "s3cr3tpwd" not in repr(transport) and "s3cr3tpwd" not in str(transport)


@pytest.mark.parametrize(
    ("text", "endpoint", "message"),
    [
        ("not json", "e", "not JSON"),
        ("[]", "e", "not a JSON object"),
        ("{}", "e", "no endpoints"),
        ((FIXTURES / "conference-modified.json").read_text(), "other", "does not mention"),
        (
            (FIXTURES / "conference-modified-no-transport.json").read_text(),
            "probe5f3a9c1e",
            "no ICE-UDP transport",
        ),
        (
            json.dumps({"endpoints": [{"id": "e", "transport": {"transport": {"ufrag": "u"}}}]}),
            "e",
            "no ufrag/pwd",
        ),
        (
            json.dumps(
                {
                    "endpoints": [
                        {
                            "id": "e",
                            "transport": {
                                "transport": {"ufrag": "u", "pwd": "p", "candidates": [{"ip": "x"}]}
                            },
                        }
                    ]
                }
            ),
            "e",
            "candidate without ip/port",
        ),
    ],
)
def test_unusable_answers_are_errors_naming_what_is_missing(
    text: str, endpoint: str, message: str
) -> None:
    with pytest.raises(BridgeRestError, match=message):
        parse_conference_modified(text, endpoint)


def test_stats_counters() -> None:
    text = json.dumps({"conferences": 2, "endpoints": 3, "participants": 3, "drain": False})
    assert parse_stats(text) == BridgeStats(conferences=2, endpoints=3, participants=3)


class Recorder:
    """A request function answering from a script, recording what was sent."""

    def __init__(self, *answers: HttpAnswer) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, object]] = []

    def __call__(self, method: str, path: str, body: bytes | None) -> HttpAnswer:
        self.sent.append((method, path, json.loads(body) if body else None))
        return self.answers.pop(0)


def test_client_posts_the_create_and_patches_the_expire() -> None:
    created = HttpAnswer(200, (FIXTURES / "conference-modified.json").read_text())
    request = Recorder(created, HttpAnswer(200, "{}"))
    rest = BridgeRest(request)
    assert rest.create(PROBE).ufrag == "4kq2b1fvtf0l3h"
    rest.expire(PROBE)
    assert request.sent == [
        ("POST", "/colibri/v2/conferences", create_request(PROBE)),
        ("PATCH", f"/colibri/v2/conferences/{PROBE.meeting_id}", expire_request(PROBE)),
    ]


def test_client_reports_a_refusal_with_its_status() -> None:
    rest = BridgeRest(Recorder(HttpAnswer(400, "Failed to create conference: bad\n")))
    with pytest.raises(BridgeRestError, match="answered 400: Failed to create") as caught:
        rest.create(PROBE)
    assert caught.value.status == 400
