"""facts: every parser on output captured from Docker 20.10 + Compose 2.26 (tests/fixtures/facts),
the argv of each probe, and gather/gather_host_facts against a RecordingRunner fed the same
captured output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jitsi_ops import facts
from jitsi_ops.commands import ComposeTarget
from jitsi_ops.errors import RemoteCommandError
from jitsi_ops.facts import (
    ContainerInfo,
    DiskUsage,
    Identity,
    ImageInfo,
    Listener,
    ProcessRef,
    PublishedPort,
)
from jitsi_ops.runner import RecordingRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
STACK = "/tmp/factcap/stack2"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# --- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version", "numbers"),
    [
        (fixture("docker-version.txt"), "20.10.24+dfsg1", (20, 10, 24)),
        (fixture("compose-version.txt"), "2.26.1-4", (2, 26, 1)),
        ("v2.29.7\n", "2.29.7", (2, 29, 7)),
        ("\n  27.3.1 \n", "27.3.1", (27, 3, 1)),
        ("", "", ()),
    ],
    ids=["docker-20.10", "compose-2.26", "v-prefix", "padded", "empty"],
)
def test_version_parsers(text: str, version: str, numbers: tuple[int, ...]) -> None:
    assert facts.parse_version_line(text) == version
    assert facts.version_tuple(facts.parse_version_line(text)) == numbers


# --- compose ps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "compose-ps-2.26.txt",
            [
                ("etherpad", "running", "", 0),
                ("jicofo", "running", "", 0),
                ("jvb", "running", "", 0),
                ("prosody", "running", "", 0),
                ("web", "running", "", 0),
            ],
        ),
        ("compose-ps-array-derived.txt", None),  # same rows as compose-ps-2.26.txt
        (
            "compose-ps-mixed-2.26.txt",
            [
                ("exited", "exited", "", 3),
                ("flapping", "exited", "", 1),
                ("healthy", "running", "healthy", 0),
                ("starting", "running", "starting", 0),
            ],
        ),
        (
            "compose-ps-recreating-2.26.txt",
            [
                ("etherpad", "running", "", 0),
                ("jicofo", "created", "", 0),
                ("jvb", "created", "", 0),
                ("prosody", "created", "", 0),
                ("web", "created", "", 0),
                ("whiteboard", "created", "", 0),
                ("whiteboard", "running", "", 143),
            ],
        ),
        ("compose-ps-empty-2.26.txt", []),
    ],
    ids=["lines-2.26", "array-newer", "mixed-states", "mid-recreate", "empty"],
)
def test_parse_compose_ps(name: str, expected: list[tuple[str, str, str, int]] | None) -> None:
    if expected is None:
        expected = [
            (c.service, c.state, c.health, c.exit_code)
            for c in facts.parse_compose_ps(fixture("compose-ps-2.26.txt"))
        ]
    rows = facts.parse_compose_ps(fixture(name))
    got = [(c.service, c.state, c.health, c.exit_code) for c in rows]
    assert sorted(got) == sorted(expected), got


def test_compose_ps_fields_of_one_container() -> None:
    web = next(
        c for c in facts.parse_compose_ps(fixture("compose-ps-2.26.txt")) if c.service == "web"
    )
    assert web == ContainerInfo(
        service="web",
        name="jitsiops-factcap-web-1",
        id="e21403e3fd5a",
        image="127.0.0.1:5000/jitsi/web:stable-11146-2",
        state="running",
        status=web.status,
        health="",
        exit_code=0,
        created="2026-11-26 06:33:31 +0000 UTC",
        project="jitsiops-factcap",
        config_hash="01336075a9ce5aef909eea615e881b9ded05ba488a2fde5c233fad6036cf43d9",
        published=(
            PublishedPort("127.0.0.1", 18000, 8000, "tcp"),
            PublishedPort("127.0.0.1", 18443, 8443, "tcp"),
        ),
    ), web
    assert web.status.startswith("Up"), web.status
    assert web.running and web.image_id is None and web.restart_count is None


def test_compose_ps_unpublished_ports_are_dropped() -> None:
    jvb = next(
        c for c in facts.parse_compose_ps(fixture("compose-ps-2.26.txt")) if c.service == "jvb"
    )
    assert {(p.published, p.protocol) for p in jvb.published} == {(18080, "tcp"), (11000, "udp")}, (
        jvb.published
    )


def test_compose_ps_config_hash_label_matches_compose_config_hash() -> None:
    """The label plan() compares is exactly what `config --hash` prints for an unchanged set."""
    labels = {
        c.service: c.config_hash for c in facts.parse_compose_ps(fixture("compose-ps-2.26.txt"))
    }
    hashes = facts.parse_config_hashes(fixture("compose-config-hash.txt"))
    assert labels == hashes, (labels, hashes)


def test_parse_config_hashes_after_a_jvb_only_change() -> None:
    before = facts.parse_config_hashes(fixture("compose-config-hash.txt"))
    after = facts.parse_config_hashes(fixture("compose-config-hash-jvb-env-changed.txt"))
    assert sorted(before) == ["etherpad", "jicofo", "jvb", "prosody", "web"], before
    assert {s for s in before if before[s] != after[s]} == {"jvb"}, (before, after)


# --- docker inspect ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "container-inspect.txt",
            {"web": 0, "jvb": 0, "jicofo": 0, "etherpad": 0, "prosody": 0},
        ),
        (
            "container-inspect-mixed.txt",
            {"starting": 0, "healthy": 0, "flapping": 2, "exited": 0},
        ),
    ],
    ids=["stack", "mixed"],
)
def test_parse_container_inspect(name: str, expected: dict[str, int]) -> None:
    parsed = facts.parse_container_inspect(fixture(name))
    assert {d.service: d.restart_count for d in parsed.values()} == expected, parsed
    for cid, detail in parsed.items():
        assert len(cid) == 64 and detail.image_id.startswith("sha256:"), detail
        assert not detail.name.startswith("/"), detail.name


def test_container_template_never_reads_the_environment() -> None:
    template = facts.CONTAINER_TEMPLATE
    # Config.Env holds the stack's passwords: only named fields may be read.
    assert "Env" not in template and "{{json .}}" not in template, template
    assert "Env" not in facts.IMAGE_TEMPLATE, facts.IMAGE_TEMPLATE


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "image-inspect.txt",
            {
                "sha256:b1365083569bf66f30a8c34045627290cf8484d7d38896e5d393921f52484e80": (
                    ("127.0.0.1:5000/jitsi/web:stable-11146-2",),
                    (
                        "127.0.0.1:5000/jitsi/web@sha256:7a70ff8d5ee3c25253cd1b4f11c80c29e70208223b0092669d8382533bbc96ce",
                    ),
                )
            },
        ),
        (
            "image-inspect-missing.txt",
            {
                "sha256:9d3ce1411691876a74a1fd39075043f2189fe185fda3e5e38b716a031e7a2761": (
                    ("jitsi-ops-standin-base:bookworm",),
                    (),
                )
            },
        ),
    ],
    ids=["registry-images", "local-only-and-missing"],
)
def test_parse_image_inspect(
    name: str, expected: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
) -> None:
    images = {i.id: (i.repo_tags, i.repo_digests) for i in facts.parse_image_inspect(fixture(name))}
    for image_id, value in expected.items():
        assert images[image_id] == value, images


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("127.0.0.1:5000/jitsi/web:stable-11146-2", "127.0.0.1:5000/jitsi/web"),
        ("127.0.0.1:5000/jitsi/web", "127.0.0.1:5000/jitsi/web"),
        ("ghcr.io/jitsi/web@sha256:" + "a" * 64, "ghcr.io/jitsi/web"),
        ("jitsi/web:stable-11031", "jitsi/web"),
        ("etherpad/etherpad:2.0.3", "etherpad/etherpad"),
    ],
)
def test_repository_of(ref: str, repo: str) -> None:
    assert facts.repository_of(ref) == repo


def test_image_digest_for_a_ref() -> None:
    web = next(
        i
        for i in facts.parse_image_inspect(fixture("image-inspect.txt"))
        if "web" in i.repo_tags[0]
    )
    assert web.digest_for("127.0.0.1:5000/jitsi/web:stable-11146-2") == web.repo_digests[0]
    assert web.digest_for("ghcr.io/jitsi/web:stable-11146-2") is None
    assert ImageInfo("sha256:x").digest_for("a/b:c") is None


def test_with_details_merges_inspect_into_ps_rows() -> None:
    rows = facts.parse_compose_ps(fixture("compose-ps-mixed-2.26.txt"))
    merged = facts.with_details(
        rows, facts.parse_container_inspect(fixture("container-inspect-mixed.txt"))
    )
    by_service = {c.service: c for c in merged}
    assert by_service["flapping"].restart_count == 2, by_service["flapping"]
    assert all(c.image_id and c.image_id.startswith("sha256:") for c in merged), merged
    untouched = facts.with_details(rows, {})
    assert untouched == rows


# --- files ------------------------------------------------------------------------------------


def test_parse_sha256sum_with_a_missing_file() -> None:
    hashes = facts.parse_sha256sum(fixture("sha256sum.txt"))
    assert sorted(hashes) == [
        "/tmp/factcap/stack/.env",
        "/tmp/factcap/stack/docker-compose.yml",
        "/tmp/factcap/stack/etherpad.yml",
    ], hashes
    assert "whiteboard.yml" in fixture("sha256sum.stderr.txt")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a" * 64 + "  /s/docker-compose.yml", {"/s/docker-compose.yml": "a" * 64}),
        ("b" * 64 + " */s/binary mode.yml", {"/s/binary mode.yml": "b" * 64}),
        ("\\" + "c" * 64 + "  /s/odd\\nname\\\\x.yml", {"/s/odd\nname\\x.yml": "c" * 64}),
        ("sha256sum: /s/x: Permission denied", {}),
    ],
    ids=["text", "binary-space", "escaped-name", "error-line"],
)
def test_parse_sha256sum_table(line: str, expected: dict[str, str]) -> None:
    assert facts.parse_sha256sum(line) == expected


def test_parse_stack_hashes_keys_by_name() -> None:
    hashes = facts.parse_stack_hashes(fixture("stack-hashes.txt"))
    assert hashes == {
        ".env": "3e3835fa7f266cbd296040a3e6dd1729db2852ff6eabd7ef3e2f0e8855feed65",
        "etherpad.yml": "dd32a4b8a65d45b7dc13cd419fb12c5ebb8b449839030e6e73b51375b66508e2",
        "docker-compose.yml": "04355846da63f94472945753e609a1c56e614db999c01259dd04718a851241e6",
    }, hashes


def test_captured_stack_files_are_the_ones_hashed(repo_root: Path) -> None:
    """The capture ran the shipped core file and the etherpad overlay of its day.

    etherpad.yml has since regained upstream's defaults; the file as captured is kept beside the
    fixtures, so tests that combine captured facts with stack files use the captured bytes.
    """
    captured = facts.parse_stack_hashes(fixture("stack-hashes.txt"))
    core = (repo_root / "compose" / "rootless" / "docker-compose.yml").read_bytes()
    etherpad = (repo_root / "tests" / "fixtures" / "facts" / "factcap-etherpad.yml").read_bytes()
    assert hashlib.sha256(core).hexdigest() == captured["docker-compose.yml"], (
        "compose/rootless/docker-compose.yml changed since the capture: re-capture the facts"
    )
    assert hashlib.sha256(etherpad).hexdigest() == captured["etherpad.yml"], captured


def test_read_remote_env() -> None:
    runner = RecordingRunner(files={f"{STACK}/.env": b"A=1\n"})
    assert facts.read_remote_env(runner, STACK) == "A=1\n"
    assert facts.read_remote_env(RecordingRunner(), STACK) is None


# --- disk, ports, identity --------------------------------------------------------------------


def test_parse_df() -> None:
    (root,) = facts.parse_df(fixture("df.txt"))
    assert root == DiskUsage("/dev/vda", 264212084, 24283612, 82107300, 23, "/"), root
    assert root.available_mb == 82107300 // 1024
    assert "No such file" in fixture("df.stderr.txt")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
            "overlay 100 40 60 40% /var/lib/docker/overlay2/x/merged\n",
            [DiskUsage("overlay", 100, 40, 60, 40, "/var/lib/docker/overlay2/x/merged")],
        ),
        (
            "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
            "//nas/share name 1000 1 999 1% /mnt/my backups\n",
            [DiskUsage("//nas/share name", 1000, 1, 999, 1, "/mnt/my backups")],
        ),
        ("Filesystem 1024-blocks Used Available Capacity Mounted on\n", []),
    ],
    ids=["overlay", "spaces", "header-only"],
)
def test_parse_df_table(text: str, expected: list[DiskUsage]) -> None:
    assert facts.parse_df(text) == expected


def test_disk_free_fact_needs_a_line() -> None:
    fact = facts.disk_free("/var/backups")
    assert fact.argv == ("df", "-Pk", "--", "/var/backups")
    with pytest.raises(ValueError, match="no filesystem"):
        fact.parse("Filesystem 1024-blocks Used Available Capacity Mounted on\n")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "ss-listeners.txt",
            {
                ("udp", "127.0.0.1", 11000, (ProcessRef("docker-proxy", 25843),)),
                ("tcp", "127.0.0.1", 18443, (ProcessRef("docker-proxy", 26115),)),
                ("tcp", "127.0.0.1", 5000, (ProcessRef("docker-registry", 17334),)),
                ("tcp", "0.0.0.0", 2024, ()),  # noqa: S104 - parsed text, nothing binds
            },
        ),
        (
            "ss-listeners-ipv6.txt",
            {
                ("udp", "::1", 18780, (ProcessRef("python3", 22201), ProcessRef("python3", 22159))),
                ("tcp", "*", 18779, (ProcessRef("python3", 22201), ProcessRef("python3", 22159))),
            },
        ),
    ],
    ids=["docker-proxy", "ipv6-two-owners"],
)
def test_parse_ss(name: str, expected: set[tuple[str, str, int, tuple[ProcessRef, ...]]]) -> None:
    listeners = facts.parse_ss(fixture(name))
    got = {(item.protocol, item.address, item.port, item.processes) for item in listeners}
    assert expected <= got, sorted(got - expected, key=str)
    assert len(listeners) == len(fixture(name).splitlines()), listeners


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tcp LISTEN 0 128 [::]:22 [::]:*", Listener("tcp", "::", 22)),
        ("tcp LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*", Listener("tcp", "127.0.0.53", 53)),
        ("udp UNCONN 0 0 [fe80::1%eth0]:546 [::]:*", Listener("udp", "fe80::1", 546)),
        ("raw UNCONN 0 0 *:ipv6-icmp *:*", None),
    ],
    ids=["v6-any", "scoped-v4", "scoped-v6", "not-tcp-udp"],
)
def test_parse_ss_table(line: str, expected: Listener | None) -> None:
    assert facts.parse_ss(line) == ([expected] if expected else [])


def test_port_holders_and_any_address() -> None:
    listeners = facts.parse_ss(fixture("ss-listeners.txt"))
    (https,) = facts.port_holders(listeners, 18443)
    assert https.processes[0].name == "docker-proxy" and not https.any_address, https
    assert facts.port_holders(listeners, 18443, "udp") == []
    (anyone,) = facts.port_holders(listeners, 2024)
    assert anyone.any_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (fixture("id-root.txt"), Identity(0, "root", 0, "root", ("root",))),
        (fixture("id-nobody.txt"), Identity(65534, "nobody", 65534, "nogroup", ("nogroup",))),
        (
            "uid=1000(deploy) gid=1000(deploy) groups=1000(deploy),27(sudo),998(docker)\n",
            Identity(1000, "deploy", 1000, "deploy", ("deploy", "sudo", "docker")),
        ),
        ("uid=1001 gid=1001 groups=1001\n", Identity(1001, "1001", 1001, "1001", ("1001",))),
    ],
    ids=["root", "nobody", "docker-group", "no-names"],
)
def test_parse_id(text: str, expected: Identity) -> None:
    assert facts.parse_id(text) == expected
    assert facts.parse_id(text).is_root == (expected.uid == 0)


def test_parse_id_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unexpected"):
        facts.parse_id("id: command not found")


# --- argv and gather --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fact", "argv"),
    [
        (facts.docker_server_version(), ("docker", "version", "--format", "{{.Server.Version}}")),
        (facts.compose_version(), ("docker", "compose", "version", "--short")),
        (facts.project_containers("jitsi"), ("docker", "compose", "-p", "jitsi", "ps", "--all", "--format", "json")),
        (facts.listeners(), ("ss", "-H", "-ltnup")),
        (facts.identity(), ("id",)),
        (facts.file_hashes(["/s/.env"]), ("sha256sum", "--", "/s/.env")),
        (facts.inspect_images(["a:1"]), ("docker", "image", "inspect", "--format", facts.IMAGE_TEMPLATE, "a:1")),
        (
            facts.inspect_containers(["abc"]),
            ("docker", "inspect", "--type", "container", "--format", facts.CONTAINER_TEMPLATE, "abc"),
        ),
        (
            facts.stack_file_hashes("/opt/jitsi-meet"),
            (
                "find", "/opt/jitsi-meet", "-maxdepth", "1", "-type", "f",
                "(", "-name", "*.yml", "-o", "-name", "*.yaml", "-o", "-name", ".env", ")",
                "-exec", "sha256sum", "--", "{}", "+",
            ),
        ),
    ],
    ids=lambda v: getattr(v, "name", None),
)  # fmt: skip
def test_fact_argv(fact: facts.Fact[object], argv: tuple[str, ...]) -> None:
    assert fact.argv == argv


def test_target_facts_use_the_compose_target() -> None:
    target = ComposeTarget("/opt/jitsi-meet", "jitsi", ("docker-compose.yml",))
    assert facts.target_containers(target).argv[-4:] == ("ps", "--all", "--format", "json")
    assert facts.config_hashes(target).argv[-3:] == ("config", "--hash", "*")
    assert facts.config_hashes(target).argv[:6] == tuple(target.base()[:6])


def test_gather_parses_and_raises_on_unexpected_exit() -> None:
    runner = RecordingRunner(
        responses={("docker", "version"): (0, fixture("docker-version.txt"), "")}
    )
    assert facts.gather(runner, facts.docker_server_version()) == "20.10.24+dfsg1"
    down = RecordingRunner(
        responses={("docker", "version"): (1, "", "Cannot connect to the Docker daemon")}
    )
    with pytest.raises(RemoteCommandError, match="Cannot connect") as caught:
        facts.gather(down, facts.docker_server_version())
    assert "docker server version" in caught.value.hint, caught.value.hint


def test_gather_accepts_partial_results() -> None:
    runner = RecordingRunner(
        responses={("sha256sum",): (1, fixture("sha256sum.txt"), fixture("sha256sum.stderr.txt"))}
    )
    assert len(facts.gather(runner, facts.file_hashes(["a", "b"]))) == 3


def test_gather_host_facts_from_captured_output() -> None:
    state = {
        "env": "factcap",
        "release": "stable-11146-2",
        "deploy_id": "factcap-20261126T063357Z-abcdef",
        "compose_files": ["docker-compose.yml", "etherpad.yml"],
    }
    runner = RecordingRunner(
        responses={
            ("find", STACK): (0, fixture("stack-hashes.txt"), ""),
            ("docker", "compose", "-p", "jitsiops-factcap", "ps"): (
                0,
                fixture("compose-ps-2.26.txt"),
                "",
            ),
            ("docker", "inspect"): (0, fixture("container-inspect.txt"), ""),
            ("docker", "image", "inspect"): (0, fixture("image-inspect.txt"), ""),
        },
        files={
            f"{STACK}/.env": b"PUBLIC_URL=https://localhost:18443\n",
            f"{STACK}/.jitsi-ops/state.json": json.dumps(state).encode(),
        },
    )
    found = facts.gather_host_facts(
        runner,
        project="jitsiops-factcap",
        stack_dir=STACK,
        target_refs=["127.0.0.1:5000/jitsi/web:stable-11146-2"],
    )
    assert found.env_text == "PUBLIC_URL=https://localhost:18443\n"
    assert set(found.file_hashes) == {".env", "docker-compose.yml", "etherpad.yml"}, (
        found.file_hashes
    )
    assert [c.service for c in found.containers] == ["etherpad", "jicofo", "jvb", "prosody", "web"]
    web = next(c for c in found.containers if c.service == "web")
    assert (
        web.image_id == "sha256:b1365083569bf66f30a8c34045627290cf8484d7d38896e5d393921f52484e80"
    ), web
    assert (
        found.pinned_ref(web)
        == "127.0.0.1:5000/jitsi/web@sha256:7a70ff8d5ee3c25253cd1b4f11c80c29e70208223b0092669d8382533bbc96ce"
    )
    assert found.ref_ids["127.0.0.1:5000/jitsi/web:stable-11146-2"] == web.image_id
    assert found.state is not None and found.state.deploy_id == "factcap-20261126T063357Z-abcdef"
    image_call = next(c for c in runner.calls if c[:3] == ("docker", "image", "inspect"))
    assert "127.0.0.1:5000/jitsi/web:stable-11146-2" in image_call, image_call
    assert not any("Env" in " ".join(c) for c in runner.calls), runner.calls


def test_gather_host_facts_on_an_empty_host() -> None:
    runner = RecordingRunner(
        responses={("find",): (1, "", "find: '/opt/jitsi-meet': No such file or directory")}
    )
    found = facts.gather_host_facts(runner, project="jitsi", stack_dir="/opt/jitsi-meet")
    assert found == facts.HostFacts(), found
    assert not any(c[:2] == ("docker", "inspect") for c in runner.calls), "inspect without ids"


def test_tag_moved_ps_shows_ids_and_inspect_restores_the_reference() -> None:
    rows = facts.parse_compose_ps(fixture("compose-ps-tag-moved-2.26.txt"))
    assert all(c.image.startswith("sha256:") for c in rows), [c.image for c in rows]
    merged = facts.with_details(
        rows, facts.parse_container_inspect(fixture("container-inspect-tag-moved.txt"))
    )
    assert {c.service: c.image for c in merged}[
        "web"
    ] == "127.0.0.1:5000/jitsi/web:stable-11146-2", merged
    images = {i.id: i for i in facts.parse_image_inspect(fixture("image-inspect-tag-moved.txt"))}
    web = next(c for c in merged if c.service == "web")
    old = images[web.image_id or ""]
    assert old.repo_tags == () and old.repo_digests == (), (
        "an untagged image loses its repo digests too"
    )


def test_host_facts_repr_hides_the_env_text() -> None:
    secret = "0123456789abcdef0123456789abcdef"
    assert secret not in repr(facts.HostFacts(env_text=f"JVB_AUTH_PASSWORD={secret}\n"))
