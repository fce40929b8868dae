"""The deploy pipeline: lock -> preflight -> plan -> backup -> pre-pull -> migrate -> apply -> gate
-> [rollback -> gate] -> record -> unlock, on the environment's main host.

The plan phase also finds the release the host runs and the migrations (jitsi_ops.migrations)
an upgrade to the pinned release needs; the migrated values are what is rendered, planned and
uploaded, and the migrate phase persists them into env/NAME and runs the host steps.

Each phase is a function with a result (one host's steps: hoststeps.py); the orchestration
below only sequences them over the hosts, times them (deployreport.Timeline) and decides on
rollback. How the bridges roll, drained one at a time, and what the conference guard decides
live in fleet.py and guard.py. Nothing is changed on the host before the backup phase, and
nothing the running stack uses is touched before every target image has been pulled.
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jitsi_ops import backup, facts, hoststate, migrations, pool, stack
from jitsi_ops import guard as guarding
from jitsi_ops import plan as planning
from jitsi_ops import rollback as undoing
from jitsi_ops.deployreport import (
    DeployReport,
    PhaseCallback,
    PhaseResult,
    RollbackCause,
    RollbackResult,
    Timeline,
    verification_dict,
)
from jitsi_ops.envfile import parse_env
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import OpsError, VerifyFailed
from jitsi_ops.hoststeps import (
    FRONT_SERVICE,
    BackgroundPull,
    Progress,
    apply_target,
    environment_of,
    preflight,
    preflight_bridge,
    record_state,
    refuse_unknown_release,
    snapshot,
)
from jitsi_ops.rollback import Snapshot
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host, local_user
from jitsi_ops.verify import mediapath
from jitsi_ops.verify.model import VerifyReport
from jitsi_ops.verify.suite import verify as run_verify

# Names other modules and tests reach through the pipeline module.
__all__ = [
    "FRONT_SERVICE",
    "BackgroundPull",
    "BridgeStep",
    "Confirm",
    "DeployReport",
    "PhaseCallback",
    "PhaseResult",
    "Progress",
    "Roll",
    "RollbackResult",
    "Snapshot",
    "Timeline",
    "Verifier",
    "apply_target",
    "default_verifier",
    "deploy",
    "environment_of",
    "guard_audit",
    "record_state",
    "refuse_unknown_release",
    "verification_dict",
]

Verifier = Callable[[Environment, Mapping[Any, Runner], float], VerifyReport]
Confirm = Callable[["DeployReport"], bool]


@dataclass(frozen=True)
class BridgeStep:
    """One bridge host's part of a rolling upgrade: `apply()` changes it (and returns the apply
    detail); the roll (fleet.RollingUpgrade) drains it around that and gates it after."""

    label: str
    host: Host
    runner: Runner
    env: Environment  # the host's view (its JVB_COLIBRI_PORT)
    gate_env: Environment  # the environment the gate verifies
    apply: Callable[[], str]
    running: bool = True  # a bridge runs there now (else there is nothing to drain)
    # The running bridge's REST port (its deployed .env's JVB_COLIBRI_PORT) when known: the
    # target's may differ, and drain must reach the bridge that runs.
    running_port: int | None = None


class Roll(Protocol):
    """Upgrades the bridge hosts' steps (fleet.RollingUpgrade), raising at the first failure."""

    # The step gate that stopped the roll, when one did (it is then the deploy's verification).
    failed_gate: VerifyReport | None

    def __call__(self, steps: Sequence[BridgeStep], progress: Progress) -> str:
        """Run the steps; a one-line detail."""
        ...

    def journal(self) -> list[dict[str, Any]]:
        """What it did so far, step by step (for the report and the audit line)."""
        ...


def default_verifier(
    env: Environment, runners: Mapping[Any, Runner], timeout: float
) -> VerifyReport:
    """The verify suite as the health gate."""
    return run_verify(env, runners, timeout=timeout, parallel=env.deploy.fleet.parallel)


# ---------------------------------------------------------------------------- orchestration


