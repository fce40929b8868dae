"""Fleet figures of the deploy benchmark (`python -m tests.bench.bench_deploy --fleet 1,4,8`).

For each fleet size N: an environment of the sandbox main host plus the testbed's bridge hosts
jvb1..jvbN (role jvb), deployed on the old release first (not measured), then upgraded the way
`invoke deploy` does it (one SSH connection per host, the conference guard, the drained roll of
the bridges). The run's phase timeline (DeployReport.phases) splits it in two:

- prepare: everything before the first change (lock, preflight, plan, guard, backup, pull),
  the phases the fleet runs on every host at once;
- roll: what changes the hosts (migrate, the main host's apply, the drained roll of the
  bridges, one at a time).

Before each measured upgrade the target images are removed from every bridge host's daemon so
each one really pulls them (the sandbox's daemon built them: it would pull nothing). The
figure is prepare(N)/prepare(1) from the same run (goal: <= 1.5 for 8 bridge hosts), never a
timed assertion. Bridge hosts keep their stacks under FLEET_ROOT, removed at the end with their
containers; the sandbox main host is left deployed as env/sandbox alone (no bridge hosts).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jitsi_ops import deploy as pipeline
from jitsi_ops import fleet, stack
from jitsi_ops import plan as planning
from jitsi_ops.cli.common import conference_guard
from jitsi_ops.environments import rendered_values
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Host, load_environment
from jitsi_ops.ssh import SshRunner, connect
from tests.testbed.fleetenv import fleet_checkout

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "stable-11146-1", "stable-11146-2"
FLEET_ROOT = Path("/srv/jitsi-ops-bench-fleet")
PROJECT = "jitsi-sandbox"  # the sandbox environment's project, on every host of the fleet
PREPARE = ("lock", "preflight", "plan", "guard", "backup", "pull")
ROLL = ("migrate", "apply", "roll")
GOAL_HOSTS, GOAL_RATIO = 8, 1.5


def parse_fleet(text: str) -> list[int]:
    """`1,4,8` -> [1, 4, 8]; "" or "none" -> []."""
    if text.strip().lower() in ("", "none"):
        return []
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if any(size < 1 for size in sizes):
        raise SystemExit(f"--fleet {text!r}: sizes are bridge host counts >= 1")
    return sizes


def fleet_env(checkout: Path, release: str) -> Environment:
    return load_environment("sandbox", checkout, environ={"JITSI_OPS_JITSI_IMAGE_VERSION": release})


@dataclass
class FleetRun:
    """One deploy of the fleet: its report, and the wall times around it."""

    report: pipeline.DeployReport
    wall: float  # the pipeline, lock to record (SSH connections open in lock and preflight)
    # How busy the machine's CPUs were during the prepare phases (0..1 of all of them): the
    # testbed's hosts (sshd, dockerd, the docker CLI) all share this one machine.
    prepare_cpu: float = float("nan")

    def seconds(self, names: Sequence[str]) -> float:
        return sum(p.seconds for p in self.report.phases if p.name in names)

    @property
    def prepare(self) -> float:
        return self.seconds(PREPARE)

    @property
    def roll(self) -> float:
        return self.seconds(ROLL)

    @property
    def gate(self) -> float:
        return self.seconds(("gate",))


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all the machine's CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


def deploy_fleet(env: Environment) -> FleetRun:
    """`invoke deploy` as the task wires it: one connection per host, the conference guard
    from deploy.toml, the drained roll of the bridge hosts."""
    main = env.deploy.main_host
    runners: dict[Host, SshRunner] = {}
    try:
        for host in (main, *env.deploy.bridge_hosts):
            runners[host] = connect(env, host)  # opens on first use: within the timed phases
        all_runners: dict[Host, Runner] = dict(runners)
        bridges: dict[Host, Runner] = {h: r for h, r in runners.items() if h != main}
        conference = conference_guard(env, all_runners)
        roller = fleet.RollingUpgrade(
            env,
            (main, runners[main]),
            conference.policy,
            conference.max_wait,
            env.deploy.verify.timeout,
            batch=env.deploy.rolling.batch,
        )
        cpu = {"start": cpu_times()}

        def on_phase(phase: pipeline.PhaseResult) -> None:
            if phase.name == PREPARE[-1]:
                cpu["prepared"] = cpu_times()

        started = time.monotonic()
        report = pipeline.deploy(
            env, runners[main], bridges=bridges, guard=conference, roll=roller, on_phase=on_phase
        )
        run = FleetRun(report, time.monotonic() - started)
        if "prepared" in cpu:
            run.prepare_cpu = busy_fraction(cpu["start"], cpu["prepared"])
        return run
    finally:
        for runner in runners.values():
            runner.close()


def remove_bridge_project(env: Environment, host: Host) -> None:
    """The fleet's containers and networks on one bridge host, and its directories."""
    runner = connect(env, host)
    try:
        label = f"label=com.docker.compose.project={PROJECT}"
        ids = runner.run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
        if ids:
            runner.run(["docker", "rm", "-f", *ids], timeout=120)
        networks = runner.run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split()
        if networks:
            runner.run(["docker", "network", "rm", *networks], check=False)
    finally:
        runner.close()
    shutil.rmtree(FLEET_ROOT / host.address, ignore_errors=True)


