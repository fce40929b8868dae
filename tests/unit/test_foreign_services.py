"""A deploy never removes a service the operator runs from an overlay jitsi-ops does not know.

`up -d --remove-orphans` removes every container of the project whose service the -f files do
not define. For a component switched off in deploy.toml that is the point; for upstream's
monitoring overlays (or an override file of the operator's) it would silently delete a running
service, so the deploy refuses before anything changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import composeset, stack
from jitsi_ops import deploy as pipeline
from jitsi_ops.errors import PreflightError
from jitsi_ops.runner import RecordingRunner
from jitsi_ops.versions import Layout
from tests.unit.fakehost import compose_ps_lines
from tests.unit.test_migrations import ok_report, pipeline_runner, write_seed_env

REPO = Path(__file__).resolve().parents[2]
CORE = ("web", "prosody", "jicofo", "jvb")


def running(*services: str) -> str:
    return compose_ps_lines(
        {
            "Service": name,
            "Name": f"handmade-{name}-1",
            "ID": f"{name}0123456"[:12],
            "Image": f"ghcr.io/jitsi/{name}:stable-11146-2",
            "State": "running",
            "Status": "Up 1 hour",
            "Project": "handmade",
            "Labels": "com.docker.compose.config-hash=" + "1" * 64,
            "Publishers": [],
        }
        for name in services
    )


def host_running(*services: str) -> RecordingRunner:
    runner = pipeline_runner()
    runner.responses[("docker", "compose", "-p", "handmade", "ps")] = (0, running(*services), "")
    return runner


def changes(runner: RecordingRunner) -> list[tuple[str, ...]]:
    """Every call that changes the stack (uploads, backups, pulls, compose up/down); the run's
    own lock and audit record under .jitsi-ops/ (and the stack dir holding them) are not."""
    flat = [
        (c, " ".join(c))
        for c in runner.calls
        if not any("/.jitsi-ops" in a for a in c) and c[-1] != "/srv/handmade"
    ]
    return [
        c
        for c, line in flat
        if c[0] in ("put", "rm", "tar", "chown")
        or line.startswith(("docker pull", "mkdir -p -m"))
        or (line.startswith("docker compose") and (" up " in line or " down" in line))
    ]


def test_deploy_refuses_when_a_monitoring_overlay_runs_in_the_project(
    scratch_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write_seed_env(scratch_repo)
    runner = host_running(*CORE, "prometheus", "grafana")
    monkeypatch.setattr(pipeline.backup, "create_backup", _must_not_run)
    report = pipeline.deploy(env, runner, verifier=ok_report)
    assert report.result == "failed", report.result
    message = report.error
    assert "prometheus (upstream's prometheus.yml)" in message, message
    assert "grafana (upstream's grafana.yml)" in message, message
    assert "nothing was changed" in message, message
    assert [p.name for p in report.phases][-1] == "plan", [p.name for p in report.phases]
    assert all(" up " not in " ".join(c) for c in runner.calls), runner.calls
    assert changes(runner) == [], changes(runner)


def deployed_with(runner: RecordingRunner, *files: str) -> RecordingRunner:
    """The host's state.json as jitsi-ops' last deploy with these compose files wrote it."""
    state = {"env": "seed", "release": "stable-11146-2", "deploy_id": "seed-1", "time": "t"}
    runner.files["/srv/handmade/.jitsi-ops/state.json"] = json.dumps(
        {**state, "project": "handmade", "compose_files": list(files)}
    ).encode()
    return runner


def test_a_component_jitsi_ops_deployed_and_now_switched_off_is_removed(
    scratch_repo: Path,
) -> None:
    env = write_seed_env(scratch_repo)
    runner = deployed_with(host_running(*CORE, "jibri"), "docker-compose.yml", "jibri.yml")
    report = pipeline.deploy(env, runner, dry_run=True)
    assert report.result == "dry-run", report.error
    assert report.plan is not None
    removed = [c.service for c in report.plan.service_changes if c.action == "remove"]
    assert removed == ["jibri"], report.plan.render_text()


@pytest.mark.parametrize("state", [(), ("docker-compose.yml",)])
def test_a_component_the_operator_started_outside_jitsi_ops_is_kept(
    scratch_repo: Path, state: tuple[str, ...]
) -> None:
    # transcriber.yml is one of jitsi-ops' overlays, but jitsi-ops never deployed it here
    # (no state.json, or one without the file): the operator runs it by hand.
    env = write_seed_env(scratch_repo)
    runner = host_running(*CORE, "transcriber")
    if state:
        deployed_with(runner, *state)
    report = pipeline.deploy(env, runner, dry_run=True)
    assert report.result == "failed", report.result
    assert "transcriber (transcriber.yml, not deployed by jitsi-ops)" in report.error, report.error
    assert "add it to components in deploy.toml" in report.error, report.error


def test_apply_task_refuses_before_touching_the_host(scratch_repo: Path) -> None:
    env = write_seed_env(scratch_repo)
    runner = host_running(*CORE, "otel-collector", "my-sidecar")
    with pytest.raises(PreflightError) as caught:
        stack.apply(env, runner)
    assert "my-sidecar, otel-collector (upstream's log-analyser.yml)" in caught.value.message
    assert "handmade_meet.jitsi" in caught.value.hint
    assert changes(runner) == [], changes(runner)


@pytest.mark.parametrize("layout", list(Layout))
def test_every_shipped_service_is_known_and_the_monitoring_ones_are_not(layout: Layout) -> None:
    known = composeset.shipped_services(REPO, layout)
    assert {*CORE, "etherpad", "whiteboard", "jibri", "jigasi", "transcriber"} <= known
    monitoring = {s for services in composeset.UNSHIPPED_OVERLAYS.values() for s in services}
    assert not known & monitoring, known & monitoring


def _must_not_run(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("a backup was taken: the refusal came too late")