def deploy(
    env: Environment,
    runner: Runner,
    *,
    dry_run: bool = False,
    message: str = "",
    timeout: float | None = None,
    on_phase: PhaseCallback | None = None,
    progress: Callable[[str], None] | None = None,
    verifier: Verifier = default_verifier,
    bridges: Mapping[Host, Runner] | None = None,
    allow_unknown_release: bool = False,
    media_probe: mediapath.MediaProbe = mediapath.probe_before,
    guard: guarding.ConferenceGuard | None = None,
    confirm: Confirm | None = None,
    roll: Roll | None = None,
) -> DeployReport:
    """Run the pipeline on the main host and the role 'jvb' hosts in `bridges` (every bridge
    host of the environment must be there); never raises for a failed phase (see report.result).
    A release newer than jitsi-ops knows stops it in preflight unless `allow_unknown_release`.
    `guard` (when given) reads the live load in the plan phase and decides, before anything
    changes, whether the run may restart what cuts meetings; `confirm` (when given) sees the
    plan and the load and may stop the run there. `roll` (when given) upgrades the changed
    bridge hosts after the main host, one drained step each, instead of all at once.

    The main host's lock guards the whole environment: every deploy goes through it."""
    deploy_id = hoststate.new_deploy_id(env.name)
    values = rendered_values(env)
    report = DeployReport(env.name, deploy_id, None, env.release, dry_run=dry_run)
    timeline = Timeline(report, on_phase)
    stack_dir = env.deploy.stack_dir
    gate_timeout = timeout if timeout and timeout > 0 else env.deploy.verify.timeout
    lock_info = hoststate.LockInfo.for_this_process(deploy_id, message or f"deploy {env.release}")
    run = _Run(env, runner, values, report, timeline, gate_timeout, progress, verifier)
    run.bridges = _bridge_runs(env, bridges or {})
    run.allow_unknown_release = allow_unknown_release
    run.media_probe = media_probe
    run.guard = guard
    run.confirm = confirm
    run.roll = roll
    try:
        if dry_run:
            # A dry run only reads: it takes no lock (that would write), it reports one.
            with timeline.phase("lock") as phase:
                holder = hoststate.read_lock(runner, stack_dir)
                phase.detail = f"held by {holder.describe()}" if holder else "free (not taken)"
            run.pipeline()
            return report
        with timeline.phase("lock") as phase:
            report.lock = "held"  # until told otherwise: an interrupted take may have taken it
            try:
                hoststate.acquire_lock(runner, stack_dir, lock_info)
            except OpsError:
                report.lock = ""  # refused, or not created
                raise
            phase.detail = f"{lock_info.owner}@{lock_info.host}"
        try:
            run.pipeline()
        finally:
            released = hoststate.release_lock(runner, stack_dir, deploy_id)
            report.lock = "released" if released else "not held"
    except OpsError as exc:
        _ended(report, exc.message + (f" (hint: {exc.hint})" if exc.hint else ""), False)
    except KeyboardInterrupt:
        _ended(report, f"interrupted during {timeline.last_failed()}", True)
        if report.lock == "held":
            report.lock = _release_after_interrupt(runner, stack_dir, deploy_id)
    finally:
        report.releases = run.releases()
        if not dry_run:
            # run.env: the migrated environment, whose new secrets must be scrubbed too.
            _record(run.env, runner, report)
    return report


def _ended(report: DeployReport, what: str, interrupted: bool) -> None:
    """How a run that raised ended, without hiding what it had already done."""
    result = "interrupted" if interrupted else "failed"
    if report.result == "deployed":  # e.g. while the lock was given back
        report.error = f"{report.to_release} is deployed and verified, but then: {what}"
        report.result = result
    elif report.rollback is None:
        # Before the migrate phase, the stack untouched: the rollback path owns every failure
        # and interrupt from there on.
        report.error, report.result = what, result
    else:  # e.g. the lock could not be given back after the rollback: said, not hidden
        report.error += f"; then: {what}"


def _release_after_interrupt(runner: Runner, stack_dir: str, deploy_id: str) -> str:
    """One more try at giving the lock back; the report's lock state it ends in."""
    try:
        released = hoststate.release_lock(runner, stack_dir, deploy_id)
    except (OpsError, OSError, KeyboardInterrupt):
        return "held"  # unknown: the report must not claim a release that was not seen
    return "released" if released else "not held"


