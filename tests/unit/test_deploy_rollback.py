"""A failed or interrupted deploy from the migrate phase on is rolled back, and the rollback
undoes the migrations: the seed's 11031 -> 11146 upgrade on a "host" in tmp_path (files,
owners, modes, the backup and the restore for real; Docker canned), with `docker compose up`
failing or interrupted, on the main host and on a bridge host."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops.cli import deploy_tasks
from jitsi_ops.runner import Result
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.verify.model import VerifyReport
from tests.unit.fakehost import FakeDockerHost

REPO = Path(__file__).resolve().parents[2]
LEGACY, ROOTLESS = "stable-11031", "stable-11146-2"
PORT_TAKEN = "Bind for 127.0.0.1:8081 failed: port is already allocated"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners (chown to 1000) need root")


@dataclass
class Host(FakeDockerHost):
    """The fake host whose `docker compose ... up` can fail (a Compose error) or be interrupted
    (Ctrl-C arrives while it runs); only the first `up` after `arm` does."""

    fault: BaseException | str | None = None
    ups: list[tuple[str, ...]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        key = tuple(argv)
        if key[:2] == ("docker", "compose") and "up" in key:
            self.ups.append(key)
            fault, self.fault = self.fault, None
            if isinstance(fault, BaseException):
                self.calls.append(key)
                raise fault
            if isinstance(fault, str):
                self.calls.append(key)
                from jitsi_ops.runner import checked  # noqa: PLC0415

                return checked(Result(key, 1, "", fault), check)
        return super().run(argv, check=check, timeout=timeout, stdin=stdin)


def tree(*roots: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """path -> (type and mode, uid, gid, content) of everything below the roots."""
    out: dict[str, tuple[int, int, int, bytes]] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            if path.is_relative_to(root / ".jitsi-ops"):
                continue  # the lock and the audit log: the run's own bookkeeping
            st = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            out[str(path)] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


def local_files(env_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mode, p.read_bytes()) for p in sorted(env_dir.iterdir())}


class Seed:
    """A hand-made stable-11031 install (CONFIG + stack dir) and an adopted env/seed pinned to
    stable-11146-2, optionally with a bridge host that runs the same upgrade."""

    def __init__(self, tmp_path: Path, repo: Path, *, bridge: bool = False) -> None:
        self.host_root = tmp_path / "host"
        self.config = self.host_root / "cfg"
        self.stack = self.host_root / "handmade"
        self.backups = self.host_root / "backups"
        self.jvb_root = self.host_root / "jvb2"
        self.passwords = {
            "JICOFO_AUTH_PASSWORD": secrets.token_hex(16),
            "JVB_AUTH_PASSWORD": secrets.token_hex(16),
        }
        self._hand_made_config(self.config, full=True)
        self.stack.mkdir(parents=True)
        hand_env = (
            f"CONFIG={self.config}\nJITSI_IMAGE_REPO=127.0.0.1:5000/jitsi\n"
            f"JITSI_IMAGE_VERSION={LEGACY}\nDOCKER_HOST_ADDRESS=127.0.0.1\n"
            "ENABLE_COLIBRI_WEBSOCKET=0\nHTTP_PORT=8000\nHTTPS_PORT=8443\n"
            "PUBLIC_URL=https://meet.example.com:8443\n"
            + "".join(f"{k}={v}\n" for k, v in self.passwords.items())
        )
        write(self.stack / ".env", hand_env.encode(), 0o600)
        for name in ("docker-compose.yml", "etherpad.yml"):
            shutil.copy(REPO / "compose" / "legacy" / name, self.stack / name)
        self.env_dir = repo / "env" / "seed"
        self.env_dir.mkdir(parents=True)
        toml = (
            f'project = "handmade"\nstack_dir = "{self.stack}"\nuse_common_env = false\n'
            "test_environment = true\ninternet_facing = false\n\n"
            '[[hosts]]\naddress = "meet"\n'
        )
        if bridge:
            self._hand_made_config(self.jvb_root / "cfg", full=False)
            (self.jvb_root / "stack").mkdir(parents=True)
            # Deployed by jitsi-ops before: its .env names the compose file.
            bridge_env = "COMPOSE_FILE=jvb.yml\n" + hand_env.replace(
                str(self.config), str(self.jvb_root / "cfg")
            )
            write(self.jvb_root / "stack" / ".env", bridge_env.encode(), 0o600)
            shutil.copy(
                REPO / "compose" / "legacy" / "jvb.yml", self.jvb_root / "stack" / "jvb.yml"
            )
            toml += (
                '\n[[hosts]]\naddress = "jvb2"\nrole = "jvb"\n'
                f'stack_dir = "{self.jvb_root / "stack"}"\n'
                f'backup_dir = "{self.jvb_root / "backups"}"\n'
                f'values = {{ CONFIG = "{self.jvb_root / "cfg"}", '
                'JVB_XMPP_SERVER = "10.0.0.1", JVB_ADVERTISE_IPS = "127.0.0.1" }\n'
            )
        toml += f'\n[backup]\ndir = "{self.backups}"\nkeep = 5\n'
        (self.env_dir / "deploy.toml").write_text(toml)
        # A CRLF line and odd spacing: the operator's bytes, which a text round trip would lose.
        (self.env_dir / "jitsi.env").write_bytes(
            b"# adopted from the hand-made install\r\n"
            + f"CONFIG={self.config}\n".encode()
            + b"JITSI_IMAGE_REPO=127.0.0.1:5000/jitsi\n"
            + f"JITSI_IMAGE_VERSION={ROOTLESS}\n".encode()
            + b"DOCKER_HOST_ADDRESS=127.0.0.1   # the bridge's address\n"
            b"ENABLE_COLIBRI_WEBSOCKET=0\nHTTP_PORT=8000\nHTTPS_PORT=8443\n"
            b"PUBLIC_URL=https://meet.example.com:8443\nXMPP_PUBLISH_ADDRESS=10.0.0.1\n"
        )
        os.chmod(self.env_dir / "jitsi.env", 0o640)
        write(
            self.env_dir / "secrets.env",
            b"# by hand\n" + "".join(f"{k}={v}\n" for k, v in self.passwords.items()).encode(),
            0o600,
        )
        self.env: Environment = load_environment("seed", repo, environ={})
        docker = {
            ("docker", "version"): (0, "20.10.24\n", ""),
            ("docker", "compose", "version"): (0, "2.26.1\n", ""),
        }
        self.main = Host(label="meet", responses=dict(docker))
        self.bridge = Host(label="jvb2", responses=dict(docker))
        self.verified: list[str | None] = []

    @staticmethod
    def _hand_made_config(config: Path, *, full: bool) -> None:
        """CONFIG as the old images left it: web keys root-owned 0600, prosody data 0750 owned
        by the old prosody uid."""
        (config / "jvb").mkdir(parents=True)
        if not full:
            return
        (config / "web" / "keys").mkdir(parents=True)
        (config / "prosody" / "config" / "data").mkdir(parents=True)
        (config / "jicofo").mkdir()
        write(config / "web" / "keys" / "cert.key", b"key\n", 0o600)
        write(config / "prosody" / "config" / "data" / "alice.dat", b"alice\n", 0o640, 100, 102)
        os.chmod(config / "prosody" / "config" / "data", 0o750)  # noqa: S103
        os.chown(config / "prosody" / "config" / "data", 100, 102)

    def verifier(self, env: Environment, *_: Any) -> VerifyReport:
        self.verified.append(env.values.get("JITSI_IMAGE_VERSION"))
        return VerifyReport(env.name, env.release, (), 0.1, 10.0, "2026-01-01T00:00:00+00:00")

    def deploy(self) -> pipeline.DeployReport:
        bridges = {self.env.deploy.bridge_hosts[0]: self.bridge} if self.bridge_used else {}
        return pipeline.deploy(self.env, self.main, verifier=self.verifier, bridges=bridges)

    @property
    def bridge_used(self) -> bool:
        return bool(self.env.deploy.bridge_hosts)

    def host_tree(self) -> dict[str, tuple[int, int, int, bytes]]:
        roots = [self.config, self.stack]
        if self.bridge_used:
            roots += [self.jvb_root / "cfg", self.jvb_root / "stack"]
        return tree(*roots)


def write(path: Path, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)
    os.chown(path, uid, gid)


@pytest.fixture
def seed(tmp_path: Path, scratch_repo: Path) -> Seed:
    return Seed(tmp_path, scratch_repo)


def assert_rolled_back_to_the_backup(
    seed: Seed,
    report: pipeline.DeployReport,
    host_before: dict[str, Any],
    files_before: dict[str, Any],
) -> None:
    phases = {p.name: p.status for p in report.phases}
    assert phases.get("migrate") == "ok", report.phases
    assert phases.get("rollback") == "ok", report.phases
    assert report.result == "rolled-back", (report.result, report.error)
    assert not report.ok
    assert report.rollback is not None and report.rollback.ok
    assert seed.verified[-1] == LEGACY, "the rollback gate verified the restored release"
    # CONFIG and the stack dir as the backup took them: storage/ gone, the 11146 chown undone,
    # the old .env and every compose file back.
    after = seed.host_tree()
    assert [p for p in after if p not in host_before] == [], "left behind by the upgrade"
    changed = {p: (host_before[p][:3], after.get(p, ())[:3]) for p in host_before}
    assert {p: v for p, v in changed.items() if v[0] != v[1]} == {}, "owners/modes differ"
    assert after == host_before
    cert = seed.config / "web" / "keys" / "cert.key"
    assert (cert.stat().st_uid, stat.S_IMODE(cert.stat().st_mode)) == (0, 0o600)
    # env/seed as it was before the migrate phase rewrote it, byte for byte, modes too.
    assert local_files(seed.env_dir) == files_before, "env/seed was not put back"
    flat = [" ".join(c) for c in seed.main.calls]
    failed_up = flat.index(" ".join(seed.main.ups[0]))
    after_failure = flat[failed_up + 1 :]
    assert any(" down " in f"{c} " for c in after_failure), after_failure
    assert any(c.startswith("tar ") and "--directory=/" in c for c in after_failure)
    last_up = [c for c in after_failure if " up -d " in f"{c} "][-1]
    assert f"{seed.stack}/docker-compose.yml" in last_up and "etherpad" not in last_up
    assert not (seed.stack / ".jitsi-ops" / "lock").exists(), "lock left behind"
    shown = report.error + str(report.as_dict()) + deploy_tasks._summary(report)
    for value in seed.passwords.values():
        assert value not in shown


@as_root
def test_compose_up_error_after_migrate_restores_config_stack_and_env_files(seed: Seed) -> None:
    host_before, files_before = seed.host_tree(), local_files(seed.env_dir)
    seed.main.fault = PORT_TAKEN
    report = seed.deploy()
    assert_rolled_back_to_the_backup(seed, report, host_before, files_before)
    assert PORT_TAKEN in report.error, report.error
    summary = deploy_tasks._summary(report)
    assert "rolled back to stable-11031" in summary and "(verified)" in summary, summary
    assert "was not changed" not in summary, summary


@as_root
def test_ctrl_c_during_apply_rolls_back_the_same_way(seed: Seed) -> None:
    host_before, files_before = seed.host_tree(), local_files(seed.env_dir)
    seed.main.fault = KeyboardInterrupt()
    report = seed.deploy()
    assert_rolled_back_to_the_backup(seed, report, host_before, files_before)
    summary = deploy_tasks._summary(report)
    assert summary.startswith("INTERRUPTED"), summary
    assert "rolled back to stable-11031" in summary and "(verified)" in summary, summary


@as_root
def test_a_rollback_that_fails_says_manual_action_with_the_backup_and_command(
    seed: Seed,
) -> None:
    files_before = local_files(seed.env_dir)
    seed.main.fault = PORT_TAKEN
    original = seed.main.run

    def broken_tar(argv: Sequence[str], **kw: Any) -> Result:
        if seed.main.ups and argv[0] == "tar" and "--directory=/" in argv:  # restoring
            return original(["false"], **kw)
        return original(argv, **kw)

    seed.main.run = broken_tar  # type: ignore[method-assign]
    report = seed.deploy()
    assert report.result == "rollback-failed", (report.result, report.error)
    assert report.backup_id
    summary = deploy_tasks._summary(report)
    assert "manual action needed" in summary, summary
    assert f"invoke restore --env seed --backup {report.backup_id}" in summary, summary
    # The local files do not depend on the host: they are back anyway.
    assert local_files(seed.env_dir) == files_before


@as_root
def test_a_second_ctrl_c_during_the_rollback_is_reported_truthfully(seed: Seed) -> None:
    seed.main.fault = PORT_TAKEN
    original = seed.main.run

    def interrupted_restore(argv: Sequence[str], **kw: Any) -> Result:
        if seed.main.ups and argv[0] == "tar" and "--directory=/" in argv:  # Ctrl-C again
            raise KeyboardInterrupt
        return original(argv, **kw)

    seed.main.run = interrupted_restore  # type: ignore[method-assign]
    report = seed.deploy()
    assert report.result == "rollback-failed", (report.result, report.error)
    summary = deploy_tasks._summary(report)
    assert "interrupted" in summary and "manual action needed" in summary, summary
    assert f"--backup {report.backup_id}" in summary, summary
    assert not (seed.stack / ".jitsi-ops" / "lock").exists(), "lock left behind"


def test_compose_up_error_without_migrations_puts_the_previous_files_back(
    seed: Seed,
) -> None:
    """A redeploy of the running release with a changed value: no migration ran, so the
    previous files and images come back without a restore."""
    jitsi = seed.env_dir / "jitsi.env"
    jitsi.write_bytes(jitsi.read_bytes().replace(ROOTLESS.encode(), LEGACY.encode()))
    seed.env = load_environment("seed", seed.env_dir.parents[1], environ={})
    env_before = (seed.stack / ".env").read_bytes()
    seed.main.fault = PORT_TAKEN
    report = seed.deploy()
    assert report.result == "rolled-back", (report.result, report.error)
    assert "migrate" not in {p.name for p in report.phases if p.status == "ok"}
    assert (seed.stack / ".env").read_bytes() == env_before
    assert not any(c[0] == "tar" and "--same-owner" in c for c in seed.main.calls)
    assert seed.verified == [LEGACY]


@as_root
def test_every_changed_bridge_host_is_rolled_back_from_its_own_backup(
    tmp_path: Path, scratch_repo: Path
) -> None:
    seed = Seed(tmp_path, scratch_repo, bridge=True)
    host_before, files_before = seed.host_tree(), local_files(seed.env_dir)
    seed.bridge.fault = PORT_TAKEN  # the bridge's own `up` fails after the main host's worked
    report = seed.deploy()
    assert report.result == "rolled-back", (report.result, report.error)
    assert seed.host_tree() == host_before
    assert local_files(seed.env_dir) == files_before
    assert not (seed.jvb_root / "cfg" / "storage").exists()
    assert any(c[0] == "tar" and "--directory=/" in c for c in seed.bridge.calls)
    rollback = next(p for p in report.phases if p.name == "rollback")
    assert "jvb2" in rollback.detail, rollback.detail


# --- waiting for what an interrupt left running on the host ----------------------------------------

COMPOSE_UP = (
    "/usr/libexec/docker/cli-plugins/docker-compose compose --project-directory /srv/handmade "
    "-p handmade -f /srv/handmade/docker-compose.yml up -d jicofo jvb prosody"
)


@pytest.mark.parametrize(
    ("line", "busy"),
    [
        (f"4242 {COMPOSE_UP}", True),
        ("4243 docker compose --project-directory /srv/handmade -p handmade up -d", True),
        ("4244 chown -R 1000:1000 -- /srv/cfg/web/keys", True),
        ("4245 find -P /srv/cfg -mindepth 1 -exec chown -R 1000:1000 -- {} +", True),
        ("4246 vim /srv/handmade/.env", False),  # the operator's editor is not ours
        ("4247 docker compose --project-directory /srv/handmade2 -p other up -d", False),
        ("4248 python3 /app/jvb.py", False),
        ("4249 sh", False),
    ],
)
def test_busy_with_finds_only_own_commands_on_the_stack_or_config(line: str, busy: bool) -> None:
    from jitsi_ops import rollback  # noqa: PLC0415

    found = rollback.busy_with(f"  1 /sbin/init\n{line}\n", ["/srv/handmade", "/srv/cfg/"])
    assert bool(found) == busy, found


def test_settle_waits_until_an_orphaned_compose_up_has_ended() -> None:
    from jitsi_ops import rollback  # noqa: PLC0415
    from jitsi_ops.runner import RecordingRunner  # noqa: PLC0415

    answers = [f"7 {COMPOSE_UP}\n", f"7 {COMPOSE_UP}\n", "1 /sbin/init\n"]

    class Ps(RecordingRunner):
        def run(self, argv: Sequence[str], **_kw: Any) -> Result:
            self.calls.append(tuple(argv))
            return Result(tuple(argv), 0, answers.pop(0) if answers else "", "")

    runner = Ps()
    assert rollback.settle(runner, ["/srv/handmade"], poll=0) == ""
    assert len(runner.calls) == 3, runner.calls
    answers[:] = [f"7 {COMPOSE_UP}\n"] * 3
    still = rollback.settle(runner, ["/srv/handmade"], timeout=0, poll=0)
    assert still.startswith("still running after 0s: ") and "docker-compose" in still, still


def test_the_first_ctrl_c_during_a_rollback_is_noted_the_second_abandons_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    from jitsi_ops import rollback  # noqa: PLC0415

    steps = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started by a non-interactive `&`

    def two_interrupts() -> None:
        with rollback.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes of this thread
            steps.append("went on after the first Ctrl-C")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            steps.append("not reached")

    with pytest.raises(KeyboardInterrupt):
        two_interrupts()
    assert steps == ["went on after the first Ctrl-C"], steps
    assert "press Ctrl-C again to abandon the rollback" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before, "handler not restored"


@as_root
def test_a_rolled_back_stack_that_fails_verification_says_so(seed: Seed) -> None:
    from jitsi_ops.verify.model import Outcome  # noqa: PLC0415

    def verifier(env: Environment, *_: Any) -> VerifyReport:
        failing = Outcome("https", "meet", "main", "HTTPS answers", "fail", "refused", "", 1, 0.1)
        return VerifyReport(env.name, env.release, (failing,), 0.1, 10.0, "")

    seed.verifier = verifier  # type: ignore[method-assign]
    seed.main.fault = PORT_TAKEN
    report = seed.deploy()
    assert report.result == "rolled-back-unverified", (report.result, report.error)
    assert report.rollback is not None and report.rollback.done and not report.rollback.ok
    summary = deploy_tasks._summary(report)
    assert "rolled back to stable-11031" in summary, summary
    assert "did not pass verification" in summary and "invoke verify --env seed" in summary
    assert f"invoke restore --env seed --backup {report.backup_id}" in summary, summary


@pytest.mark.parametrize(
    ("result", "phases", "expected"),
    [
        ("failed", [("pull", "failed")], "FAILED: boom; the stack was not changed"),
        (
            "interrupted",
            [("backup", "failed")],
            "interrupted: lock released; the stack was not changed",
        ),
        # Ctrl-C while the lock was given back after a verified deploy.
        ("interrupted", [("apply", "ok"), ("record", "ok")], "interrupted: lock released; boom"),
        # Deployed and verified, then the record (or the unlock) failed: no "not changed".
        ("failed", [("apply", "ok"), ("gate", "ok"), ("record", "failed")], "FAILED: boom"),
    ],
)
def test_summary_claims_an_unchanged_stack_only_before_anything_changed(
    result: str, phases: list[tuple[str, str]], expected: str
) -> None:
    report = pipeline.DeployReport("seed", "seed-x", LEGACY, ROOTLESS, result=result, error="boom")
    report.lock = "released"
    report.phases = [pipeline.PhaseResult(name, status, 0.1) for name, status in phases]  # type: ignore[arg-type]
    assert deploy_tasks._summary(report) == expected


@as_root
def test_env_file_edited_during_the_deploy_stops_the_migration_before_the_host_changes(
    seed: Seed,
) -> None:
    """The operator edits jitsi.env while the images are pulled: the migrate phase refuses to
    overwrite it; nothing on the host changed, so no restore (no stop of the stack) runs and
    the operator's edit stays."""
    host_before = seed.host_tree()
    jitsi = seed.env_dir / "jitsi.env"
    original = seed.main.run

    def edit_while_pulling(argv: Sequence[str], **kw: Any) -> Result:
        if tuple(argv[:2]) == ("docker", "pull") and b"TZ=" not in jitsi.read_bytes():
            jitsi.write_bytes(jitsi.read_bytes() + b"TZ=Europe/Berlin\n")
        return original(argv, **kw)

    seed.main.run = edit_while_pulling  # type: ignore[method-assign]
    edited_mode = jitsi.stat().st_mode
    report = seed.deploy()
    assert report.result == "rolled-back", (report.result, report.error)
    assert "changed while the deploy was running" in report.error, report.error
    assert not any(c[0] == "tar" and "--same-owner" in c for c in seed.main.calls)
    assert not any(c[:2] == ("docker", "compose") and "down" in c for c in seed.main.calls)
    assert seed.host_tree() == host_before
    assert (
        jitsi.read_bytes().endswith(b"TZ=Europe/Berlin\n") and jitsi.stat().st_mode == edited_mode
    )


