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
def shipped_services(root: Path, layout: Layout) -> frozenset[str]:
    """Every service some file of the layout's compose set defines (core, overlays, jvb.yml)."""
    names: set[str] = set()
    for path in set_files(root, layout):
        if path.is_file():
            names.update((load_yaml(path.read_bytes()).get("services") or {}).keys())
    return frozenset(names)


def foreign_services(containers: Iterable[str], root: Path, layout: Layout) -> list[str]:
    """Services of the project's containers that no file jitsi-ops ships defines: the operator
    runs them from an overlay of their own (upstream's monitoring, an override file)."""
    known = shipped_services(root, layout)
    return sorted({name for name in containers if name and name not in known})


def foreign_services_error(project: str, services: Sequence[str]) -> PreflightError:
    """Why a deploy refuses to run `up --remove-orphans` next to services it does not know."""
    origins = []
    for name in services:
        overlay = next((f for f, s in UNSHIPPED_OVERLAYS.items() if name in s), None)
        origins.append(f"{name} (upstream's {overlay})" if overlay else name)
    return PreflightError(
        f"compose project {project!r} runs {', '.join(origins)}, which no compose file of "
        "jitsi-ops defines: `up --remove-orphans` would remove them; nothing was changed",
        hint=f"take it out of the project first (`docker compose -p {project} -f FILE down` "
        "where you started it, then `up -d` with a project name of its own, joining "
        f"{project}_meet.jitsi as an external network), or add the component if jitsi-ops ships it",
    )
