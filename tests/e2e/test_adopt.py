"""The seed scenario end to end: a docker-jitsi-meet install made by hand, adopted, upgraded
across stable-11146, and restored; plus a truncated backup refused while the stack runs.

The hand-made install is done the way the seed's author did it: the release's compose files
unpacked into a directory, a `.env` written from env.example with passwords made by hand,
`docker compose up -d` in that directory (project name = directory name), an internal-auth
account created with prosodyctl. Everything runs on the testbed's sandbox host (loopback sshd,
the machine's dockerd, the local registry, the stand-in images).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values

from jitsi_ops.settings import Environment
from tests.e2e.conftest import REPO_ROOT, SANDBOX_ROOT, run_invoke

SANDBOX = Path(SANDBOX_ROOT)
HANDMADE = SANDBOX / "handmade"  # the unpacked release archive
HANDCFG = SANDBOX / "handmade-cfg"  # CONFIG
SEED_BACKUPS = SANDBOX / "seed-backups"
PROJECT = "handmade"  # what `docker compose up` in HANDMADE calls the project
TESTBED = REPO_ROOT / ".testbed"
LEGACY, ROOTLESS = "stable-11031", "stable-11146-2"
BOSH_URL = "https://127.0.0.1:8443/http-bind"
XMPP_DOMAIN = "meet.jitsi"
# The passwords the seed's .env had: made by hand, before stable-9753 (no transcriber password).
HAND_SECRETS = (
    "JICOFO_AUTH_PASSWORD",
    "JVB_AUTH_PASSWORD",
    "JIGASI_XMPP_PASSWORD",
    "JIBRI_RECORDER_PASSWORD",
    "JIBRI_XMPP_PASSWORD",
)


# --- the operator's side: shell, docker, files ---------------------------------------------------


def operator_env() -> dict[str, str]:
    """A login shell's environment: nothing from this test process reaches Compose (a variable
    in the shell would override the .env for services that list it, e.g. TZ)."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("HOME", "/root")
    return env


def sh(
    *argv: str, cwd: Path | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=operator_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(argv)}: {result.stdout}{result.stderr}"
    return result


def containers(project: str = PROJECT) -> dict[str, tuple[str, str]]:
    """service -> (container id, image reference) of a compose project."""
    label = f"label=com.docker.compose.project={project}"
    ids = sh("docker", "ps", "-aq", "--no-trunc", "--filter", label).stdout.split()
    if not ids:
        return {}
    inspected = json.loads(sh("docker", "inspect", *ids).stdout)
    return {
        c["Config"]["Labels"]["com.docker.compose.service"]: (c["Id"], c["Config"]["Image"])
        for c in inspected
    }


def remove_project(project: str) -> None:
    """Containers, networks and volumes of a compose project, whatever files it came from."""
    label = f"label=com.docker.compose.project={project}"
    for kind, remove in (
        (["ps", "-aq"], ["rm", "-f", "-v"]),
        (["network", "ls", "-q"], ["network", "rm"]),
        (["volume", "ls", "-q"], ["volume", "rm", "-f"]),
    ):
        found = sh("docker", *kind, "--filter", label, check=False).stdout.split()
        if found:
            sh("docker", *remove, *found, check=False)


def tree(root: Path, *, times: bool) -> dict[str, tuple[int, ...]]:
    """path -> (mode, uid, gid[, size, mtime]) of everything below root.

    Unix sockets are left out: a backup cannot hold them (they are skipped and recorded), and
    the service recreates its own at start with whatever mode its umask gives.
    """
    out: dict[str, tuple[int, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))] if root.exists() else []:
        st = path.lstat()
        if stat.S_ISSOCK(st.st_mode):
            continue
        fields: tuple[int, ...] = (st.st_mode, st.st_uid, st.st_gid)
        out[str(path)] = (*fields, st.st_size, st.st_mtime_ns) if times else fields
    return out


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError, ValueError, KeyError):
            pass
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- XMPP over BOSH and jicofo's stats -----------------------------------------------------------


