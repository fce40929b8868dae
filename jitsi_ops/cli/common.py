"""Shared plumbing of the task modules: error boundary, environment loading, printing."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from jitsi_ops import guard as guarding
from jitsi_ops.errors import ConfigError, OpsError
from jitsi_ops.runner import Runner
from jitsi_ops.settings import SUDO_PASSWORD_VAR, Environment, Host, load_environment
from jitsi_ops.ssh import SshRunner
from jitsi_ops.ssh import connect as ssh_connect

F = TypeVar("F", bound=Callable[..., Any])

ENV_HELP = "environment name: a folder under env/ (required)"


def repo_root(c: Context) -> Path:
    """The jitsi-ops repository root (set by tasks.py), else the current directory."""
    configured = c.config.get("jitsi_ops", {}).get("root")
    return Path(configured) if configured else Path.cwd()


def load(c: Context, env: str) -> Environment:
    """Load the named environment of this repository."""
    return load_environment(env, repo_root(c))


class SudoPasswordPrompt:
    """The run's one sudo password, shared by all hosts and obtained at most once.

    JITSI_OPS_SUDO_PASSWORD when set (unattended runs), else asked on the terminal without
    echo. It stays in this object's memory for the process only.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        stdin: TextIO | None = None,
        ask: Callable[[str], str] = getpass.getpass,
    ) -> None:
        self._environ = environ
        self._stdin = stdin
        self._ask = ask
        self._password: str | None = None

    def __call__(self, label: str) -> str:
        """The password (`label`, e.g. "deploy@meet.example.com", names who it is for)."""
        if self._password is None:
            self._password = self._obtain(label)
        return self._password

    def _obtain(self, label: str) -> str:
        environ = os.environ if self._environ is None else self._environ
        given = environ.get(SUDO_PASSWORD_VAR)
        if given:
            return given
        stdin = self._stdin if self._stdin is not None else sys.stdin
        if stdin is None or not stdin.isatty():
            raise ConfigError(
                f"{label}: sudo needs a password and there is no terminal to ask for it",
                hint=f"run in a terminal, or set {SUDO_PASSWORD_VAR} for an unattended run",
            )
        return self._ask(f"[sudo] password for {label}: ")

    def __repr__(self) -> str:
        return "SudoPasswordPrompt(<hidden>)"


# One per invoke run (one process): every host of every task asks this one, so it asks once.
SUDO_PASSWORD = SudoPasswordPrompt()


def connect(env: Environment, host: Host) -> SshRunner:
    """A runner for one host of the environment, with this run's sudo password provider."""
    return ssh_connect(env, host, SUDO_PASSWORD)


@contextlib.contextmanager
def main_host(env: Environment) -> Iterator[SshRunner]:
    """One SSH connection to the environment's main host for the whole task, always closed."""
    with one_host(env, env.deploy.main_host) as runner:
        yield runner


@contextlib.contextmanager
def one_host(env: Environment, host: Host) -> Iterator[SshRunner]:
    """One SSH connection to `host`, always closed."""
    runner = connect(env, host)
    try:
        yield runner
    finally:
        runner.close()


@contextlib.contextmanager
def bridge_hosts(env: Environment) -> Iterator[dict[Host, SshRunner]]:
    """One SSH connection to each role 'jvb' host for the whole task, always closed."""
    runners: dict[Host, SshRunner] = {}
    try:
        for host in env.deploy.bridge_hosts:
            runners[host] = connect(env, host)
        yield runners
    finally:
        for runner in runners.values():
            runner.close()


def select_hosts(env: Environment, name: str) -> tuple[Host, ...]:
    """Every host (main first) for "", else the one host `name` names: its label or address as
    deploy.toml has it, or "main" for the main host. ConfigError listing the hosts otherwise."""
    hosts = (env.deploy.main_host, *env.deploy.bridge_hosts)
    if not name:
        return hosts
    for host in hosts:
        if name in (host.label, host.address) or (name == "main" and host.role == "main"):
            return (host,)
    known = ", ".join(host.label for host in hosts)
    raise ConfigError(
        f"{env.name} has no host {name!r}",
        hint=f"--host takes a host's address as deploy.toml names it, or 'main': {known}",
    )


GUARD_HELP = (
    "refuse|wait|force: what to do when the deploy would restart prosody, jicofo, web or a "
    "bridge while meetings are live (default: [guard] policy of deploy.toml, else refuse)"
)
MAX_WAIT_HELP = (
    "how long --guard wait waits for meetings to end, e.g. 900, 15m, 1h (default: [guard] max_wait)"
)


def conference_guard(
    loaded: Environment,
    runners: dict[Host, Runner],
    policy: str = "",
    max_wait: str = "",
    action: str = "deploy",
) -> guarding.ConferenceGuard:
    """The guard of a task from its flags and deploy.toml's [guard] table."""
    chosen = guarding.check_policy(policy) if policy else loaded.deploy.guard.policy
    wait = guarding.parse_duration(max_wait) if max_wait else loaded.deploy.guard.max_wait
    reader = guarding.LoadReader(loaded, runners)
    return guarding.ConferenceGuard(chosen, wait, reader.read, action=action)


def boundary(func: F) -> F:
    """Turn expected failures into a one-line message plus hint and a non-zero exit, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OpsError as exc:
            message = f"error: {exc.message}"
            if exc.hint:
                message += f"\nhint: {exc.hint}"
            raise Exit(message, code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: object) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
