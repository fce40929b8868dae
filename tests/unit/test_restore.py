"""`invoke restore` on a "host" in tmp_path: a real backup (GNU tar, find, sha256sum), then the
host changed the way an upgrade changes it, then restored for real with GNU tar; Docker canned.
Refusals (truncated, corrupted, foreign, malicious archives) happen before anything stops."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from jitsi_ops import archive, backup, restore
from jitsi_ops.backup import FileEntry, HostEntry, Manifest, Omitted, Root
from jitsi_ops.cli import common as cli_common
from jitsi_ops.cli import restore_tasks
from jitsi_ops.envfile import Entry
from jitsi_ops.hoststate import new_deploy_id
from jitsi_ops.runner import Result
from jitsi_ops.settings import BackupOptions, DeploySettings, Environment, Host, Layer
from jitsi_ops.verify.model import VerifyReport
from tests import crafted
from tests.fixtures.restore import capture as restore_capture
from tests.unit.fakehost import FakeDockerHost
from tests.unit.taskrun import run_task

REPO = Path(__file__).resolve().parents[2]
SECRET = "restore-secret-never-printed"
DIGEST = "127.0.0.1:5000/jitsi/web@sha256:" + "d" * 64
CUSTOM_CONFIG = "config.startWithAudioMuted = true;\r\nconfig.subject = 'Réunion';\r\n"
CUSTOM_INTERFACE = "interfaceConfig.APP_NAME = 'Ours';\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="numeric owners need root")


# --- pure parts ------------------------------------------------------------------------------


def manifest_of(files: list[FileEntry], excluded: tuple[str, ...] = ()) -> Manifest:
    return Manifest(
        env="prod",
        deploy_id="prod-20260101T000000Z-abcdef",
        created=backup.deploy_id_time("prod-20260101T000000Z-abcdef"),  # type: ignore[arg-type]
        host="h",
        release="stable-11031",
        digests={},
        roots=(Root("config", "/c", "/c"), Root("stack", "/s", "/s")),
        excluded=tuple(Omitted(p, "why") for p in excluded),
        skipped=(),
        archive_name="x.tar.gz",
        archive_size=1,
        archive_sha256="0" * 64,
        files=tuple(files),
    )


def host(kind: str, path: str, target: str = "") -> HostEntry:
    return HostEntry(kind, 0o755, 0, 0, 0, "1:1", 1, path, target)


def entry(path: str, kind: str = "file", target: str = "") -> FileEntry:
    return FileEntry(path, kind, 0o644, 0, 0, target=target)  # type: ignore[arg-type]


def test_stale_paths_are_minimal_and_spare_roots_and_excluded_paths() -> None:
    manifest = manifest_of(
        [
            entry("/c", "dir"),
            entry("/c/web", "dir"),
            entry("/c/web/key"),
            entry("/c/link", "symlink", "web/key"),
            entry("/c/was-dir", "dir"),
            entry("/s", "dir"),
            entry("/s/.env"),
        ],
        excluded=("/c/storage/jibri/recordings", "/s/.jitsi-ops/lock"),
    )
    found = [
        host("d", "/c"),
        host("d", "/c/web"),
        host("f", "/c/web/key"),
        host("f", "/c/web/new.js"),  # created after the backup
        host("l", "/c/link", "elsewhere"),  # retargeted symlink
        host("f", "/c/was-dir"),  # a directory became a file
        host("d", "/c/storage"),  # new, but holds excluded recordings
        host("d", "/c/storage/jibri"),
        host("d", "/c/storage/prosody"),  # new: goes
        host("f", "/c/storage/prosody/alice.dat"),  # inside a removed dir: not listed
        host("d", "/s"),
        host("d", "/s/.jitsi-ops"),  # holds the lock: stays
        host("f", "/s/.jitsi-ops/state.json"),  # not in this backup: goes
        host("f", "/s/.env"),
        host("f", "/elsewhere/x"),  # outside the roots: never
    ]
    assert restore.stale_paths(found, manifest) == [
        "/c/link",
        "/c/storage/prosody",
        "/c/was-dir",
        "/c/web/new.js",
        "/s/.jitsi-ops/state.json",
    ]


def test_tar_extract_keeps_numeric_owners_and_modes() -> None:
    assert restore.tar_extract("/b/x.tar.gz") == [
        "tar",
        "--extract",
        "--gzip",
        "--preserve-permissions",
        "--same-owner",
        "--numeric-owner",
        "--directory=/",
        "--file=/b/x.tar.gz",
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {".env": b"COMPOSE_FILE=docker-compose.yml:etherpad.yml\n"},
            ["docker-compose.yml", "etherpad.yml"],
        ),
        (
            {".env": b"A=1\n", "docker-compose.yml": b"", "docker-compose.override.yml": b""},
            ["docker-compose.yml", "docker-compose.override.yml"],
        ),
        ({".env": b"A=1\n", "etherpad.yml": b""}, []),
    ],
)
def test_restored_compose_names(files: dict[str, bytes], expected: list[str]) -> None:
    assert restore.RestoredStack("/s", files).compose_names == expected


ACCEPTED = (Root("config", "/c", "/c"), Root("stack", "/s", "/s"))


@pytest.mark.parametrize(
    ("roots", "refused"),
    [
        (ACCEPTED, None),
        ((Root("stack", "/s", "/s/../s"), Root("config", "/c", "~/c", present=False)), None),
        ((*ACCEPTED, Root("config", "/etc", "/etc")), "config root /etc"),
        ((Root("config", "/elsewhere", "/c"), ACCEPTED[1]), "config root /elsewhere"),
        ((Root("config", "/s", "/s"), Root("stack", "/c", "/c")), "config root /s"),
        ((ACCEPTED[0], Root("stack", "/s/../etc", "/s")), "stack root /s/../etc"),
        ((ACCEPTED[0], Root("stack", "//s", "/s")), "stack root //s"),
        ((ACCEPTED[0], Root("stack", "/s/", "/s")), "stack root /s/"),
        ((*ACCEPTED, Root("stack", "/", "/", present=False)), "stack root /,"),
    ],
    ids=[
        "own",
        "own-in-any-order-whatever-configured-says",
        "added",
        "moved",
        "kinds-swapped",
        "dot-dot",
        "double-slash",
        "trailing-slash",
        "absent-slash",
    ],
)
def test_only_the_environments_own_roots_are_accepted(
    roots: tuple[Root, ...], refused: str | None
) -> None:
    manifest = replace(manifest_of([]), roots=roots)
    if refused is None:
        restore.check_roots(manifest, ACCEPTED)
        return
    with pytest.raises(archive.RestoreRefused) as caught:
        restore.check_roots(manifest, ACCEPTED)
    assert refused in caught.value.message, caught.value.message
    assert "\n" not in caught.value.message and caught.value.hint


def test_realpath_missing_ok() -> None:
    assert restore.realpath_missing_ok("/srv/c") == ["realpath", "-m", "--", "/srv/c"]


def test_accepted_roots_are_resolved_on_the_host_for_each_host(tmp_path: Path) -> None:
    """A symlinked CONFIG is accepted where it leads; a stack dir that does not exist yet is
    resolved through its existing parents; a bridge host's view brings its own stack dir."""
    (tmp_path / "data" / "config").mkdir(parents=True)
    (tmp_path / "config").symlink_to(tmp_path / "data" / "config")
    (tmp_path / "opt").symlink_to(tmp_path / "data")
    bridge = Host("b", role="jvb", stack_dir=str(tmp_path / "bridge-stack"))
    env = Environment(
        name="prod",
        root=tmp_path,
        deploy=DeploySettings(hosts=(Host("h"), bridge), stack_dir=str(tmp_path / "opt/stack")),
        layers=(Layer("jitsi.env", (Entry("CONFIG", str(tmp_path / "config"), True, 1),)),),
        values=MappingProxyType({"CONFIG": str(tmp_path / "config")}),
        origins=MappingProxyType({}),
    )
    runner = FakeDockerHost(label="h")
    assert [(r.kind, r.path) for r in restore.accepted_roots(env, runner)] == [
        ("config", str(tmp_path / "data" / "config")),
        ("stack", str(tmp_path / "data" / "stack")),
    ]
    assert restore.accepted_roots(env.for_host(bridge), runner)[1].path == str(
        tmp_path / "bridge-stack"
    )


