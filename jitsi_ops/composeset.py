"""The compose files jitsi-ops ships: which set a release uses, which overlays apply, known variables."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from jitsi_ops.errors import ConfigError, PreflightError
from jitsi_ops.versions import Layout

CORE_FILE = "docker-compose.yml"
# The whole compose set of a role 'jvb' host, and the main host's overlay that lets such
# hosts reach prosody.
BRIDGE_FILE = "jvb.yml"
REMOTE_BRIDGES_OVERLAY = "remote-jvb.yml"
# Optional components, each an overlay file of the same name.
COMPONENTS: tuple[str, ...] = ("etherpad", "whiteboard", "jibri", "jigasi", "transcriber")
# Upstream overlays jitsi-ops does not ship, with the services they define. They run third-party
# monitoring (untagged images, host paths relative to upstream's checkout, the Docker socket)
# that is not part of a Jitsi deployment: jitsi-ops neither deploys nor removes them.
UNSHIPPED_OVERLAYS: Mapping[str, tuple[str, ...]] = {
    "prometheus.yml": ("prometheus",),
    "grafana.yml": ("grafana",),
    "log-analyser.yml": ("loki", "otel-collector"),
    "rtcstats.yml": ("rtcstats-server", "rtc-visualizer"),
}
# Overlays switched on by the environment's own values (upstream's convention).
_ENABLED_BY: Mapping[str, str] = {
    "etherpad": "ETHERPAD_URL_BASE",
    "whiteboard": "WHITEBOARD_COLLAB_SERVER_URL_BASE",
}
# Read by Compose itself rather than by a service; written into the rendered .env.
COMPOSE_VARIABLES = frozenset({"COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR"})
_INTERPOLATION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=64)
def load_yaml(data: bytes) -> Any:
    """A compose file's document, cached by content (a run reads the same few files many
    times). Callers only read it. libyaml's loader is ~10x faster on the 500-line core file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(data.decode("utf-8"), Loader=loader) or {}  # noqa: S506 - a safe loader


def component_problem(name: str) -> tuple[str, str]:
    """(problem, hint) for a `components` entry jitsi-ops has no overlay for; the monitoring
    overlays upstream has and jitsi-ops does not ship are named as such."""
    if f"{name}.yml" in UNSHIPPED_OVERLAYS:
        return (
            f"names {name!r}, upstream's {name}.yml, which jitsi-ops does not ship",
            "run the monitoring overlays as a compose project of their own, outside "
            f"jitsi-ops; components: {', '.join(COMPONENTS)}",
        )
    return f"has an unknown component {name!r}", f"components: {', '.join(COMPONENTS)}"


def compose_dir(root: Path, layout: Layout) -> Path:
    """Directory of the compose set for a layout."""
    return root / "compose" / layout.value


def enabled_components(values: Mapping[str, str], requested: tuple[str, ...] = ()) -> list[str]:
    """Components to deploy: those requested in deploy.toml plus those the values switch on."""
    enabled = {name for name, key in _ENABLED_BY.items() if values.get(key)}
    enabled.update(requested)
    return [name for name in COMPONENTS if name in enabled]


def compose_files(components: list[str]) -> list[str]:
    """File names, core first, in the order they must be passed with -f."""
    return [CORE_FILE, *(f"{name}.yml" for name in components)]


def host_compose_files(role: str, components: list[str], remote_bridges: bool) -> list[str]:
    """The -f files of one host: the bridge file alone on a role 'jvb' host; on the main host
    the core stack, its overlays and, when other hosts run bridges, the XMPP publishing one."""
    if role == "jvb":
        return [BRIDGE_FILE]
    return [*compose_files(components), *([REMOTE_BRIDGES_OVERLAY] if remote_bridges else [])]


def set_files(root: Path, layout: Layout) -> list[Path]:
    """Every file of a compose set (core and all overlays)."""
    directory = compose_dir(root, layout)
    if not (directory / CORE_FILE).is_file():
        raise ConfigError(
            f"compose set missing: {directory / CORE_FILE}",
            hint="run jitsi-ops from the root of its repository (the folder with env/ and compose/)",
        )
    names = [*compose_files(list(COMPONENTS)), REMOTE_BRIDGES_OVERLAY, BRIDGE_FILE]
    return [directory / name for name in names]


def variables_in(text: str) -> set[str]:
    """Variables a compose file consumes: `environment:` entries and every `${VAR}` interpolation."""
    names = set(_INTERPOLATION_RE.findall(text))
    document = load_yaml(text.encode("utf-8"))
    for service in (document.get("services") or {}).values():
        environment = (service or {}).get("environment") or []
        if isinstance(environment, dict):
            names.update(environment)
        else:
            names.update(str(item).split("=", 1)[0] for item in environment)
    return names


@functools.cache
def known_variables(root: Path, layout: Layout) -> frozenset[str]:
    """All variables some file of the layout's compose set consumes, plus Compose's own."""
    names: set[str] = set(COMPOSE_VARIABLES)
    for path in set_files(root, layout):
        if path.is_file():
            names |= variables_in(path.read_text(encoding="utf-8"))
    return frozenset(names)


@functools.cache
def service_files(root: Path, layout: Layout) -> Mapping[str, frozenset[str]]:
    """Service -> the files of the layout's compose set that define it (core, overlays, jvb.yml)."""
    found: dict[str, set[str]] = {}
    for path in set_files(root, layout):
        if path.is_file():
            for name in load_yaml(path.read_bytes()).get("services") or {}:
                found.setdefault(str(name), set()).add(path.name)
    return {name: frozenset(files) for name, files in found.items()}


def shipped_services(root: Path, layout: Layout) -> frozenset[str]:
    """Every service some file of the layout's compose set defines."""
    return frozenset(service_files(root, layout))


def services_not_ours(
    containers: Iterable[str],
    root: Path,
    layout: Layout,
    *,
    target_files: Iterable[str],
    deployed_files: Iterable[str],
) -> list[str]:
    """Services of the project's containers that `up --remove-orphans` with `target_files` would
    remove although jitsi-ops did not put them there: from an overlay it does not ship
    (upstream's monitoring, an override file), or from one of its own overlays that it has not
    deployed on this host (`deployed_files`: the compose files of the last deploy, state.json).
    A component jitsi-ops deployed and the environment now switches off is not among them:
    removing its service is what switching it off means."""
    files = service_files(root, layout)
    target, deployed = set(target_files), set(deployed_files)
    return sorted(
        {
            name
            for name in containers
            if name and not files.get(name, frozenset()) & (target | deployed)
        }
    )


def foreign_services_error(
    project: str, services: Sequence[str], root: Path, layout: Layout
) -> PreflightError:
    """Why a deploy refuses to run `up --remove-orphans` next to services it did not deploy."""
    files = service_files(root, layout)
    origins = []
    for name in services:
        overlay = next((f for f, s in UNSHIPPED_OVERLAYS.items() if name in s), None)
        if overlay:
            origins.append(f"{name} (upstream's {overlay})")
        elif name in files:
            origins.append(f"{name} ({', '.join(sorted(files[name]))}, not deployed by jitsi-ops)")
        else:
            origins.append(name)
    return PreflightError(
        f"compose project {project!r} runs {', '.join(origins)}, which jitsi-ops did not "
        "deploy: `up --remove-orphans` would remove them; nothing was changed",
        hint="to keep one of jitsi-ops' components, add it to components in deploy.toml; take "
        f"anything else out of the project first (`docker compose -p {project} -f FILE down` "
        "where you started it, then `up -d` with a project name of its own, joining "
        f"{project}_meet.jitsi as an external network)",
    )
