"""Pure argv builders for everything jitsi-ops runs on a host. No I/O here.

Service names always follow `--`: a name is a value, and one that starts with a dash (a
mistyped flag such as `--follow`) must never reach Compose as one of its options.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

# Directories the rootless images require, writable by uid 1000 (upstream check-writable).
ROOTLESS_DIRS: tuple[str, ...] = (
    "web",
    "web/crontabs",
    "transcripts",
    "prosody/config",
    "prosody/prosody-plugins-custom",
    "jicofo",
    "jvb",
    "storage/web",
    "storage/prosody",
    "storage/jibri",
    "storage/transcripts",
    "tmp/web-load-test",
    "custom-ca",
)
LEGACY_DIRS: tuple[str, ...] = (
    "web",
    "web/crontabs",
    "web/load-test",
    "transcripts",
    "prosody/config",
    "prosody/prosody-plugins-custom",
    "jicofo",
    "jvb",
)
ROOTLESS_WRITABLE: tuple[str, ...] = tuple(
    d for d in ROOTLESS_DIRS if d.startswith(("storage/", "tmp/"))
)
ROOTLESS_UID = 1000


@dataclass(frozen=True)
class ComposeTarget:
    """Where and how compose runs on a host: stack dir, pinned project, file set."""

    stack_dir: str
    project: str
    files: tuple[str, ...]

    def base(self) -> list[str]:
        """`docker compose` with the project pinned and every file explicit."""
        argv = ["docker", "compose", "--project-directory", self.stack_dir, "-p", self.project]
        for name in self.files:
            argv += ["-f", posixpath.join(self.stack_dir, name)]
        argv += ["--env-file", posixpath.join(self.stack_dir, ".env")]
        return argv


def compose_pull(target: ComposeTarget, services: Sequence[str] = ()) -> list[str]:
    """Pull every image of the target set (quietly, before anything stops)."""
    argv = [*target.base(), "pull", "--quiet"]
    return [*argv, "--", *services] if services else argv


def compose_up(target: ComposeTarget, *, wait: bool = False) -> list[str]:
    """Converge: recreate only what changed, remove services no longer in the set."""
    argv = [*target.base(), "up", "-d", "--remove-orphans"]
    if wait:
        argv.append("--wait")
    return argv


def compose_up_only(target: ComposeTarget, services: Sequence[str]) -> list[str]:
    """Converge `services` (and what they depend on), not the services that depend on them.

    No --no-deps: Compose drops depends_on from a service it starts that way, which changes
    the container's config hash, and the next full `up` would recreate it once more.
    """
    return [*target.base(), "up", "-d", "--", *services]


def compose_down(target: ComposeTarget, *, volumes: bool = False) -> list[str]:
    """Stop and remove the project's containers (and anonymous volumes when asked)."""
    return [*target.base(), "down", "--remove-orphans", *(["-v"] if volumes else [])]


def compose_ps(target: ComposeTarget) -> list[str]:
    """Every container of the project, as JSON lines."""
    return [*target.base(), "ps", "--all", "--format", "json"]


def compose_config_check(target: ComposeTarget) -> list[str]:
    """Let Compose validate the files and the .env without starting anything."""
    return [*target.base(), "config", "--quiet"]


def compose_logs(
    target: ComposeTarget, service: str = "", since: str = "", tail: int = 200
) -> list[str]:
    """Recent logs, optionally of one service."""
    argv = [*target.base(), "logs", "--no-color", "--tail", str(tail)]
    if since:
        argv.append(f"--since={since}")  # attached: a value can never become a flag
    if service:
        argv += ["--", service]
    return argv


def mkdirs(paths: Sequence[str], mode: str = "0755") -> list[str]:
    """Create directories (and parents)."""
    return ["mkdir", "-p", "-m", mode, "--", *paths]


def chown(paths: Sequence[str], owner: str) -> list[str]:
    """Set owner:group on paths (not recursive: never widens what is already there)."""
    return ["chown", owner, "--", *paths]


def docker_version() -> list[str]:
    """Engine server version."""
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def compose_version() -> list[str]:
    """Compose plugin version."""
    return ["docker", "compose", "version", "--short"]
