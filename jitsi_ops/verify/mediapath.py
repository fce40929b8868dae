"""The media path around a deploy: probed before the change (in the plan) and compared with the
gate, so a failed media.ice says whether this deploy broke it or it was broken already.

The probe before is media.ice alone, with a short budget: it only reads (its probe conference
is expired again) and never fails the deploy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from jitsi_ops.errors import OpsError
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify.model import Outcome, VerifyReport
from jitsi_ops.verify.suite import verify

CHECK_ID = "media.ice"
BEFORE_TIMEOUT = 3.0
MediaProbe = Callable[[Environment, Mapping[Host, Runner]], dict[str, Outcome]]
_WORDS = {"pass": "ok", "warn": "unproven", "fail": "BROKEN"}


def probe_before(env: Environment, runners: Mapping[Host, Runner]) -> dict[str, Outcome]:
    """media.ice on every JVB host, by host label (empty when it could not run at all)."""
    try:
        report = verify(
            env,
            runners,
            only=[CHECK_ID],
            timeout=BEFORE_TIMEOUT,
            parallel=env.deploy.fleet.parallel,
        )
    except OpsError:
        return {}
    return {o.host: o for o in report.outcomes if o.id == CHECK_ID}


def summary(before: Mapping[str, Outcome]) -> str:
    """`media path before: sandbox ok, jvb1 BROKEN (...)` for the plan line."""
    if not before:
        return "media path before: not probed"
    parts = []
    for host, outcome in before.items():
        word = _WORDS[outcome.status]
        parts.append(
            f"{host} {word}" + (f" ({outcome.observed})" if outcome.status == "fail" else "")
        )
    return "media path before: " + ", ".join(parts)


def gate_note(before: Mapping[str, Outcome], gate: VerifyReport) -> str:
    """`; <host>: ...` for each host whose media.ice failed in the gate: broken before this
    deploy, or by it ('' when media.ice passed everywhere)."""
    notes = []
    for outcome in gate.failures:
        if outcome.id != CHECK_ID:
            continue
        earlier = before.get(outcome.host)
        if earlier is None:
            notes.append(f"{outcome.host}: media path broken (not probed before this deploy)")
        elif earlier.status == "fail":
            notes.append(f"{outcome.host}: media path was already broken before this deploy")
        else:
            notes.append(f"{outcome.host}: media path broken by this deploy")
    return "".join(f"; {n}" for n in notes)


def as_dict(before: Mapping[str, Outcome]) -> dict[str, dict[str, str]]:
    """JSON shape: host -> status and observed."""
    return {h: {"status": o.status, "observed": o.observed} for h, o in before.items()}
