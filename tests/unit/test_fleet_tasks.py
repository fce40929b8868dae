"""Every task on every host (issue 12 item 4): restore/rollback of a backup set, `backup` and
`backups` on every host, `logs --host`. Hosts are folders in tmp_path (real files, GNU tar)
or recording runners; Docker is canned."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import backup, restore
from jitsi_ops.cli import backup_tasks, deploy_tasks, restore_tasks
from jitsi_ops.cli import common as cli_common
from jitsi_ops.runner import LocalRunner, RecordingRunner, Runner
from jitsi_ops.settings import Environment, Host
from jitsi_ops.verify.model import VerifyReport
from tests.unit.fakehost import FakeDockerHost
from tests.unit.taskrun import run_task
from tests.unit.test_restore import SECRET, Scene

BRIDGE = Host("b", role="jvb")


class TwoHosts:
    """Scene's main host plus a bridge host "b" with its own CONFIG, stack and backup dirs,
    both backed up under the scene's backup id (a set, as a deploy takes it)."""

    def __init__(self, tmp_path: Path, *, bridge_in_set: bool = True) -> None:
        self.main = Scene(tmp_path)
        self.root = tmp_path / "jvb"
        self.config = self.root / "cfg"
        self.stack = self.root / "stack"
        self.backups = self.root / "backups"
        (self.config / "jvb").mkdir(parents=True)
        self.stack.mkdir(parents=True)
        (self.config / "jvb" / "jvb.conf").write_text("bridge config\n")
        self.env_text = "COMPOSE_FILE=jvb.yml\nJITSI_IMAGE_VERSION=stable-11031\n"
        (self.stack / ".env").write_text(self.env_text)
        os.chmod(self.stack / ".env", 0o600)
        (self.stack / "jvb.yml").write_text("services: {jvb: {image: j}}\n")
        self.host = dataclasses.replace(
            BRIDGE,
            stack_dir=str(self.stack),
            backup_dir=str(self.backups),
            values=(("CONFIG", str(self.config)),),
        )
        deploy = dataclasses.replace(
            self.main.env.deploy, hosts=(*self.main.env.deploy.hosts, self.host)
        )
        self.env: Environment = dataclasses.replace(self.main.env, deploy=deploy)
        self.runner = FakeDockerHost(label="b")
        self.backup_id = self.main.manifest.deploy_id
        if bridge_in_set:
            backup.create_backup(
                self.env.for_host(self.host),
                self.runner,
                self.backup_id,
                release="stable-11031",
                digests={},
            )
        self.runner.calls.clear()

    def upgrade(self) -> None:
        self.main.upgrade()
        (self.stack / ".env").write_text("COMPOSE_FILE=jvb.yml\nJITSI_IMAGE_VERSION=new\n")
        (self.config / "jvb" / "jvb.conf").write_text("upgraded\n")
        (self.config / "jvb" / "new.conf").write_text("added by the upgrade\n")

    def restore(self, **kw: Any) -> restore.RestoreReport:
        kw.setdefault("confirm", lambda _summary: True)
        return restore.restore(
            self.env,
            self.main.runner,
            self.backup_id,
            bridges={self.host: self.runner},
            **kw,
        )

    def stopped(self, runner: FakeDockerHost) -> bool:
        return any("down" in call for call in runner.docker_calls())


def verifier_seeing(seen: list[Any]) -> Any:
    def verify(env: Environment, runners: Any, _timeout: float) -> VerifyReport:
        seen.append(dict(runners))
        return VerifyReport(env.name, env.release, (), 0.1, 10.0, "2026-01-01T00:00:00+00:00")

    return verify


def test_restore_of_a_set_brings_back_every_host_and_verifies_them_all(tmp_path: Path) -> None:
    scene = TwoHosts(tmp_path)
    main_before = scene.main.listing()
    scene.upgrade()
    seen: list[Any] = []
    lines: list[str] = []
    report = scene.restore(verifier=verifier_seeing(seen), say=lines.append)
    assert report.result == "restored", report.error
    assert scene.main.listing() == main_before, "main host not restored"
    assert (scene.config / "jvb" / "jvb.conf").read_text() == "bridge config\n"
    assert not (scene.config / "jvb" / "new.conf").exists(), "bridge host not restored"
    assert (scene.stack / ".env").read_text() == scene.env_text
    up = [c for c in scene.runner.docker_calls() if "up" in c]
    assert up and f"{scene.stack}/jvb.yml" in up[0], scene.runner.docker_calls()
    assert [p.result for p in report.hosts] == ["restored", "restored"]
    # One safety backup set: the same id on both hosts, so the restore can itself be undone.
    assert report.safety_backup_id
    for directory in (scene.main.backups, scene.backups):
        assert (directory / f"{report.safety_backup_id}.tar.gz").exists(), directory
    # The verification sees every host; the main host's lock guarded both.
    assert len(seen) == 1 and set(seen[0]) == {scene.env.deploy.main_host, scene.host}
    assert not any("lock" in " ".join(c) for c in scene.runner.calls if c[0] == "mkdir")
    data = report.as_dict()
    assert [h["host"] for h in data["hosts"]] == ["h", "b"] and data["not_in_set"] == []
    assert any(line.startswith("b: ") for line in lines), lines
    assert SECRET not in json.dumps(data) + "\n".join(lines)


