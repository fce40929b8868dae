"""`invoke deploy` as a non-root deploy user who needs sudo with a password (sandbox-sudo).

The testbed's user jitsi-ops-deploy is not in the docker group and owns none of the target
paths: only sudo gets the deploy through. Everything here has its own names and ports (project
jitsi-sudo under /srv/jitsi-ops-sudo, ports 8100/8543/10100/8988/8180), so it runs next to the
sandbox tests on the same engine; it cleans up after itself even when it fails.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT
from tests.testbed.provision import TestbedInfo
from tests.testbed.sudouser import SUDO_ALIAS, SUDO_USER

ENV = "sandbox-sudo"
PROJECT = "jitsi-sudo"
ROOT = Path("/srv/jitsi-ops-sudo")
STACK = ROOT / "stack"
RELEASE = "stable-11146-2"
# Distinct from the sandbox's 8000/8443/10000 and jicofo 8888 / jvb 8080 REST ports.
PORTS = {
    "HTTP_PORT": "8100",
    "HTTPS_PORT": "8543",
    "JVB_PORT": "10100",
    "JICOFO_REST_PORT": "8988",
    "JVB_COLIBRI_PORT": "8180",
}


def deploy_toml(testbed: TestbedInfo) -> str:
    return f"""# env/sandbox as the non-root user jitsi-ops-deploy, through sudo (tests/e2e/test_sudo.py)
project = "{PROJECT}"
stack_dir = "{STACK}"
test_environment = true
internet_facing = false

[[hosts]]
address = "{SUDO_ALIAS}"
role = "main"
sudo = true

[ssh]
config = "{testbed.ssh_config}"
known_hosts = "{testbed.known_hosts}"
host_key_policy = "strict"

[backup]
dir = "{ROOT / "backups"}"
keep = 3

[verify]
timeout = 90
trust_host_certificate = true
"""


def jitsi_env() -> str:
    lines = []
    for line in (REPO_ROOT / "env" / "sandbox" / "jitsi.env").read_text().splitlines():
        key = line.partition("=")[0]
        if key in PORTS or key in ("PUBLIC_URL", "CONFIG"):
            continue
        lines.append(line)
    lines += [f"{key}={value}" for key, value in PORTS.items()]
    lines += [f"PUBLIC_URL=https://127.0.0.1:{PORTS['HTTPS_PORT']}", f"CONFIG={ROOT / 'config'}"]
    return "\n".join(lines) + "\n"


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )


def project_containers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return docker("ps", "-aq", "--filter", label).stdout.split()


def remove_everything() -> None:
    """compose down -v of project jitsi-sudo by its labels (works without compose files too)."""
    label = f"label=com.docker.compose.project={PROJECT}"
    if ids := project_containers():
        docker("rm", "-f", "-v", *ids)
    if networks := docker("network", "ls", "-q", "--filter", label).stdout.split():
        docker("network", "rm", *networks)
    if volumes := docker("volume", "ls", "-q", "--filter", label).stdout.split():
        docker("volume", "rm", *volumes)
    shutil.rmtree(ROOT, ignore_errors=True)
    for leftover in private_upload_dirs():
        shutil.rmtree(leftover, ignore_errors=True)


def private_upload_dirs() -> list[Path]:
    """The SshRunner's private upload directories of the sudo user in /tmp."""
    uid = pwd.getpwnam(SUDO_USER).pw_uid
    return [p for p in Path("/tmp").glob(".jitsi-ops-*") if p.stat().st_uid == uid]


