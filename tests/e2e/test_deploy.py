"""`invoke deploy` end to end on the sandbox: real SSH, real dockerd, Compose v2, the registry.

Every test asserts what is on the host afterwards (containers, images, files, audit lines),
not only an exit code. Each starts from an empty sandbox (clean_sandbox).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from jitsi_ops import hoststate
from jitsi_ops.settings import Environment
from tests.e2e.conftest import REPO_ROOT, by_service, ctrl_c_reaches_children, run_invoke

STACK = Path("/srv/jitsi-ops-sandbox/stack")
BACKUPS = Path("/srv/jitsi-ops-sandbox/backups")
OLD, NEW, BROKEN = "stable-11146-1", "stable-11146-2", "standin-broken"


def at(release: str) -> dict[str, str]:
    return {"JITSI_OPS_JITSI_IMAGE_VERSION": release}


def secrets() -> list[str]:
    values = dotenv_values(REPO_ROOT / "env" / "sandbox" / "secrets.env")
    return [v for v in values.values() if v]


def assert_no_secrets(*texts: str) -> None:
    for value in secrets():
        for text in texts:
            assert value not in text, "a secret value appeared in output"


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = run_invoke("deploy", "--env", "sandbox", *args, env=env)
    assert_no_secrets(result.stdout, result.stderr)
    return result


def containers() -> dict[str, tuple[str, str, str]]:
    """service -> (container id, image, started at) of the sandbox project."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=jitsi-sandbox"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return {}
    inspected = json.loads(
        subprocess.run(
            ["docker", "inspect", *ids], capture_output=True, text=True, check=True
        ).stdout
    )
    return by_service(inspected)


def host_env() -> dict[str, str | None]:
    return dotenv_values(STACK / ".env", interpolate=False)


def audit_lines() -> list[dict[str, Any]]:
    path = STACK / ".jitsi-ops" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tree_listing(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, size, mtime_ns) of everything under the roots."""
    listing = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            st = path.lstat()
            listing[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return listing


@pytest.fixture
def deployed_old(clean_sandbox: Environment) -> Environment:
    """The sandbox running the older rootless release, deployed by jitsi-ops."""
    result = deploy(env=at(OLD))
    assert result.returncode == 0, result.stdout + result.stderr
    return clean_sandbox


def test_upgrade_between_releases_is_verified_recorded_and_backed_up(
    deployed_old: Environment,
) -> None:
    before = containers()
    assert {
        image.rsplit(":", 1)[1]
        for _, image, _ in before.values()
        if "/jitsi/" in image and "excalidraw" not in image and "etherpad" not in image
    } == {OLD}

    result = deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    for phase in ("lock", "preflight", "plan", "backup", "pull", "apply", "gate", "record"):
        assert f"  {phase} " in result.stdout, f"phase {phase} missing:\n{result.stdout}"
    assert f"deployed {NEW} (verified)" in result.stdout

    after = containers()
    jitsi = {s: img for s, (_, img, _) in after.items() if s in ("web", "prosody", "jicofo", "jvb")}
    assert jitsi == {s: f"127.0.0.1:5000/jitsi/{s}:{NEW}" for s in jitsi}, jitsi
    assert set(after) >= {"web", "prosody", "jicofo", "jvb", "etherpad", "whiteboard"}, after
    # Third-party services did not change: Compose must have left them alone.
    assert after["etherpad"][0] == before["etherpad"][0]
    assert host_env()["JITSI_IMAGE_VERSION"] == NEW

    state = json.loads((STACK / ".jitsi-ops" / "state.json").read_text())
    assert state["release"] == NEW
    assert all("sha256:" in d for d in state["digests"].values()), state["digests"]

    manifests = sorted(BACKUPS.glob("sandbox-*.json"))
    assert manifests, "no backup manifest"
    manifest = json.loads(manifests[-1].read_text())
    assert manifest["release"] == OLD, manifest["release"]
    archive = BACKUPS / f"{manifest['deploy_id']}.tar.gz"
    assert archive.stat().st_mode & 0o777 == 0o600
    assert any(f["path"].endswith("stack/.env") for f in manifest["files"])

    last = audit_lines()[-1]
    assert (last["action"], last["result"], last["from_release"], last["to_release"]) == (
        "deploy",
        "deployed",
        OLD,
        NEW,
    )
    history = (REPO_ROOT / ".jitsi-ops" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["deploy_id"] == last["deploy_id"]
    assert_no_secrets(json.dumps(audit_lines()), "\n".join(history), manifests[-1].read_text())


def test_noop_redeploy_restarts_nothing_and_dry_run_changes_nothing(
    deployed_old: Environment,
) -> None:
    before = containers()
    listing = tree_listing(STACK, BACKUPS, Path(deployed_old.config_dir))
    audit_before = len(audit_lines())

    dry = deploy("--dry-run", env=at(NEW))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: nothing was changed" in dry.stdout
    assert "jitsi/web" in dry.stdout and NEW in dry.stdout, dry.stdout
    assert containers() == before
    assert tree_listing(STACK, BACKUPS, Path(deployed_old.config_dir)) == listing
    assert len(audit_lines()) == audit_before, "a dry run wrote to the audit log"

    started = time.monotonic()
    again = deploy(env=at(OLD))
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout, again.stdout
    assert containers() == before, "a no-op redeploy restarted or recreated containers"
    assert not list(BACKUPS.glob("*.tar.gz"))[1:], "a no-op redeploy took another backup"
    print(f"no-op redeploy took {elapsed:.1f}s")


def test_failed_gate_rolls_back_automatically(deployed_old: Environment) -> None:
    before = containers()
    env_before = (STACK / ".env").read_bytes()

    result = deploy("--json", "--timeout", "20", env=at(BROKEN))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["result"] == "rolled-back", report["result"]
    assert report["verification"]["ok"] is False
    assert report["rollback"]["ok"] is True, report["rollback"]
    assert report["rollback"]["verification"]["ok"] is True

    after = containers()
    assert {s: img for s, (_, img, _) in after.items()} == {
        s: img for s, (_, img, _) in before.items()
    }
    assert (STACK / ".env").read_bytes() == env_before, "previous .env not restored"
    verify = run_invoke("verify", "--env", "sandbox", env=at(OLD))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert audit_lines()[-1]["result"] == "rolled-back"


def test_pull_failure_leaves_the_stack_untouched(deployed_old: Environment) -> None:
    """The registry is unreachable during pre-pull: the run ends there, nothing restarted."""
    before = containers()
    env_before = (STACK / ".env").read_bytes()
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    port = blackhole.getsockname()[1]
    blackhole.close()  # nothing listens there now: every pull is refused
    result = deploy(env={**at(NEW), "JITSI_OPS_JITSI_IMAGE_REPO": f"127.0.0.1:{port}/jitsi"})
    assert result.returncode == 1, result.stdout
    assert "pull " in result.stdout and "FAILED" in result.stdout, result.stdout
    assert containers() == before
    assert (STACK / ".env").read_bytes() == env_before
    assert not (STACK / ".jitsi-ops" / "lock").exists(), "lock left behind"


def test_second_deploy_is_refused_while_the_lock_is_held(deployed_old: Environment) -> None:
    from jitsi_ops.runner import LocalRunner  # noqa: PLC0415

    holder = hoststate.LockInfo(
        "alice", "laptop", 4242, "2026-11-26T06:00:00Z", "manual fix", "sandbox-x"
    )
    hoststate.acquire_lock(LocalRunner(), str(STACK), holder)
    try:
        before = containers()
        result = deploy(env=at(NEW))
        assert result.returncode == 1
        text = result.stdout + result.stderr
        assert "alice@laptop" in text and "manual fix" in text, text
        assert containers() == before
        shown = run_invoke("lock", "--env", "sandbox")
        assert "alice@laptop" in shown.stdout, shown.stdout
    finally:
        hoststate.break_lock(LocalRunner(), str(STACK))


def test_sigint_during_pull_releases_the_lock_and_changes_nothing(
    deployed_old: Environment,
) -> None:
    """A registry that accepts connections but never answers keeps `docker pull` waiting."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    before = containers()
    env_before = (STACK / ".env").read_bytes()
    with ctrl_c_reaches_children():
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "deploy", "--env", "sandbox"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **at(NEW), "JITSI_OPS_JITSI_IMAGE_REPO": f"127.0.0.1:{port}/jitsi"},
        )
    try:
        output = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            output += line
            if "pulling 1/" in line:
                time.sleep(1.0)
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=60)
        output += rest
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output
    assert "interrupted: lock released;" in output, output
    assert not (STACK / ".jitsi-ops" / "lock").exists(), f"lock left behind:\n{output}"
    assert containers() == before
    assert (STACK / ".env").read_bytes() == env_before
    assert_no_secrets(output)