def captured(name: str) -> Result:
    """One GNU tar listing captured by tests/fixtures/restore/capture.py."""
    data = json.loads((REPO / "tests" / "fixtures" / "restore" / name).read_text())
    return Result(tuple(data["argv"]), data["exit_code"], data["stdout"], data["stderr"])


VISIBLE_MANIFEST = replace(manifest_of([]), files=crafted.file_entries(restore_capture.VISIBLE))


def test_gnu_listing_of_the_manifests_archive_passes() -> None:
    restore.check_gnu_listing(captured("tar-list-clean.json"), VISIBLE_MANIFEST)


def test_gnu_listing_that_skipped_a_damaged_header_is_refused() -> None:
    with pytest.raises(archive.RestoreRefused) as caught:
        restore.check_gnu_listing(captured("tar-list-damaged-header.json"), VISIBLE_MANIFEST)
    assert caught.value.message == (
        "refusing x.tar.gz: GNU tar's listing of it exited 2 "
        "(tar: Skipping to next header | tar: Exiting with failure status due to previous errors)"
    )
    assert "nothing was stopped" in caught.value.hint


def with_cert_key(**changes: int) -> tuple[FileEntry, ...]:
    return tuple(
        replace(f, **changes) if f.path.endswith("cert.key") else f  # type: ignore[arg-type]
        for f in VISIBLE_MANIFEST.files
    )


