"""Put an environment's stack on a host: CONFIG dirs, the rendered .env, the compose set, `up -d`.

This is the apply step of the deploy pipeline; it is also usable on its own (`invoke apply`).
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jitsi_ops import commands, facts
from jitsi_ops.composeset import (
    compose_dir,
    foreign_services_error,
    load_yaml,
    services_not_ours,
)
from jitsi_ops.environments import compose_names, render_env
from jitsi_ops.errors import ConfigError
from jitsi_ops.hoststate import read_state
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment
from jitsi_ops.versions import Layout


def target_for(env: Environment) -> commands.ComposeTarget:
    """The compose invocation of this environment."""
    return commands.ComposeTarget(
        stack_dir=env.deploy.stack_dir,
        project=env.deploy.project,
        files=tuple(compose_names(env)),
    )


def stack_files(env: Environment) -> dict[str, bytes]:
    """Every file that goes into the stack dir, by name."""
    files = {".env": render_env(env, show_secrets=True).encode()}
    directory = compose_dir(env.root, env.layout)
    for name in compose_names(env):
        files[name] = (directory / name).read_bytes()
    return files


def _service_specs(env: Environment) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service, spec) of every file of the host's compose set (an overlay may repeat one)."""
    directory = compose_dir(env.root, env.layout)
    # Only the compose files: stack_files() would render the whole .env (secrets included).
    for name in compose_names(env):
        for svc, spec in (load_yaml((directory / name).read_bytes()).get("services") or {}).items():
            yield str(svc), spec or {}


def services(env: Environment) -> list[str]:
    """The service names of the host's compose set, sorted."""
    return sorted({svc for svc, _ in _service_specs(env)})


def check_service(env: Environment, service: str) -> None:
    """Refuse a service name the host's compose set does not have (with a "did you mean")."""
    known = services(env)
    if service in known:
        return
    close = difflib.get_close_matches(service, known, n=1)
    listed = f"services: {', '.join(known)}"
    raise ConfigError(
        f"{env.name} has no service {service!r} in its compose set",
        hint=f"did you mean {close[0]!r}? {listed}" if close else listed,
    )


def dependents(env: Environment, service: str) -> set[str]:
    """Services of the host's compose set that depend on `service`, directly or not."""
    needs: dict[str, set[str]] = {}
    for svc, spec in _service_specs(env):
        depends = spec.get("depends_on") or []
        needs.setdefault(svc, set()).update(depends)  # a list or a mapping: the names
    found: set[str] = set()
    frontier = {service}
    while frontier:
        frontier = {svc for svc, deps in needs.items() if deps & frontier} - found
        found |= frontier
    return found


def remote_home(runner: Runner) -> str:
    """The deploy user's home on the host (for `~` in CONFIG, which compose expands the same way)."""
    return runner.run(["printenv", "HOME"]).stdout.strip() or "/root"


def resolve_config_dir(env: Environment, runner: Runner) -> str:
    """CONFIG as an absolute path on the host."""
    config = env.config_dir
    if config == "~" or config.startswith("~/"):
        return remote_home(runner) + config[1:]
    return config


@dataclass(frozen=True)
class ApplyResult:
    """What apply did."""

    config_dir: str
    uploaded: tuple[str, ...]


def prepare_config_dirs(env: Environment, runner: Runner) -> str:
    """Create the CONFIG tree the layout needs; rootless storage/tmp dirs are given to uid 1000."""
    config = resolve_config_dir(env, runner)
    layout = env.layout
    subdirs = commands.ROOTLESS_DIRS if layout is Layout.ROOTLESS else commands.LEGACY_DIRS
    runner.run(commands.mkdirs([posixpath.join(config, d) for d in subdirs]))
    if layout is Layout.ROOTLESS:
        writable = [posixpath.join(config, d) for d in commands.ROOTLESS_WRITABLE]
        # Parents too: storage/ and tmp/ must be traversable, their children owned by 1000.
        runner.run(commands.chown(writable, f"{commands.ROOTLESS_UID}:{commands.ROOTLESS_UID}"))
    return config


def upload_stack(env: Environment, runner: Runner) -> tuple[str, ...]:
    """Upload .env (0600) and the compose files (0644) atomically into the stack dir."""
    runner.run(commands.mkdirs([env.deploy.stack_dir], mode="0750"))
    names = []
    for name, data in stack_files(env).items():
        runner.put(
            data, posixpath.join(env.deploy.stack_dir, name), 0o600 if name == ".env" else 0o644
        )
        names.append(name)
    return tuple(names)


def refuse_foreign_services(
    env: Environment,
    containers: Iterable[facts.ContainerInfo],
    deployed_files: Iterable[str] = (),
) -> None:
    """Raise before anything changes when the project runs a service jitsi-ops did not deploy
    and the target set lacks (see composeset.services_not_ours): `up --remove-orphans` would
    remove it (and restore's `down` too), so it has to leave the project, or be made a
    component, first. `deployed_files`: the compose files of the host's last deploy."""
    foreign = services_not_ours(
        (c.service for c in containers),
        env.root,
        env.layout,
        target_files=target_for(env).files,
        deployed_files=deployed_files,
    )
    if foreign:
        raise foreign_services_error(env.deploy.project, foreign, env.root, env.layout)


def apply(env: Environment, runner: Runner) -> ApplyResult:
    """Prepare dirs, upload the stack and converge it with `up -d`."""
    containers: list[facts.ContainerInfo] = facts.gather(
        runner, facts.project_containers(env.deploy.project)
    )
    state = read_state(runner, env.deploy.stack_dir)
    refuse_foreign_services(env, containers, state.compose_files if state else ())
    config = prepare_config_dirs(env, runner)
    uploaded = upload_stack(env, runner)
    runner.run(commands.compose_up(target_for(env)), timeout=600)
    return ApplyResult(config, uploaded)
