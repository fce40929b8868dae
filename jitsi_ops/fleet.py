"""The fleet around one host's pipeline: rolling bridge upgrades with drain.

deploy.py applies one host at a time (apply_target); this module decides in what order the
bridges go and how many at once, and wraps each one in drain: `POST /colibri/drain/enable`,
wait until that bridge's own conferences are over (up to the guard's max wait, then the
guard policy decides), apply, gate that host (jicofo counts every bridge as operational again
and media.ice passes on it), `POST /colibri/drain/disable`. Drain is lifted on every exit,
Ctrl-C included (a first Ctrl-C meanwhile is held back, as during a rollback).

A step that fails (its apply, its gate, or its drain wait under refuse/wait) raises: the roll
stops there, the bridges after it were never touched, and the deploy pipeline rolls back the
hosts that were changed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitsi_ops import bridge_rest
from jitsi_ops import guard as guarding
from jitsi_ops.deploy import BridgeStep, Progress
from jitsi_ops.errors import OpsError, VerifyFailed
from jitsi_ops.rollback import shielded
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, GuardPolicy, Host
from jitsi_ops.verify.hostside import LoopbackRequest, loopback_request
from jitsi_ops.verify.model import VerifyReport
from jitsi_ops.verify.suite import verify as run_verify

# What "this bridge is back" means: jicofo counts it as operational, media reaches it, and the
# host runs the pinned images.
STEP_GATE = ("conference.bridges", "media.ice", "host.containers", "host.images")
StepVerifier = Callable[[Environment, Mapping[Host, Runner], float, int], VerifyReport]


def step_verifier(
    env: Environment, runners: Mapping[Host, Runner], timeout: float, bridges: int
) -> VerifyReport:
    """The per-step gate: STEP_GATE's checks on the hosts given; jicofo must count `bridges`."""
    return run_verify(
        env,
        runners,
        only=STEP_GATE,
        timeout=timeout,
        expected_bridges=bridges,
        parallel=env.deploy.fleet.parallel,
    )


class DrainError(OpsError):
    """The bridge's drain endpoint refused (the bridge is then not upgraded)."""


@dataclass
class RollEvent:
    """One thing the roll did, with the time it happened (monotonic seconds from the start)."""

    host: str
    what: str  # "drain on", "drained", "applied", "gated", "drain off", "failed", "drain stuck"
    at: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "host": self.host,
            "what": self.what,
            "at": round(self.at, 2),
            "detail": self.detail,
        }


@contextlib.contextmanager
def drained(
    rest: bridge_rest.BridgeRest, label: str, note: Callable[[str, str, str], None]
) -> Iterator[None]:
    """Drain on for the block, off again however it ends (KeyboardInterrupt included)."""
    try:
        rest.set_drain(True)
    except Exception as exc:
        what = str(exc) if isinstance(exc, OpsError | OSError) else exc.__class__.__name__
        raise DrainError(f"{label}: drain could not be enabled: {what}") from None
    note(label, "drain on", "")
    try:
        yield
    finally:
        with shielded():
            try:
                rest.set_drain(False)
            except Exception as exc:
                # Said, not raised: it must not hide why the block ended. A recreated bridge
                # container starts undrained anyway.
                note(label, "drain stuck", f"could not lift drain: {exc}")
            else:
                note(label, "drain off", "")