def test_the_rollback_gate_sees_each_bridge_host_as_it_was(
    tmp_path: Path, scratch_repo: Path
) -> None:
    """The gate after a rollback verifies a bridge host against the previous values with the
    host's own deploy.toml values on top, not against this run's target or its overrides."""
    seed = Seed(tmp_path, scratch_repo, bridge=True)
    env = load_environment("seed", scratch_repo, environ={"JITSI_OPS_JVB_COLIBRI_PORT": "55317"})
    previous = (seed.stack / ".env").read_text()
    bridge = env.deploy.bridge_hosts[0]
    assert env.for_host(bridge).values["JVB_COLIBRI_PORT"] == "55317"  # the target's view
    was = pipeline.environment_of(env, previous).for_host(bridge).values
    assert was["JITSI_IMAGE_VERSION"] == LEGACY, was["JITSI_IMAGE_VERSION"]
    assert "JVB_COLIBRI_PORT" not in was, "this run's override leaked into the rollback gate"
    assert was["CONFIG"] == str(seed.jvb_root / "cfg"), "the bridge's own values are kept"
    assert was["JVB_XMPP_SERVER"] == "10.0.0.1"
    main = pipeline.environment_of(env, previous)
    assert main.for_host(env.deploy.main_host).values["CONFIG"] == str(seed.config)
