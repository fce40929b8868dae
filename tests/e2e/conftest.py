"""e2e tier: real sshd, real dockerd, Compose v2, the local registry and the stand-in images.

The testbed is provisioned here if it is not up yet (idempotent and fast when it is); it is
never skipped: a machine that cannot provision it fails the tier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.ssh import SshRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_ROOT = "/srv/jitsi-ops-sandbox"
BRIDGE_HOSTS = 3  # jvb1..jvb3: the rolling upgrade of test_fleet_guard needs three


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def testbed() -> object:
    """The provisioned testbed (provisions it if needed)."""
    from tests.testbed.provision import provision  # noqa: PLC0415

    return provision(hosts=BRIDGE_HOSTS, install_packages=os.environ.get("CI") == "true")


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Processes started inside get SIGINT as from an operator's terminal. A test run started in
    the background by a non-interactive shell inherits SIGINT ignored, which exec keeps (Python
    then ignores Ctrl-C too); a Python handler set here becomes the default action instead."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before if before is not None else signal.SIG_DFL)


def by_service(inspected: list[dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """`docker inspect` output as service -> (container id, image, started at)."""
    return {
        c["Config"]["Labels"]["com.docker.compose.service"]: (
            c["Id"],
            c["Config"]["Image"],
            c["State"]["StartedAt"],
        )
        for c in inspected
    }


def run_invoke(
    *args: str, env: dict[str, str] | None = None, root: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """Run a jitsi-ops task the way an operator does."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=900,
    )


@pytest.fixture(scope="session")
def sandbox_env(testbed: object) -> Environment:
    """env/sandbox with its secrets generated (kept across runs, gitignored)."""
    result = run_invoke("secrets", "--env", "sandbox")
    assert result.returncode == 0, result.stderr
    return load_environment("sandbox", REPO_ROOT, environ={})


@pytest.fixture
def sandbox_runner(sandbox_env: Environment) -> Iterator[SshRunner]:
    """An SSH runner to the sandbox host."""
    runner = SshRunner(sandbox_env.deploy.main_host, sandbox_env.deploy.ssh)
    yield runner
    runner.close()


def compose_down(env: Environment) -> None:
    """Remove the sandbox project and its data so the next test (and run) starts clean."""
    stack = Path(env.deploy.stack_dir)
    if (stack / "docker-compose.yml").exists():
        files = [
            a
            for name in (stack / ".env").read_text().split("COMPOSE_FILE=")[1].split()[0].split(":")
            for a in ("-f", str(stack / name))
        ]
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                env.deploy.project,
                "--project-directory",
                str(stack),
                *files,
                "down",
                "-v",
                "--remove-orphans",
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
    shutil.rmtree(SANDBOX_ROOT, ignore_errors=True)


@pytest.fixture
def clean_sandbox(sandbox_env: Environment) -> Iterator[Environment]:
    """A sandbox with no stack and no CONFIG before and after the test."""
    compose_down(sandbox_env)
    yield sandbox_env
    compose_down(sandbox_env)