@pytest.mark.parametrize(
    ("fixture", "files", "expected"),
    [
        (
            "tar-list-damaged-header.json",
            VISIBLE_MANIFEST.files,
            "/srv/jitsi/config/web/suid is not in the manifest",
        ),
        (
            "tar-list-clean.json",
            with_cert_key(mode=0o640),
            "/srv/jitsi/config/web/cert.key: mode 0600 != 0640",
        ),
        ("tar-list-clean.json", with_cert_key(uid=0), "owner 1000:1000 != 0:1000"),
        ("tar-list-clean.json", with_cert_key(size=5), "size 4 != 5"),
        (
            "tar-list-clean.json",
            (*VISIBLE_MANIFEST.files, entry("/srv/jitsi/stack/x", "symlink", "y")),
            "/srv/jitsi/stack/x is missing from the archive",
        ),
    ],
    ids=["extra-member", "mode", "owner", "size", "missing"],
)
def test_gnu_listing_is_compared_member_by_member(
    fixture: str, files: tuple[FileEntry, ...], expected: str
) -> None:
    """Even with exit status 0, what GNU tar lists must be exactly the manifest's files."""
    listing = replace(captured(fixture), exit_code=0)
    with pytest.raises(archive.RestoreRefused) as caught:
        restore.check_gnu_listing(listing, replace(VISIBLE_MANIFEST, files=files))
    assert "GNU tar's listing of it differs from the manifest" in caught.value.message
    assert expected in caught.value.message, caught.value.message


# --- for real on tmp_path --------------------------------------------------------------------


