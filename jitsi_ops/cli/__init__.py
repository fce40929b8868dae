"""The Invoke task collection; tasks.py only calls build_namespace()."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection

from jitsi_ops.cli import (
    adopt_tasks,
    backup_tasks,
    deploy_tasks,
    env_tasks,
    restore_tasks,
    stack_tasks,
    verify_tasks,
)


def build_namespace(root: Path) -> Collection:
    """All tasks at top level, with the repository root in the config."""
    namespace = Collection()
    modules = (
        env_tasks,
        stack_tasks,
        deploy_tasks,
        backup_tasks,
        restore_tasks,
        adopt_tasks,
        verify_tasks,
    )
    for module in modules:
        for task_obj in Collection.from_module(module).tasks.values():
            namespace.add_task(task_obj)
    namespace.configure({"jitsi_ops": {"root": str(root)}})
    return namespace
