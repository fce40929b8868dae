"""media.ice: the STUN exchange against real UDP sockets on loopback answering with aioice-built
messages (no mock of the library), the diagnosis of each failure, and the check's sequence
(create -> probe -> expire, also on failure and Ctrl-C) over a fake bridge REST."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from jitsi_ops.bridge_rest import Candidate, IceTransport
from jitsi_ops.runner import RecordingRunner, Runner
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.verify import media, mediapath
from jitsi_ops.verify.facts import Facts, VerifyRun
from jitsi_ops.verify.hostside import HttpAnswer
from jitsi_ops.verify.model import Outcome, Status, VerifyReport

REPO = Path(__file__).resolve().parents[2]
UFRAG, PWD = "bridgeufrag1234", "bridgepwd0123456789abcdef"


@dataclass
class Responder:
    """A UDP socket on 127.0.0.1 that answers Binding Requests like a bridge would (or not).

    mode: "answer" (valid Binding Success), "silent", "wrong-key" (integrity with another pwd),
    "elsewhere" (the answer leaves from another socket: a NAT mismatch), "error" (487).
    """

    mode: str = "answer"
    pwd: str = PWD
    requests: list[stun.Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            request = stun.parse_message(data)
            self.requests.append(request)
            if self.mode == "silent" or not request.check_message_integrity(self.pwd.encode()):
                continue
            kind = stun.Class.ERROR if self.mode == "error" else stun.Class.RESPONSE
            answer = stun.Message(stun.Method.BINDING, kind, request.transaction_id)
            if self.mode == "error":
                answer.attributes["ERROR-CODE"] = (487, "Role Conflict")
            answer.attributes["XOR-MAPPED-ADDRESS"] = addr
            key = b"another-bridge-pwd" if self.mode == "wrong-key" else self.pwd.encode()
            answer.add_message_integrity(key)
            out = self.other if self.mode == "elsewhere" else self.sock
            out.sendto(bytes(answer), addr)

    def candidate(self, kind: str = "srflx") -> Candidate:
        return Candidate("127.0.0.1", self.port, kind, "udp", 1694498815, "1")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()
        self.other.close()


@pytest.fixture
def bridge() -> Iterator[Responder]:
    responder = Responder()
    yield responder
    responder.close()


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_binding_request_carries_ice_short_term_credentials(bridge: Responder) -> None:
    outcome = media.stun_probe(IceTransport(UFRAG, PWD, (bridge.candidate(),)))
    assert outcome.replies and not outcome.silent, outcome
    request = bridge.requests[0]
    assert request.message_class == stun.Class.REQUEST
    remote, _, local = request.attributes["USERNAME"].partition(":")
    assert remote == UFRAG and local, request.attributes["USERNAME"]
    assert request.check_message_integrity(PWD.encode())
    assert {"PRIORITY", "ICE-CONTROLLED", "MESSAGE-INTEGRITY", "FINGERPRINT"} <= set(
        request.attributes
    ), request.attributes
    assert list(request.attributes)[-1] == "FINGERPRINT"


def test_a_valid_answer_passes_with_its_rtt(bridge: Responder) -> None:
    transport = IceTransport(UFRAG, PWD, (bridge.candidate(),))
    outcome = media.stun_probe(transport)
    reply = outcome.replies[0]
    assert reply.success and reply.authentic and reply.from_candidate, reply
    assert 0 < reply.rtt < 1.0, reply.rtt
    result = media.diagnose(transport, outcome, ["127.0.0.1"], where="meet")
    assert result.status == "pass", result
    assert f"127.0.0.1:{bridge.port}/udp (srflx) answered a Binding Success" in result.observed


def test_silence_is_no_answer_and_names_the_port_to_open() -> None:
    silent = Responder(mode="silent")
    try:
        transport = IceTransport(UFRAG, PWD, (silent.candidate(),))
        outcome = media.stun_probe(transport, interval=0.1)
    finally:
        silent.close()
    assert len(silent.requests) == media.TRIES, "every try is a retransmission"
    assert len({r.transaction_id for r in silent.requests}) == 1, "one transaction retransmitted"
    result = media.diagnose(transport, outcome, ["127.0.0.1"], where="meet")
    assert result.status == "fail" and result.final
    assert result.observed.startswith("no answer from 127.0.0.1"), result.observed
    assert "a third participant will lose audio/video" in result.observed
    assert f"open UDP {silent.port} to meet at 127.0.0.1" in result.hint, result.hint


def test_wrong_credentials_get_no_answer_from_a_bridge(bridge: Responder) -> None:
    transport = IceTransport(UFRAG, "not-the-bridges-pwd", (bridge.candidate(),))
    outcome = media.stun_probe(transport, interval=0.1)
    assert not outcome.replies and outcome.silent == (bridge.candidate(),)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("elsewhere", "(NAT mismatch)"),
        ("wrong-key", "MESSAGE-INTEGRITY does not validate"),
        ("error", "STUN error 487 Role Conflict"),
    ],
)
def test_answers_that_do_not_prove_the_path_fail_with_their_cause(mode: str, expected: str) -> None:
    responder = Responder(mode=mode)
    try:
        transport = IceTransport(UFRAG, PWD, (responder.candidate(),))
        result = media.diagnose(
            transport, media.stun_probe(transport, interval=0.2), ["127.0.0.1"], where="meet"
        )
    finally:
        responder.close()
    assert result.status == "fail" and expected in result.observed, result
    assert "a third participant will lose audio/video" in result.observed


def test_only_private_candidates_is_the_container_address_mistake(bridge: Responder) -> None:
    transport = IceTransport(UFRAG, PWD, (bridge.candidate("host"),))
    outcome = media.stun_probe(transport)
    result = media.diagnose(transport, outcome, ["198.51.100.7"], where="meet")
    assert result.status == "fail" and result.observed.startswith("no public candidate"), result
    assert "JVB_ADVERTISE_IPS" in result.hint and "198.51.100.7" in result.hint


def test_a_private_answer_does_not_excuse_a_silent_public_candidate(bridge: Responder) -> None:
    public = Candidate("127.0.0.2", unused_port(), "srflx", "udp")
    transport = IceTransport(UFRAG, PWD, (public, bridge.candidate("host")))
    result = media.diagnose(
        transport, media.stun_probe(transport, interval=0.1), ["127.0.0.2"], where="meet"
    )
    assert result.status == "fail" and result.observed.startswith("no answer from 127.0.0.2")
    assert "only 127.0.0.1" in result.observed, result.observed


def test_only_the_declared_addresses_get_packets(bridge: Responder) -> None:
    # The check passes `only=expected`: a container or LAN candidate of a remote bridge names
    # some other machine on the operator's network, so it gets no packet at all.
    public = Candidate("127.0.0.2", unused_port(), "srflx", "udp")
    transport = IceTransport(UFRAG, PWD, (public, bridge.candidate("host")))
    outcome = media.stun_probe(transport, interval=0.1, only=["127.0.0.2"])
    assert bridge.requests == [], bridge.requests
    assert outcome.left_alone == (bridge.candidate("host"),), outcome
    result = media.diagnose(transport, outcome, ["127.0.0.2"], where="meet")
    assert result.status == "fail" and result.observed.startswith("no answer from 127.0.0.2")


def test_a_pass_names_the_candidates_left_alone(bridge: Responder) -> None:
    private = Candidate("172.31.255.9", 10000, "host", "udp")
    transport = IceTransport(UFRAG, PWD, (bridge.candidate(), private))
    outcome = media.stun_probe(transport, only=["127.0.0.1"])
    result = media.diagnose(transport, outcome, ["127.0.0.1"], where="meet")
    assert result.status == "pass", result
    assert "not probed: 172.31.255.9" in result.observed, result.observed


def test_tcp_candidates_are_not_probed() -> None:
    transport = IceTransport(UFRAG, PWD, (Candidate("127.0.0.1", 4443, "host", "tcp"),))
    outcome = media.stun_probe(transport, interval=0.05)
    assert outcome.skipped and not outcome.replies
    result = media.diagnose(transport, outcome, ["127.0.0.1"], where="meet")
    assert result.status == "fail" and "no UDP candidate" in result.observed


# ---- the check's sequence over a fake bridge REST -----------------------------------------


@dataclass
class FakeBridge:
    """The colibri2 REST of one bridge: conferences by meeting id, candidates it returns."""

    candidates: list[tuple[str, int, str]]
    status: int = 200
    conferences: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self,
        _runner: Runner,
        _port: int,
        path: str,
        _timeout: float,
        *,
        method: str,
        body: bytes | None,
    ) -> HttpAnswer:
        request = json.loads(body or b"{}")
        self.calls.append((method, path))
        if self.status != 200:
            return HttpAnswer(self.status, "Not Found")
        if method == "POST":
            self.conferences[request["meeting-id"]] = request["name"]
            endpoint = request["endpoints"][0]["id"]
            candidates = [
                {"ip": ip, "port": str(p), "type": kind, "protocol": "udp", "component": "1"}
                for ip, p, kind in self.candidates
            ]
            ice = {"ufrag": UFRAG, "pwd": PWD, "candidates": candidates}
            answer = {"endpoints": [{"id": endpoint, "transport": {"transport": ice}}]}
            return HttpAnswer(200, json.dumps(answer))
        meeting = path.rsplit("/", 1)[1]
        if meeting not in self.conferences:
            return HttpAnswer(404, "Not Found")
        if request.get("expire"):
            del self.conferences[meeting]
        return HttpAnswer(200, "{}")


def sandbox(**overrides: str) -> Environment:
    environ = {f"JITSI_OPS_{k}": v for k, v in overrides.items()}
    environ.setdefault("JITSI_OPS_JVB_AUTH_PASSWORD", "x" * 32)
    return load_environment("sandbox", REPO, environ=environ)


def facts_for(env: Environment, rest: FakeBridge, deployed_env: str | None = None) -> Facts:
    runner = RecordingRunner(label="sandbox")
    if deployed_env is not None:
        runner.files[f"{env.deploy.stack_dir}/.env"] = deployed_env.encode()
    run = VerifyRun(
        env=env,
        values=dict(env.values),
        runners={env.deploy.main_host: runner},
        loopback=lambda *_a: HttpAnswer(404, ""),
        deadline=1e12,
        rest=rest,
    )
    return Facts(run)


def test_check_passes_and_leaves_no_probe_conference(bridge: Responder) -> None:
    env = sandbox()
    rest = FakeBridge([("127.0.0.1", bridge.port, "srflx")])
    result = media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert result.status == "pass", result
    assert rest.conferences == {}, "the probe conference is still there"
    assert [m for m, _ in rest.calls] == ["POST", "PATCH"], rest.calls
    assert rest.calls[0][1] == "/colibri/v2/conferences"


def test_the_deployed_advertise_setting_decides_what_is_public(bridge: Responder) -> None:
    # Local files changed (or a rollback restored the host): the running bridge advertises what
    # the host's .env says.
    env = sandbox(JVB_ADVERTISE_IPS="198.51.100.7")
    rest = FakeBridge([("127.0.0.1", bridge.port, "srflx")])
    local_only = media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert local_only.observed.startswith("no public candidate"), local_only
    deployed = facts_for(env, rest, deployed_env="JVB_ADVERTISE_IPS=127.0.0.1\n")
    assert media.media_ice(deployed, env.deploy.main_host).status == "pass"


def test_check_fails_and_still_expires_the_conference() -> None:
    env = sandbox()
    rest = FakeBridge([("127.0.0.1", unused_port(), "srflx")])
    result = media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert result.status == "fail" and "no answer" in result.observed, result
    assert rest.conferences == {}, "a failed probe left its conference behind"


def test_a_probe_conference_that_cannot_be_expired_fails_the_check(bridge: Responder) -> None:
    class Stubborn(FakeBridge):
        def __call__(self, *args: Any, method: str, body: bytes | None) -> HttpAnswer:
            if method == "PATCH":
                return HttpAnswer(500, "Internal Server Error")
            return super().__call__(*args, method=method, body=body)

    env = sandbox()
    rest = Stubborn([("127.0.0.1", bridge.port, "srflx")])
    result = media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert result.status == "fail" and "could not be expired: PATCH" in result.observed, result
    assert "jitsi-ops-probe-" in result.observed, result


def test_ctrl_c_during_the_probe_still_expires_the_conference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(_transport: IceTransport, **_options: object) -> media.ProbeOutcome:
        raise KeyboardInterrupt

    monkeypatch.setattr(media, "stun_probe", interrupted)
    env = sandbox()
    rest = FakeBridge([("127.0.0.1", 10000, "srflx")])
    with pytest.raises(KeyboardInterrupt):
        media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert rest.conferences == {}, "Ctrl-C left the probe conference behind"


def test_without_colibri_rest_the_media_path_is_unproven() -> None:
    env = sandbox(COLIBRI_REST_ENABLED="0")
    rest = FakeBridge([])
    result = media.media_ice(facts_for(env, rest), env.deploy.main_host)
    assert result.status == "warn" and "unproven" in result.observed, result
    assert "COLIBRI_REST_ENABLED=1" in result.hint and "127.0.0.1" in result.hint
    assert rest.calls == [], "nothing is sent to a bridge whose REST is off"


def test_a_bridge_that_does_not_serve_colibri2_is_a_warning() -> None:
    env = sandbox()
    result = media.media_ice(facts_for(env, FakeBridge([], status=404)), env.deploy.main_host)
    assert result.status == "warn" and "unproven" in result.observed, result


# ---- before / after a deploy ----------------------------------------------------------------


def outcome(host: str, status: Status, observed: str = "") -> Outcome:
    return Outcome("media.ice", host, "jvb", "d", status, observed, "", 1, 0.1)


def gate(*outcomes: Outcome) -> VerifyReport:
    return VerifyReport("sandbox", "stable-11146-2", outcomes, 1.0, 90.0)


def test_the_plan_line_says_which_media_paths_worked_before() -> None:
    before = {
        "sandbox": outcome("sandbox", "pass"),
        "jvb1": outcome("jvb1", "fail", "no answer from 10.231.1.2:10000/udp (srflx)"),
    }
    assert mediapath.summary(before) == (
        "media path before: sandbox ok, jvb1 BROKEN (no answer from 10.231.1.2:10000/udp (srflx))"
    )
    assert mediapath.summary({}) == "media path before: not probed"


def test_a_failed_gate_says_whether_the_deploy_broke_the_media_path() -> None:
    before = {"sandbox": outcome("sandbox", "pass"), "jvb1": outcome("jvb1", "fail")}
    after = gate(outcome("sandbox", "fail", "no answer"), outcome("jvb1", "fail", "no answer"))
    assert mediapath.gate_note(before, after) == (
        "; sandbox: media path broken by this deploy"
        "; jvb1: media path was already broken before this deploy"
    )
    assert mediapath.gate_note(before, gate(outcome("sandbox", "pass"))) == ""