def bosh_login(user: str, password: str) -> bool:
    """SASL PLAIN login of user@meet.jitsi through PUBLIC_URL's /http-bind (XEP-0206).

    True on <success/>, False on <failure/>; anything else raises (retried by wait_for).
    """
    session = requests.Session()
    session.trust_env = False
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    rid = secrets.randbelow(10**9) + 10**6

    def post(body: str) -> str:
        with warnings.catch_warnings():
            # Loopback and a self-signed certificate: this helper checks XMPP, not TLS.
            warnings.simplefilter("ignore")
            response = session.post(BOSH_URL, data=body, headers=headers, verify=False, timeout=30)
        response.raise_for_status()
        return response.text

    text = post(
        f"<body content='text/xml; charset=utf-8' hold='1' rid='{rid}' to='{XMPP_DOMAIN}' "
        "ver='1.6' wait='10' xml:lang='en' xmlns='http://jabber.org/protocol/httpbind' "
        "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
    )
    match = re.search(r"sid=['\"]([^'\"]+)['\"]", text)
    if match is None:
        raise ValueError(f"no BOSH session: {text[:200]}")
    sid = match[1]
    for _ in range(3):  # the stream features may come with the next poll
        if "PLAIN" in text:
            break
        rid += 1
        text = post(f"<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'/>")
    if "PLAIN" not in text:
        raise ValueError(f"no SASL PLAIN offered: {text[:300]}")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    rid += 1
    text = post(
        f"<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'>"
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth></body>"
    )
    for _ in range(3):
        if "<success" in text or "<failure" in text:
            break
        rid += 1
        text = post(f"<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'/>")
    rid += 1
    with contextlib.suppress(requests.RequestException):
        post(
            f"<body rid='{rid}' sid='{sid}' type='terminate' "
            "xmlns='http://jabber.org/protocol/httpbind'/>"
        )
    if "<success" in text:
        return True
    if "<failure" in text:
        return False
    raise ValueError(f"no SASL outcome: {text[:300]}")


def operational_bridges() -> int:
    """jicofo's count of bridges in the brewery (JICOFO_ENABLE_REST=1 publishes 127.0.0.1:8888)."""
    session = requests.Session()
    session.trust_env = False
    stats = session.get("http://127.0.0.1:8888/stats", timeout=10).json()
    return int(stats["bridge_selector"]["operational_bridge_count"])


def serves(user: str, password: str) -> None:
    """The stack is up: the account logs in, a wrong password does not, jicofo has its bridge."""
    wait_for(lambda: bosh_login(user, password), 180, f"BOSH login of {user}")
    assert bosh_login(user, password + "-wrong") is False, "a wrong password was accepted"
    wait_for(lambda: operational_bridges() >= 1, 120, "jicofo to see its bridge")


# --- the hand-made install -------------------------------------------------------------------------


def hand_made_env(passwords: dict[str, str]) -> str:
    """The .env as the seed's author wrote it from env.example."""
    lines = [
        "# Jitsi Meet, installed by hand from the stable-11031 release archive",
        f"CONFIG={HANDCFG}",
        "HTTP_PORT=8000",
        "HTTPS_PORT=8443",
        "TZ=UTC",
        "PUBLIC_URL=https://127.0.0.1:8443",
        "PUBLISH_ADDRESS=127.0.0.1",
        "ENABLE_IPV6=0",
        "JITSI_IMAGE_REPO=127.0.0.1:5000/jitsi",
        f"JITSI_IMAGE_VERSION={LEGACY}",
        "ETHERPAD_IMAGE=127.0.0.1:5000/jitsi/etherpad:2.0.3",
        "WHITEBOARD_IMAGE=127.0.0.1:5000/jitsi/excalidraw-backend:2026.3.0",
        "ENABLE_AUTH=1",
        "AUTH_TYPE=internal",
        "ENABLE_COLIBRI_WEBSOCKET=0",
        "DOCKER_HOST_ADDRESS=127.0.0.1",
        "JICOFO_ENABLE_REST=1",
        "COLIBRI_REST_ENABLED=1",
        "JICOFO_ENABLE_HEALTH_CHECKS=1",
        "",
        "# Security: generated by hand (openssl rand -hex 16)",
        *(f"{key}={value}" for key, value in passwords.items()),
    ]
    return "\n".join(lines) + "\n"


def install_by_hand(passwords: dict[str, str], user: str, password: str) -> None:
    HANDMADE.mkdir(parents=True)
    for compose_file in sorted((REPO_ROOT / "compose" / "legacy").glob("*.yml")):
        shutil.copy(compose_file, HANDMADE / compose_file.name)
    env_file = HANDMADE / ".env"
    env_file.write_text(hand_made_env(passwords))
    # The operator protected the file that holds every password.
    env_file.chmod(0o600)
    for sub in (
        "web",
        "transcripts",
        "prosody/config",
        "prosody/prosody-plugins-custom",
        "jicofo",
        "jvb",
        "jigasi",
        "jibri",
    ):
        (HANDCFG / sub).mkdir(parents=True, exist_ok=True)
    sh("docker", "compose", "up", "-d", cwd=HANDMADE, timeout=600)
    # The handbook's way to create an internal-auth account (legacy layout: config in /config).
    register = (
        "docker", "compose", "exec", "-T", "prosody",
        "prosodyctl", "--config", "/config/prosody.cfg.lua", "register", user, XMPP_DOMAIN, password,
    )  # fmt: skip
    wait_for(
        lambda: sh(*register, cwd=HANDMADE, check=False).returncode == 0,
        120,
        "prosodyctl register",
    )
    serves(user, password)