class Scene:
    """CONFIG + stack dir on the "host", an environment for them, a real backup of them."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.host = tmp_path / "host"
        self.config = self.host / "cfg"
        self.stack = self.host / "stack"
        self.backups = self.host / "backups"
        (self.config / "web" / "keys").mkdir(parents=True)
        (self.config / "prosody" / "config" / "data").mkdir(parents=True)
        (self.config / "jibri" / "recordings").mkdir(parents=True)
        (self.stack / ".jitsi-ops").mkdir(parents=True)
        self.write(self.config / "web" / "keys" / "cert.key", "key\n", 0o600)
        self.write(
            self.config / "prosody" / "config" / "data" / "alice.dat", "alice\n", 0o640, 100, 102
        )
        os.chmod(self.config / "prosody" / "config" / "data", 0o750)  # noqa: S103
        if os.geteuid() == 0:
            os.chown(self.config / "prosody" / "config" / "data", 100, 102)
        self.write(self.config / "jibri" / "recordings" / "old.mp4", "rec\n", 0o644)
        # The operator's web customizations (what an upgrade must not lose, issue 11).
        self.write(self.config / "web" / "custom-config.js", CUSTOM_CONFIG, 0o640, 1000, 1000)
        self.write(self.config / "web" / "custom-interface_config.js", CUSTOM_INTERFACE, 0o644)
        env_text = (
            f"CONFIG={self.config}\nJITSI_IMAGE_REPO=127.0.0.1:5000/jitsi\n"
            "JITSI_IMAGE_VERSION=stable-11031\nHTTP_PORT=8000\nHTTPS_PORT=8443\n"
            f"JVB_AUTH_PASSWORD={SECRET}\n"
        )
        self.write(self.stack / ".env", env_text, 0o600)
        shutil.copy(
            REPO / "compose" / "legacy" / "docker-compose.yml", self.stack / "docker-compose.yml"
        )
        (self.stack / ".jitsi-ops" / "audit.log").write_text("")
        self.env = Environment(
            name="prod",
            root=tmp_path,
            deploy=DeploySettings(
                hosts=(Host("h"),),
                project="handmade",
                stack_dir=str(self.stack),
                backup=BackupOptions(dir=str(self.backups), keep=5),
            ),
            layers=(),
            values=MappingProxyType({"CONFIG": str(self.config), "JVB_AUTH_PASSWORD": SECRET}),
            origins=MappingProxyType({}),
        )
        self.runner = FakeDockerHost(label="h")
        self.manifest = backup.create_backup(
            self.env,
            self.runner,
            new_deploy_id("prod"),
            release="stable-11031",
            digests={"web": DIGEST},
        )
        self.archive = self.backups / self.manifest.archive_name
        self.runner.calls.clear()

    @staticmethod
    def write(path: Path, text: str, mode: int, uid: int = 0, gid: int = 0) -> None:
        path.write_text(text)
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)

    def listing(
        self, *, skip_excluded: bool = True
    ) -> dict[str, tuple[int, int, int, bytes | str]]:
        out: dict[str, tuple[int, int, int, bytes | str]] = {}
        for path in sorted(self.host.rglob("*")):
            if path.is_relative_to(self.backups):
                continue
            if skip_excluded and (
                path.is_relative_to(self.config / "jibri" / "recordings")
                or path.name in ("audit.log", "lock")
                or path.is_relative_to(self.stack / ".jitsi-ops" / "lock")
            ):
                continue
            st = path.lstat()
            content: bytes | str = (
                os.readlink(path)
                if path.is_symlink()
                else path.read_bytes()
                if path.is_file()
                else b""
            )
            out[str(path)] = (
                stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                content,
            )
        return out

    def upgrade(self) -> None:
        """What a rootless upgrade does to the host after the backup."""
        (self.stack / ".env").write_text("JITSI_IMAGE_VERSION=stable-11146-2\n")
        (self.stack / "docker-compose.yml").write_text("services: {}\n")
        (self.stack / "etherpad.yml").write_text("services: {}\n")
        (self.stack / ".jitsi-ops" / "state.json").write_text("{}\n")
        for sub in ("storage/prosody/data", "tmp/web-load-test"):
            (self.config / sub).mkdir(parents=True)
        (self.config / "storage" / "prosody" / "data" / "alice.dat").write_text("copied\n")
        os.chmod(self.config / "web" / "keys" / "cert.key", 0o644)
        if os.geteuid() == 0:
            os.chown(self.config / "web" / "keys" / "cert.key", 1000, 1000)
        (self.config / "prosody" / "config" / "data" / "alice.dat").unlink()
        (self.config / "web" / "stray").symlink_to("/etc")
        # The customizations lost the way an operator loses them: one removed, one edited.
        (self.config / "web" / "custom-config.js").unlink()
        (self.config / "web" / "custom-interface_config.js").write_text("// emptied\n")
        (self.config / "jibri" / "recordings" / "new.mp4").write_text("new recording\n")

    def restore(self, **kw: Any) -> restore.RestoreReport:
        kw.setdefault("confirm", lambda _summary: True)
        return restore.restore(self.env, self.runner, self.manifest.deploy_id, **kw)


def ok_verifier(env: Environment, *_: Any) -> VerifyReport:
    assert env.values["JITSI_IMAGE_VERSION"] == "stable-11031", "verified the restored values"
    return VerifyReport(env.name, env.release, (), 0.1, 10.0, "2026-01-01T00:00:00+00:00")


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return Scene(tmp_path)


@as_root
def test_restore_puts_back_owners_modes_and_content_and_removes_what_came_after(
    scene: Scene,
) -> None:
    before = scene.listing()
    scene.upgrade()
    assert scene.listing() != before
    lines: list[str] = []
    report = scene.restore(verifier=ok_verifier, say=lines.append)
    assert report.result == "restored", report.error
    assert scene.listing() == before, "the restored tree differs from the backed-up one"
    assert (scene.config / "jibri" / "recordings" / "new.mp4").exists(), "excluded path touched"
    assert set(report.removed) == {
        str(scene.config / "storage"),
        str(scene.config / "tmp"),
        str(scene.config / "web" / "stray"),
        str(scene.stack / "etherpad.yml"),
        str(scene.stack / ".jitsi-ops" / "state.json"),
    }
    assert (
        report.safety_backup_id and (scene.backups / f"{report.safety_backup_id}.tar.gz").exists()
    )
    assert not (scene.stack / ".jitsi-ops" / "lock").exists()

    flat = [" ".join(c) for c in scene.runner.calls]
    order = [
        next(i for i, c in enumerate(flat) if c.startswith(f"docker pull --quiet {DIGEST}")),
        next(i for i, c in enumerate(flat) if " down " in f"{c} "),
        next(
            i
            for i, c in enumerate(flat)
            if c.startswith("tar --extract --gzip --preserve-permissions")
        ),
        next(
            i
            for i, c in enumerate(flat)
            if c.startswith(f"docker tag {DIGEST} 127.0.0.1:5000/jitsi/web:stable-11031")
        ),
        next(i for i, c in enumerate(flat) if " up -d " in f"{c} "),
    ]
    assert order == sorted(order), flat
    down = next(c for c in scene.runner.calls if "down" in c)
    assert "-p" in down and "handmade" in down
    up = next(c for c in scene.runner.calls if "up" in c and c[0] == "docker")
    assert f"{scene.stack}/docker-compose.yml" in up
    # The host's archive is checked with GNU tar's listing, then before and after the stop.
    assert (
        sum(1 for c in flat if c.startswith("sha256sum") and scene.manifest.archive_name in c) == 3
    )
    listing = next(i for i, c in enumerate(flat) if c.startswith("tar --list"))
    assert listing < order[1], "GNU tar's listing must come before the stop"
    audit = (scene.stack / ".jitsi-ops" / "audit.log").read_text().splitlines()
    record = json.loads(audit[-1])
    assert (record["action"], record["result"], record["backup_id"]) == (
        "restore",
        "restored",
        scene.manifest.deploy_id,
    )
    assert SECRET not in "\n".join(lines) + "\n".join(audit) + json.dumps(report.as_dict())


def test_restore_brings_back_the_custom_web_files(scene: Scene) -> None:
    web = scene.config / "web"
    archived = {f.path: f for f in scene.manifest.files}
    for name, text in (
        ("custom-config.js", CUSTOM_CONFIG),
        ("custom-interface_config.js", CUSTOM_INTERFACE),
    ):
        entry = archived.get(str(web / name))
        assert entry is not None, f"{name} is not in the backup manifest"
        assert entry.sha256 == hashlib.sha256(text.encode()).hexdigest(), entry
    scene.upgrade()
    assert not (web / "custom-config.js").exists()
    report = scene.restore(verifier=ok_verifier, say=lambda _line: None)
    assert report.result == "restored", report.error
    restored = web / "custom-config.js"
    assert restored.read_bytes() == CUSTOM_CONFIG.encode(), "custom-config.js did not come back"
    assert stat.S_IMODE(restored.stat().st_mode) == 0o640, oct(restored.stat().st_mode)
    if os.geteuid() == 0:
        assert (restored.stat().st_uid, restored.stat().st_gid) == (1000, 1000)
    assert (web / "custom-interface_config.js").read_text() == CUSTOM_INTERFACE, (
        "custom-interface_config.js was not put back as backed up"
    )


def assert_nothing_happened(
    scene: Scene, before: dict[str, Any], report: restore.RestoreReport
) -> None:
    assert report.result == "refused", (report.result, report.error)
    assert scene.listing(skip_excluded=False) == before
    docker = [c for c in scene.runner.calls if c[0] == "docker"]
    assert not [c for c in docker if "down" in c or "up" in c or "tag" in c], docker
    writes = [
        c
        for c in scene.runner.calls
        if c[0] in ("mkdir", "tar", "xargs", "put") and not (c[0] == "tar" and "--list" in c)
    ]
    assert not writes, writes
    assert not (scene.stack / ".jitsi-ops" / "lock").exists()


def test_truncated_archive_is_refused_before_anything_stops(scene: Scene) -> None:
    data = scene.archive.read_bytes()
    scene.archive.write_bytes(data[: len(data) // 2])
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "refusing" in report.error and "size" in report.error


def test_corrupted_archive_of_the_same_size_is_refused(scene: Scene) -> None:
    data = bytearray(scene.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    scene.archive.write_bytes(bytes(data))
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "sha256" in report.error


def test_manifest_of_another_backup_is_refused(scene: Scene) -> None:
    path = scene.backups / f"{scene.manifest.deploy_id}.json"
    other = replace(scene.manifest, deploy_id="prod-20200101T000000Z-000000")
    path.write_text(other.to_json())
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "not prod-" in report.error


def test_archive_with_a_member_outside_the_roots_is_refused(scene: Scene) -> None:
    """A manifest that vouches for an escaping member: the checksums pass, validation refuses."""
    evil_path = str(scene.root / "outside" / "evil")
    buffer = io.BytesIO()
    with (
        tarfile.open(scene.archive, "r:gz") as source,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as target,
    ):
        for member in source:
            target.addfile(member, source.extractfile(member) if member.isreg() else None)
        evil = tarfile.TarInfo(evil_path.lstrip("/"))
        evil.size, evil.mode = 5, 0o644
        target.addfile(evil, io.BytesIO(b"evil\n"))
    data = gzip.compress(buffer.getvalue())
    scene.archive.write_bytes(data)
    manifest = replace(
        scene.manifest,
        archive_size=len(data),
        archive_sha256=hashlib.sha256(data).hexdigest(),
        files=(
            *scene.manifest.files,
            FileEntry(evil_path, "file", 0o644, 0, 0, 5, hashlib.sha256(b"evil\n").hexdigest()),
        ),
    )
    (scene.backups / f"{scene.manifest.deploy_id}.json").write_text(manifest.to_json())
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "outside the backup's roots" in report.error
    assert not (scene.root / "outside").exists()


def plant(scene: Scene, data: bytes, manifest: Manifest) -> None:
    """Replace the scene's backup by a crafted archive and the manifest that vouches for it."""
    scene.archive.write_bytes(data)
    (scene.backups / f"{scene.manifest.deploy_id}.json").write_text(manifest.to_json())


