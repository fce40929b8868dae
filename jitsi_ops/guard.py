"""The conference guard: the live load of an environment, read before a step that would cut
meetings, and what the guard policy (refuse, wait, force) does about it.

The load comes from the private REST reached through each host's SSH connection (see
bridge_rest): jicofo's `/stats` on the main host counts every conference of the environment,
each bridge's `/colibri/stats` (the main host's jvb and every role 'jvb' host) its own.

jitsi-ops' own probe conferences (media.ice, named `jitsi-ops-probe-*`) never count: they are
created on a bridge directly through colibri2, so jicofo never sees them, and the probe expires
its conference before it returns (the plan phase's probe is over before the guard reads). A
bridge's counters would include a probe live at that moment, so the guard must not run while
one is: nothing in the pipeline does both at once.

Only the services whose restart cuts a meeting are guarded: prosody, jicofo, web (the
signalling and the page) and jvb (the media). Etherpad, the whiteboard or an unchanged stack
are never held back.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitsi_ops import bridge_rest, facts, hoststate, pool
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import ConfigError, OpsError
from jitsi_ops.runner import Runner
from jitsi_ops.settings import GUARD_POLICIES, Environment, GuardPolicy, Host
from jitsi_ops.verify import derive
from jitsi_ops.verify.hostside import LoopbackRequest, loopback_request

GUARDED_SERVICES = ("prosody", "jicofo", "web", "jvb")
SIGNALLING = ("prosody", "jicofo", "web")  # a restart of one of these cuts every meeting
READ_TIMEOUT = 5.0
WAIT_INTERVAL = 5.0


class GuardRefused(OpsError):
    """Live meetings and a policy (or a deadline) that does not let the step cut them."""


@dataclass(frozen=True)
class HostLoad:
    """What one REST endpoint reported: counts, or why they could not be read."""

    host: str  # the host's label
    source: str  # "jicofo" or "jvb"
    conferences: int = 0
    participants: int = 0
    drain: bool = False
    error: str = ""

    @property
    def known(self) -> bool:
        """Whether the counts were read."""
        return not self.error

    def describe(self) -> str:
        """`jvb1 jvb: 3 conference(s), 11 participant(s)` (or the read error)."""
        if not self.known:
            return f"{self.host} {self.source}: unknown ({self.error})"
        drain = ", draining" if self.drain else ""
        return f"{self.host} {self.source}: {_counts(self.conferences, self.participants)}{drain}"

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        data: dict[str, Any] = {"host": self.host, "source": self.source}
        if self.known:
            data |= {"conferences": self.conferences, "participants": self.participants}
            data["drain"] = self.drain
        else:
            data["error"] = self.error
        return data


def _counts(conferences: int, participants: int) -> str:
    return f"{conferences} conference(s), {participants} participant(s)"


@dataclass(frozen=True)
class LiveLoad:
    """The environment's load: jicofo's totals and each bridge's own counts."""

    jicofo: HostLoad | None = None
    bridges: tuple[HostLoad, ...] = ()

    @property
    def known(self) -> bool:
        """Whether any source answered."""
        return (self.jicofo is not None and self.jicofo.known) or any(b.known for b in self.bridges)

    def total(self) -> tuple[int, int]:
        """(conferences, participants) of the environment: the larger of jicofo's count and
        the bridges' sum, each. jicofo counts a meeting once whatever bridges it spans (the sum
        counts it per bridge) and counts peer-to-peer ones no bridge sees, but it does not see a
        conference created on a bridge directly (colibri2): the larger errs on the safe side."""
        known = [b for b in self.bridges if b.known]
        conferences = sum(b.conferences for b in known)
        participants = sum(b.participants for b in known)
        if self.jicofo is not None and self.jicofo.known:
            conferences = max(conferences, self.jicofo.conferences)
            participants = max(participants, self.jicofo.participants)
        return conferences, participants

    def affected(self, disruptive: Mapping[str, Sequence[str]]) -> tuple[int, int]:
        """(conferences, participants) the disruptive steps would cut: everything when a
        signalling service restarts, else the meetings on the bridges that restart (the total
        when one of those could not be read: the safe side)."""
        services = {s for names in disruptive.values() for s in names}
        if services & set(SIGNALLING):
            return self.total()
        hit = [b for b in self.bridges if "jvb" in disruptive.get(b.host, ())]
        if any(not b.known for b in hit) or len(hit) < sum(
            1 for names in disruptive.values() if "jvb" in names
        ):
            return self.total()
        return sum(b.conferences for b in hit), sum(b.participants for b in hit)

    def lines(self) -> list[str]:
        """One line per source, for the plan."""
        return [h.describe() for h in ([self.jicofo] if self.jicofo else []) + list(self.bridges)]

    def summary(self) -> str:
        """`live load: 3 conference(s), 11 participant(s) (jicofo: ...; jvb1 jvb: ...)`."""
        if not self.known:
            return "live load: unknown (" + "; ".join(self.lines()) + ")"
        return f"live load: {_counts(*self.total())} ({'; '.join(self.lines())})"

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        conferences, participants = self.total()
        return {
            "known": self.known,
            "conferences": conferences,
            "participants": participants,
            "hosts": [h.as_dict() for h in ([self.jicofo] if self.jicofo else [])]
            + [b.as_dict() for b in self.bridges],
        }


