"""The fleet's bounded pool, and a bridge host failing preflight while the main host's checks
run alongside: the run stops before anything changes on any host."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops.errors import PreflightError
from jitsi_ops.pool import on_all
from tests.unit.test_deploy_rollback import Seed, as_root


def test_every_job_runs_at_most_parallel_at_once_results_in_order() -> None:
    running, peak = 0, 0
    lock = threading.Lock()
    lines: list[str] = []

    def job(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n * 10

    assert on_all(list(range(8)), job, parallel=3, what="plan", progress=lines.append) == [
        n * 10 for n in range(8)
    ]
    assert peak == 3, f"{peak} jobs ran at once"
    assert lines[-1] == "plan 8/8 hosts" and len(lines) == 8, lines


def test_the_first_failure_in_host_order_is_raised_after_every_job_ended() -> None:
    ended: list[int] = []

    def job(n: int) -> int:
        time.sleep(0.05 if n == 1 else 0.0)
        ended.append(n)
        if n in (1, 3):
            raise PreflightError(f"host {n} unreachable")
        return n

    with pytest.raises(PreflightError, match="host 1 unreachable"):
        on_all([0, 1, 2, 3], job, parallel=4, what="preflight")
    assert sorted(ended) == [0, 1, 2, 3], "a job was cut short"


@as_root
def test_a_bridge_host_failing_preflight_changes_nothing_anywhere(
    tmp_path: Path, scratch_repo: Path
) -> None:
    seed = Seed(tmp_path, scratch_repo, bridge=True)
    seed.bridge.responses[("docker", "version")] = (1, "", "Cannot connect to the Docker daemon")
    before = seed.host_tree()
    report = seed.deploy()
    assert report.result == "failed", (report.result, report.error)
    assert [p.name for p in report.phases] == ["lock", "preflight"], report.phases
    assert seed.host_tree() == before
    for host in (seed.main, seed.bridge):
        changing = [c for c in host.calls if c[:2] == ("docker", "pull") or "up" in c]
        assert changing == [], f"{host.label}: {changing}"
    assert isinstance(report, pipeline.DeployReport)