@dataclass
class _BridgeRun:
    """One role 'jvb' host in a run: its view of the environment, plan and previous state."""

    host: Host
    runner: Runner
    env: Environment
    plan: planning.Plan | None = None
    previous: Snapshot | None = None
    backed_up: bool = False  # this deploy's backup exists on the host
    applied: bool = False  # this run began changing the host (a rollback puts it back)

    @property
    def changes(self) -> bool:
        """Whether this host has anything to do."""
        return self.plan is not None and not self.plan.nothing_to_do

    @property
    def running(self) -> bool:
        """Whether a bridge runs there now (a first deploy has nothing to drain)."""
        return bool(self.previous and self.previous.image_ids)


def _bridge_runs(env: Environment, runners: Mapping[Host, Runner]) -> list[_BridgeRun]:
    missing = [h.label for h in env.deploy.bridge_hosts if h not in runners]
    if missing:
        raise OpsError(
            f"no connection to bridge host(s) {', '.join(missing)}",
            hint="pass a runner for every role 'jvb' host of deploy.toml",
        )
    return [_BridgeRun(h, runners[h], env.for_host(h)) for h in env.deploy.bridge_hosts]


@dataclass
class _Run:
    """One deploy run's context, so the phases share it without long argument lists."""

    env: Environment
    runner: Runner
    values: Mapping[str, str]
    report: DeployReport
    timeline: Timeline
    gate_timeout: float
    progress: Callable[[str], None] | None
    verifier: Verifier
    step: migrations.ReleaseStep | None = None
    edits: list[migrations.FileEdit] = field(default_factory=list)
    bridges: list[_BridgeRun] = field(default_factory=list)
    allow_unknown_release: bool = False
    media_probe: mediapath.MediaProbe = mediapath.probe_before
    guard: guarding.ConferenceGuard | None = None
    confirm: Confirm | None = None
    roll: Roll | None = None
    # From the migrate phase on the host may differ from the backup (CONFIG included), and the
    # env/NAME files as they were before the migrate phase rewrote them.
    migrated: bool = False
    env_files: undoing.LocalFiles = field(default_factory=undoing.LocalFiles)

    def all_runners(self) -> dict[Host, Runner]:
        """Every host's runner, for the verify gate."""
        runners: dict[Host, Runner] = {self.env.deploy.main_host: self.runner}
        runners.update({b.host: b.runner for b in self.bridges})
        return runners

    def plan_bridges(self) -> str:
        """Plan every bridge host from the (possibly migrated) environment, all at once (the
        fleet's pool); a detail suffix."""
        details = pool.on_all(
            self.bridges,
            self.plan_bridge,
            parallel=self.env.deploy.fleet.parallel,
            what="plan",
            progress=self.progress,
        )
        for bridge in self.bridges:  # in host order, whatever order they finished in
            assert bridge.plan is not None  # planned above
            self.report.bridge_plans[bridge.host.label] = bridge.plan
        return "".join(f"; {d}" for d in details)

    def plan_bridge(self, bridge: _BridgeRun) -> str:
        """One bridge host's plan and snapshot; its detail."""
        bridge.env = self.env.for_host(bridge.host)
        files = stack.stack_files(bridge.env)
        values = rendered_values(bridge.env)
        current = facts.gather_host_facts(
            bridge.runner,
            project=bridge.env.deploy.project,
            stack_dir=bridge.env.deploy.stack_dir,
            target_refs=planning.target_images(values, files).values(),
        )
        stack.refuse_foreign_services(bridge.env, current.containers, _deployed_files(current))
        bridge.plan = planning.plan(values, files, current)
        bridge.previous = snapshot(bridge.runner, bridge.env, current)
        recreate = ", ".join(bridge.plan.services_to_recreate) or "none"
        return f"{bridge.host.label}: " + (
            "nothing to do" if bridge.plan.nothing_to_do else f"recreate: {recreate}"
        )

    def observe_load(self) -> str:
        """The live load into the report (when guarded); a plan detail suffix. Read before the
        media probe, so its conference is never counted."""
        if self.guard is None:
            return ""
        self.report.load = self.guard.observe()
        return "; " + self.report.load.summary()

    def before_change(self) -> None:
        """The question on a terminal, then the conference guard: the last steps before the
        first change; either may stop the run (OpsError), with nothing changed."""
        if self.confirm is not None and not self.confirm(self.report):
            raise OpsError("not confirmed: nothing was changed", hint="--yes skips the question")
        if self.guard is not None:
            with self.timeline.phase("guard") as phase:
                self.report.guard = self.guard.check(
                    self.recreations(), self.report.load, self.progress
                )
                phase.detail = self.report.guard.detail()

    def recreations(self) -> dict[str, tuple[str, ...]]:
        """host label -> the services this run recreates there (what the guard judges).

        A running bridge that the rolling upgrade drains is left out: its own meetings are
        waited for in its step (up to max wait, then the policy), not here."""
        main_plan = self.report.plan
        assert main_plan is not None  # planned
        main_drained = self.main_in_roll()
        found = {
            self.env.deploy.main_host.label: tuple(
                s for s in main_plan.services_to_recreate if not (main_drained and s == "jvb")
            )
        }
        for bridge in self.bridges:
            if bridge.plan is not None:
                drained = self.roll is not None and bridge.running
                found[bridge.host.label] = tuple(
                    s for s in bridge.plan.services_to_recreate if not (drained and s == "jvb")
                )
        return found

    def main_in_roll(self) -> bool:
        """Whether the main host's apply is the roll's first step, its running jvb drained
        around it like a bridge host's (there are bridge hosts to take its new meetings).

        The whole apply, not jvb alone: upstream's web depends on jvb, so Compose would
        recreate jvb with web anyway."""
        main_plan = self.report.plan
        if self.roll is None or not self.bridges or main_plan is None:
            return False
        return any(c.service == "jvb" and c.action == "recreate" for c in main_plan.service_changes)

    def apply_main(self, previous: Snapshot) -> str:
        """apply_target on the main host; its detail."""
        main_plan = self.report.plan
        assert main_plan is not None  # planned
        return apply_target(
            self.env, self.runner, previous, main_plan.services_to_recreate, self.progress
        )

    def probe_media(self, env: Environment, previous: Snapshot) -> str:
        """media.ice before the change, when something runs; a plan detail suffix."""
        if not previous.image_ids:
            return ""
        self.report.media_before = self.media_probe(env, self.all_runners())
        return "; " + mediapath.summary(self.report.media_before)

    def release_step(self) -> list[str]:
        """Find the deployed release and the migrations to the pinned one; from here on the
        run renders the migrated environment. Returns the plan's migration lines."""
        env = self.env
        from_release, source = migrations.deployed_release(self.runner, env)
        step = migrations.prepare(env, from_release, source)
        self.step = step
        lines = []
        if not step.empty:
            self.env = step.environment(env)
            self.values = rendered_values(self.env)
            config_dir = stack.resolve_config_dir(self.env, self.runner)
            self.edits, _notes = migrations.local_edits(self.env, step)
            lines = step.lines(self.env, config_dir, _host_stack_files(self.runner, self.env))
        warning = migrations.downgrade_warning(from_release, env.release)
        return [*lines, *([warning] if warning else [])]

    def plan_main(self, phase: PhaseResult) -> Snapshot:
        """The main host's plan (after the release step) into the report; its snapshot."""
        migration_lines = self.release_step()
        env, values, report = self.env, self.values, self.report
        target_files = stack.stack_files(env)
        current = facts.gather_host_facts(
            self.runner,
            project=env.deploy.project,
            stack_dir=env.deploy.stack_dir,
            target_refs=planning.target_images(values, target_files).values(),
        )
        stack.refuse_foreign_services(env, current.containers, _deployed_files(current))
        report.plan = planning.plan(values, target_files, current)
        if migration_lines:
            report.plan = report.plan.with_migrations(migration_lines)
        previous = snapshot(self.runner, env, current)
        report.from_release = previous.release
        phase.detail = (
            "nothing to do"
            if report.plan.nothing_to_do
            else f"recreate: {', '.join(report.plan.services_to_recreate) or 'none'}"
        )
        if self.step is not None and not self.step.empty:
            phase.detail += f"; {len(self.step.migrations)} migration(s)"
        return previous

    def backup_hosts(self, previous: Snapshot, changed_bridges: list[_BridgeRun]) -> str:
        """A verified backup on the main host and on every bridge host that changes, all at
        once (the fleet's pool)."""
        jobs: list[Callable[[], str]] = [functools.partial(self.backup_main, previous)]
        jobs += [functools.partial(self.backup_bridge, b) for b in changed_bridges]
        details = pool.on_all(
            jobs,
            lambda job: job(),
            parallel=self.env.deploy.fleet.parallel,
            what="backup",
            progress=self.progress if changed_bridges else None,
        )
        return "; ".join(details)

    def backup_main(self, previous: Snapshot) -> str:
        """The main host's verified backup, then its pruning; the detail."""
        env, runner, report = self.env, self.runner, self.report
        manifest = backup.create_backup(
            env,
            runner,
            report.deploy_id,
            release=previous.release,
            digests=backup.running_digests(env, runner),
            # Alone, the main host's backup tells its steps; among several, the pool counts.
            progress=self.progress if not self.bridges else None,
        )
        report.backup_id = report.deploy_id
        pruned = backup.prune(env, runner, env.deploy.backup.keep, protect=[report.deploy_id])
        return f"{manifest.deploy_id}" + (f", pruned {len(pruned)}" if pruned else "")

    def backup_bridge(self, bridge: _BridgeRun) -> str:
        """One changing bridge host's verified backup and pruning; its detail."""
        env, report = self.env, self.report
        if not any(root.present for root in backup.resolve_roots(bridge.env, bridge.runner)):
            # Unlike the main host (whose stack dir the lock creates) a new bridge host
            # has nothing at all yet.
            return f"{bridge.host.label}: nothing to back up (first deploy)"
        backup.create_backup(
            bridge.env,
            bridge.runner,
            report.deploy_id,
            release=bridge.previous.release if bridge.previous else None,
            digests=backup.running_digests(bridge.env, bridge.runner),
        )
        backup.prune(bridge.env, bridge.runner, env.deploy.backup.keep, protect=[report.deploy_id])
        bridge.backed_up = True
        return f"{bridge.host.label}: backed up"

    def pipeline(self) -> None:
        """preflight -> plan -> backup -> pull -> migrate -> apply -> gate -> record (or rollback)."""
        env, runner, values, report, timeline = (
            self.env,
            self.runner,
            self.values,
            self.report,
            self.timeline,
        )
        progress = self.progress
        with timeline.phase("preflight") as phase:
            # Every host at once (the fleet's pool): a host that fails or does not answer stops
            # the run here, before anything changes anywhere.
            checks: list[Callable[[], str]] = [
                functools.partial(
                    preflight, env, runner, values, allow_unknown_release=self.allow_unknown_release
                )
            ]
            checks += [
                functools.partial(preflight_bridge, b.env, b.runner, b.host.label)
                for b in self.bridges
            ]
            phase.detail = "; ".join(
                pool.on_all(
                    checks,
                    lambda check: check(),
                    parallel=env.deploy.fleet.parallel,
                    what="preflight",
                    progress=progress if self.bridges else None,
                )
            )
        with timeline.phase("plan") as phase:
            previous = self.plan_main(phase)
            bridges = self.plan_bridges()
            # The load first: jicofo learns of a bridge's conferences from its stats presence a
            # moment later, and would still count the media probe's just after it expired.
            load = self.observe_load()
            phase.detail += bridges + self.probe_media(env, previous) + load
        env, values, main_plan = self.env, self.values, report.plan
        assert main_plan is not None  # set by plan_main
        if report.dry_run:
            report.result = "dry-run"
            return
        changed_bridges = [b for b in self.bridges if b.changes]
        if main_plan.nothing_to_do and not changed_bridges:
            for name in ("backup", "pull", "migrate", "apply", "gate"):
                timeline.skip(name, "nothing to do")
            report.result = "nothing-to-do"
            return
        self.before_change()
        jobs = [("", runner, sorted(set(main_plan.target_images.values())))]
        for bridge in changed_bridges:
            assert bridge.plan is not None  # planned above
            jobs.append(
                (bridge.host.label, bridge.runner, sorted(set(bridge.plan.target_images.values())))
            )
        pulls = BackgroundPull(jobs, progress)
        with timeline.phase("backup") as phase:
            phase.detail = self.backup_hosts(previous, changed_bridges)
        with timeline.phase("pull") as phase:
            phase.detail = pulls.wait()
        try:
            self.converge(previous, changed_bridges)
        except Exception as exc:  # whatever failed (not only OpsError), the hosts go back
            # Non-OpsError text is not ours to show (it could quote anything): its type only.
            what = exc.message if isinstance(exc, OpsError) else exc.__class__.__name__
            hint = f" (hint: {exc.hint})" if isinstance(exc, OpsError) and exc.hint else ""
            self.rollback(previous, "failed", f"{self.timeline.last_failed()} failed: {what}{hint}")
            return
        except KeyboardInterrupt:
            self.rollback(
                previous, "interrupted", f"interrupted during {self.timeline.last_failed()}"
            )
            return
        verification = report.verification
        assert verification is not None  # set by converge
        if not verification.ok:
            first = verification.failures[0]
            self.rollback(
                previous,
                "verification failed",
                f"verification failed ({first.id}: {first.observed})",
            )
            return
        try:
            with timeline.phase("record") as phase:
                record_state(env, runner, report.deploy_id, values)
                for bridge in changed_bridges:
                    record_state(
                        bridge.env, bridge.runner, report.deploy_id, rendered_values(bridge.env)
                    )
        except OpsError as exc:
            # Verified and serving: only the record is missing, which a rollback would not fix.
            raise OpsError(
                f"{env.release} is deployed and verified, but recording it failed: {exc.message}",
                hint=exc.hint or "the next deploy rewrites state.json",
            ) from None
        report.result = "deployed"

    def converge(self, previous: Snapshot, changed_bridges: list[_BridgeRun]) -> None:
        """migrate -> apply -> gate: everything that changes the hosts (a failure or Ctrl-C in
        here is rolled back by the caller)."""
        env, runner, report, timeline = self.env, self.runner, self.report, self.timeline
        progress = self.progress
        main_plan = report.plan
        assert main_plan is not None  # set in the plan phase
        if self.step is not None and not self.step.empty:
            with timeline.phase("migrate") as phase:
                self.env_files = undoing.LocalFiles.capture([e.path for e in self.edits])
                config_dir = stack.resolve_config_dir(env, runner)
                written = migrations.write_edits(self.edits)  # local: put back by the rollback
                # From the first host step on, CONFIG differs from the backup.
                self.migrated = True
                phase.detail = migrations.run_step(
                    env, runner, self.step, config_dir, (), progress=progress
                )
                if written:
                    phase.detail += f"; rewrote {', '.join(written)}"
        else:
            timeline.skip("migrate", "no migrations")
        main_drained = self.main_in_roll()
        if main_drained:
            timeline.skip("apply", "the main host is the roll's first step, its jvb drained")
        else:
            with timeline.phase("apply") as phase:
                phase.detail = self.apply_main(previous)
                if self.roll is None:
                    for bridge in changed_bridges:
                        self.apply_bridge(bridge)
                        phase.detail += f"; {bridge.host.label}: up"
                elif changed_bridges:
                    phase.detail += "; bridge hosts next, one drained step each"
        if self.roll is not None and (changed_bridges or main_drained):
            with timeline.phase("roll") as phase:
                phase.detail = self.roll_steps(self.roll, previous, changed_bridges, main_drained)
        with timeline.phase("gate") as phase:
            report.verification = self.verifier(env, self.all_runners(), self.gate_timeout)
            phase.detail = _gate_detail(report.verification) + mediapath.gate_note(
                report.media_before, report.verification
            )
            if not report.verification.ok:
                phase.status = "failed"

    def roll_steps(
        self,
        roll: Roll,
        previous: Snapshot,
        changed_bridges: list[_BridgeRun],
        main_drained: bool,
    ) -> str:
        """The roll phase: the main host first when its jvb is drained, then every changed
        bridge host, one drained step each; the phase detail. A failing step gate becomes the
        deploy's verification (and its detail says whether this deploy broke the media path)."""
        env, report = self.env, self.report
        main_host = env.deploy.main_host
        steps = []
        if main_drained:
            apply_main = functools.partial(self.apply_main, previous)
            steps.append(
                BridgeStep(
                    main_host.label,
                    main_host,
                    self.runner,
                    env,
                    env,
                    apply_main,
                    running_port=_colibri_port(previous),
                )
            )
        steps += [
            BridgeStep(
                b.host.label,
                b.host,
                b.runner,
                b.env,
                env,
                functools.partial(self.apply_bridge, b),
                running=b.running,
                running_port=_colibri_port(b.previous),
            )
            for b in changed_bridges
        ]
        try:
            return roll(steps, self.progress)
        except VerifyFailed as exc:
            failed = roll.failed_gate
            if failed is not None:
                report.verification = failed
                raise VerifyFailed(
                    exc.message + mediapath.gate_note(report.media_before, failed), exc.hint
                ) from None
            raise
        finally:
            report.roll = roll.journal()

    def releases(self) -> dict[str, str | None]:
        """host label -> the release it runs now, as far as this run knows."""
        report = self.report
        main_label = self.env.deploy.main_host.label
        if report.result == "rollback-failed":
            return dict.fromkeys([main_label, *(b.host.label for b in self.bridges)])
        deployed = report.result in ("deployed", "nothing-to-do") or (
            report.result in ("failed", "interrupted")
            and report.verification is not None
            and report.verification.ok
            and report.rollback is None
        )
        found = {main_label: report.to_release if deployed else report.from_release}
        for bridge in self.bridges:
            before = bridge.previous.release if bridge.previous else None
            found[bridge.host.label] = report.to_release if deployed else before
        return found

    def apply_bridge(self, bridge: _BridgeRun) -> str:
        """apply_target on one bridge host (marked changed first: a failure mid-way is rolled
        back too)."""
        assert bridge.previous is not None  # snapshot taken in the plan phase
        progress = self.progress
        labelled = (lambda m: progress(f"{bridge.host.label}: {m}")) if progress else None
        bridge.applied = True
        return apply_target(bridge.env, bridge.runner, bridge.previous, progress=labelled)

    def undo_list(self, previous: Snapshot) -> list[undoing.HostUndo]:
        """Every host this run changed, and how it goes back: from this deploy's backup when
        the migrate phase ran (CONFIG changed), else from the previous files and images."""
        backup_id = self.report.backup_id if self.migrated else None
        hosts = [undoing.HostUndo("", self.env, self.runner, previous, backup_id)]
        for bridge in self.bridges:
            # A bridge the roll never reached still runs the previous release: left alone.
            if bridge.applied and bridge.previous is not None:
                hosts.append(
                    undoing.HostUndo(
                        bridge.host.label,
                        bridge.env,
                        bridge.runner,
                        bridge.previous,
                        backup_id if bridge.backed_up else None,
                    )
                )
        return hosts

    def rollback(self, previous: Snapshot, cause: RollbackCause, error: str) -> None:
        """Put every changed host (and the env/NAME files) back, gate the previous state, and
        say truthfully where the hosts are. A first Ctrl-C meanwhile is ignored (shielded)."""
        result = RollbackResult(previous.release, None, ok=False, cause=cause)
        self.report.rollback = result
        self.report.error = error
        self.report.result = "rollback-failed"  # until every host is back
        with undoing.shielded():
            try:
                if self.progress:
                    self.progress(f"{error}: rolling back")
                self.put_back(previous, result)
            except KeyboardInterrupt:
                result.error = "the rollback was interrupted"
                return
            except Exception as exc:  # whatever it was: reported, the operator takes over
                result.error = exc.message if isinstance(exc, OpsError) else exc.__class__.__name__
                return
            if result.error:
                return
            result.done = True
            self.gate_rollback(previous, result)

    def put_back(self, previous: Snapshot, result: RollbackResult) -> None:
        """The rollback phase: env/NAME files, then every changed host; a host that cannot be
        put back is named in result.error (the others are still tried)."""
        with self.timeline.phase("rollback") as phase:
            details = []
            # Local and quick, and right whatever happens on the hosts: the files again
            # describe the release the backup holds.
            written = self.env_files.put_back()
            result.env_files = [str(p.relative_to(self.env.root)) for p in written]
            if written:
                details.append(f"put back {', '.join(result.env_files)}")
            failures = []
            for undo in self.undo_list(previous):
                try:
                    done = undoing.undo_host(undo, self.progress)
                except OpsError as exc:
                    failures.append(f"{undo.label or self.runner.host}: {exc.message}")
                    done = f"FAILED: {exc.message}"
                details.append(f"{undo.label}: {done}" if undo.label else done)
            phase.detail = "; ".join(details)
            result.detail = phase.detail
            if failures:
                result.error = "; ".join(failures)
                phase.status = "failed"

    def gate_rollback(self, previous: Snapshot, result: RollbackResult) -> None:
        """The gate again, on the previous values, after every host was put back."""
        report = self.report
        report.result = "rolled-back-unverified"
        if not previous.files:
            result.ok = True  # a first deploy: the host is empty again, nothing to verify
            report.result = "rolled-back"
            return
        previous_env = environment_of(self.env, previous.files[".env"].decode())
        try:
            with self.timeline.phase("rollback-gate") as phase:
                result.verification = self.verifier(
                    previous_env, self.all_runners(), self.gate_timeout
                )
                phase.detail = _gate_detail(result.verification)
                if not result.verification.ok:
                    phase.status = "failed"
        except KeyboardInterrupt:
            result.error = "the verification of the rolled-back stack was interrupted"
            return
        except OpsError as exc:
            result.error = f"the verification of the rolled-back stack failed: {exc.message}"
            return
        result.ok = result.verification.ok
        report.result = "rolled-back" if result.ok else "rolled-back-unverified"
        if not result.ok:
            first = result.verification.failures[0]
            result.error = f"{first.id} on {first.host}: {first.observed}"