def listing(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """path -> (mode, uid, size, mtime_ns) of everything under root."""
    if not root.exists():
        return {}
    return {
        str(p): (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)
        for p in [root, *root.rglob("*")]
        for st in [p.lstat()]
    }


@dataclass
class Scene:
    """The operator's repository copy and every output captured from it."""

    repo: Path
    password: str
    outputs: list[str] = field(default_factory=list)

    def invoke(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """A task as an unattended operator runs it: no terminal, so getpass is never reached."""
        env = {"JITSI_OPS_SUDO_PASSWORD": self.password if password is None else password}
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.repo,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
            timeout=600,
        )
        self.outputs += [result.stdout, result.stderr]
        return result


@pytest.fixture(scope="module")
def scene(testbed: TestbedInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """A copy of env/sandbox as env/sandbox-sudo, in a scratch repository; clean host around."""
    password_file = testbed.sudo_password_file or testbed.state_dir / "sudo_password"
    repo = tmp_path_factory.mktemp("sudo") / "ops"
    shutil.copytree(REPO_ROOT / "compose", repo / "compose")
    (repo / "env" / ENV).mkdir(parents=True)
    shutil.copy(REPO_ROOT / "env" / "common.env", repo / "env" / "common.env")
    shutil.copy(REPO_ROOT / "tasks.py", repo / "tasks.py")
    (repo / "env" / ENV / "deploy.toml").write_text(deploy_toml(testbed))
    (repo / "env" / ENV / "jitsi.env").write_text(jitsi_env())
    scene = Scene(repo, Path(password_file).read_text().strip())
    remove_everything()
    try:
        made = scene.invoke("secrets", "--env", ENV)
        assert made.returncode == 0, made.stdout + made.stderr
        yield scene
    finally:
        remove_everything()


@pytest.fixture(scope="module")
def deployed(scene: Scene) -> subprocess.CompletedProcess[str]:
    """One deploy as the sudo user, with the password from JITSI_OPS_SUDO_PASSWORD."""
    return scene.invoke("deploy", "--env", ENV)


def test_the_deploy_user_needs_sudo_for_docker() -> None:
    groups = subprocess.run(
        ["id", "-nG", SUDO_USER], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "docker" not in groups, groups


def test_deploy_as_non_root_user_through_sudo_is_verified(
    scene: Scene, deployed: subprocess.CompletedProcess[str]
) -> None:
    output = deployed.stdout + deployed.stderr
    assert deployed.returncode == 0, output
    assert f"deployed {RELEASE} (verified)" in deployed.stdout, output

    services = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["State"]["Status"]
        for c in json.loads(docker("inspect", *project_containers()).stdout)
    }
    assert {"web", "prosody", "jicofo", "jvb"} <= set(services), services
    assert set(services.values()) == {"running"}, services

    env_file = (STACK / ".env").stat()
    assert env_file.st_mode & 0o777 == 0o600, oct(env_file.st_mode)
    assert env_file.st_uid == 0, f".env owned by uid {env_file.st_uid}, not root"
    assert (STACK / ".jitsi-ops" / "state.json").stat().st_uid == 0
    state = json.loads((STACK / ".jitsi-ops" / "state.json").read_text())
    assert state["release"] == RELEASE, state
    assert sorted((ROOT / "backups").glob(f"{ENV}-*.json")), "no backup manifest"
    assert private_upload_dirs() == [], "the private upload directory was not removed"


def test_sudo_password_appears_nowhere(
    scene: Scene, deployed: subprocess.CompletedProcess[str]
) -> None:
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    secret = scene.password
    for text in scene.outputs:
        assert secret not in text, "the sudo password appeared in captured output"
    audit = (STACK / ".jitsi-ops" / "audit.log").read_text().splitlines()
    assert audit, "no audit line"
    assert all(secret not in line for line in audit), "the sudo password is in audit.log"
    history = (scene.repo / ".jitsi-ops" / "history.jsonl").read_text().splitlines()
    assert history, "no history line"
    assert all(secret not in line for line in history), "the sudo password is in history.jsonl"
    encoded = secret.encode()
    leaked = [str(p) for p in ROOT.rglob("*") if p.is_file() and encoded in p.read_bytes()]
    assert leaked == [], f"the sudo password is in files on the host: {leaked}"


def test_wrong_password_fails_in_one_line_and_changes_nothing(
    scene: Scene, deployed: subprocess.CompletedProcess[str]
) -> None:
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    before = listing(ROOT)
    containers_before = sorted(project_containers())
    wrong = "wrong-" + scene.password
    result = scene.invoke("deploy", "--env", ENV, password=wrong)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # The timeline shows the failed phase; the run ends with one error line naming sudo.
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"FAILED: {SUDO_ALIAS}: sudo refused the password"), output
    assert "Traceback" not in output, output
    assert wrong not in output and scene.password not in output
    assert listing(ROOT) == before, "the host changed although sudo refused the password"
    assert sorted(project_containers()) == containers_before
    assert private_upload_dirs() == []


def test_no_password_and_no_terminal_is_a_config_error(scene: Scene) -> None:
    before = listing(ROOT)
    result = scene.invoke("status", "--env", ENV, password="")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "sudo needs a password and there is no terminal" in result.stderr, result.stderr
    assert "JITSI_OPS_SUDO_PASSWORD" in result.stderr
    assert listing(ROOT) == before
