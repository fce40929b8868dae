"""nox sessions: lint, typecheck, tests (default); e2e, sandbox, bench (opt-in).

Virtualenvs are reused between runs. The e2e and sandbox sessions provision the testbed
(real dockerd, Compose v2, registry, sshd hosts, stand-in images); pass
`-- --install-packages` to let them apt-install what is missing (root only).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, *groups: str) -> None:
    """Install the project (editable) plus dependency groups from pyproject.toml."""
    session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    install(session, "typing")
    session.run("mypy", "jitsi_ops")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and CLI tiers (no Docker, no SSH)."""
    install(session, "test")
    if testbed_flags(session):
        # A few unit tests drive real tools (Compose v2, OpenSSH's sftp-server): with
        # --install-packages they are installed first, so nothing skips on a fresh machine.
        session.run("python", "-m", "tests.testbed", "packages", *testbed_flags(session))
    session.run("pytest", "tests/unit", "tests/cli", *pytest_args(session))


TESTBED_FLAGS = ("--install-packages",)


def testbed_flags(session: nox.Session) -> list[str]:
    """Posargs meant for the testbed provisioning."""
    return [arg for arg in session.posargs if arg in TESTBED_FLAGS]


def pytest_args(session: nox.Session) -> list[str]:
    """Posargs meant for pytest."""
    return [arg for arg in session.posargs if arg not in TESTBED_FLAGS]


@nox.session
def e2e(session: nox.Session) -> None:
    """Provision the testbed, run the e2e tier against it, tear it down."""
    install(session, "test")
    session.run("python", "-m", "tests.testbed", "up", "--hosts", "1", *testbed_flags(session))
    try:
        session.run("pytest", "tests/e2e", "-m", "e2e", *pytest_args(session))
    finally:
        session.run("python", "-m", "tests.testbed", "down")


@nox.session
def sandbox(session: nox.Session) -> None:
    """Provision the local sandbox host and `invoke deploy --env sandbox` to it (verified)."""
    install(session, "test")
    session.run("python", "-m", "tests.testbed", "up", *testbed_flags(session))
    session.run("invoke", "secrets", "--env", "sandbox")
    session.run("invoke", "deploy", "--env", "sandbox")
    session.run("invoke", "status", "--env", "sandbox")
    session.log(
        "the sandbox serves https://127.0.0.1:8443/ ; `python -m tests.testbed down` removes it"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Deploy benchmark on the testbed: ratios against baselines from the same run."""
    install(session, "test")
    session.run("python", "-m", "tests.testbed", "up", *testbed_flags(session))
    session.run("invoke", "secrets", "--env", "sandbox")
    session.run("python", "-m", "tests.bench.bench_deploy")
