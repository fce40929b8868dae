"""One host's steps of a deploy, each a function with a result: preflight, snapshot, pull,
apply, and the state record. deploy.py sequences them (for the main host and each bridge host);
nothing here decides on rollback or knows about other hosts.
"""

from __future__ import annotations

import dataclasses
import posixpath
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from jitsi_ops import backup, commands, facts, hoststate, lint, stack
from jitsi_ops import plan as planning
from jitsi_ops.envfile import Entry, parse_env
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import PreflightError
from jitsi_ops.rollback import UP_TIMEOUT, Snapshot
from jitsi_ops.runner import Runner
from jitsi_ops.settings import Environment, Layer
from jitsi_ops.versions import NEWEST_KNOWN, newer_than_known

MIN_DOCKER = (20, 10)
MIN_COMPOSE = (2, 20)
PULL_TIMEOUT = 900.0
FRONT_SERVICE = "web"  # what users reach: restarted last and alone

Progress = Callable[[str], None] | None


def refuse_unknown_release(env: Environment, *, allow: bool) -> None:
    """A release newer than jitsi-ops knows is a `check` warning but stops a deploy: its compose
    files, migrations and variables are unknown. PreflightError unless `allow`."""
    release = newer_than_known(env.release)
    if release is None or allow:
        return
    raise PreflightError(
        f"JITSI_IMAGE_VERSION {release} is newer than {NEWEST_KNOWN}, the newest release "
        "jitsi-ops knows (its compose files, migrations and variables are unknown)",
        hint=f"pin {NEWEST_KNOWN} or update jitsi-ops; --allow-unknown-release deploys it with "
        f"{NEWEST_KNOWN}'s compose set",
    )


def preflight(
    env: Environment,
    runner: Runner,
    values: Mapping[str, str],
    *,
    allow_unknown_release: bool = False,
) -> str:
    """Read-only checks of the main host; PreflightError on the first problem. Returns a
    one-line summary."""
    findings = lint.run_checks(lint.context_for(env))
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise PreflightError(
            f"`invoke check --env {env.name}` reports {len(errors)} error(s), first: "
            f"{errors[0].key}: {errors[0].message}",
            hint=errors[0].hint,
        )
    refuse_unknown_release(env, allow=allow_unknown_release)
    missing = [k for k in ("JICOFO_AUTH_PASSWORD", "JVB_AUTH_PASSWORD") if not values.get(k)]
    if missing:
        raise PreflightError(
            f"secrets missing: {', '.join(missing)}", hint=f"run `invoke secrets --env {env.name}`"
        )
    engines = _engine_versions(runner)
    config = stack.resolve_config_dir(env, runner)
    readable = runner.run(["test", "-r", config], check=False)
    if runner.run(["test", "-e", config], check=False).ok and not readable.ok:
        raise PreflightError(f"CONFIG {config} is not readable", hint="check its owner and mode")
    wanted = [(values.get(k, ""), "tcp", k) for k in ("HTTP_PORT", "HTTPS_PORT")]
    wanted.append((values.get("JVB_PORT", "10000"), "udp", "JVB_PORT"))
    _check_ports(env, runner, wanted)
    return engines + _disk_summary(env, runner)


def preflight_bridge(view: Environment, runner: Runner, label: str) -> str:
    """Read-only checks of a role 'jvb' host (its view of the environment)."""
    values = rendered_values(view)
    try:
        engines = _engine_versions(runner)
        _check_ports(view, runner, [(values.get("JVB_PORT", "10000"), "udp", "JVB_PORT")])
        return f"{label}: {engines}{_disk_summary(view, runner)}"
    except PreflightError as exc:
        raise PreflightError(f"{label}: {exc.message}", hint=exc.hint) from None


def _engine_versions(runner: Runner) -> str:
    docker = facts.gather(runner, facts.docker_server_version())
    compose = facts.gather(runner, facts.compose_version())
    if facts.version_tuple(docker)[:2] < MIN_DOCKER:
        raise PreflightError(
            f"Docker Engine {docker} is older than {'.'.join(map(str, MIN_DOCKER))}",
            hint="upgrade docker on the host",
        )
    if facts.version_tuple(compose)[:2] < MIN_COMPOSE:
        raise PreflightError(
            f"Docker Compose {compose} is older than {'.'.join(map(str, MIN_COMPOSE))}",
            hint="install the Compose v2 plugin (docker-compose-plugin)",
        )
    return f"docker {docker}, compose {compose}"