def disruptive_services(recreate: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """host label -> the guarded services among those a step recreates (hosts with none left
    out): what the guard holds back."""
    found = {}
    for host, services in recreate.items():
        hit = tuple(s for s in services if s in GUARDED_SERVICES)
        if hit:
            found[host] = hit
    return found


# ------------------------------------------------------------------------------- reading


def host_request(
    runner: Runner, port: int, *, transport: LoopbackRequest = loopback_request
) -> bridge_rest.Request:
    """A bridge_rest.Request to the host's 127.0.0.1:PORT through its runner's connection."""

    def request(method: str, path: str, body: bytes | None) -> bridge_rest.Answer:
        return transport(runner, port, path, READ_TIMEOUT, method=method, body=body)

    return request


def bridge_port(view: Environment) -> int:
    """The host's published colibri REST port (JVB_COLIBRI_PORT)."""
    values = rendered_values(view)
    return derive.int_value(values, "JVB_COLIBRI_PORT", derive.DEFAULT_JVB_COLIBRI_PORT)


def jicofo_port(env: Environment) -> int:
    """The main host's published jicofo REST port (JICOFO_REST_PORT)."""
    values = rendered_values(env)
    return derive.int_value(values, "JICOFO_REST_PORT", derive.DEFAULT_JICOFO_REST_PORT)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, bridge_rest.BridgeRestError) and exc.status == 404:
        return "REST not enabled (404)"
    if isinstance(exc, OpsError):
        return exc.message
    return str(exc) if isinstance(exc, OSError | TimeoutError) else exc.__class__.__name__


def read_bridge(label: str, request: bridge_rest.Request) -> HostLoad:
    """One bridge's `/colibri/stats` (never raises: an unreadable bridge says why)."""
    try:
        stats = bridge_rest.BridgeRest(request).stats()
    except Exception as exc:  # whatever the port answers (e.g. not HTTP): said, never raised
        return HostLoad(label, "jvb", error=_error_text(exc))
    return HostLoad(label, "jvb", stats.conferences, stats.participants, stats.drain)


def read_jicofo(label: str, request: bridge_rest.Request) -> HostLoad:
    """jicofo's `/stats` (never raises)."""
    try:
        stats = bridge_rest.jicofo_stats(request)
    except Exception as exc:  # whatever the port answers (e.g. not HTTP): said, never raised
        return HostLoad(label, "jicofo", error=_error_text(exc))
    return HostLoad(label, "jicofo", stats.conferences, stats.participants)


