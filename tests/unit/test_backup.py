"""The backup phase: argv builders and parsers on output captured from real GNU find/tar/
coreutils (tests/fixtures/backup, see capture.py there), the create flow replayed through a
RecordingRunner, and create/verify/list/prune for real with a LocalRunner in tmp_path."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from invoke.collection import Collection
from invoke.program import Program

from jitsi_ops import backup
from jitsi_ops.archive import extract_archive, verify_manifest_checksums
from jitsi_ops.cli import backup_tasks
from jitsi_ops.cli import common as cli_common
from jitsi_ops.errors import ConfigError, OpsError, PreflightError
from jitsi_ops.hoststate import new_deploy_id
from jitsi_ops.runner import LocalRunner, RecordingRunner, Result
from jitsi_ops.settings import BackupOptions, DeploySettings, Environment, Host
from tests.fixtures.backup import capture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "backup"
TREE = str(capture.TREE)
CONFIG = f"{TREE}/config"
STACK = f"{TREE}/stack"
BACKUPS = f"{TREE}/backups"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="mixed owners need root")


def fixture_text(name: str) -> str:
    # Bytes, then decode: read_text would translate the newline inside a file name.
    return (FIXTURES / name).read_bytes().decode("utf-8")


def session() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(fixture_text("session.json"))
    return data


# --- parsers on real output --------------------------------------------------------------------


def test_find_listing_of_the_real_tree() -> None:
    entries = {e.path: e for e in backup.parse_find_listing(fixture_text("find-printf.out"))}
    accounts = entries[f"{CONFIG}/storage/prosody/accounts.dat"]
    assert (accounts.kind, accounts.mode, accounts.uid, accounts.gid) == ("f", 0o600, 1000, 1000)
    assert accounts.links == 2 and accounts.size == 8
    data = entries[f"{CONFIG}/prosody/config/data"]
    assert (data.kind, data.mode, data.uid, data.gid) == ("d", 0o750, 101, 102)
    link = entries[f"{CONFIG}/web/keys/current.key"]
    assert (link.kind, link.target) == ("l", "cert.key")
    assert entries[f"{CONFIG}/jibri.fifo"].kind == "p"
    assert f"{CONFIG}/new\nline" in entries
    assert f"{CONFIG}/caf\u00e9.txt" in entries
    assert f"{CONFIG}/name with space.txt" in entries
    # Pruned by find itself: recordings, the lock, the audit log.
    assert not [p for p in entries if "recordings/" in p or "/lock" in p or "audit.log" in p]
    assert f"{CONFIG}/storage/jibri" in entries  # the parent stays, its recordings do not


def test_find_listing_rejects_a_torn_record() -> None:
    with pytest.raises(OpsError, match="not a multiple of 9"):
        backup.parse_find_listing("f\x00644\x000\x00")


def test_plan_turns_the_second_name_of_an_inode_into_a_hard_link() -> None:
    plan = backup.plan_archive(backup.parse_find_listing(fixture_text("find-printf.out")))
    by_path = {e.path: e for e in plan.entries}
    # find met accounts-hardlink.dat first, and so did tar (same list, same order).
    assert by_path[f"{CONFIG}/accounts-hardlink.dat"].type == "file"
    link = by_path[f"{CONFIG}/storage/prosody/accounts.dat"]
    assert (link.type, link.target) == ("hardlink", f"{CONFIG}/accounts-hardlink.dat")
    assert plan.skipped == (backup.Omitted(f"{CONFIG}/jibri.fifo", "fifo: not archived"),)
    assert by_path[f"{CONFIG}/web/keys/current.key"].mode == 0o777
    assert plan.tar_bytes() % 10240 == 0 and plan.tar_bytes() > plan.data_bytes


def test_sha256sum_output_with_escaped_names() -> None:
    sums = backup.parse_sha256sum(fixture_text("sha256sum.txt"))
    assert sums[f"{CONFIG}/new\nline"] == hashlib.sha256(b"newline\n").hexdigest()
    assert sums[f"{CONFIG}/caf\u00e9.txt"] == hashlib.sha256(b"cafe\n").hexdigest()
    assert sums[f"{CONFIG}/name with space.txt"] == hashlib.sha256(b"space\n").hexdigest()
    assert len(sums) == 10
    assert backup.parse_sha256sum("\\" + "a" * 64 + "  back\\\\slash\n") == {
        "back\\slash": "a" * 64
    }
    with pytest.raises(OpsError, match="unexpected sha256sum output"):
        backup.parse_sha256sum("sha256sum: x: No such file or directory\n")


def test_df_available_bytes() -> None:
    real = fixture_text("df.txt")
    available = int(real.splitlines()[1].split()[3])
    assert backup.parse_df_available(real) == available * 1024
    # Constructed: a file system and a mount point with spaces (counted from the capacity).
    spaced = (
        "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
        "my nas:/export 1000 400 600 40% /mnt/back ups\n"
    )
    assert backup.parse_df_available(spaced) == 600 * 1024
    with pytest.raises(OpsError, match="unexpected df output"):
        backup.parse_df_available("Filesystem\n")


def test_tar_listing_in_both_locales() -> None:
    utf8 = backup.parse_tar_listing(fixture_text("tar-list.txt"))
    c_locale = backup.parse_tar_listing(fixture_text("tar-list-c-locale.txt"))
    assert utf8 == c_locale  # octal escapes and raw UTF-8 decode to the same names
    by_name = {m.name: m for m in utf8}
    root = CONFIG.lstrip("/")
    assert by_name[root].type == "dir"  # the trailing "/" is gone
    assert by_name[f"{root}/new\nline"].size == 8
    assert f"{root}/caf\u00e9.txt" in by_name
    data = by_name[f"{root}/prosody/config/data"]
    assert (data.mode, data.uid, data.gid) == (0o750, 101, 102)
    link = by_name[f"{root}/web/keys/current.key"]
    assert (link.type, link.target) == ("symlink", "cert.key")
    hard = by_name[f"{root}/storage/prosody/accounts.dat"]
    assert (hard.type, hard.target) == ("hardlink", f"{root}/accounts-hardlink.dat")
    assert by_name[f"{STACK.lstrip('/')}/.env"].mode == 0o600


def test_tar_listing_rejects_unknown_lines() -> None:
    with pytest.raises(OpsError, match="unexpected tar listing line"):
        backup.parse_tar_listing("tar: Removing leading `/' from member names\n")


@pytest.mark.parametrize(
    ("bits", "mode"),
    [
        ("rw-------", 0o600),
        ("rwxr-x---", 0o750),
        ("rwxr-s---", 0o2750),
        ("rwsr-xr-x", 0o4755),
        ("rwSr--r--", 0o4644),
        ("rwxrwxrwt", 0o1777),
        ("rwxr-s--T", 0o3750),
    ],
)
def test_permissions_mode(bits: str, mode: int) -> None:
    assert backup.permissions_mode(bits) == mode


def test_archive_hashes_equal_the_host_checksums() -> None:
    """The two real outputs agree file by file: what the verification relies on."""
    archived = backup.parse_tar_hashes(fixture_text("tar-hashes.out"))
    host = backup.parse_sha256sum(fixture_text("sha256sum.txt"))
    assert {backup.host_path(name): digest for name, digest in archived.items()} == host
    with pytest.raises(OpsError, match="hash pass"):
        backup.parse_tar_hashes("name\x00nothex  -\n")


def fixture_entries() -> tuple[backup.FileEntry, ...]:
    plan = backup.plan_archive(backup.parse_find_listing(fixture_text("find-printf.out")))
    return backup.with_checksums(
        plan.entries, backup.parse_sha256sum(fixture_text("sha256sum.txt"))
    )


def test_listing_and_content_comparisons_on_the_real_outputs() -> None:
    entries = fixture_entries()
    listed = backup.parse_tar_listing(fixture_text("tar-list.txt"))
    backup.compare_listing(entries, listed)
    backup.compare_content(entries, backup.parse_tar_hashes(fixture_text("tar-hashes.out")))

    focus = f"{CONFIG}/prosody/config/data/focus.dat"
    changed = [replace(m, mode=0o644) if "/focus.dat" in m.name else m for m in listed]
    with pytest.raises(OpsError, match=re.escape(f"{focus}: mode 0644 != 0640")):
        backup.compare_listing(entries, changed)
    changed = [replace(m, uid=0) if "/focus.dat" in m.name else m for m in listed]
    with pytest.raises(OpsError, match=re.escape(f"{focus}: owner 0:102 != 101:102")):
        backup.compare_listing(entries, changed)
    with pytest.raises(OpsError, match=re.escape(f"{focus} is missing from the archive")):
        backup.compare_listing(entries, [m for m in listed if "/focus.dat" not in m.name])
    extra = backup.ListedMember("tmp/elsewhere", "file", 0o644, 0, 0, 1)
    with pytest.raises(OpsError, match="/tmp/elsewhere is not in the manifest"):
        backup.compare_listing(entries, [*listed, extra])
    with pytest.raises(OpsError, match="in the archive twice"):
        backup.compare_listing(entries, [*listed, listed[-1]])
    sums = {
        n: ("0" * 64 if n.endswith(".env") else d)
        for n, d in backup.parse_tar_hashes(fixture_text("tar-hashes.out")).items()
    }
    with pytest.raises(OpsError, match=re.escape(f"{STACK}/.env: content in the archive differs")):
        backup.compare_content(entries, sums)


# --- argv builders ---------------------------------------------------------------------------------


def test_find_prunes_literal_paths() -> None:
    argv = backup.find_listing(["/srv/a", "/srv/b"], ["/srv/a/rec[1]*", "/srv/b/.jitsi-ops/lock"])
    assert argv[:4] == ["find", "-P", "/srv/a", "/srv/b"]
    assert argv[4:12] == [
        "(",
        "-path",
        "/srv/a/rec\\[1\\]\\*",
        "-o",
        "-path",
        "/srv/b/.jitsi-ops/lock",
        ")",
        "-prune",
    ]
    assert argv[-2:] == ["-printf", backup.FIND_FORMAT]
    assert backup.find_listing(["/srv/a"]) == [
        "find",
        "-P",
        "/srv/a",
        "-printf",
        backup.FIND_FORMAT,
    ]


def test_tar_argv_keep_owners_and_read_exactly_the_list() -> None:
    create = backup.tar_create("/b/.x.partial", "/b/.x.members")
    for flag in ("--numeric-owner", "-p", "--no-recursion", "--null", "--verbatim-files-from"):
        assert flag in create
    assert "--directory=/" in create and "--files-from=/b/.x.members" in create
    assert "--file=/b/.x.partial" in create
    listing = backup.tar_list("/b/x.tar.gz")
    assert {"--numeric-owner", "--full-time", "--quoting-style=c"} <= set(listing)
    hashes = backup.tar_hashes("/b/x.tar.gz")
    assert hashes[:2] == ["tar", "--extract"] and hashes[-1].startswith("--to-command=")
    assert backup.create_empty("/b/p") == ["install", "-m", "0600", "/dev/null", "/b/p"]
    assert backup.df_free("/b") == ["df", "-P", "-k", "--", "/b"]
    assert backup.remove(["/b/a", "/b/b"]) == ["rm", "-f", "--", "/b/a", "/b/b"]


def test_ids_of_an_environment_only() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    prod = new_deploy_id("prod", now=stamp)
    assert backup.is_env_backup("prod", prod)
    assert not backup.is_env_backup("prod", new_deploy_id("prod-eu", now=stamp))
    assert not backup.is_env_backup("prod", "prod-latest")
    assert backup.deploy_id_time(prod) == stamp
    assert backup.deploy_id_time("nonsense") is None


def test_human_size() -> None:
    assert [backup.human_size(n) for n in (0, 1023, 1536, 5 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 GiB",
    ]


def test_manifest_json_round_trip_and_refusal() -> None:
    manifest = backup.Manifest(
        env="prod",
        deploy_id="prod-20260101T120000Z-abc123",
        created=datetime(2026, 1, 1, 12, tzinfo=UTC),
        host="meet",
        release=None,
        digests={"web": "r/web@sha256:" + "1" * 64},
        roots=(
            backup.Root("config", "/srv/c", "~/c"),
            backup.Root("stack", "/srv/s", "/srv/s", False),
        ),
        excluded=(backup.Omitted("/srv/c/jibri/recordings", "big"),),
        skipped=(),
        archive_name="prod-20260101T120000Z-abc123.tar.gz",
        archive_size=10,
        archive_sha256="f" * 64,
        files=fixture_entries(),
    )
    text = manifest.to_json()
    assert '"mode": "0640"' in text and '"created": "2026-01-01T12:00:00Z"' in text
    assert backup.Manifest.from_json(text) == manifest
    assert manifest.root_paths == ("/srv/c",)
    with pytest.raises(
        OpsError, match=re.escape("x.json: not a readable jitsi-ops backup manifest")
    ):
        backup.Manifest.from_json('{"format": 99}', "x.json")


# --- the create flow, replayed -------------------------------------------------------------------


def replay_runner(
    edit: Callable[[tuple[str, ...], tuple[int, str, str]], tuple[int, str, str]] | None = None,
) -> RecordingRunner:
    """A RecordingRunner answering every command as the real machine did."""
    runner = RecordingRunner(label="fixture-host")
    for call in session():
        if "argv" in call:
            argv = tuple(call["argv"])
            answer = (call["exit_code"], call["stdout"], call["stderr"])
            runner.responses[argv] = edit(argv, answer) if edit else answer
    return runner


def recorded_calls() -> list[tuple[str, ...]]:
    return [
        tuple(call["argv"]) if "argv" in call else ("put", call["put"], call["mode"])
        for call in session()
    ]


def create(
    runner: RecordingRunner | LocalRunner, env: Environment | None = None
) -> backup.Manifest:
    return backup.create_backup(
        env or capture.environment(),
        runner,
        capture.DEPLOY_ID,
        release="stable-11146-2",
        digests={"web": "127.0.0.1:5000/jitsi/web@sha256:" + "7" * 64},
        now=capture.NOW,
    )


def test_create_flow_replays_the_real_session_in_order() -> None:
    runner = replay_runner()
    messages: list[str] = []
    manifest = backup.create_backup(
        capture.environment(),
        runner,
        capture.DEPLOY_ID,
        release="stable-11146-2",
        digests={"web": "127.0.0.1:5000/jitsi/web@sha256:" + "7" * 64},
        now=capture.NOW,
        progress=messages.append,
    )
    assert runner.calls == recorded_calls()
    # Space checked before anything is written; verification before the rename; manifest last.
    order = [c[0] for c in runner.calls]
    assert order.index("df") < order.index("put") < order.index("tar")
    names = [c[1] if c[0] == "tar" else c[0] for c in runner.calls]
    assert (
        names.index("gzip") < names.index("--list") < names.index("--extract") < names.index("mv")
    )
    archive_sum = next(c for c in session() if c.get("argv", [""])[0] == "sha256sum")
    assert manifest.archive_sha256 == archive_sum["stdout"].split()[0]
    assert manifest.created == capture.NOW and manifest.host == "fixture-host"
    assert manifest.roots == (
        backup.Root("config", CONFIG, CONFIG),
        backup.Root("stack", STACK, STACK),
    )
    assert len(manifest.files) == 23
    excluded = {o.path: o.reason for o in manifest.excluded}
    assert "can be huge" in excluded[f"{CONFIG}/storage/jibri/recordings"]
    assert f"{STACK}/.jitsi-ops/lock" in excluded
    assert [o.path for o in manifest.skipped] == [f"{CONFIG}/jibri.fifo"]
    written = runner.files[backup.manifest_path(BACKUPS, capture.DEPLOY_ID)]
    assert backup.Manifest.from_json(written.decode()) == manifest
    assert runner.modes[backup.manifest_path(BACKUPS, capture.DEPLOY_ID)] == 0o600
    assert messages[-1].endswith("23 entries, verified")


def _scratch_removed(runner: RecordingRunner) -> bool:
    partial = f"{BACKUPS}/.{capture.DEPLOY_ID}.tar.gz.partial"
    return any(c[:3] == ("rm", "-f", "--") and partial in c for c in runner.calls)


def test_listing_mismatch_names_the_file_and_keeps_nothing() -> None:
    def edit(argv: tuple[str, ...], answer: tuple[int, str, str]) -> tuple[int, str, str]:
        if argv[:2] == ("tar", "--list"):
            lines = answer[1].split("\n")
            lines = [
                line.replace("-rw-r----- 101/102", "-rw-r--r-- 101/102")
                if "focus.dat" in line
                else line
                for line in lines
            ]
            return answer[0], "\n".join(lines), answer[2]
        return answer

    runner = replay_runner(edit)
    with pytest.raises(
        OpsError, match=re.escape(f"{CONFIG}/prosody/config/data/focus.dat: mode 0644 != 0640")
    ):
        create(runner)
    assert _scratch_removed(runner)
    assert not [c for c in runner.calls if c[0] == "mv"]
    assert backup.manifest_path(BACKUPS, capture.DEPLOY_ID) not in runner.files


def test_content_mismatch_names_the_file() -> None:
    def edit(argv: tuple[str, ...], answer: tuple[int, str, str]) -> tuple[int, str, str]:
        if argv[:2] == ("tar", "--extract"):
            text = answer[1]
            good = hashlib.sha256(b"services: {}\n").hexdigest()
            return answer[0], text.replace(good, "0" * 64), answer[2]
        return answer

    runner = replay_runner(edit)
    with pytest.raises(
        OpsError, match=re.escape(f"{STACK}/docker-compose.yml: content in the archive differs")
    ):
        create(runner)
    assert _scratch_removed(runner)


def test_corrupt_gzip_is_reported() -> None:
    def edit(argv: tuple[str, ...], answer: tuple[int, str, str]) -> tuple[int, str, str]:
        if argv[0] == "gzip":
            return 1, "", "gzip: x: unexpected end of file"
        return answer

    runner = replay_runner(edit)
    with pytest.raises(
        OpsError, match=r"gzip -t of .* exited 1 \(gzip: x: unexpected end of file\)"
    ):
        create(runner)
    assert _scratch_removed(runner)


def test_low_space_is_a_preflight_error_with_numbers_before_anything_is_written() -> None:
    def edit(argv: tuple[str, ...], answer: tuple[int, str, str]) -> tuple[int, str, str]:
        if argv[0] == "df":
            return (
                0,
                "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100 99 1 99% /\n",
                "",
            )
        return answer

    runner = replay_runner(edit)
    with pytest.raises(PreflightError) as raised:
        create(runner)
    message = raised.value.message
    assert f"not enough space for the backup in {BACKUPS} on fixture-host" in message
    assert "23 entries" in message and "1.0 KiB free" in message and "needs up to" in message
    assert not [c for c in runner.calls if c[0] in ("put", "install", "tar")]


def test_existing_backup_id_is_refused() -> None:
    def edit(argv: tuple[str, ...], answer: tuple[int, str, str]) -> tuple[int, str, str]:
        return (0, "", "") if argv[:2] == ("test", "-e") else answer

    runner = replay_runner(edit)
    with pytest.raises(OpsError, match="already exists"):
        create(runner)
    assert not [c for c in runner.calls if c[0] in ("find", "put", "tar")]


def test_foreign_or_malformed_id_is_refused_before_any_command() -> None:
    runner = RecordingRunner()
    for bad in ("other-20260101T120000Z-abc123", "../../etc/x", "fixture-latest"):
        with pytest.raises(ConfigError, match="invalid backup id"):
            backup.create_backup(capture.environment(), runner, bad, release=None, digests={})
    assert runner.calls == []


def test_nothing_to_back_up_on_a_fresh_host() -> None:
    runner = RecordingRunner(
        responses={("realpath",): (1, "", "realpath: x: No such file or directory")}
    )
    with pytest.raises(OpsError, match="nothing to back up"):
        create(runner)
    assert [c[0] for c in runner.calls] == ["realpath", "realpath"]


# --- for real: LocalRunner against tmp_path --------------------------------------------------------


def make_env(tmp_path: Path, name: str = "prod", keep: int = 3) -> Environment:
    return Environment(
        name=name,
        root=tmp_path,
        deploy=DeploySettings(
            hosts=(Host("localhost"),),
            stack_dir=str(tmp_path / "host" / "stack"),
            backup=BackupOptions(dir=str(tmp_path / "host" / "backups"), keep=keep),
        ),
        layers=(),
        values=MappingProxyType({"CONFIG": str(tmp_path / "host" / "config")}),
        origins=MappingProxyType({}),
    )


SECRET = "s3cr3t-value-never-printed"


def host_tree(tmp_path: Path) -> dict[str, tuple[int, int, int]]:
    """CONFIG + stack dir on the "host"; returns {relative path: (uid, gid, mode)} of files."""
    host = tmp_path / "host"
    config, stack = host / "config", host / "stack"
    for directory in (
        config / "storage" / "prosody",
        config / "storage" / "jibri" / "recordings",
        config / "jibri" / "recordings",
        config / "prosody" / "config" / "data",
        stack / ".jitsi-ops" / "lock",
    ):
        directory.mkdir(parents=True)
    owners = {
        "config/storage/prosody/accounts.dat": (1000, 1000, 0o600),
        "config/prosody/config/data/focus.dat": (101, 102, 0o640),
        "config/web.key": (0, 0, 0o644),
        "stack/.env": (0, 0, 0o600),
        "stack/docker-compose.yml": (0, 0, 0o644),
        "stack/.jitsi-ops/state.json": (0, 0, 0o640),
    }
    for rel, (uid, gid, mode) in owners.items():
        path = host / rel
        text = {".env": f"SECRET={SECRET}\n", "state.json": '{"release": "stable-11031"}\n'}
        path.write_text(text.get(path.name, f"{rel}\n"))
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(config / "prosody" / "config" / "data", 101, 102)
    os.chmod(config / "prosody" / "config" / "data", 0o750)  # noqa: S103  # legacy prosody mode
    (config / "storage" / "jibri" / "recordings" / "talk.mp4").write_text("huge\n")
    (config / "jibri" / "recordings" / "old.mp4").write_text("huge\n")
    (stack / ".jitsi-ops" / "audit.log").write_text("{}\n")
    (config / "current.key").symlink_to("web.key")
    return owners


def backup_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "host" / "backups").iterdir())


def at(minutes: int) -> datetime:
    return datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(minutes=minutes)


def real_backup(env: Environment, minutes: int, **kw: Any) -> backup.Manifest:
    return backup.create_backup(
        env,
        LocalRunner(),
        new_deploy_id(env.name, now=at(minutes)),
        release=f"release-{minutes}",
        digests={},
        now=at(minutes),
        **kw,
    )


def test_real_backup_is_private_verified_and_restorable(tmp_path: Path) -> None:
    owners = host_tree(tmp_path)
    env = make_env(tmp_path)
    manifest = real_backup(env, 0)
    directory = tmp_path / "host" / "backups"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    archive = directory / manifest.archive_name
    manifest_file = directory / f"{manifest.deploy_id}.json"
    assert backup_files(tmp_path) == sorted([archive.name, manifest_file.name])  # no scratch left
    for path in (archive, manifest_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup.Manifest.from_json(manifest_file.read_text()) == manifest
    assert SECRET not in manifest_file.read_text()

    paths = {f.path for f in manifest.files}
    host = str(tmp_path / "host")
    assert f"{host}/stack/.jitsi-ops/state.json" in paths
    assert not [p for p in paths if "recordings" in p or "/lock" in p or "audit.log" in p]

    verify_manifest_checksums(archive, manifest)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    extract_archive(archive, scratch, manifest.root_paths)
    restored = scratch / host.lstrip("/")
    for rel, (uid, gid, mode) in owners.items():
        st = os.lstat(restored / rel)
        assert stat.S_IMODE(st.st_mode) == mode, rel
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (uid, gid), rel
        assert (restored / rel).read_bytes() == (tmp_path / "host" / rel).read_bytes()
    assert os.readlink(restored / "config" / "current.key") == "web.key"
    assert stat.S_IMODE(os.lstat(restored / "config/prosody/config/data").st_mode) == 0o750


def test_real_list_and_prune_per_environment(tmp_path: Path) -> None:
    host_tree(tmp_path)
    prod = make_env(tmp_path, "prod")
    prod_eu = make_env(tmp_path, "prod-eu")  # same host and backup dir, a longer name
    made = [real_backup(prod, minutes) for minutes in (0, 10, 20)]
    other = real_backup(prod_eu, 5)
    runner = LocalRunner()

    listed = backup.list_backups(prod, runner)
    assert [b.id for b in listed] == [m.deploy_id for m in reversed(made)]
    assert [b.release for b in listed] == ["release-20", "release-10", "release-0"]
    assert listed[0].size == made[-1].archive_size and not listed[0].problem
    assert [b.id for b in backup.list_backups(prod_eu, runner)] == [other.deploy_id]

    # The one just made is protected even when it is not the newest (clock skew).
    assert backup.prune(prod, runner, 1, protect={made[0].deploy_id}) == [made[1].deploy_id]
    assert [b.id for b in backup.list_backups(prod, runner)] == [
        made[2].deploy_id,
        made[0].deploy_id,
    ]
    assert backup.prune(prod, runner, 1) == [made[0].deploy_id]
    assert [b.id for b in backup.list_backups(prod_eu, runner)] == [other.deploy_id]
    assert backup_files(tmp_path) == sorted(
        f"{m.deploy_id}{ext}" for m in (made[2], other) for ext in (".json", ".tar.gz")
    )
    with pytest.raises(ConfigError, match="keep must be >= 1"):
        backup.prune(prod, runner, 0)


def test_real_list_shows_broken_backups_and_prune_leaves_them(tmp_path: Path) -> None:
    host_tree(tmp_path)
    env = make_env(tmp_path)
    good = [real_backup(env, minutes) for minutes in (0, 10)]
    directory = tmp_path / "host" / "backups"
    (directory / f"{good[0].deploy_id}.tar.gz").unlink()
    (directory / f"{new_deploy_id('prod', now=at(30))}.tar.gz").write_bytes(b"interrupted")
    (directory / f"{new_deploy_id('prod', now=at(40))}.json").write_text("{not json")
    listed = backup.list_backups(env, LocalRunner())
    assert [b.problem.split(":")[0] for b in listed] == [
        "unreadable manifest",
        "no manifest",
        "",
        "archive missing",
    ]
    assert backup.prune(env, LocalRunner(), 1) == []  # only one usable backup: nothing to prune
    assert backup.list_backups(make_env(tmp_path / "nowhere"), LocalRunner()) == []


def test_real_include_recordings_and_backup_dir_inside_the_stack(tmp_path: Path) -> None:
    host_tree(tmp_path)
    env = make_env(tmp_path)
    env = replace(
        env,
        deploy=replace(env.deploy, backup=BackupOptions(dir=env.deploy.stack_dir + "/backups")),
    )
    first = real_backup(env, 0, include_recordings=True)
    paths = {f.path for f in first.files}
    config = str(tmp_path / "host" / "config")
    assert f"{config}/storage/jibri/recordings/talk.mp4" in paths
    assert f"{config}/jibri/recordings/old.mp4" in paths
    second = real_backup(env, 1)  # the first backup sits in the stack dir now: not archived
    assert not [p for p in (f.path for f in second.files) if "/backups" in p]
    assert "the backup dir itself" in {o.reason for o in second.excluded}


def test_real_config_below_the_stack_dir_is_archived_once(tmp_path: Path) -> None:
    host_tree(tmp_path)
    env = make_env(tmp_path)
    nested = str(tmp_path / "host" / "stack" / "config")
    os.rename(tmp_path / "host" / "config", nested)
    env = replace(env, values=MappingProxyType({"CONFIG": nested}))
    manifest = real_backup(env, 0)
    paths = [f.path for f in manifest.files]
    assert len(paths) == len(set(paths))
    assert f"{nested}/storage/prosody/accounts.dat" in paths
    assert f"{nested}/storage/jibri/recordings" not in paths


def test_real_backup_dir_holding_a_root_is_refused(tmp_path: Path) -> None:
    host_tree(tmp_path)
    env = make_env(tmp_path)
    env = replace(env, deploy=replace(env.deploy, backup=BackupOptions(dir=str(tmp_path))))
    with pytest.raises(ConfigError, match=r"contains .*/host/config, which it must back up"):
        real_backup(env, 0)


class ChangingRunner(LocalRunner):
    """Changes a file right after tar read it: same size, new content."""

    def __init__(self, victim: Path) -> None:
        super().__init__()
        self.victim = victim

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        result = super().run(argv, check=check, timeout=timeout, stdin=stdin)
        if tuple(argv[:2]) == ("tar", "--create"):
            text = self.victim.read_text()
            self.victim.write_text(text.upper())
        return result


def test_real_change_during_the_backup_is_caught_and_nothing_kept(tmp_path: Path) -> None:
    host_tree(tmp_path)
    env = make_env(tmp_path)
    victim = tmp_path / "host" / "config" / "web.key"
    with pytest.raises(OpsError, match=re.escape(f"{victim}: content in the archive differs")):
        backup.create_backup(
            env, ChangingRunner(victim), new_deploy_id("prod"), release=None, digests={}
        )
    assert backup_files(tmp_path) == []


# --- the tasks ------------------------------------------------------------------------------------


def run_task(root: Path, *argv: str) -> int:
    namespace = Collection.from_module(backup_tasks)
    namespace.configure({"jitsi_ops": {"root": str(root)}})
    try:
        Program(namespace=namespace).run(["invoke", *argv])
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0


@pytest.mark.parametrize(
    ("name", "flags"),
    [("backup", ("--env", "--include-recordings")), ("backups", ("--env", "--json"))],
)
def test_every_flag_has_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, flags: tuple[str, ...]
) -> None:
    # invoke pops a task's help texts once it has built its flags: fresh task objects each time.
    importlib.reload(backup_tasks)
    assert run_task(tmp_path, "--help", name) == 0
    options = capsys.readouterr().out.split("Options:", 1)[1]
    lines = [" ".join(line.split()) for line in options.splitlines() if line.strip()]
    for flag in flags:
        assert any(flag in line and len(line.split(flag, 1)[1].strip()) > 10 for line in lines), (
            flag
        )


def test_backup_and_backups_tasks(
    scratch_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host_tree(tmp_path)
    (tmp_path / "host" / "stack" / ".jitsi-ops" / "lock").rmdir()  # not locked for the tasks
    env_dir = scratch_repo / "env" / "local"
    env_dir.mkdir()
    (env_dir / "deploy.toml").write_text(
        f'stack_dir = "{tmp_path}/host/stack"\n\n[[hosts]]\naddress = "localhost"\nrole = "main"\n\n'
        f'[backup]\ndir = "{tmp_path}/host/backups"\nkeep = 2\n'
    )
    (env_dir / "jitsi.env").write_text(
        f"PUBLIC_URL=https://meet.example.com\nCONFIG={tmp_path}/host/config\n"
        "JITSI_IMAGE_VERSION=stable-11146-2\n"
    )
    monkeypatch.setattr(cli_common, "connect", lambda _env, _host: LocalRunner("meet-host"))
    monkeypatch.setattr(
        backup, "running_digests", lambda _env, _runner: {"web": "r/web@sha256:" + "2" * 64}
    )
    for _ in range(3):
        assert run_task(scratch_repo, "backup", "--env", "local") == 0
    out = capsys.readouterr().out
    assert out.count("backup: verifying the") == 3
    assert "meet-host: backup local-" in out and "1 image digests) verified in" in out
    assert "(stable-11031, " in out  # the deployed release, from state.json
    assert "jibri recordings are not included" in out
    assert "  pruned   local-" in out and "(backup.keep = 2)" in out
    assert SECRET not in out

    assert run_task(scratch_repo, "backups", "--env", "local", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env"] == "local" and report["host"] == "meet-host"
    assert len(report["backups"]) == 2 and not any(b["problem"] for b in report["backups"])
    assert report["backups"][0]["time"] > report["backups"][1]["time"]

    assert run_task(scratch_repo, "backups", "--env", "local") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "TIME", "RELEASE", "SIZE"]
    assert [line.split()[0] for line in table[1:3]] == [b["id"] for b in report["backups"]]
    assert table[-1].startswith("2 backup(s) in ")

    audit = (tmp_path / "host" / "stack" / ".jitsi-ops" / "audit.log").read_text().splitlines()
    records = [json.loads(line) for line in audit[1:]]  # the first line is host_tree's "{}"
    assert [r["action"] for r in records] == ["backup"] * 3
    assert records[-1]["result"] == "ok" and len(records[-1]["pruned"]) == 1
    assert not (tmp_path / "host" / "stack" / ".jitsi-ops" / "lock").exists()
    assert SECRET not in "\n".join(audit)


def test_deployed_release_comes_from_state_json_and_tolerates_a_broken_one(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = f"{env.deploy.stack_dir}/.jitsi-ops/state.json"
    runner = RecordingRunner(files={state: b'{"release": "stable-10710"}'})
    assert backup.deployed_release(env, runner) == "stable-10710"
    assert backup.deployed_release(env, RecordingRunner(files={state: b"{broken"})) is None
    assert backup.deployed_release(env, RecordingRunner()) is None


def test_running_digests_pin_each_service_without_reading_container_env() -> None:
    facts_dir = FIXTURES.parent / "facts"
    env = capture.environment()
    runner = RecordingRunner(
        responses={
            ("docker", "compose", "-p", env.deploy.project, "ps"): (
                0,
                (facts_dir / "compose-ps-2.26.txt").read_text(),
                "",
            ),
            ("docker", "inspect"): (0, (facts_dir / "container-inspect.txt").read_text(), ""),
            ("docker", "image", "inspect"): (0, (facts_dir / "image-inspect.txt").read_text(), ""),
        }
    )
    digests = backup.running_digests(env, runner)
    assert digests and set(digests) <= {"web", "prosody", "jicofo", "jvb", "etherpad", "whiteboard"}
    for ref in digests.values():
        assert "@sha256:" in ref or ref.startswith("sha256:"), ref
    inspects = [c for c in runner.calls if c[:2] == ("docker", "inspect")]
    assert inspects and all("--format" in c for c in inspects)  # Config.Env holds passwords
    assert backup.running_digests(env, RecordingRunner()) == {}