def test_changed_host_key_refuses_deploy_before_any_command(
    deployed_old: Environment, tmp_path: Path
) -> None:
    repo = tmp_path / "ops"
    shutil.copytree(REPO_ROOT / "compose", repo / "compose")
    shutil.copytree(REPO_ROOT / "env", repo / "env")
    shutil.copy(REPO_ROOT / "tasks.py", repo / "tasks.py")
    testbed = REPO_ROOT / ".testbed"
    lines = (testbed / "known_hosts").read_text().splitlines()
    other = next(line.split(maxsplit=1)[1] for line in lines if line.startswith("10.231.1.2"))
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:2222 {other}\n")
    toml = repo / "env" / "sandbox" / "deploy.toml"
    toml.write_text(
        toml.read_text()
        .replace('config = "../../.testbed/ssh_config"', f'config = "{testbed / "ssh_config"}"')
        .replace(
            'known_hosts = "../../.testbed/known_hosts"',
            f'known_hosts = "{tmp_path / "known_hosts"}"',
        )
    )
    audit_before = audit_lines()
    result = run_invoke("deploy", "--env", "sandbox", root=repo)
    assert result.returncode == 1
    assert "HOST KEY CHANGED" in result.stdout + result.stderr, result.stdout + result.stderr
    assert audit_lines() == audit_before, "something ran on the host"


def test_manual_rollback_returns_to_the_state_before_the_last_deploy(
    deployed_old: Environment,
) -> None:
    before = {s: img for s, (_, img, _) in containers().items()}
    upgraded = deploy()
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert containers()["web"][1].endswith(f":{NEW}")

    result = run_invoke("rollback", "--env", "sandbox", "--yes")
    assert_no_secrets(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"({OLD}) (verified)" in result.stdout, result.stdout
    assert {s: img for s, (_, img, _) in containers().items()} == before
    assert host_env()["JITSI_IMAGE_VERSION"] == OLD
