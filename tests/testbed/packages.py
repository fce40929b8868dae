"""System packages the testbed needs, and Compose v2 on a Debian release that does not package it.

Nothing is installed unless the caller allows it (root, and CI=true or ``--install-packages``);
otherwise a one-line error names what is missing and the command that installs it. The check
runs before anything is changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .system import TestbedError, find_exe, has_exe, run

# sudo: the sandbox's non-root deploy user (tests/testbed/sudouser.py).
REQUIRED = ("docker.io", "debootstrap", "docker-registry", "openssh-server", "iproute2", "sudo")
COMPOSE_PLUGIN = Path("/usr/libexec/docker/cli-plugins/docker-compose")
COMPOSE_SUITE = "trixie"  # the first Debian release whose docker-compose package is Compose v2
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_POLICY_RC = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class OsRelease:
    """The fields of /etc/os-release the testbed cares about."""

    id: str
    version_id: str
    codename: str

    @property
    def major(self) -> int:
        """The major release number (0 when unknown, e.g. on sid)."""
        head = self.version_id.split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    @property
    def packages_compose_v2(self) -> bool:
        """Whether this release's own docker-compose package is Compose v2."""
        return self.major >= 13 or (self.major == 0 and self.codename not in {"", "bookworm"})


def read_os_release(path: Path = Path("/etc/os-release")) -> OsRelease:
    """Parse /etc/os-release."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"')
    return OsRelease(
        id=fields.get("ID", "unknown"),
        version_id=fields.get("VERSION_ID", ""),
        codename=fields.get("VERSION_CODENAME", ""),
    )


def installs_allowed(flag: bool) -> bool:
    """Packages are installed only as root, and only in CI or with the explicit flag."""
    in_ci = os.environ.get("CI", "").lower() in {"true", "1", "yes"}
    return os.geteuid() == 0 and (flag or in_ci)


def missing_packages(names: tuple[str, ...]) -> list[str]:
    """The packages among ``names`` that dpkg does not report as installed."""
    done = run(["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\n", *names], check=False)
    installed = {
        pkg
        for pkg, _, status in (line.partition("\t") for line in done.stdout.splitlines())
        if status.startswith("ii")
    }
    return [name for name in names if name not in installed]


def compose_v2_available() -> bool:
    """Whether ``docker compose`` is a Compose v2 plugin."""
    if not has_exe("docker"):
        return False
    done = run([find_exe("docker"), "compose", "version", "--short"], check=False, timeout=30)
    return done.returncode == 0 and done.stdout.strip().lstrip("v").split(".", 1)[0] == "2"


def ensure_packages(install_flag: bool, log: Callable[[str], None]) -> bool:
    """Make sure every package is there; return True when something had to be installed."""
    release = read_os_release()
    wanted = REQUIRED + (("docker-compose",) if release.packages_compose_v2 else ())
    if release.id != "debian" or 0 < release.major < 12:
        return _check_foreign_system(release)
    missing = missing_packages(wanted)
    compose_missing = not compose_v2_available()
    if not missing and not compose_missing:
        return False
    if not installs_allowed(install_flag):
        fetch = compose_missing and not release.packages_compose_v2
        if not missing and not fetch:
            raise TestbedError("docker-compose is installed but `docker compose version` fails")
        raise TestbedError(_missing_message(missing, compose_missing=fetch))
    if missing:
        log(f"packages: installing {' '.join(missing)}")
        _apt_install(missing)
    if not compose_v2_available():
        log(f"packages: fetching Compose v2 from Debian {COMPOSE_SUITE}'s docker-compose")
        fetch_compose_plugin(COMPOSE_PLUGIN, release)
        if not compose_v2_available():
            raise TestbedError(
                f"`docker compose version` still fails after installing {COMPOSE_PLUGIN}"
            )
    return True


def _check_foreign_system(release: OsRelease) -> bool:
    """Outside Debian >= 12 nothing is installed: go on only if every tool is already there."""
    tools = (
        "dockerd",
        "docker",
        "debootstrap",
        "docker-registry",
        "sshd",
        "ssh-keygen",
        "ip",
        "sudo",
        "visudo",
    )
    missing = [tool for tool in tools if not has_exe(tool)]
    if not compose_v2_available():
        missing.append("docker compose (v2 plugin)")
    if missing:
        raise TestbedError(
            f"the testbed installs packages only on Debian 12 or newer (this is {release.id} "
            f"{release.version_id}); install these yourself: {', '.join(missing)}"
        )
    return False


def _missing_message(missing: list[str], *, compose_missing: bool) -> str:
    """One line: what is missing and the exact command that installs it."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    auto = f"`{sudo}scripts/testbed.sh up --install-packages`"
    what = [*missing, *(["the Compose v2 plugin (docker compose)"] if compose_missing else [])]
    if not missing:
        how = f"{auto} (fetches Debian {COMPOSE_SUITE}'s docker-compose)"
    elif compose_missing:
        how = f"`{sudo}apt-get install -y {' '.join(missing)}`, then {auto} for Compose v2"
    else:
        how = f"`{sudo}apt-get install -y {' '.join(missing)}` (or {auto})"
    return f"missing: {', '.join(what)}; install with {how}"


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _apt_install(packages: list[str]) -> None:
    """apt-get install, with service starts blocked (we start our own daemons on loopback)."""
    with _no_service_starts():
        run(["apt-get", "update"], env=_apt_env(), timeout=600)
        run(["apt-get", "install", "-y", *packages], env=_apt_env(), timeout=1800)


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Block maintainer scripts from starting sshd/dockerd/registry on the machine's interfaces.

    Debian's policy-rc.d mechanism: exit code 101 means "action forbidden". An existing
    policy-rc.d belongs to the machine and is left alone.
    """
    if _POLICY_RC.exists():
        yield
        return
    _POLICY_RC.write_text("#!/bin/sh\n# temporary, written by the jitsi-ops testbed\nexit 101\n")
    _POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC.unlink(missing_ok=True)


def fetch_compose_plugin(dest: Path, release: OsRelease | None = None) -> None:
    """Install Compose v2 from Debian trixie's docker-compose package into ``dest``.

    apt runs against a temporary sources list and its own list/cache/state dirs, so the
    machine's apt configuration and package database are untouched.
    """
    # One mirror derivation for the whole testbed: images.py owns it (debootstrap needs it too).
    from .images import debian_mirror  # noqa: PLC0415 - only needed on this rare path

    release = release or read_os_release()
    mirror = debian_mirror(release.codename)
    with tempfile.TemporaryDirectory(prefix="jitsiops-compose-") as tmp:
        work = Path(tmp)
        opts = _private_apt_options(work, mirror)
        run(["apt-get", *opts, "update"], env=_apt_env(), timeout=600)
        run(["apt-get", *opts, "download", "docker-compose"], env=_apt_env(), cwd=work, timeout=600)
        debs = sorted(work.glob("docker-compose_*.deb"))
        if not debs:
            raise TestbedError("apt-get download docker-compose produced no .deb")
        extracted = work / "extracted"
        run(["dpkg-deb", "-x", str(debs[0]), str(extracted)])
        plugin = extracted / "usr/libexec/docker/cli-plugins/docker-compose"
        if not plugin.is_file():
            raise TestbedError(
                f"{debs[0].name} has no usr/libexec/docker/cli-plugins/docker-compose"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plugin, dest)
        dest.chmod(0o755)


def _private_apt_options(work: Path, mirror: str) -> list[str]:
    """apt options pointing every piece of state into ``work`` (a throw-away directory)."""
    sources = work / "sources.list"
    sources.write_text(f"deb [signed-by={_KEYRING}] {mirror} {COMPOSE_SUITE} main\n")
    for sub in ("lists/partial", "cache/archives/partial", "parts", "prefs"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    settings = {
        "Dir::Etc::SourceList": str(sources),
        "Dir::Etc::SourceParts": str(work / "parts"),
        "Dir::Etc::Preferences": str(work / "preferences"),
        "Dir::Etc::PreferencesParts": str(work / "prefs"),
        "Dir::State::Lists": str(work / "lists"),
        "Dir::Cache": str(work / "cache"),
        # The download lands in our private 0700 temp dir, which the _apt user cannot write.
        "APT::Sandbox::User": "root",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]
