"""Run the suite: select checks, retry what may still be settling until the deadline, scrub.

Round 1 runs every selected check. A failure is retried in the next round when its check
`settles` (it depends on services that may still be starting) and the result is not `final`;
everything else keeps its first answer. Rounds get a fresh set of facts (nothing stale is
reused) and pause a little longer each time, never past the overall timeout.

With `parallel` > 1 the hosts' checks run side by side (each host's own rounds, on its own
connection, at most `parallel` hosts at a time): a fleet is verified in about the time of its
slowest host, not the sum of them.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from jitsi_ops import pool
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import ConfigError, OpsError
from jitsi_ops.runner import Runner
from jitsi_ops.secrets import scrub
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify.checks import build_suite
from jitsi_ops.verify.facts import Facts, VerifyRun
from jitsi_ops.verify.hostside import LoopbackHttp, LoopbackRequest, loopback_get, loopback_request
from jitsi_ops.verify.model import Check, CheckResult, Outcome, VerifyReport, failed

MAX_PAUSE = 5.0
Progress = Callable[[int, Sequence[Check], float], None]


def select(checks: Sequence[Check], only: Iterable[str]) -> list[Check]:
    """Checks matching any pattern: an exact id, a group (`web`), or a glob (`conference.jvb_*`).

    A pattern that matches nothing is an error naming the known ids (a typo must not turn into
    an empty, passing run).
    """
    patterns = [p.strip() for p in only if p.strip()]
    if not patterns:
        return list(checks)
    chosen: list[Check] = []
    for pattern in patterns:
        matched = [
            c for c in checks if pattern in (c.id, c.group) or fnmatch.fnmatchcase(c.id, pattern)
        ]
        if not matched:
            known = sorted({c.id for c in checks})
            raise ConfigError(
                f"--only {pattern!r} matches no check",
                hint=f"checks: {', '.join(known)} (or a group: "
                f"{', '.join(sorted({c.group for c in checks}))})",
            )
        chosen += [c for c in matched if c not in chosen]
    return [c for c in checks if c in chosen]


def describe_exception(exc: BaseException) -> str:
    """`Class: message`, with requests' wrapper layers peeled to the root cause."""
    root: BaseException = exc
    # requests -> urllib3 MaxRetryError -> the socket/TLS error that really happened.
    while True:
        inner = getattr(root, "reason", None)
        if isinstance(inner, BaseException) and inner is not root:
            root = inner
            continue
        args: tuple[object, ...] = tuple(getattr(root, "args", ()))
        first = args[0] if len(args) == 1 else None
        if isinstance(first, BaseException) and first is not root:
            root = first
            continue
        break
    return f"{type(root).__name__}: {root}"


def _attempt(check: Check, facts: Facts) -> CheckResult:
    try:
        return check.func(facts, check.host)
    except OpsError as exc:
        return failed(exc.message, exc.hint)
    except Exception as exc:  # one broken probe must not hide the other results
        return failed(describe_exception(exc))


def run_checks(
    checks: Sequence[Check], run: VerifyRun, progress: Progress | None = None
) -> list[Outcome]:
    """Attempt every check, retrying settling failures until all pass or the deadline passes."""
    results: dict[int, tuple[CheckResult, int, float]] = {}
    pending = list(range(len(checks)))
    round_no = 0
    while pending:
        round_no += 1
        facts = Facts(run)
        retry: list[int] = []
        for index in pending:
            check = checks[index]
            started = run.clock()
            result = _attempt(check, facts)
            _, attempts, spent = results.get(index, (result, 0, 0.0))
            results[index] = (result, attempts + 1, spent + run.clock() - started)
            if result.status == "fail" and check.settles and not result.final:
                retry.append(index)
        remaining = run.remaining()
        if not retry or remaining <= 0:
            break
        pause = min(MAX_PAUSE, float(round_no), remaining)
        if progress is not None:
            progress(round_no, [checks[i] for i in retry], remaining)
        run.sleep(pause)
        pending = retry
    return [_outcome(checks[i], *results[i], values=run.values) for i in range(len(checks))]


def run_by_host(
    checks: Sequence[Check], run: VerifyRun, progress: Progress | None, parallel: int
) -> list[Outcome]:
    """run_checks for each host's checks, `parallel` hosts at a time; outcomes in check order."""
    by_host: dict[Host, list[int]] = {}
    for index, check in enumerate(checks):
        by_host.setdefault(check.host, []).append(index)
    if parallel <= 1 or len(by_host) <= 1:
        return run_checks(checks, run, progress)
    said = threading.Lock()

    def say(round_no: int, retry: Sequence[Check], remaining: float) -> None:
        assert progress is not None  # only handed on when there is one
        with said:  # one line at a time, whichever host's round it is
            progress(round_no, retry, remaining)

    groups = list(by_host.values())
    results = pool.on_all(
        groups,
        lambda group: run_checks(
            [checks[i] for i in group], run, say if progress is not None else None
        ),
        parallel=parallel,
        what="verify",
    )
    outcomes: dict[int, Outcome] = {}
    for group, found in zip(groups, results, strict=True):
        outcomes.update(zip(group, found, strict=True))
    return [outcomes[i] for i in range(len(checks))]


def _outcome(
    check: Check,
    result: CheckResult,
    attempts: int,
    duration: float,
    *,
    values: Mapping[str, str],
) -> Outcome:
    # Every observed string passes through scrub: a probe may echo a URL, a log line or an
    # exception that carries a secret value.
    return Outcome(
        id=check.id,
        host=check.host.label,
        role=check.host.role,
        description=check.description,
        status=result.status,
        observed=scrub(result.observed, values),
        hint=scrub(result.hint, values),
        attempts=attempts,
        duration=duration,
    )


def verify(
    env: Environment,
    runners: Mapping[Host, Runner],
    *,
    only: Iterable[str] = (),
    timeout: float | None = None,
    loopback: LoopbackHttp = loopback_get,
    rest: LoopbackRequest = loopback_request,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    expected_bridges: int | None = None,
    parallel: int = 1,
) -> VerifyReport:
    """Run the suite against every host of `env` and return the report (nothing printed).

    `expected_bridges`: the bridges jicofo must count, when fewer than one per JVB host run
    yet (see VerifyRun). `parallel`: how many hosts are checked at once."""
    values = rendered_values(env)
    # Only the hosts given (a restore reconnects to the main host alone); the bridge count
    # jicofo must see still covers every JVB host of the environment.
    checks = [c for c in select(build_suite(env, values), only) if c.host in runners]
    budget = timeout if timeout and timeout > 0 else env.deploy.verify.timeout
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    start = clock()
    run = VerifyRun(
        env=env,
        values=values,
        runners=runners,
        loopback=loopback,
        deadline=start + budget,
        clock=clock,
        sleep=sleep,
        rest=rest,
        expected_bridges=expected_bridges,
    )
    outcomes = run_by_host(checks, run, progress, parallel)
    return VerifyReport(
        env=env.name,
        release=env.release,
        outcomes=tuple(outcomes),
        duration=clock() - start,
        timeout=budget,
        started_at=started_at,
    )