def _colibri_port(previous: Snapshot | None) -> int | None:
    """JVB_COLIBRI_PORT of the .env a host runs (None: no .env, or unset)."""
    if previous is None or ".env" not in previous.files:
        return None
    values = parse_env(previous.files[".env"].decode(), "host .env")
    text = values.get("JVB_COLIBRI_PORT", "").strip()
    return int(text) if text.isdigit() else 8080


def _deployed_files(current: facts.HostFacts) -> tuple[str, ...]:
    """The compose files of the host's last jitsi-ops deploy (none before the first)."""
    return current.state.compose_files if current.state else ()


def _host_stack_files(runner: Runner, env: Environment) -> dict[str, bytes]:
    """The host's `.env` and compose files by name (the migrations look for custom overrides)."""
    hashes = facts.gather(runner, facts.stack_file_hashes(env.deploy.stack_dir))
    files = {}
    for name in hashes:
        with contextlib.suppress(FileNotFoundError):
            files[name] = runner.get(posixpath.join(env.deploy.stack_dir, name))
    return files


def _gate_detail(verification: VerifyReport) -> str:
    if verification.ok:
        return f"{verification.count('pass')} passed, {verification.count('warn')} warning(s)"
    first = verification.failures[0]
    return f"{len(verification.failures)} failed, first: {first.id} ({first.observed})"


