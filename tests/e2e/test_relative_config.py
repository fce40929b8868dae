"""A relative CONFIG on the sandbox (issue 10 item 19): `CONFIG=./jitsi-config`, as real installs
have it, is where Compose puts it (below the stack dir, the pinned project directory), and
check, preflight, apply, the gate and the backup of the next deploy all use that directory.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from jitsi_ops.settings import Environment
from tests.e2e.conftest import run_invoke
from tests.e2e.test_deploy import BACKUPS, NEW, OLD, STACK, assert_no_secrets

RELATIVE = "./jitsi-config"
CONFIG = STACK / "jitsi-config"


def with_config(release: str) -> dict[str, str]:
    return {"JITSI_OPS_CONFIG": RELATIVE, "JITSI_OPS_JITSI_IMAGE_VERSION": release}


def web_config_mount() -> str:
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.project=jitsi-sandbox",
            "--filter",
            "label=com.docker.compose.service=web",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(ids) == 1, ids
    inspected = json.loads(
        subprocess.run(
            ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True
        ).stdout
    )
    return next(m["Source"] for m in inspected[0]["Mounts"] if m["Destination"] == "/config")


def test_relative_config_is_the_stack_dirs_everywhere(clean_sandbox: Environment) -> None:
    checked = run_invoke("check", "--env", "sandbox", env=with_config(OLD))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = [line for line in checked.stdout.splitlines() if "[config-dir]" in line]
    assert lines and lines[0].startswith("warning") and str(CONFIG) in lines[0], checked.stdout

    first = run_invoke("deploy", "--env", "sandbox", env=with_config(OLD))
    assert_no_secrets(first.stdout, first.stderr)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"deployed {OLD} (verified)" in first.stdout, first.stdout
    assert web_config_mount() == str(CONFIG / "web")
    assert (CONFIG / "web").is_dir() and (CONFIG / "prosody").is_dir()
    host_env = (STACK / ".env").read_text()
    assert f"CONFIG={RELATIVE}\n" in host_env, "the .env keeps the operator's relative CONFIG"

    second = run_invoke("deploy", "--env", "sandbox", env=with_config(NEW))
    assert_no_secrets(second.stdout, second.stderr)
    assert second.returncode == 0, second.stdout + second.stderr
    manifest = json.loads(sorted(BACKUPS.glob("sandbox-*.json"))[-1].read_text())
    roots = {root["kind"]: root for root in manifest["roots"]}
    assert roots["config"]["path"] == str(CONFIG), roots
    assert roots["config"]["present"], roots
    archived = [Path(f["path"]) for f in manifest["files"]]
    assert any(path.is_relative_to(CONFIG / "web") for path in archived), archived[:20]