def drop_target_images(env_old: Environment, env_new: Environment) -> None:
    """NEW's images that OLD does not use, removed from every bridge host's daemon."""
    for host in env_new.deploy.bridge_hosts:
        old, new = env_old.for_host(host), env_new.for_host(host)
        refs = set(planning.target_images(rendered_values(new), stack.stack_files(new)).values())
        refs -= set(planning.target_images(rendered_values(old), stack.stack_files(old)).values())
        runner = connect(env_new, host)
        try:
            runner.run(["docker", "image", "rm", *sorted(refs)], check=False)
        finally:
            runner.close()


def checkout_of(scratch: Path, size: int) -> Path:
    """The operator checkout of the fleet with `size` bridge hosts (made once per run)."""
    checkout = scratch / f"fleet-{size}"
    if checkout.exists():
        return checkout
    return fleet_checkout(REPO, checkout, size, FLEET_ROOT)


def measure_fleet(scratch: Path, sizes: Sequence[int]) -> dict[int, FleetRun]:
    """Every fleet size's upgrade, measured; the bridge hosts removed again however it ends,
    and the sandbox main host left deployed on its own."""
    largest = fleet_env(checkout_of(scratch, max(sizes)), OLD)
    every_bridge = largest.deploy.bridge_hosts
    runs: dict[int, FleetRun] = {}
    try:
        for host in every_bridge:
            remove_bridge_project(largest, host)
        for size in sizes:
            checkout = checkout_of(scratch, size)
            env_old, env_new = fleet_env(checkout, OLD), fleet_env(checkout, NEW)
            # A bridge of a larger fleet measured before would still count in jicofo.
            for host in every_bridge[size:]:
                remove_bridge_project(largest, host)
            first = deploy_fleet(env_old)
            if first.report.result not in ("deployed", "nothing-to-do"):
                raise SystemExit(
                    f"fleet of {size}: deploying {OLD} failed: {first.report.result} "
                    f"{first.report.error}"
                )
            drop_target_images(env_old, env_new)
            run = deploy_fleet(env_new)
            if run.report.result != "deployed":
                raise SystemExit(
                    f"fleet of {size}: upgrade failed: {run.report.result} {run.report.error}"
                )
            runs[size] = run
            print(f"  fleet of {size} bridge host(s): upgraded in {run.wall:.2f} s")
    finally:
        for host in every_bridge:
            remove_bridge_project(largest, host)
        shutil.rmtree(FLEET_ROOT, ignore_errors=True)
        alone = deploy_fleet(load_environment("sandbox", REPO, environ={}))
        print(f"  sandbox main host redeployed on its own: {alone.report.result}")
    return runs


def print_fleet(runs: dict[int, FleetRun]) -> None:
    """The table, the per-phase breakdown and the ratios against one bridge host."""
    print(
        f"\nfleet deploy benchmark (sandbox main host + N bridge hosts, one run), "
        f"upgrade {OLD} -> {NEW}"
    )
    print(f"  prepare = {'+'.join(PREPARE)}; roll = {'+'.join(ROLL)} (bridges drained one by one)")
    print(
        f"  bridges  prepare     roll     gate    total  (seconds)   CPU busy in prepare "
        f"({os.cpu_count()} CPUs shared by every testbed host)"
    )
    for size, run in runs.items():
        print(
            f"  {size:7d} {run.prepare:8.2f} {run.roll:8.2f} {run.gate:8.2f} {run.wall:8.2f}"
            f"   {run.prepare_cpu:6.0%}"
        )
    for size, run in runs.items():
        phases = ", ".join(
            f"{p.name} {p.seconds:.2f}s" for p in run.report.phases if p.name in PREPARE
        )
        print(f"  prepare phases, {size} bridge host(s): {phases}")
    if 1 not in runs:
        print("  (no ratios: the fleet of 1 bridge host was not measured)")
        return
    base = runs[1].prepare
    for size in sorted(runs, reverse=True):
        if size == 1:
            continue
        ratio = runs[size].prepare / base
        line = f"  prepare({size})/prepare(1)  {ratio:6.2f}"
        if size == GOAL_HOSTS:
            verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
            line += f"   goal <= {GOAL_RATIO}: {verdict}"
        print(line)
