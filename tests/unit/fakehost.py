"""A "host" in tmp_path: files and coreutils for real (LocalRunner), Docker and `ss` canned.

Unit tests must not talk to the machine's Docker engine (the e2e tier does); everything else a
host does (find, tar, sha256sum, chown, mkdir, rm) runs for real against tmp_path, so adopt,
migrations and restore are exercised on real files, owners and modes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitsi_ops.runner import LocalRunner, Result, checked

CANNED_COMMANDS = ("docker", "ss")


@dataclass
class FakeDockerHost(LocalRunner):
    """LocalRunner whose `docker ...` and `ss ...` answer from `responses` (longest argv
    prefix wins; unmatched: exit 0, no output). Every call is recorded in `calls`."""

    responses: dict[tuple[str, ...], tuple[int, str, str]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    label: str = "fake-host"

    def __post_init__(self) -> None:
        super().__init__(self.label)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        key = tuple(argv)
        self.calls.append(key)
        if key and key[0] in CANNED_COMMANDS:
            best: tuple[int, str, str] = (0, "", "")
            best_len = -1
            for prefix, answer in self.responses.items():
                if key[: len(prefix)] == prefix and len(prefix) > best_len:
                    best, best_len = answer, len(prefix)
            return checked(Result(key, *best), check)
        return super().run(argv, check=check, timeout=timeout, stdin=stdin)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self.calls.append(("put", path, oct(mode)))
        super().put(data, path, mode)

    def get(self, path: str) -> bytes:
        self.calls.append(("get", path))
        return super().get(path)

    def docker_calls(self) -> list[tuple[str, ...]]:
        """The docker commands, in order."""
        return [c for c in self.calls if c and c[0] == "docker"]


def label_lines(containers: Iterable[Mapping[str, Any]]) -> str:
    """`docker inspect --format LABELS_TEMPLATE` output for the given container dicts."""
    return "".join(json.dumps(c) + "\n" for c in containers)


def compose_ps_lines(containers: Iterable[Mapping[str, Any]]) -> str:
    """`docker compose ps --format json` (2.26: one object per line)."""
    return "".join(json.dumps(c) + "\n" for c in containers)
