"""Shared plumbing of the task modules: error boundary, environment loading, printing."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from jitsi_ops.errors import OpsError
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.ssh import SshRunner, connect

F = TypeVar("F", bound=Callable[..., Any])

ENV_HELP = "environment name: a folder under env/ (required)"


def repo_root(c: Context) -> Path:
    """The jitsi-ops repository root (set by tasks.py), else the current directory."""
    configured = c.config.get("jitsi_ops", {}).get("root")
    return Path(configured) if configured else Path.cwd()


def load(c: Context, env: str) -> Environment:
    """Load the named environment of this repository."""
    return load_environment(env, repo_root(c))


@contextlib.contextmanager
def main_host(env: Environment) -> Iterator[SshRunner]:
    """One SSH connection to the environment's main host for the whole task, always closed."""
    runner = connect(env, env.deploy.main_host)
    try:
        yield runner
    finally:
        runner.close()


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
