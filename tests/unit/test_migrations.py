"""Release migrations: selection by release boundaries, env changes, host steps (for real on
tmp_path), persisting the changes into env/NAME, and the deploy pipeline running them in order."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops import migrations
from jitsi_ops.migrations import EnvChanges, apply_env_changes
from jitsi_ops.runner import LocalRunner, RecordingRunner
from jitsi_ops.settings import DeploySettings, Environment, Host, load_environment
from jitsi_ops.verify.model import VerifyReport
from jitsi_ops.versions import Release

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to uid 1000 needs root")

SEED = {
    "CONFIG": "/srv/jitsi-cfg",
    "JITSI_IMAGE_VERSION": "stable-11146-2",
    "DOCKER_HOST_ADDRESS": "192.0.2.10",
    "ENABLE_COLIBRI_WEBSOCKET": "0",
    "COLIBRI_WEBSOCKET_PORT": "9090",
    "JVB_WS_DOMAIN": "meet.example.com",
    "ENABLE_SCTP": "1",
    "JITSI_IMAGE_REPO": "jitsi",
    "JICOFO_AUTH_PASSWORD": "a" * 32,
    "JVB_AUTH_PASSWORD": "b" * 32,
}


def ids(chosen: list[migrations.Migration]) -> list[str]:
    return [m.id for m in chosen]


# --- selection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "frm", "to", "expected"),
    [
        (Release(11146), Release(11031), Release(11146, 2), True),
        (Release(11146), Release(11031), Release(11146), True),
        (Release(11146), Release(11146), Release(11146, 2), False),
        (Release(11146), Release(11146, 1), Release(11146, 2), False),
        (Release(11146), Release(10888), Release(11031), False),
        (Release(7830), Release(7001), Release(11031), True),
    ],
)
def test_applies_between_means_crossing_the_boundary(
    since: Release, frm: Release, to: Release, expected: bool
) -> None:
    migration = migrations.Migration(id="x", since=since, title="x")
    assert migration.applies_between(frm, to) is expected


def test_seed_upgrade_selects_outstanding_renames_new_secret_and_rootless() -> None:
    chosen = migrations.select("stable-11031", "stable-11146-2", SEED)
    assert ids(chosen) == [
        "stable-7830-jvb-advertise-ips",
        "stable-9753-transcriber-password",
        "stable-11146-rootless",
    ]


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        ("stable-11146-2", "stable-11146-2"),  # a redeploy never migrates (adopt's no-op)
        ("stable-11031", "stable-11031"),
        ("stable-11146-2", "stable-11031"),  # downgrade
        ("stable-11031", "standin-broken"),  # unknown order
        (None, "stable-11146-2"),  # nothing deployed yet
    ],
)
def test_no_migration_without_a_known_upgrade(frm: str | None, to: str) -> None:
    assert migrations.select(frm, to, SEED) == []


def test_crossing_a_rename_boundary_selects_it_even_without_the_old_key() -> None:
    values = {"XMPP_RECORDER_DOMAIN": "recorder.meet.jitsi", "JIGASI_TRANSCRIBER_PASSWORD": "x"}
    assert ids(migrations.select("stable-9779", "stable-10008", values)) == [
        "stable-9823-hidden-domain"
    ]
    # Without the key the rename still crosses its boundary but changes nothing.
    chosen = migrations.select("stable-9779", "stable-10008", {"JIGASI_TRANSCRIBER_PASSWORD": "x"})
    assert ids(chosen) == ["stable-9823-hidden-domain"]
    assert chosen[0].env_changes({}).empty


def test_patch_upgrade_of_a_clean_environment_needs_nothing() -> None:
    clean = {"JVB_ADVERTISE_IPS": "192.0.2.10", "JIGASI_TRANSCRIBER_PASSWORD": "c" * 32}
    assert migrations.select("stable-11146-1", "stable-11146-2", clean) == []


def test_downgrade_across_rootless_warns() -> None:
    warning = migrations.downgrade_warning("stable-11146-2", "stable-11031")
    assert warning and "invoke restore" in warning
    assert migrations.downgrade_warning("stable-11146-2", "stable-11146-1") is None
    assert migrations.downgrade_warning("stable-11031", "stable-11146-2") is None


# --- env changes -------------------------------------------------------------------------------


def rootless() -> migrations.Migration:
    return next(m for m in migrations.MIGRATIONS if m.id == "stable-11146-rootless")


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("jitsi", {"JITSI_IMAGE_REPO": "ghcr.io/jitsi"}),
        ("docker.io/jitsi", {"JITSI_IMAGE_REPO": "ghcr.io/jitsi"}),
        ("index.docker.io/jitsi/", {"JITSI_IMAGE_REPO": "ghcr.io/jitsi"}),
        ("127.0.0.1:5000/jitsi", {}),  # a mirror is the operator's business (warned)
        ("ghcr.io/jitsi", {}),
        ("", {}),  # unset: the rootless set's own default is ghcr.io/jitsi
    ],
)
def test_rootless_moves_docker_hub_to_ghcr_only(repo: str, expected: dict[str, str]) -> None:
    values = {"JITSI_IMAGE_REPO": repo} if repo else {}
    assert dict(rootless().env_changes(values).additions) == expected


def test_rootless_drops_every_removed_variable() -> None:
    values = {
        "ENABLE_COLIBRI_WEBSOCKET": "1",
        "ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX": "1",
        "DISABLE_COLIBRI_WEBSOCKET_JVB_LOOKUP": "1",
        "COLIBRI_WEBSOCKET_REGEX": "x",
        "COLIBRI_WEBSOCKET_PORT": "9090",
        "JVB_WS_DOMAIN": "d",
        "JVB_WS_SERVER_ID": "s",
        "JVB_WS_TLS": "1",
        "ENABLE_SCTP": "1",
        "ENABLE_OCTO_SCTP": "1",
        "ENABLE_XMPP_WEBSOCKET": "1",  # still exists
        "JVB_PREFER_SCTP": "1",  # still exists
        "COLIBRI_REST_ENABLED": "1",  # still exists
    }
    drops = rootless().env_changes(values).drops
    assert set(drops) == set(values) - {
        "ENABLE_XMPP_WEBSOCKET",
        "JVB_PREFER_SCTP",
        "COLIBRI_REST_ENABLED",
    }


def test_apply_renames_drops_sets_and_generates_only_missing_secrets() -> None:
    changes = EnvChanges(
        renames=(("DOCKER_HOST_ADDRESS", "JVB_ADVERTISE_IPS"),),
        drops=("ENABLE_SCTP",),
        additions={"JITSI_IMAGE_REPO": "ghcr.io/jitsi"},
        secrets=("JIGASI_TRANSCRIBER_PASSWORD", "JVB_AUTH_PASSWORD"),
    )
    values = {
        "DOCKER_HOST_ADDRESS": "192.0.2.10 10.0.0.5",
        "ENABLE_SCTP": "1",
        "JVB_AUTH_PASSWORD": "kept",
    }
    out = apply_env_changes(
        values, changes, {"JIGASI_TRANSCRIBER_PASSWORD": "new", "JVB_AUTH_PASSWORD": "rotated"}
    )
    assert out == {
        "JVB_ADVERTISE_IPS": "192.0.2.10,10.0.0.5",
        "JITSI_IMAGE_REPO": "ghcr.io/jitsi",
        "JVB_AUTH_PASSWORD": "kept",  # existing secrets never change
        "JIGASI_TRANSCRIBER_PASSWORD": "new",
    }


def test_rename_keeps_an_already_set_new_name() -> None:
    changes = EnvChanges(renames=(("DOCKER_HOST_ADDRESS", "JVB_ADVERTISE_IPS"),))
    out = apply_env_changes(
        {"DOCKER_HOST_ADDRESS": "10.0.0.1", "JVB_ADVERTISE_IPS": "192.0.2.10"}, changes, {}
    )
    assert out == {"JVB_ADVERTISE_IPS": "192.0.2.10"}


def test_migrations_are_idempotent_over_their_own_result() -> None:
    values = dict(SEED)
    for migration in migrations.select("stable-11031", "stable-11146-2", values):
        changes = migration.env_changes(values)
        values = apply_env_changes(values, changes, dict.fromkeys(changes.secrets, "g" * 32))
        assert migration.env_changes(values).empty, migration.id


# --- host steps --------------------------------------------------------------------------------


def test_rootless_host_steps_are_exact() -> None:
    env = make_env(Path("/nonexistent"), SEED)
    steps = rootless().host_steps(env, "/srv/cfg")
    new = [
        "/srv/cfg/storage/web",
        "/srv/cfg/storage/prosody",
        "/srv/cfg/storage/jibri",
        "/srv/cfg/storage/transcripts",
        "/srv/cfg/tmp/web-load-test",
    ]
    assert steps == [
        ["mkdir", "-p", "-m", "0755", "--", *new],
        ["chown", "1000:1000", "--", *new],
        [
            "find", "-P", "/srv/cfg", "-mindepth", "1", "-maxdepth", "3",
            "(", "-path", "/srv/cfg/web/keys", "-o", "-path", "/srv/cfg/web/acme.sh",
            "-o", "-path", "/srv/cfg/web/acme-certs", "-o", "-path", "/srv/cfg/prosody/config/data",
            ")", "-prune", "-exec", "chown", "-R", "1000:1000", "--", "{}", "+",
        ],
    ]  # fmt: skip


def test_find_patterns_are_literal() -> None:
    argv = migrations.chown_old_data("/srv/cfg[1]*")
    assert "/srv/cfg\\[1\\]\\*/web/keys" in argv


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@as_root
def test_rootless_host_steps_for_real_widen_nothing_else(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    keys = config / "web" / "keys"
    data = config / "prosody" / "config" / "data" / "meet%2ejitsi" / "accounts"
    keys.mkdir(parents=True)
    data.mkdir(parents=True)
    (keys / "cert.key").write_text("key\n")
    os.chmod(keys / "cert.key", 0o600)
    (data / "alice.dat").write_text("account\n")
    os.chmod(data / "alice.dat", 0o640)
    for path in (data.parent.parent, data.parent, data, data / "alice.dat"):
        os.chown(path, 100, 102)
    os.chmod(data.parent.parent, 0o750)  # noqa: S103  # legacy prosody mode
    (config / "web" / "custom-config.js").write_text("// mine\n")
    os.chmod(config / "web" / "custom-config.js", 0o600)
    (config / "jvb").mkdir()
    untouched = {
        p: owner_mode(p)
        for p in (config / "web", config / "web" / "custom-config.js", config / "jvb")
    }
    modes_before = {
        p: owner_mode(p)[2]
        for p in (keys, keys / "cert.key", data.parent.parent, data, data / "alice.dat")
    }
    runner = LocalRunner()
    env = make_env(tmp_path, SEED)
    for _ in range(2):  # idempotent
        for argv in rootless().host_steps(env, str(config)):
            runner.run(argv)
    for sub in ("storage/web", "storage/prosody", "storage/jibri", "storage/transcripts"):
        assert owner_mode(config / sub)[:2] == (1000, 1000), sub
    assert owner_mode(config / "tmp" / "web-load-test")[:2] == (1000, 1000)
    for path, mode in modes_before.items():
        assert owner_mode(path) == (1000, 1000, mode), path  # owner only: modes unchanged
    assert {p: owner_mode(p) for p in untouched} == untouched


# --- the step: plan lines, env files ------------------------------------------------------------


def make_env(root: Path, values: Mapping[str, str], **deploy: Any) -> Environment:
    return Environment(
        name="seed",
        root=root,
        deploy=DeploySettings(hosts=(Host("meet"),), **deploy),
        layers=(),
        values=MappingProxyType(dict(values)),
        origins=MappingProxyType({}),
    )


def write_seed_env(root: Path, common: str = "") -> Environment:
    env_dir = root / "env" / "seed"
    env_dir.mkdir(parents=True)
    (root / "env").mkdir(exist_ok=True)
    (root / "env" / "common.env").write_text(common)
    (env_dir / "deploy.toml").write_text(
        'project = "handmade"\nstack_dir = "/srv/handmade"\n\n[[hosts]]\naddress = "meet"\n'
    )
    (env_dir / "jitsi.env").write_text(
        "# adopted\n"
        "CONFIG=/srv/jitsi-cfg\n"
        "\n"
        "DOCKER_HOST_ADDRESS=192.0.2.10 # the public address\n"
        "ENABLE_COLIBRI_WEBSOCKET=0\n"
        "JITSI_IMAGE_REPO=jitsi\n"
        "JITSI_IMAGE_VERSION=stable-11146-2\n"
        "PUBLIC_URL=https://meet.example.com\n"
        "HTTP_PORT=80\n"
        "HTTPS_PORT=443\n"
    )
    secrets = env_dir / "secrets.env"
    secrets.write_text(f"# mine\nJICOFO_AUTH_PASSWORD={'a' * 32}\nJVB_AUTH_PASSWORD='b$c d'\n")
    os.chmod(secrets, 0o600)
    return load_environment("seed", root, environ={})


def test_step_lists_the_11146_steps_and_rewrites_env_files(tmp_path: Path) -> None:
    env = write_seed_env(tmp_path, common="TZ=UTC\nENABLE_SCTP=1\n")
    step = migrations.prepare(env, "stable-11031", "host .env", secret_factory=lambda: "f" * 32)
    assert [m.id for m in step.migrations] == [
        "stable-7830-jvb-advertise-ips",
        "stable-9753-transcriber-password",
        "stable-11146-rootless",
    ]
    lines = step.lines(env, "/srv/jitsi-cfg", {"docker-compose.override.yml": b"x: 1\n"})
    text = "\n".join(lines)
    for expected in (
        "stable-11031 (host .env) -> stable-11146-2: 3 migration(s)",
        "stable-11146: rootless images",
        ".env: rename DOCKER_HOST_ADDRESS -> JVB_ADVERTISE_IPS",
        ".env: drop ENABLE_COLIBRI_WEBSOCKET (removed upstream)",
        ".env: drop ENABLE_SCTP (removed upstream)",
        ".env: set JITSI_IMAGE_REPO=ghcr.io/jitsi (was jitsi)",
        ".env: generate the new secret JIGASI_TRANSCRIBER_PASSWORD",
        "$ mkdir -p -m 0755 -- /srv/jitsi-cfg/storage/web",
        "$ chown 1000:1000 -- /srv/jitsi-cfg/storage/web",
        "-exec chown -R 1000:1000 -- '{}' +",
        "env file: env/seed/jitsi.env is rewritten in the migrate phase",
        "env file: env/seed/secrets.env is rewritten in the migrate phase",
        "note: ENABLE_SCTP is set in env/common.env, which jitsi-ops does not edit",
        "warning: docker-compose.override.yml is not part of jitsi-ops' compose set",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert "f" * 32 not in text and "a" * 32 not in text, "a secret value in the plan lines"

    migrated = step.environment(env)
    assert migrated.values["JVB_ADVERTISE_IPS"] == "192.0.2.10"
    assert "DOCKER_HOST_ADDRESS" not in migrated.values
    assert (
        "ENABLE_SCTP" not in migrated.values and "ENABLE_COLIBRI_WEBSOCKET" not in migrated.values
    )
    assert migrated.values["JIGASI_TRANSCRIBER_PASSWORD"] == "f" * 32
    assert migrated.values["JVB_AUTH_PASSWORD"] == "b$c d"

    secrets_before = (env.env_dir / "secrets.env").read_text()
    edits, notes = migrations.local_edits(migrated, step)
    assert len(notes) == 1
    written = migrations.write_edits(edits)
    assert written == ["env/seed/jitsi.env", "env/seed/secrets.env"]
    jitsi = (env.env_dir / "jitsi.env").read_text()
    assert jitsi.startswith("# adopted\nCONFIG=/srv/jitsi-cfg\n\n# jitsi-ops migration"), jitsi
    assert "\nJVB_ADVERTISE_IPS=192.0.2.10\n" in jitsi
    assert "\n# DOCKER_HOST_ADDRESS=192.0.2.10 # the public address\n" not in jitsi
    assert "\n# ENABLE_COLIBRI_WEBSOCKET=0\n" in jitsi
    assert "\nJITSI_IMAGE_REPO=ghcr.io/jitsi\n" in jitsi
    assert jitsi.endswith("PUBLIC_URL=https://meet.example.com\nHTTP_PORT=80\nHTTPS_PORT=443\n")
    secrets = (env.env_dir / "secrets.env").read_text()
    assert secrets.startswith(secrets_before), "existing secrets must stay byte for byte"
    assert secrets.endswith(f"JIGASI_TRANSCRIBER_PASSWORD={'f' * 32}\n")
    assert stat.S_IMODE((env.env_dir / "secrets.env").stat().st_mode) == 0o600

    # The repository now describes the migrated state: nothing is outstanding any more but the
    # rootless boundary itself (host steps only), and a redeploy selects nothing.
    again = load_environment("seed", tmp_path, environ={})
    assert dict(again.values) == {
        k: v for k, v in migrated.values.items() if k != "ENABLE_SCTP"
    } | {
        "ENABLE_SCTP": "1"  # still in common.env: reported, not edited
    }
    step2 = migrations.prepare(again, "stable-11031", "host .env")
    assert [m.id for m in step2.migrations] == ["stable-11146-rootless"]
    assert migrations.select("stable-11146-2", "stable-11146-2", again.values) == []


def test_edits_refuse_a_file_changed_after_the_plan(tmp_path: Path) -> None:
    env = write_seed_env(tmp_path)
    step = migrations.prepare(env, "stable-11031")
    edits, _ = migrations.local_edits(step.environment(env), step)
    (env.env_dir / "jitsi.env").write_text("PUBLIC_URL=https://changed.example.com\n")
    with pytest.raises(migrations.OpsError, match="changed while the deploy was running"):
        migrations.write_edits(edits)


def test_rewrite_keeps_every_other_byte() -> None:
    text = "# head\nA=1 # c\n\n\nexport B='x y'\nC=3"
    out = migrations.rewrite_env_text(
        text,
        renames={"A": ("AA", "1")},
        drops={"B": "gone"},
        sets={"C": "4", "D": "d e"},
        note="n",
    )
    assert (
        out
        == "# head\n# n: renamed from A\nAA=1\n\n\n# n: gone\n# export B='x y'\nC=4\n# n\nD='d e'\n"
    )


def test_override_warnings_find_old_ports_and_colibri_ws() -> None:
    files = {
        "docker-compose.yml": b"services: {web: {ports: ['80:80']}}\n",  # ours: replaced anyway
        "docker-compose.override.yml": (
            b"services:\n  web:\n    ports:\n      - '8443:443'\n"
            b"      - target: 80\n        published: 8080\n"
            b"    labels: {proxy: /colibri-ws}\n"
        ),
        "broken.yml": b"services: [\n",
    }
    warnings = migrations.override_warnings(files, ["docker-compose.yml"])
    text = "\n".join(warnings)
    assert "docker-compose.override.yml mentions /colibri-ws" in text
    assert "docker-compose.override.yml: service web maps container port 80/443" in text
    assert "broken.yml is not valid YAML" in text
    assert "docker-compose.yml:" not in text.replace("docker-compose.override.yml", "")


def test_deployed_release_sources() -> None:
    env = make_env(Path("/x"), SEED, stack_dir="/srv/stack", project="p")
    state = RecordingRunner(
        files={"/srv/stack/.jitsi-ops/state.json": b'{"release": "stable-10710"}'}
    )
    assert migrations.deployed_release(state, env) == ("stable-10710", "state.json")
    dotenv = RecordingRunner(files={"/srv/stack/.env": b"JITSI_IMAGE_VERSION=stable-11031\n"})
    assert migrations.deployed_release(dotenv, env) == ("stable-11031", "host .env")
    ps = '{"Service": "web", "Image": "127.0.0.1:5000/jitsi/web:stable-10888", "ID": "1"}\n'
    images = RecordingRunner(responses={("docker", "compose", "-p", "p", "ps"): (0, ps, "")})
    assert migrations.deployed_release(images, env) == ("stable-10888", "running images")
    assert migrations.deployed_release(RecordingRunner(), env) == (None, "")


def test_release_of_images_takes_the_newest_pinned_tag() -> None:
    refs = ["r:5000/jitsi/web:stable-11031", "jitsi/jvb:stable-10888", "x/y:latest", "z@sha256:1"]
    assert migrations.release_of_images(refs) == "stable-11031"
    assert migrations.release_of_images(["r:5000/jitsi/web"]) is None


# --- the pipeline runs the migrate phase after backup and pull, before apply ---------------------


def ok_report(env: Environment, *_: Any) -> VerifyReport:
    return VerifyReport(env.name, env.release, (), 0.1, 10.0, "2026-01-01T00:00:00+00:00")


def pipeline_runner() -> RecordingRunner:
    host_env = (
        "CONFIG=/srv/jitsi-cfg\nJITSI_IMAGE_VERSION=stable-11031\nDOCKER_HOST_ADDRESS=192.0.2.10\n"
    )
    return RecordingRunner(
        responses={
            ("docker", "version"): (0, "20.10.24\n", ""),
            ("docker", "compose", "version"): (0, "2.26.1\n", ""),
            ("df",): (
                0,
                "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100000000 1 99999999 1% /\n",
                "",
            ),
            ("find", "/srv/handmade"): (0, "", ""),
        },
        files={"/srv/handmade/.env": host_env.encode()},
    )


def test_plan_of_an_adopted_legacy_env_lists_the_migrations_before_anything_runs(
    scratch_repo: Path,
) -> None:
    env = write_seed_env(scratch_repo)
    runner = pipeline_runner()
    report = pipeline.deploy(env, runner, dry_run=True)
    assert report.result == "dry-run", report.error
    assert report.plan is not None
    text = report.plan.render_text()
    assert "migrations (run in the migrate phase, after backup and pull):" in text
    assert "stable-11146: rootless images" in text and "$ mkdir -p -m 0755" in text
    writes = [c for c in runner.calls if c[0] in ("put", "mkdir", "chown", "rm", "tee")]
    writes += [c for c in runner.calls if "-exec" in c and "sha256sum" not in c]
    assert writes == [], writes
    assert (env.env_dir / "jitsi.env").read_text().count("DOCKER_HOST_ADDRESS") == 1


def test_deploy_runs_host_steps_after_pull_and_before_apply(
    scratch_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write_seed_env(scratch_repo)
    runner = pipeline_runner()
    monkeypatch.setattr(pipeline.backup, "create_backup", lambda *_a, **_k: _Manifest("seed-x"))
    monkeypatch.setattr(pipeline.backup, "prune", lambda *_a, **_k: [])
    monkeypatch.setattr(pipeline.backup, "running_digests", lambda *_a, **_k: {})
    report = pipeline.deploy(env, runner, verifier=ok_report)
    assert report.result == "deployed", report.error
    phases = [p.name for p in report.phases]
    assert phases == [
        "lock",
        "preflight",
        "plan",
        "backup",
        "pull",
        "migrate",
        "apply",
        "gate",
        "record",
    ]
    flat = [" ".join(c) for c in runner.calls]
    first_pull = next(i for i, c in enumerate(flat) if c.startswith("docker pull"))
    mkdir_storage = next(
        i for i, c in enumerate(flat) if "storage/web" in c and c.startswith("mkdir")
    )
    chown_old = next(i for i, c in enumerate(flat) if "-exec chown -R 1000:1000" in c)
    upload = next(i for i, c in enumerate(flat) if c.startswith("put /srv/handmade/.env"))
    up = next(i for i, c in enumerate(flat) if " up -d " in f"{c} ")
    assert first_pull < mkdir_storage < chown_old < upload < up
    pulled = [c for c in flat if c.startswith("docker pull")]
    assert all("ghcr.io/jitsi/" in c for c in pulled), pulled  # JITSI_IMAGE_REPO migrated
    uploaded = runner.files["/srv/handmade/.env"].decode()
    assert "JVB_ADVERTISE_IPS=192.0.2.10" in uploaded and "DOCKER_HOST_ADDRESS" not in uploaded
    assert "ENABLE_COLIBRI_WEBSOCKET" not in uploaded
    secrets = (env.env_dir / "secrets.env").read_text()
    new = next(line for line in secrets.splitlines() if line.startswith("JIGASI_TRANSCRIBER"))
    assert new.split("=", 1)[1] in uploaded, "the uploaded .env carries the persisted secret"
    migrate = next(p for p in report.phases if p.name == "migrate")
    assert "3 host step(s)" in migrate.detail and "env/seed/jitsi.env" in migrate.detail


class _Manifest:
    def __init__(self, deploy_id: str) -> None:
        self.deploy_id = deploy_id


@pytest.mark.parametrize(
    ("files", "running", "expected"),
    [
        # jitsi-ops rendered: COMPOSE_FILE wins
        (
            {".env": b"COMPOSE_FILE=docker-compose.yml:jibri.yml\n"},
            (),
            ["docker-compose.yml", "jibri.yml"],
        ),
        # adopted: what the containers were started from, not every file of the release archive
        (
            {".env": b"A=1\n", "docker-compose.yml": b"", "jibri.yml": b"", "etherpad.yml": b""},
            ("docker-compose.yml", "etherpad.yml"),
            ["docker-compose.yml", "etherpad.yml"],
        ),
        # nothing runs: what `docker compose up` there would read by default
        (
            {
                ".env": b"A=1\n",
                "docker-compose.yml": b"",
                "jibri.yml": b"",
                "docker-compose.override.yml": b"",
            },
            (),
            ["docker-compose.yml", "docker-compose.override.yml"],
        ),
    ],
)
def test_rollback_brings_back_the_compose_files_that_ran(
    files: dict[str, bytes], running: tuple[str, ...], expected: list[str]
) -> None:
    previous = pipeline.Snapshot(MappingProxyType(files), MappingProxyType({}), None, running)
    assert previous.compose_names == expected