def guard_audit(record: guarding.GuardRecord) -> dict[str, Any]:
    """The guard's part of an audit line: policy, outcome, wait and the counts a force went
    over (counts only: no names of meetings or people)."""
    data: dict[str, Any] = {
        "policy": record.policy,
        "outcome": record.outcome,
        "waited": round(record.waited, 1),
    }
    if record.overridden:
        data["overridden"] = {
            "conferences": record.overridden[0],
            "participants": record.overridden[1],
        }
    return data


def _record(env: Environment, runner: Runner, report: DeployReport) -> None:
    """One audit line on the host and one history line here; never a secret."""
    record: dict[str, Any] = {
        "action": "deploy",
        "deploy_id": report.deploy_id,
        "env": env.name,
        "user": local_user(),
        "from_host": socket.gethostname(),
        "from_release": report.from_release,
        "to_release": report.to_release,
        "result": report.result,
        "backup_id": report.backup_id,
        "phases": [p.as_dict() for p in report.phases],
        "error": report.error,
    }
    if report.roll:
        record["roll"] = report.roll
    if report.guard is not None and report.guard.outcome != "not needed":
        record["guard"] = guard_audit(report.guard)
    secrets = rendered_values(env)
    # The host may be unreachable; the local history still has the record.
    with contextlib.suppress(OpsError):
        hoststate.append_audit(runner, env.deploy.stack_dir, record, secret_values=secrets)
    hoststate.append_history(hoststate.history_path(env.root), record, secret_values=secrets)
