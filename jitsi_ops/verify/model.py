"""Data of the verify suite: a check, its result on one attempt, and the finished report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from jitsi_ops.settings import Host

if TYPE_CHECKING:
    from jitsi_ops.verify.facts import Facts

Status = Literal["pass", "fail", "warn"]


@dataclass(frozen=True)
class CheckResult:
    """What one attempt of a check observed.

    `final` marks a failure that waiting cannot change (a served config.js with the wrong URL,
    a file mode): the suite then stops retrying that check before the timeout.
    """

    status: Status
    observed: str = ""
    hint: str = ""
    final: bool = False


def passed(observed: str = "") -> CheckResult:
    """A passing result."""
    return CheckResult("pass", observed)


def failed(observed: str, hint: str = "", *, final: bool = False) -> CheckResult:
    """A failing result; `final` when retrying cannot help."""
    return CheckResult("fail", observed, hint, final)


def warned(observed: str, hint: str = "") -> CheckResult:
    """A warning: reported, but it does not fail the run."""
    return CheckResult("warn", observed, hint, True)


CheckFunc = Callable[["Facts", Host], CheckResult]


@dataclass(frozen=True)
class Check:
    """One check of the suite on one host.

    `settles` says whether a failure may be transient (services still starting), so the suite
    retries it until the overall timeout; static facts (versions, file modes) are read once.
    """

    id: str
    host: Host
    description: str
    func: CheckFunc = field(repr=False, compare=False)
    settles: bool = True

    @property
    def group(self) -> str:
        """The part of the id before the first dot (host, sockets, web, ...)."""
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class Outcome:
    """The last result of one check after all attempts, ready for reporting (already scrubbed)."""

    id: str
    host: str
    role: str
    description: str
    status: Status
    observed: str
    hint: str
    attempts: int
    duration: float

    def as_dict(self) -> dict[str, object]:
        """The documented JSON shape of one check."""
        return {
            "id": self.id,
            "host": self.host,
            "role": self.role,
            "description": self.description,
            "status": self.status,
            "observed": self.observed,
            "hint": self.hint,
            "attempts": self.attempts,
            "duration_s": round(self.duration, 3),
        }


@dataclass(frozen=True)
class VerifyReport:
    """Every outcome of one verify run."""

    env: str
    release: str | None
    outcomes: tuple[Outcome, ...]
    duration: float
    timeout: float
    started_at: str = ""

    def count(self, status: Status) -> int:
        """How many checks ended with `status`."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings do not fail a run)."""
        return self.count("fail") == 0

    @property
    def failures(self) -> list[Outcome]:
        """The failed outcomes, in suite order."""
        return [o for o in self.outcomes if o.status == "fail"]