def test_a_bad_bridge_archive_refuses_before_anything_stops_anywhere(tmp_path: Path) -> None:
    scene = TwoHosts(tmp_path)
    archive_file = scene.backups / f"{scene.backup_id}.tar.gz"
    data = bytearray(archive_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive_file.write_bytes(bytes(data))
    scene.upgrade()
    report = scene.restore()
    assert report.result == "refused", report.error
    assert report.error.startswith("b: "), report.error
    assert not scene.stopped(scene.main.runner), "the main host was stopped"
    assert not scene.stopped(scene.runner), "the bridge host was stopped"
    assert (scene.config / "jvb" / "new.conf").exists()
    assert not report.started


def test_a_set_without_the_bridges_part_restores_the_rest_and_says_so(tmp_path: Path) -> None:
    scene = TwoHosts(tmp_path, bridge_in_set=False)
    scene.upgrade()
    summary: list[str] = []
    report = scene.restore(confirm=lambda lines: bool(summary.extend(lines)) or True)
    assert report.result == "restored", report.error
    assert report.not_in_set == ["b"]
    assert [p.result for p in report.hosts] == ["restored", "not-in-set"]
    assert any("not in backup" in line and "b" in line for line in summary), summary
    assert not scene.stopped(scene.runner), "a host outside the set was touched"
    assert (scene.config / "jvb" / "new.conf").exists()


def test_rollback_task_restores_every_host_and_reports_per_host(
    tmp_path: Path,
    scratch_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = TwoHosts(tmp_path)
    env_dir = scratch_repo / "env" / "prod"
    env_dir.mkdir()
    (env_dir / "deploy.toml").write_text(
        f'project = "handmade"\nstack_dir = "{scene.main.stack}"\n\n[[hosts]]\naddress = "h"\n\n'
        f'[[hosts]]\naddress = "b"\nrole = "jvb"\nstack_dir = "{scene.stack}"\n'
        f'backup_dir = "{scene.backups}"\nvalues = {{ CONFIG = "{scene.config}" }}\n\n'
        f'[backup]\ndir = "{scene.main.backups}"\n'
    )
    (env_dir / "jitsi.env").write_text(f"CONFIG={scene.main.config}\n")
    runners = {"h": scene.main.runner, "b": scene.runner}
    monkeypatch.setattr(cli_common, "connect", lambda _env, host: runners[host.address])
    monkeypatch.setattr(restore_tasks, "default_verifier", verifier_seeing([]))
    scene.upgrade()
    code = run_task(restore_tasks, scratch_repo, "rollback", "--env", "prod", "--yes", "--json")
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(out)
    assert data["backup_id"] == scene.backup_id
    assert [(h["host"], h["result"]) for h in data["hosts"]] == [
        ("h", "restored"),
        ("b", "restored"),
    ]
    assert not (scene.config / "jvb" / "new.conf").exists()
    assert "note: this restores the main host only" not in out


# --- backup and backups --------------------------------------------------------------------------


def two_host_repo(scratch_repo: Path, tmp_path: Path) -> dict[str, Path]:
    dirs = {
        name: tmp_path / name for name in ("cfg", "stack", "bk", "bcfg", "bstack", "bbk", "ccfg")
    }
    for name in ("cfg", "stack", "bcfg", "bstack"):
        dirs[name].mkdir()
    (dirs["cfg"] / "web").mkdir()
    (dirs["cfg"] / "web" / "config.js").write_text("x\n")
    (dirs["bcfg"] / "jvb.conf").write_text("y\n")
    env_dir = scratch_repo / "env" / "two"
    env_dir.mkdir()
    (env_dir / "deploy.toml").write_text(
        f'stack_dir = "{dirs["stack"]}"\n\n[[hosts]]\naddress = "m"\n\n'
        f'[[hosts]]\naddress = "b"\nrole = "jvb"\nstack_dir = "{dirs["bstack"]}"\n'
        f'backup_dir = "{dirs["bbk"]}"\nvalues = {{ CONFIG = "{dirs["bcfg"]}" }}\n\n'
        # c: a bridge host that has nothing yet (its CONFIG and stack dir do not exist)
        f'[[hosts]]\naddress = "c"\nrole = "jvb"\nstack_dir = "{tmp_path}/cstack"\n'
        f'backup_dir = "{tmp_path}/cbk"\nvalues = {{ CONFIG = "{dirs["ccfg"]}" }}\n\n'
        f'[backup]\ndir = "{dirs["bk"]}"\nkeep = 2\n'
    )
    (env_dir / "jitsi.env").write_text(
        f"PUBLIC_URL=https://meet.example.com\nCONFIG={dirs['cfg']}\n"
        "JITSI_IMAGE_VERSION=stable-11146-2\n"
    )
    return dirs


def test_backup_backs_up_every_host_under_one_id_and_backups_lists_them_per_host(
    scratch_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dirs = two_host_repo(scratch_repo, tmp_path)
    runners = {name: LocalRunner(f"{name}-host") for name in "mbc"}
    monkeypatch.setattr(cli_common, "connect", lambda _env, host: runners[host.address])
    monkeypatch.setattr(backup, "running_digests", lambda _env, _runner: {})
    assert run_task(backup_tasks, scratch_repo, "backup", "--env", "two") == 0
    out = capsys.readouterr().out
    ids = {p.name[: -len(".json")] for p in dirs["bk"].glob("*.json")}
    (backup_id,) = ids
    assert {p.name for p in dirs["bbk"].glob("*.json")} == {f"{backup_id}.json"}, out
    assert not (tmp_path / "cbk").exists(), "a host with nothing was backed up"
    assert f"m-host: backup {backup_id}" in out and f"b-host: backup {backup_id}" in out
    assert "c-host: nothing to back up" in out
    assert f"backup set {backup_id}: m-host, b-host" in out
    # The main host's lock guarded the set; the audit line names the hosts.
    audit = (dirs["stack"] / ".jitsi-ops" / "audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["hosts"] == ["m-host", "b-host"]
    assert not (dirs["bstack"] / ".jitsi-ops" / "lock").exists()

    assert run_task(backup_tasks, scratch_repo, "backups", "--env", "two") == 0
    table = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("ID"))
    assert table[header].split() == ["ID", "TIME", "RELEASE", "HOST", "SIZE"]
    rows = [line.split() for line in table[header + 1 : header + 3]]
    assert [(r[0], r[4]) for r in rows] == [(backup_id, "m"), (backup_id, "b")], table
    assert any("no backups in" in line and line.endswith(" on c") for line in table), table

    assert run_task(backup_tasks, scratch_repo, "backups", "--env", "two", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [(h["host"], len(h["backups"])) for h in data["hosts"]] == [
        ("m", 1),
        ("b", 1),
        ("c", 0),
    ]
    assert data["backups"][0]["id"] == backup_id  # the main host's, as before


# --- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, RecordingRunner]:
    """env/example's two hosts, each its own recording runner answering compose logs."""
    runners = {
        name: RecordingRunner(label=name) for name in ("meet.example.com", "jvb2.example.com")
    }
    for name, runner in runners.items():
        runner.responses[("docker", "compose")] = (0, f"svc-1  | line from {name}\n", "")
    connected: list[str] = []

    def connect(_env: Environment, host: Host) -> Runner:
        connected.append(host.address)
        return runners[host.address]

    monkeypatch.setattr(cli_common, "connect", connect)
    return runners


def logs_calls(runner: RecordingRunner) -> list[tuple[str, ...]]:
    return [c for c in runner.calls if c[:2] == ("docker", "compose") and "logs" in c]


def test_logs_default_to_every_host_each_line_prefixed(
    scratch_repo: Path, hosts: dict[str, RecordingRunner], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_task(deploy_tasks, scratch_repo, "logs", "--env", "example") == 0
    out = capsys.readouterr().out
    assert out == (
        "meet.example.com: svc-1  | line from meet.example.com\n"
        "jvb2.example.com: svc-1  | line from jvb2.example.com\n"
    ), out
    (bridge_call,) = logs_calls(hosts["jvb2.example.com"])
    assert "jvb.yml" in " ".join(bridge_call) and "docker-compose.yml" not in " ".join(
        bridge_call
    ), bridge_call


@pytest.mark.parametrize(
    ("name", "chosen"), [("jvb2.example.com", "jvb2.example.com"), ("main", "meet.example.com")]
)
def test_logs_of_one_host(
    scratch_repo: Path,
    hosts: dict[str, RecordingRunner],
    capsys: pytest.CaptureFixture[str],
    name: str,
    chosen: str,
) -> None:
    assert run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--host", name) == 0
    assert capsys.readouterr().out == f"svc-1  | line from {chosen}\n"
    other = next(n for n in hosts if n != chosen)
    assert logs_calls(hosts[other]) == [] and hosts[other].calls == []


def test_logs_of_an_unknown_host_is_a_one_line_error_with_the_hosts(
    scratch_repo: Path, hosts: dict[str, RecordingRunner], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--host", "jvb9")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[0] == "error: example has no host 'jvb9'", err
    assert err[1].startswith("hint: ") and "jvb2.example.com" in err[1], err
    assert all(r.calls == [] for r in hosts.values()), "a host was contacted"


def test_logs_of_a_service_only_where_it_runs(
    scratch_repo: Path, hosts: dict[str, RecordingRunner], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_task(deploy_tasks, scratch_repo, "logs", "--env", "example", "--service", "web") == 0
    assert logs_calls(hosts["jvb2.example.com"]) == []
    assert len(logs_calls(hosts["meet.example.com"])) == 1
    capsys.readouterr()
    code = run_task(
        deploy_tasks,
        scratch_repo,
        "logs",
        "--env",
        "example",
        "--service",
        "web",
        "--host",
        "jvb2.example.com",
    )
    assert code == 1
    assert "has no service 'web'" in capsys.readouterr().err