@pytest.fixture
def sandbox_clean_of_handmade(clean_sandbox: Environment) -> Iterator[Environment]:
    """No sandbox stack and no hand-made project before and after (they share ports)."""
    remove_project(PROJECT)
    yield clean_sandbox
    remove_project(PROJECT)
    shutil.rmtree(HANDMADE, ignore_errors=True)
    shutil.rmtree(HANDCFG, ignore_errors=True)
    shutil.rmtree(SEED_BACKUPS, ignore_errors=True)


def scratch_repo(tmp_path: Path) -> Path:
    """An operator's jitsi-ops checkout without any environment yet."""
    repo = tmp_path / "ops"
    (repo / "env").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "compose", repo / "compose")
    shutil.copy(REPO_ROOT / "env" / "common.env", repo / "env" / "common.env")
    shutil.copy(REPO_ROOT / "tasks.py", repo / "tasks.py")
    return repo


class Outputs:
    """Every captured output, checked for secrets at the end."""

    def __init__(self, passwords: dict[str, str], repo: Path) -> None:
        self.passwords = passwords
        self.repo = repo
        self.texts: list[str] = []

    def invoke(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_invoke(*args, root=self.repo)
        self.texts += [result.stdout, result.stderr]
        return result

    def assert_no_secrets(self, *extra: str) -> None:
        values = list(self.passwords.values())
        secrets_file = self.repo / "env" / "seed" / "secrets.env"
        if secrets_file.exists():
            values += [v for v in dotenv_values(secrets_file).values() if v]
        for text in [*self.texts, *extra]:
            for value in values:
                assert value not in text, "a secret value appeared in output"


def test_seed_scenario_adopt_upgrade_across_11146_and_restore(
    sandbox_clean_of_handmade: Environment, tmp_path: Path
) -> None:
    passwords = {key: secrets.token_hex(16) for key in HAND_SECRETS}
    user, password = "alice", secrets.token_hex(8)
    install_by_hand(passwords, user, password)
    repo = scratch_repo(tmp_path)
    out = Outputs({**passwords, "user": password}, repo)

    # --- adopt: discovers the install, writes env/seed, backs up, changes nothing else ---------
    running = containers()
    assert set(running) == {"web", "prosody", "jicofo", "jvb"}, running
    stack_before = tree(HANDMADE, times=True)
    config_before = tree(HANDCFG, times=False)
    adopted = out.invoke(
        "adopt",
        "--env", "seed",
        "--from", str(HANDMADE),
        "--host", "sandbox",
        "--ssh-config", str(TESTBED / "ssh_config"),
        "--known-hosts", str(TESTBED / "known_hosts"),
        "--backup-dir", str(SEED_BACKUPS),
        "--json",
    )  # fmt: skip
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    report = json.loads(adopted.stdout)
    found = report["discovered"]
    print("adopt discovered:", json.dumps(found, indent=2))  # quoted in the closing note
    assert found["project"] == PROJECT, found
    assert "com.docker.compose.project label" in found["project_source"], found
    assert found["compose_files"] == ["docker-compose.yml"], found
    assert found["present_files"] == sorted(p.name for p in HANDMADE.glob("*.yml")), found
    assert found["config_dir"] == str(HANDCFG), found
    assert (found["release"], found["running_release"]) == (LEGACY, LEGACY), found
    assert set(found["services"]) == {"web", "prosody", "jicofo", "jvb"}
    for service, info in found["services"].items():
        assert info["id"] == running[service][0], (service, info)
        assert info["image"] == f"127.0.0.1:5000/jitsi/{service}:{LEGACY}", info
        assert "@sha256:" in (info["digest"] or ""), info
    assert sorted(found["secret_keys"]) == sorted(HAND_SECRETS)
    # Nothing changed on the host: same containers, same files (the backup is elsewhere).
    assert containers() == running, "adopt restarted or recreated containers"
    assert tree(HANDMADE, times=True) == stack_before, "adopt changed the install directory"
    assert tree(HANDCFG, times=False) == config_before, "adopt changed CONFIG"
    backup_id = report["backup"]["id"]
    assert (SEED_BACKUPS / f"{backup_id}.tar.gz").is_file()
    assert (SEED_BACKUPS / f"{backup_id}.json").is_file()
    assert set(report["backup"]["roots"]) == {str(HANDCFG), str(HANDMADE)}
    assert report["plan"]["services_to_recreate"] == [], report["plan"]
    # The environment: secrets byte for byte, the rest in jitsi.env, the install's paths.
    env_dir = repo / "env" / "seed"
    assert dotenv_values(env_dir / "secrets.env") == passwords
    assert (env_dir / "secrets.env").stat().st_mode & 0o777 == 0o600
    jitsi = dotenv_values(env_dir / "jitsi.env")
    assert jitsi["CONFIG"] == str(HANDCFG) and jitsi["JITSI_IMAGE_VERSION"] == LEGACY
    assert jitsi["DOCKER_HOST_ADDRESS"] == "127.0.0.1", "adopt must not migrate anything yet"
    toml_path = env_dir / "deploy.toml"
    toml = toml_path.read_text()
    assert f'project = "{PROJECT}"' in toml and f'stack_dir = "{HANDMADE}"' in toml, toml
    assert "use_common_env = false" in toml
    # A lab: PUBLIC_URL is an IP address, the bridge private, the certificate self-signed.
    toml_path.write_text(
        toml.replace(
            "use_common_env = false\n",
            "use_common_env = false\ntest_environment = true\ninternet_facing = false\n",
        )
        + "\n[verify]\ntimeout = 150\ntrust_host_certificate = true\n"
    )

    # --- deploy the same release: files rewritten, no container recreated ---------------------
    same = out.invoke("deploy", "--env", "seed")
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"deployed {LEGACY} (verified)" in same.stdout, same.stdout
    assert containers() == running, "the first deploy after adopt recreated containers"
    assert (HANDMADE / ".env").read_text().startswith("# Rendered by jitsi-ops")
    assert dotenv_values(HANDMADE / ".env")["COMPOSE_PROJECT_NAME"] == PROJECT
    assert sorted(p.name for p in HANDMADE.glob("*.yml")) == ["docker-compose.yml"]
    state = json.loads((HANDMADE / ".jitsi-ops" / "state.json").read_text())
    assert state["release"] == LEGACY and state["project"] == PROJECT

    # --- pin the rootless release: the plan lists the 11146 steps before anything runs -----------
    jitsi_env = env_dir / "jitsi.env"
    jitsi_env.write_text(
        jitsi_env.read_text().replace(
            f"JITSI_IMAGE_VERSION={LEGACY}", f"JITSI_IMAGE_VERSION={ROOTLESS}"
        )
    )
    stack_before = tree(HANDMADE, times=True)
    config_before = tree(HANDCFG, times=False)
    planned = out.invoke("plan", "--env", "seed")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    for expected in (
        "migrations (run in the migrate phase, after backup and pull):",
        f"{LEGACY} (state.json) -> {ROOTLESS}",
        "stable-11146: rootless images",
        ".env: rename DOCKER_HOST_ADDRESS -> JVB_ADVERTISE_IPS",
        ".env: drop ENABLE_COLIBRI_WEBSOCKET",
        ".env: generate the new secret JIGASI_TRANSCRIBER_PASSWORD",
        f"$ mkdir -p -m 0755 -- {HANDCFG}/storage/web",
        f"$ chown 1000:1000 -- {HANDCFG}/storage/web",
        "-exec chown -R 1000:1000",
        f"{ROOTLESS}",
    ):
        assert expected in planned.stdout, f"{expected!r} not in the plan:\n{planned.stdout}"
    assert containers() == running and tree(HANDMADE, times=True) == stack_before
    assert tree(HANDCFG, times=False) == config_before, "`invoke plan` changed CONFIG"
    assert dotenv_values(env_dir / "jitsi.env")["DOCKER_HOST_ADDRESS"] == "127.0.0.1"

    # --- deploy it: migrated, the account and the bridge survive ------------------------------
    upgraded = out.invoke("deploy", "--env", "seed")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert f"deployed {ROOTLESS} (verified)" in upgraded.stdout, upgraded.stdout
    assert "  migrate " in upgraded.stdout, upgraded.stdout
    after = containers()
    assert {s: img for s, (_, img) in after.items()} == {
        s: f"127.0.0.1:5000/jitsi/{s}:{ROOTLESS}" for s in ("web", "prosody", "jicofo", "jvb")
    }, after
    for sub in ("storage/web", "storage/prosody", "storage/jibri", "storage/transcripts"):
        assert (HANDCFG / sub).stat().st_uid == 1000, sub
    assert (HANDCFG / "web" / "keys" / "cert.key").stat().st_uid == 1000
    assert (HANDCFG / "web" / "keys" / "cert.key").stat().st_mode & 0o777 == 0o600
    assert (HANDCFG / "prosody" / "config" / "data").stat().st_uid == 1000
    assert (HANDCFG / "web").stat().st_uid == 0, "CONFIG/web itself must not change owner"
    assert (HANDCFG / "jvb").stat().st_uid == 0
    migrated = dotenv_values(env_dir / "jitsi.env")
    assert (
        migrated.get("JVB_ADVERTISE_IPS") == "127.0.0.1" and "DOCKER_HOST_ADDRESS" not in migrated
    )
    assert "ENABLE_COLIBRI_WEBSOCKET" not in migrated
    assert migrated["JITSI_IMAGE_REPO"] == "127.0.0.1:5000/jitsi", "a mirror is kept"
    kept = dotenv_values(env_dir / "secrets.env")
    assert {k: kept[k] for k in HAND_SECRETS} == passwords, "an existing secret changed"
    assert re.fullmatch(r"[0-9a-f]{32}", kept.get("JIGASI_TRANSCRIBER_PASSWORD") or "")
    host_env = dotenv_values(HANDMADE / ".env")
    assert host_env["JIGASI_TRANSCRIBER_PASSWORD"] == kept["JIGASI_TRANSCRIBER_PASSWORD"]
    assert "DOCKER_HOST_ADDRESS" not in host_env and "ENABLE_COLIBRI_WEBSOCKET" not in host_env
    serves(user, password)  # prosody's data was copied to storage/ because it was readable
    verified = out.invoke("verify", "--env", "seed")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    again = out.invoke("deploy", "--env", "seed")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert containers() == after

    # --- back to the adopted release: restore the adopt backup --------------------------------
    restored = out.invoke("restore", "--env", "seed", "--backup", backup_id, "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored {backup_id} ({LEGACY}) (verified)" in restored.stdout, restored.stdout
    back = containers()
    assert {s: img for s, (_, img) in back.items()} == {
        s: f"127.0.0.1:5000/jitsi/{s}:{LEGACY}" for s in ("web", "prosody", "jicofo", "jvb")
    }, back
    assert (HANDMADE / ".env").read_text() == hand_made_env(passwords)
    assert sorted(p.name for p in HANDMADE.glob("*.yml")) == sorted(
        p.name for p in (REPO_ROOT / "compose" / "legacy").glob("*.yml")
    )
    assert not (HANDCFG / "storage").exists(), "storage/ from the upgrade was left behind"
    assert (HANDCFG / "web" / "keys" / "cert.key").stat().st_uid == 0, "owners not restored"
    data = HANDCFG / "prosody" / "config" / "data"
    assert tree(data, times=False) == {
        k: v for k, v in config_before.items() if k == str(data) or k.startswith(f"{data}/")
    }, "prosody's data did not come back with its owners and modes"
    serves(user, password)
    audit = (HANDMADE / ".jitsi-ops" / "audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["action"] == "restore"
    out.assert_no_secrets(*audit, (SEED_BACKUPS / f"{backup_id}.json").read_text())


def test_truncated_backup_is_refused_with_the_stack_still_running(
    clean_sandbox: Environment,
) -> None:
    deployed = run_invoke("deploy", "--env", "sandbox")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    taken = run_invoke("backup", "--env", "sandbox")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    match = re.search(r"backup (sandbox-\d{8}T\d{6}Z-[0-9a-f]{6}) ", taken.stdout)
    assert match, taken.stdout
    backup_id = match[1]
    archive = Path(clean_sandbox.deploy.backup.dir) / f"{backup_id}.tar.gz"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    before = containers("jitsi-sandbox")
    env_before = (Path(clean_sandbox.deploy.stack_dir) / ".env").read_bytes()

    result = run_invoke("restore", "--env", "sandbox", "--backup", backup_id, "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED" in result.stdout and "refusing" in result.stdout, result.stdout
    assert containers("jitsi-sandbox") == before, "a refused restore touched the stack"
    assert (Path(clean_sandbox.deploy.stack_dir) / ".env").read_bytes() == env_before
    assert not (Path(clean_sandbox.deploy.stack_dir) / ".jitsi-ops" / "lock").exists()
    verify = run_invoke("verify", "--env", "sandbox")
    assert verify.returncode == 0, verify.stdout + verify.stderr
