"""Run one task module's Invoke tasks in-process against a scratch repository (unit tier)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from invoke.collection import Collection
from invoke.program import Program


def run_task(module: ModuleType, root: Path, *argv: str) -> int:
    """`invoke ARGV` with only `module`'s tasks, rooted at `root`; returns the exit code."""
    namespace = Collection.from_module(module)
    namespace.configure({"jitsi_ops": {"root": str(root)}})
    try:
        Program(namespace=namespace).run(["invoke", *argv])
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0
