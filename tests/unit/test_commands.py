"""Argv builders: (inputs, expected line), one row per builder and notable option."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from jitsi_ops import commands
from jitsi_ops.commands import ComposeTarget

T = ComposeTarget("/opt/jitsi", "jitsi", ("docker-compose.yml", "etherpad.yml"))
BASE = (
    "docker compose --project-directory /opt/jitsi -p jitsi -f /opt/jitsi/docker-compose.yml "
    "-f /opt/jitsi/etherpad.yml --env-file /opt/jitsi/.env"
)

CASES: list[tuple[str, Callable[[], list[str]], str]] = [
    ("base", T.base, BASE),
    ("pull", lambda: commands.compose_pull(T), f"{BASE} pull --quiet"),
    ("pull some", lambda: commands.compose_pull(T, ["web"]), f"{BASE} pull --quiet -- web"),
    ("up", lambda: commands.compose_up(T), f"{BASE} up -d --remove-orphans"),
    ("up wait", lambda: commands.compose_up(T, wait=True), f"{BASE} up -d --remove-orphans --wait"),
    (
        "up only",
        lambda: commands.compose_up_only(T, ["prosody", "jvb"]),
        f"{BASE} up -d -- prosody jvb",
    ),
    ("down", lambda: commands.compose_down(T), f"{BASE} down --remove-orphans"),
    ("down -v", lambda: commands.compose_down(T, volumes=True), f"{BASE} down --remove-orphans -v"),
    ("ps", lambda: commands.compose_ps(T), f"{BASE} ps --all --format json"),
    ("logs", lambda: commands.compose_logs(T), f"{BASE} logs --no-color --tail 200"),
    (
        "logs of one service since",
        lambda: commands.compose_logs(T, "web", "10m", 50),
        f"{BASE} logs --no-color --tail 50 --since=10m -- web",
    ),
    # A service name or a time that looks like an option stays a value: Compose never sees
    # `--follow` (which would stream until the timeout) as one of its flags.
    (
        "logs of a flag-like service",
        lambda: commands.compose_logs(T, "--follow"),
        f"{BASE} logs --no-color --tail 200 -- --follow",
    ),
    (
        "logs since a flag-like time",
        lambda: commands.compose_logs(T, since="--follow"),
        f"{BASE} logs --no-color --tail 200 --since=--follow",
    ),
    ("mkdirs", lambda: commands.mkdirs(["/a b", "/c"]), "mkdir -p -m 0755 -- '/a b' /c"),
    ("chown", lambda: commands.chown(["/a"], "1000:1000"), "chown 1000:1000 -- /a"),
]


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_argv_builders(name: str, build: Callable[[], list[str]], expected: str) -> None:
    line = shlex.join(build())
    assert line == expected, f"{name}: {line}"
