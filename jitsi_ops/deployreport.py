"""What a deploy run reports: the phase timeline, the rollback's outcome and the report that
`invoke deploy` prints and `--json` carries (no secret value in any of it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from jitsi_ops import guard as guarding
from jitsi_ops import plan as planning
from jitsi_ops.errors import OpsError
from jitsi_ops.verify import mediapath
from jitsi_ops.verify.model import Outcome, VerifyReport

PhaseStatus = Literal["ok", "failed", "skipped"]


@dataclass
class PhaseResult:
    """One line of the phase timeline."""

    name: str
    status: PhaseStatus
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "detail": self.detail,
        }


PhaseCallback = Callable[[PhaseResult], None]


RollbackCause = Literal["verification failed", "failed", "interrupted"]


@dataclass
class RollbackResult:
    """What the automatic rollback did and whether the previous state serves again.

    `done` says whether every changed host was put back (restored from this deploy's backup
    where migrations changed CONFIG); `ok` whether the gate then passed on the previous values.
    """

    restored_release: str | None
    verification: VerifyReport | None
    ok: bool
    detail: str = ""
    cause: RollbackCause = "verification failed"
    done: bool = False
    error: str = ""  # why the rollback itself failed, when it did
    env_files: list[str] = field(default_factory=list)  # env/NAME files put back

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "restored_release": self.restored_release,
            "cause": self.cause,
            "done": self.done,
            "ok": self.ok,
            "detail": self.detail,
            "error": self.error,
            "env_files": self.env_files,
            "verification": verification_dict(self.verification),
        }


def verification_dict(report: VerifyReport | None) -> dict[str, Any] | None:
    """A compact JSON form of a verify report."""
    if report is None:
        return None
    return {
        "ok": report.ok,
        "duration": round(report.duration, 2),
        "passed": report.count("pass"),
        "warned": report.count("warn"),
        "failed": [
            {"check": o.id, "host": o.host, "observed": o.observed} for o in report.failures
        ],
    }


@dataclass
class DeployReport:
    """Everything a deploy run did, for the human timeline and for `--json`."""

    env: str
    deploy_id: str
    from_release: str | None
    to_release: str | None
    dry_run: bool = False
    plan: planning.Plan | None = None
    # The plans of the role 'jvb' hosts, by host label (the main host's is `plan`).
    bridge_plans: dict[str, planning.Plan] = field(default_factory=dict)
    phases: list[PhaseResult] = field(default_factory=list)
    verification: VerifyReport | None = None
    rollback: RollbackResult | None = None
    backup_id: str | None = None
    result: str = "failed"
    error: str = ""
    # The deploy lock as this run last saw it: "" (never taken), "held" (taken, or perhaps
    # taken: its release was not confirmed), "released", "not held" (not this run's any more).
    lock: str = ""
    # media.ice before the change, by host (see verify.mediapath).
    media_before: dict[str, Outcome] = field(default_factory=dict)
    # The live load the plan phase read, and what the conference guard did (see guard.py).
    load: guarding.LiveLoad | None = None
    guard: guarding.GuardRecord | None = None
    # host label -> the release it runs when the run ended (None: unknown, e.g. a failed
    # rollback), and what a rolling upgrade did, step by step (fleet.RollEvent.as_dict()).
    releases: dict[str, str | None] = field(default_factory=dict)
    roll: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Exit 0 only for a deployed, verified, unrolled-back run (or nothing to do / dry run)."""
        return self.result in ("deployed", "nothing-to-do", "dry-run")

    def as_dict(self) -> dict[str, Any]:
        """The `--json` report."""
        return {
            "env": self.env,
            "deploy_id": self.deploy_id,
            "from_release": self.from_release,
            "to_release": self.to_release,
            "dry_run": self.dry_run,
            "result": self.result,
            "error": self.error,
            "lock": self.lock,
            "backup_id": self.backup_id,
            "plan": self.plan.as_dict() if self.plan else None,
            "bridge_plans": {label: p.as_dict() for label, p in self.bridge_plans.items()},
            "phases": [p.as_dict() for p in self.phases],
            "verification": verification_dict(self.verification),
            "rollback": self.rollback.as_dict() if self.rollback else None,
            "media_before": mediapath.as_dict(self.media_before),
            "load": self.load.as_dict() if self.load else None,
            "guard": self.guard.as_dict() if self.guard else None,
            "releases": self.releases,
            "roll": self.roll,
        }


class Timeline:
    """Times phases and reports each one as it ends."""

    def __init__(self, report: DeployReport, on_phase: PhaseCallback | None) -> None:
        self.report = report
        self.on_phase = on_phase

    def add(self, result: PhaseResult) -> None:
        """Record a phase result."""
        self.report.phases.append(result)
        if self.on_phase:
            self.on_phase(result)

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseResult]:
        """Run a phase; a raised error marks it failed (and propagates)."""
        result = PhaseResult(name, "ok", 0.0)
        started = time.monotonic()
        try:
            yield result
        except BaseException as exc:
            result.status = "failed"
            if not result.detail:
                result.detail = str(exc) if isinstance(exc, OpsError) else exc.__class__.__name__
            raise
        finally:
            result.seconds = time.monotonic() - started
            self.add(result)

    def last_failed(self) -> str:
        """The phase a failure or an interrupt just ended (the last one marked failed)."""
        failed = [p.name for p in self.report.phases if p.status == "failed"]
        return failed[-1] if failed else "the deploy"

    def skip(self, name: str, detail: str) -> None:
        """Record a phase that did not run."""
        self.add(PhaseResult(name, "skipped", 0.0, detail))