def test_manifest_that_declares_a_root_of_its_own_is_refused_before_anything_stops(
    scene: Scene,
) -> None:
    """A `config` root added at another path: its "stale" files would be removed and a setuid
    file extracted there. Only the environment's own CONFIG and stack dir are roots."""
    extra = scene.host / "elsewhere"
    extra.mkdir()
    (extra / "precious").write_text("not in any backup\n")
    planted = [
        crafted.member(backup.member_name(str(extra)), None, mode=0o755),
        crafted.member(backup.member_name(str(extra / "suid")), b"#!/bin/sh\n", mode=0o4755),
    ]
    data = crafted.with_members(scene.archive.read_bytes(), planted)
    plant(
        scene,
        data,
        crafted.vouching_manifest(
            scene.manifest,
            data,
            roots=[Root("config", str(extra), str(extra))],
            files=crafted.file_entries(planted),
        ),
    )
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert (extra / "precious").read_text() == "not in any backup\n"
    assert not (extra / "suid").exists()
    assert f"config root {extra}" in report.error, report.error
    assert "\n" not in report.error and "hint:" in report.error, report.error
    assert not [c for c in scene.runner.calls if c[0] == "find" and str(extra) in c]


def test_members_smuggled_after_a_damaged_header_are_refused_before_anything_stops(
    scene: Scene,
) -> None:
    """tarfile stops at the bad header, so every check passes; GNU tar would extract the rest."""
    outside = scene.root / "outside"
    hidden = [
        crafted.member(backup.member_name(str(outside / "suid")), b"#!/bin/sh\n", mode=0o4755)
    ]
    data = crafted.smuggle_after_damaged_header(scene.archive.read_bytes(), hidden)
    plant(scene, data, crafted.vouching_manifest(scene.manifest, data))
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "after the last member" in report.error, report.error
    assert not outside.exists()