@dataclass
class RollingUpgrade:
    """Upgrades the bridges of a deploy `batch` at a time, each batch drained while it changes.

    `transport` reaches each host's 127.0.0.1 (through its SSH connection); `verifier` is the
    per-step gate; `clock` and `sleep` are injectable for tests."""

    env: Environment
    main: tuple[Host, Runner]
    policy: GuardPolicy
    max_wait: float
    gate_timeout: float
    batch: int = 1
    transport: LoopbackRequest = loopback_request
    verifier: StepVerifier = step_verifier
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    interval: float = guarding.WAIT_INTERVAL
    events: list[RollEvent] = field(default_factory=list)
    failed_gate: VerifyReport | None = None
    _started: float = 0.0

    def journal(self) -> list[dict[str, Any]]:
        """The events so far, as JSON."""
        return [event.as_dict() for event in self.events]

    def note(self, host: str, what: str, detail: str) -> None:
        """Record one event."""
        self.events.append(RollEvent(host, what, self.clock() - self._started, detail))

    def request(self, step: BridgeStep) -> bridge_rest.Request:
        """Requests to the REST of the bridge that runs on the step's host now."""
        port = step.running_port or guarding.bridge_port(step.env)
        return guarding.host_request(step.runner, port, transport=self.transport)

    def __call__(self, steps: Sequence[BridgeStep], progress: Progress) -> str:
        """Run the steps in order, `batch` at a time; a one-line summary. Raises on the first
        failing step (the later ones untouched)."""
        self._started = self.clock()
        say = progress or (lambda _message: None)
        done: list[str] = []
        for start in range(0, len(steps), self.batch):
            batch = steps[start : start + self.batch]
            # Bridges jicofo can count once this batch is up: every JVB host but those whose
            # first bridge comes in a later batch (an upgrade: all of them).
            later_first = sum(1 for s in steps[start + self.batch :] if not s.running)
            bridges = len(self.env.deploy.hosts) - later_first
            with contextlib.ExitStack() as stack:
                # A host with no bridge running yet (its first deploy) has nothing to drain.
                live = [step for step in batch if step.running]
                for step in live:
                    say(f"{step.label}: drain on ({start + 1}/{len(steps)})")
                    rest = bridge_rest.BridgeRest(self.request(step))
                    stack.enter_context(drained(rest, step.label, self.note))
                for step in live:
                    self.wait_drained(step, say)
                for step in batch:
                    self.apply_and_gate(step, say, bridges)
            done.extend(step.label for step in batch)
        return f"{len(done)} bridge host(s) one batch of {self.batch} at a time: {', '.join(done)}"

    def wait_drained(self, step: BridgeStep, say: Callable[[str], None]) -> None:
        """Until the bridge's own conferences are over; at max wait the policy decides."""
        request = self.request(step)

        def read() -> guarding.LiveLoad:
            return guarding.LiveLoad(None, (guarding.read_bridge(step.label, request),))

        waiting = guarding.ConferenceGuard(
            "wait",
            self.max_wait,
            read,
            action=f"upgrade of {step.label}",
            interval=self.interval,
            clock=self.clock,
            sleep=self.sleep,
        )
        labelled = lambda message: say(f"{step.label}: {message}")  # noqa: E731
        try:
            record = waiting.check({step.label: ("jvb",)}, say=labelled)
        except guarding.GuardRefused as exc:
            if self.policy != "force":
                self.note(step.label, "failed", exc.message)
                raise
            self.note(step.label, "drained", f"forced: {exc.message}")
            return
        self.note(step.label, "drained", record.detail())

    def apply_and_gate(self, step: BridgeStep, say: Callable[[str], None], bridges: int) -> None:
        """Apply the step's host, then its gate (jicofo counting `bridges`); VerifyFailed when
        the gate fails."""
        detail = step.apply()
        self.note(step.label, "applied", detail)
        say(f"{step.label}: verifying")
        main_host, main_runner = self.main
        runners = {main_host: main_runner, step.host: step.runner}
        report = self.verifier(step.gate_env, runners, self.gate_timeout, bridges)
        if not report.ok:
            self.failed_gate = report
            first = report.failures[0]
            self.note(step.label, "failed", f"{first.id}: {first.observed}")
            raise VerifyFailed(
                f"{step.label} failed its gate ({first.id} on {first.host}: {first.observed}); "
                "the roll stopped there",
                hint="the bridges after it were not touched",
            )
        self.note(step.label, "gated", f"{report.count('pass')} passed")
