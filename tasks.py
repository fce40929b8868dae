"""Invoke entry point: `invoke --list`. All logic lives in the jitsi_ops package."""

from pathlib import Path

from jitsi_ops.cli import build_namespace

namespace = build_namespace(Path(__file__).resolve().parent)