def test_gnu_tar_listing_on_the_host_is_compared_before_anything_stops(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the local end-of-archive check, GNU tar's own listing of the host's archive still
    shows what tarfile missed, and the restore is refused with nothing stopped."""
    monkeypatch.setattr(archive, "_check_end", lambda _path, _end: None, raising=False)
    outside = scene.root / "outside"
    hidden = [
        crafted.member(backup.member_name(str(outside / "suid")), b"#!/bin/sh\n", mode=0o4755)
    ]
    data = crafted.smuggle_after_damaged_header(scene.archive.read_bytes(), hidden)
    plant(scene, data, crafted.vouching_manifest(scene.manifest, data))
    before = scene.listing(skip_excluded=False)
    report = scene.restore()
    assert_nothing_happened(scene, before, report)
    assert "GNU tar" in report.error and "Skipping to next header" in report.error, report.error
    assert not outside.exists()
    listed = [c for c in scene.runner.calls if c[0] == "tar"]
    assert listed == [tuple(backup.tar_list(str(scene.archive)))], listed


def test_cancelled_restore_changes_nothing(scene: Scene) -> None:
    before = scene.listing(skip_excluded=False)
    seen: list[str] = []
    report = scene.restore(confirm=lambda summary: bool(seen.extend(summary)))
    assert report.result == "cancelled" and scene.listing(skip_excluded=False) == before
    text = "\n".join(seen)
    assert "stop project handmade" in text and "start docker-compose.yml" in text
    assert SECRET not in text


def test_unknown_backup_id(scene: Scene) -> None:
    report = restore.restore(
        scene.env, scene.runner, "prod-20200101T000000Z-000000", confirm=lambda _s: True
    )
    assert report.result == "failed" and "no backup" in report.error
    report = restore.restore(scene.env, scene.runner, "../../etc/passwd", confirm=lambda _s: True)
    assert report.result == "failed" and "invalid backup id" in report.error


# --- the task ---------------------------------------------------------------------------------


def test_restore_task_asks_first_and_refuses_without_a_terminal(
    scene: Scene,
    scratch_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_dir = scratch_repo / "env" / "prod"
    env_dir.mkdir()
    (env_dir / "deploy.toml").write_text(
        f'project = "handmade"\nstack_dir = "{scene.stack}"\n\n[[hosts]]\naddress = "h"\n\n'
        f'[backup]\ndir = "{scene.backups}"\n'
    )
    (env_dir / "jitsi.env").write_text(f"CONFIG={scene.config}\n")
    monkeypatch.setattr(cli_common, "connect", lambda *_a: scene.runner)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    before = scene.listing(skip_excluded=False)
    assert (
        run_task(
            restore_tasks,
            scratch_repo,
            "restore",
            "--env",
            "prod",
            "--backup",
            scene.manifest.deploy_id,
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "refusing to restore without confirmation: pass --yes" in out
    assert "CANCELLED" in out
    assert scene.listing(skip_excluded=False) == before
