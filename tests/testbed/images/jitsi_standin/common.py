"""Helpers shared by the stand-in entrypoints: env parsing, logging, directory checks.

Environment values follow the real images' templating (jitsi/tpl): a variable that is unset or
empty takes the template default, and booleans use tpl's ``toBool``, where 1/0/true/false/t/f
parse normally and any other non-empty string counts as true.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

_FALSE = {"0", "f", "false"}

# Servers bind every interface of the container, like the real images; the compose files
# decide what reaches the host (jicofo/jvb REST on 127.0.0.1 only).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def env(name: str, default: str = "") -> str:
    """An environment value, or ``default`` when unset or empty (tpl's ``default``)."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name: str, default: bool) -> bool:
    """A boolean the way the real templates read it (non-empty unknown strings are true)."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    # 1/t/true, and (as in tpl) any other non-empty string, mean true.
    return value not in _FALSE


def layout() -> str:
    """``rootless`` (stable-11146 and later) or ``legacy`` (before), baked in at build time."""
    return os.environ.get("JITSI_STANDIN_LAYOUT", "rootless")


def release() -> str:
    """The release tag this image was built as (e.g. ``stable-11146-2``)."""
    return os.environ.get("JITSI_STANDIN_RELEASE", "unknown")


def log(component: str, message: str) -> None:
    """One log line on stdout (docker logs), flushed at once."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(f"{stamp} {component} {message}", flush=True)


def fatal(message: str, *details: str) -> NoReturn:
    """Print ``FATAL ERROR: message`` (the real images' wording) and exit 1."""
    print(f"FATAL ERROR: {message}", flush=True)
    for line in details:
        print(line, flush=True)
    sys.exit(1)


def check_writable(directory: str, hint: str) -> None:
    """Exit with FATAL unless ``directory`` exists and the current user can write into it.

    Mirrors upstream's ``check-writable`` (stable-11146): a real write probe, so ownership,
    mode and ACLs all count; ``hint`` is the host path the volume maps to.
    """
    uid = os.getuid()
    path = Path(directory)
    if not path.is_dir():
        fatal(
            f"required directory '{directory}' is missing.",
            f"It maps to a host volume that must exist and be writable by uid {uid}.",
            f"On the host, e.g.:  mkdir -p '{hint}' && chmod 777 '{hint}'",
        )
    probe = path / f".jitsi-ops-standin-write-test.{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError:
        fatal(
            f"directory '{directory}' is not writable by the container user (uid {uid}).",
            f"It maps to a host volume; make it writable by uid {uid}.",
            f"On the host, e.g.:  chmod 777 '{hint}'   (or: chown -R {uid}:{uid} '{hint}')",
        )


def copy_config_input(dest: str, component: str, source: str = "/config") -> None:
    """Copy the /config input volume into the rendered config dir, like ``cp -r /config/.``.

    Rootless images treat /config as input only. Unreadable entries are reported and
    skipped (upstream's ``cp`` is not fatal either), which is how a root-owned old CONFIG
    silently loses files after the switch to uid 1000.
    """
    src = Path(source)
    try:
        Path(dest).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fatal(f"cannot create {dest}: {exc.strerror} (the image expects a tmpfs on /run)")
    if not src.is_dir():
        return
    try:
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    except shutil.Error as exc:
        for failed in exc.args[0][:5]:
            log(component, f"cp: cannot copy {failed[0]}: {failed[2]}")
    except OSError as exc:
        log(component, f"cp: cannot read {source}: {exc.strerror}")


def exec_main(argv: list[str]) -> NoReturn:
    """Replace this process with ``argv`` (so tini signals the real server directly)."""
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 (argv list, no shell: exec is the point)