def _disk_summary(env: Environment, runner: Runner) -> str:
    free = _free_space(runner, env.deploy.backup.dir)
    if free is not None and free < env.deploy.verify.min_free_disk_mb:
        raise PreflightError(
            f"only {free} MiB free for backups and images near {env.deploy.backup.dir}",
            hint=f"free disk space (floor: verify.min_free_disk_mb = {env.deploy.verify.min_free_disk_mb})",
        )
    return f", {free} MiB free" if free is not None else ""


def _free_space(runner: Runner, path: str) -> int | None:
    probe = path
    while probe not in ("", "/") and not runner.run(["test", "-d", probe], check=False).ok:
        probe = posixpath.dirname(probe)
    usage = facts.gather(runner, facts.disk_free(probe or "/"))
    return int(usage.available_kb // 1024)


def _check_ports(env: Environment, runner: Runner, wanted: list[tuple[str, str, str]]) -> None:
    """Public ports (port, protocol, key) must be free or already published by this project."""
    result = runner.run(list(facts.listeners().argv), check=False)
    if not result.ok:
        return  # no `ss` on the host: compose will report a conflict itself
    found = facts.parse_ss(result.stdout)
    ours = facts.gather(runner, facts.project_containers(env.deploy.project))
    ours_ports = {(p.published, p.protocol) for c in ours for p in c.published}
    for port_text, protocol, key in wanted:
        if not port_text.isdigit():
            continue
        port = int(port_text)
        holders = facts.port_holders(found, port, protocol)
        if holders and (port, protocol) not in ours_ports:
            names = ", ".join(sorted({p.name for h in holders for p in h.processes})) or "unknown"
            raise PreflightError(
                f"{key} {port}/{protocol} is already in use on the host by {names}",
                hint="stop that service or choose another port in jitsi.env",
            )


def snapshot(runner: Runner, env: Environment, current: facts.HostFacts) -> Snapshot:
    """Read the stack files and image ids that run now (kept in memory for rollback)."""
    files: dict[str, bytes] = {}
    for name in current.file_hashes:
        if name == ".env" or name.endswith(".yml"):
            try:
                files[name] = runner.get(posixpath.join(env.deploy.stack_dir, name))
            except FileNotFoundError:
                continue
    image_ids = {c.image: c.image_id for c in current.containers if c.image and c.image_id}
    release = current.state.release if current.state else None
    env_values = parse_env(files[".env"].decode(), "host .env") if ".env" in files else {}
    if release is None:
        release = env_values.get("JITSI_IMAGE_VERSION")
    running: tuple[str, ...] = ()
    if not env_values.get("COMPOSE_FILE") and current.containers:
        running = facts.running_compose_files(runner, [c.id for c in current.containers if c.id])
    return Snapshot(MappingProxyType(files), MappingProxyType(image_ids), release, running)


def pre_pull(runner: Runner, refs: list[str], progress: Progress) -> str:
    """Pull every target image before anything stops; the first failure ends the run."""
    for index, ref in enumerate(refs, 1):
        if progress:
            progress(f"pulling {index}/{len(refs)} {ref}")
        runner.run(["docker", "pull", "--quiet", ref], timeout=PULL_TIMEOUT)
    return f"{len(refs)} image(s)"


class BackgroundPull:
    """pre_pull() of every host on threads of their own, started before the backup: pulling
    changes nothing the running stack uses, so it need not wait for the backup, and on a real
    host the two together take about as long as the longer one. wait() (the pull phase) joins
    them and raises the first failure; nothing is applied before it returned."""

    def __init__(self, jobs: Sequence[tuple[str, Runner, list[str]]], progress: Progress) -> None:
        self._details: dict[str, str] = {}
        self._errors: list[BaseException] = []
        self._started = time.monotonic()
        self._seconds = 0.0
        # Daemon threads: an interrupted run must be able to exit without waiting for a pull
        # that hangs on an unreachable registry.
        self._threads = [
            threading.Thread(target=self._pull, args=(*job, progress), daemon=True) for job in jobs
        ]
        for thread in self._threads:
            thread.start()

    def _pull(self, label: str, runner: Runner, refs: list[str], progress: Progress) -> None:
        try:
            self._details[label] = pre_pull(runner, refs, progress)
        except BaseException as exc:  # handed to the waiting thread
            self._errors.append(exc)
        finally:
            self._seconds = max(self._seconds, time.monotonic() - self._started)

    def wait(self) -> str:
        """Join the pulls; the first failure is raised here."""
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        details = [f"{label}: {text}" if label else text for label, text in self._details.items()]
        return "; ".join(details) + f" ({self._seconds:.1f}s, alongside the backup)"


def apply_target(
    env: Environment,
    runner: Runner,
    previous: Snapshot,
    recreate: Sequence[str] = (),
    progress: Progress = None,
) -> str:
    """Prepare CONFIG, upload the target set, drop compose files no longer used, `up -d`.

    When web is recreated, Compose alone would stop it first and start it only after every
    other recreated container (the backends it depends on, the whiteboard that depends on
    it) has been replaced, keeping HTTPS down all that time. So the backends come up first,
    then web on its own, then the rest: HTTPS is down only for web's own restart.
    """
    say = progress or (lambda _message: None)
    config = stack.prepare_config_dirs(env, runner)
    say("uploading .env and compose files")
    uploaded = stack.upload_stack(env, runner)
    stale = [n for n in previous.files if n.endswith(".yml") and n not in uploaded]
    if stale:
        runner.run(["rm", "-f", "--", *(posixpath.join(env.deploy.stack_dir, n) for n in stale)])
    target = stack.target_for(env)
    front = {FRONT_SERVICE, *stack.dependents(env, FRONT_SERVICE)}
    behind = [s for s in recreate if s not in front]
    detail = f"CONFIG {config}; uploaded {', '.join(uploaded)}"
    if FRONT_SERVICE in recreate:
        steps = [behind] if behind else []
        if len(front) > 1:
            steps.append([FRONT_SERVICE])
        for services in steps:
            say(f"starting {', '.join(services)}")
            runner.run(commands.compose_up_only(target, services), timeout=UP_TIMEOUT)
        if steps:
            detail += "; in order: " + " | ".join(", ".join(step) for step in steps) + " | rest"
    say("starting the stack (docker compose up -d)")
    runner.run(commands.compose_up(target), timeout=UP_TIMEOUT)
    return detail


def environment_of(env: Environment, env_text: str) -> Environment:
    """The environment as a previous `.env` describes it (to verify what a rollback restored).

    Its values are that `.env`'s. A bridge host's view of it (Environment.for_host refolds the
    layers) is those values with the host's own deploy.toml values on top, and no process
    overrides: a `JITSI_OPS_*` override of this run is part of what was rolled back."""
    values = parse_env(env_text, "previous .env")
    entries = tuple(Entry(key, value, literal=True, line=0) for key, value in values.items())
    layers = (Layer("previous .env", entries), Layer("no process overrides", ()))
    return dataclasses.replace(env, values=MappingProxyType(values), layers=layers)


def record_state(
    env: Environment, runner: Runner, deploy_id: str, values: Mapping[str, str]
) -> None:
    """state.json: the deployed release and the digests now running."""
    digests = backup.running_digests(env, runner)
    state = hoststate.DeployState(
        env=env.name,
        release=env.release,
        deploy_id=deploy_id,
        time=hoststate.iso_utc(),
        project=env.deploy.project,
        compose_files=tuple(values.get("COMPOSE_FILE", "").split(":")),
        env_sha256=_sha256(stack.stack_files(env)[".env"]),
        images=dict(planning.target_images(values, stack.stack_files(env))),
        digests=digests,
        jitsi_ops_version=_version(),
    )
    hoststate.write_state(runner, env.deploy.stack_dir, state)


def _sha256(data: bytes) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(data).hexdigest()


def _version() -> str:
    from jitsi_ops import __version__  # noqa: PLC0415

    return __version__