@dataclass
class LoadReader:
    """Reads the live load of an environment through its hosts' runners (main host first)."""

    env: Environment
    runners: Mapping[Host, Runner]
    transport: LoopbackRequest = loopback_request

    def read(self) -> LiveLoad:
        """jicofo and every bridge, now (every host at once, `[fleet] parallel` at a time)."""
        main = self.env.deploy.main_host
        main_runner = self.runners[main]

        def jicofo() -> HostLoad:
            port = jicofo_port(self.env)
            return read_jicofo(
                main.label, host_request(main_runner, port, transport=self.transport)
            )

        def bridge(host: Host, runner: Runner) -> HostLoad:
            view = self.env if host == main else self.env.for_host(host)
            request = host_request(runner, bridge_port(view), transport=self.transport)
            return read_bridge(host.label, request)

        reads: list[Callable[[], HostLoad]] = [jicofo]
        reads += [functools.partial(bridge, h, r) for h, r in self.runners.items()]
        found = pool.on_all(
            reads, lambda read: read(), parallel=self.env.deploy.fleet.parallel, what="load"
        )
        return LiveLoad(found[0], tuple(found[1:]))


# ------------------------------------------------------------------------------- policy


_DURATION_RE = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?")


def parse_duration(text: str, key: str = "--max-wait") -> float:
    """`90`, `90s`, `15m`, `1h30m` -> seconds; ConfigError naming `key` otherwise."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"{key} {text!r} is not a duration", hint="e.g. 90 (seconds), 15m, 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"{key} must be greater than 0", hint="e.g. 15m")
    return float(total)


def check_policy(text: str) -> GuardPolicy:
    """`--guard` value -> policy; ConfigError otherwise."""
    for policy in GUARD_POLICIES:
        if text == policy:
            return policy
    raise ConfigError(
        f"--guard {text!r} is not a guard policy",
        hint=f"one of {', '.join(GUARD_POLICIES)} (default: [guard] policy of deploy.toml)",
    )


def check_flags(policy: str, max_wait: str) -> None:
    """--guard / --max-wait as given (empty: deploy.toml's); ConfigError when unusable."""
    if policy:
        check_policy(policy)
    if max_wait:
        parse_duration(max_wait)


def clock_text(seconds: float) -> str:
    """`4m12s` (`45s` under a minute, `1h02m` from an hour)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class GuardRecord:
    """What the guard did, for the plan, the report and the audit log (counts only)."""

    policy: GuardPolicy
    outcome: str  # "not needed", "clear", "waited", "forced", "unknown"
    load: LiveLoad | None = None
    disruptive: dict[str, tuple[str, ...]] = field(default_factory=dict)
    waited: float = 0.0
    overridden: tuple[int, int] | None = None  # the counts force went over

    def detail(self) -> str:
        """One line for the timeline."""
        if self.outcome == "not needed":
            return "nothing restarts prosody, jicofo, web or a bridge"
        if self.outcome == "forced" and self.overridden:
            return f"FORCED over {_counts(*self.overridden)} (recorded in the audit log)"
        if self.outcome == "waited":
            return f"no live meetings after waiting {clock_text(self.waited)}"
        if self.outcome == "unknown":
            assert self.load is not None
            return self.load.summary() + "; going on (the load could not be read)"
        return "no live meetings"

    def as_dict(self) -> dict[str, Any]:
        """JSON / audit shape."""
        return {
            "policy": self.policy,
            "outcome": self.outcome,
            "disruptive": {h: list(s) for h, s in self.disruptive.items()},
            "waited": round(self.waited, 1),
            "overridden": (
                {"conferences": self.overridden[0], "participants": self.overridden[1]}
                if self.overridden
                else None
            ),
            "load": self.load.as_dict() if self.load else None,
        }


Say = Callable[[str], None] | None


@dataclass
class ConferenceGuard:
    """Applies a guard policy to the live load before a disruptive step.

    `read` gives the load now (LoadReader.read on real hosts); `clock` and `sleep` are
    injectable so the wait is testable without waiting."""

    policy: GuardPolicy
    max_wait: float
    read: Callable[[], LiveLoad]
    action: str = "deploy"
    interval: float = WAIT_INTERVAL
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def observe(self) -> LiveLoad:
        """The load now (for the plan)."""
        return self.read()

    def check(
        self,
        recreate: Mapping[str, Sequence[str]],
        load: LiveLoad | None = None,
        say: Say = None,
    ) -> GuardRecord:
        """Let the step go on (a record of why) or raise GuardRefused; `load` is a fresh
        reading to start from (else one is taken)."""
        disruptive = disruptive_services(recreate)
        record = GuardRecord(self.policy, "not needed", disruptive=disruptive)
        if not disruptive:
            return record
        load = load if load is not None else self.read()
        record.load = load
        if not load.known:
            # REST off everywhere (upstream's default for jicofo): the guard cannot see, says so
            # in the timeline and in the audit, and does not block a deploy it cannot judge.
            record.outcome = "unknown"
            return record
        conferences, participants = load.affected(disruptive)
        if conferences == 0 and participants == 0:
            record.outcome = "clear"
            return record
        if self.policy == "force":
            record.outcome, record.overridden = "forced", (conferences, participants)
            return record
        if self.policy == "refuse":
            raise self._refusal(load, disruptive, conferences, participants, waited=None)
        return self._wait(record, load, conferences, participants, say)

    def _wait(
        self, record: GuardRecord, load: LiveLoad, conferences: int, participants: int, say: Say
    ) -> GuardRecord:
        started = self.clock()
        deadline = started + self.max_wait
        while conferences or participants:
            left = deadline - self.clock()
            if left <= 0:
                raise self._refusal(
                    load, record.disruptive, conferences, participants, self.clock() - started
                )
            if say:
                say(
                    f"waiting for {conferences} conference(s), {participants} participant(s); "
                    f"{clock_text(left)} left"
                )
            self.sleep(min(self.interval, left))
            load = self.read()
            record.load = load
            conferences, participants = (
                load.affected(record.disruptive) if load.known else (conferences, participants)
            )
        record.outcome, record.waited = "waited", self.clock() - started
        return record

    def _refusal(
        self,
        load: LiveLoad,
        disruptive: Mapping[str, Sequence[str]],
        conferences: int,
        participants: int,
        waited: float | None,
    ) -> GuardRefused:
        services = sorted({s for names in disruptive.values() for s in names})
        where = "; ".join(h.describe() for h in [load.jicofo, *load.bridges] if h and h.known)
        head = (
            f"{_counts(conferences, participants)} live"
            if waited is None
            else f"still {_counts(conferences, participants)} live after waiting "
            f"{clock_text(waited)}"
        )
        hint = (
            "let them end, then run it again; --guard wait [--max-wait 30m] waits for them, "
            "--guard force cuts them (recorded in the audit log)"
        )
        return GuardRefused(
            f"{head} ({where}): this {self.action} would restart {', '.join(services)}; "
            "nothing was changed",
            hint=hint,
        )


def running_guarded(env: Environment, runners: Mapping[Host, Runner]) -> dict[str, tuple[str, ...]]:
    """host label -> the guarded services running there now: what a step that stops and
    starts the whole stack (restore, rollback) restarts."""
    found = {}
    for host, runner in runners.items():
        containers = facts.gather(runner, facts.project_containers(env.deploy.project))
        found[host.label] = tuple(
            sorted({c.service for c in containers if c.service in GUARDED_SERVICES})
        )
    return found


def audit_override(env: Environment, runner: Runner, record: GuardRecord, action: str) -> None:
    """One audit line on the main host for a forced guard of a task that writes its own
    record elsewhere (restore, rollback, apply): the counts it went over."""
    if record.outcome != "forced" or record.overridden is None:
        return
    conferences, participants = record.overridden
    hoststate.append_audit(
        runner,
        env.deploy.stack_dir,
        {
            "action": "guard",
            "for": action,
            "env": env.name,
            "guard": {
                "policy": record.policy,
                "outcome": record.outcome,
                "overridden": {"conferences": conferences, "participants": participants},
            },
        },
        secret_values=rendered_values(env),
    )
