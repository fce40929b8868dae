"""Releases outside what jitsi-ops knows: newer than its newest, older than its compose sets.

A release newer than the newest known one is a warning for `check` and refused by `deploy`
unless --allow-unknown-release. A release older than the compose sets is never deployed (its
compose files differ from ours), but such an install can be adopted, and its next deploy is the
one-step upgrade: migrations from the adopted release on, rollback to the host's own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import adopt as adoption
from jitsi_ops import deploy as pipeline
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.verify.model import Outcome, VerifyReport
from jitsi_ops.versions import DESCRIBED_RELEASES, Layout, Release, layout_for
from tests.unit import test_adopt
from tests.unit.test_adopt import Install
from tests.unit.test_migrations import pipeline_runner, write_seed_env

OLD = "stable-7882"


def _pin(env_dir: Path, release: str) -> None:
    jitsi = env_dir / "jitsi.env"
    lines = jitsi.read_text().splitlines()
    lines = [
        f"JITSI_IMAGE_VERSION={release}" if line.startswith("JITSI_IMAGE_VERSION=") else line
        for line in lines
    ]
    jitsi.write_text("\n".join(lines) + "\n")


def _report(env: Environment, ok: bool) -> VerifyReport:
    outcome = Outcome(
        "web.root", "sandbox", "main", "web root", "pass" if ok else "fail", "x", "", 1, 0.1
    )
    return VerifyReport(env.name, env.release, (outcome,), 0.1, 10.0, "2026-01-01T00:00:00+00:00")


# --- which releases the compose sets describe ---------------------------------------------------


def test_each_compose_set_names_the_releases_it_describes() -> None:
    assert DESCRIBED_RELEASES[Layout.LEGACY] == (Release(10978), Release(11031))
    for layout, releases in DESCRIBED_RELEASES.items():
        assert all(layout_for(str(r)) is layout for r in releases), layout


# --- newer than known ----------------------------------------------------------------------------


def test_deploy_refuses_a_release_newer_than_known(scratch_repo: Path) -> None:
    env = write_seed_env(scratch_repo)
    _pin(env.env_dir, "stable-11300")
    env = load_environment("seed", scratch_repo, environ={})
    report = pipeline.deploy(env, pipeline_runner(), dry_run=True)
    assert report.result == "failed", report.result
    assert report.error is not None and "stable-11146-2" in report.error, report.error
    assert "--allow-unknown-release" in report.error, report.error


def test_deploy_allows_a_newer_release_when_asked(scratch_repo: Path) -> None:
    env = write_seed_env(scratch_repo)
    _pin(env.env_dir, "stable-11300")
    env = load_environment("seed", scratch_repo, environ={})
    report = pipeline.deploy(env, pipeline_runner(), dry_run=True, allow_unknown_release=True)
    assert report.result == "dry-run", report.error


# --- older than the compose sets -----------------------------------------------------------------


def test_deploy_refuses_a_release_older_than_the_compose_sets(scratch_repo: Path) -> None:
    env = write_seed_env(scratch_repo)
    _pin(env.env_dir, "stable-10888")
    env = load_environment("seed", scratch_repo, environ={})
    report = pipeline.deploy(env, pipeline_runner(), dry_run=True)
    assert report.result == "failed", report.result
    assert report.error is not None and "pin stable-10978 or later" in report.error, report.error


@pytest.fixture
def old_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """The hand-made install, last upgraded to stable-7882 (its images and .env say so)."""
    monkeypatch.setattr(
        test_adopt, "image", lambda service: f"127.0.0.1:5000/jitsi/{service}:{OLD}"
    )
    install = Install(tmp_path)
    env_file = install.dir / ".env"
    env_file.write_text(env_file.read_text().replace("stable-11031", OLD))
    return install


def test_adopt_of_an_older_install_works_and_says_how_to_upgrade(
    old_install: Install, scratch_repo: Path
) -> None:
    before = old_install.listing()
    lines: list[str] = []
    report = adoption.adopt(
        scratch_repo,
        "seed",
        old_install.runner(),
        str(old_install.dir),
        options=old_install.options(),
        say=lines.append,
        environ={},
    )
    assert old_install.listing() == before, "adopt changed the host outside the backup dir"
    assert report.backup is not None and report.backup.release == OLD
    assert any("older than every compose set" in e for e in report.check_errors), (
        report.check_errors
    )
    # No "deploy of the same release" plan: that deploy cannot happen.
    assert report.plan is None and report.plan_error
    assert OLD in report.plan_error and "stable-10978" in report.plan_error, report.plan_error
    text = "\n".join(lines)
    assert f"{OLD} is older than" in text and "pin stable-10978 or later" in text, text


def test_next_deploy_of_an_older_install_upgrades_in_one_step_and_rolls_back_to_its_files(
    old_install: Install, scratch_repo: Path
) -> None:
    adoption.adopt(
        scratch_repo,
        "seed",
        old_install.runner(),
        str(old_install.dir),
        options=old_install.options(),
        environ={},
    )
    stack_before = {p.name: p.read_bytes() for p in old_install.dir.iterdir() if p.is_file()}
    _pin(scratch_repo / "env" / "seed", "stable-11146-2")
    env = load_environment("seed", scratch_repo, environ={})

    plan = pipeline.deploy(env, old_install.runner(), dry_run=True)
    assert plan.result == "dry-run", plan.error
    assert plan.plan is not None
    text = plan.plan.render_text()
    assert f"{OLD} (host .env) -> stable-11146-2" in text, text
    for migration in ("stable-7830", "stable-9753", "stable-9823", "stable-11146"):
        assert migration in text, f"{migration} missing from the plan:\n{text}"

    calls: list[bool] = []

    def gate_fails_then_old_passes(env: Environment, *_: Any) -> VerifyReport:
        calls.append(True)
        return _report(env, ok=len(calls) > 1)

    report = pipeline.deploy(env, old_install.runner(), verifier=gate_fails_then_old_passes)
    assert report.result == "rolled-back", (report.result, report.error)
    stack_after = {
        p.name: p.read_bytes()
        for p in old_install.dir.iterdir()
        if p.is_file() and p.name in stack_before
    }
    assert stack_after == stack_before, "the rollback did not put the host's own files back"
    written = sorted(p.name for p in old_install.dir.iterdir() if p.suffix == ".yml")
    assert written == sorted(n for n in stack_before if n.endswith(".yml")), written
