"""Shared fixtures: the repository root and a scratch copy of it for tasks that write env/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    """The real repository (read-only use)."""
    return REPO_ROOT


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """A repository-shaped folder: the shipped compose/ and env/common.env + env/example."""
    root = tmp_path / "ops"
    (root / "env").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "compose", root / "compose")
    shutil.copy(REPO_ROOT / "env" / "common.env", root / "env" / "common.env")
    shutil.copytree(
        REPO_ROOT / "env" / "example",
        root / "env" / "example",
        ignore=shutil.ignore_patterns("secrets.env"),
    )
    return root
