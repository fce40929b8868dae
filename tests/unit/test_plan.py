"""plan: pure diff of the rendered target against host facts, over the shipped compose/rootless set.

Scenarios: nothing to do, .env change (masked), image change, compose file added/changed/removed,
first deploy, stopped and orphaned containers, exact mode with Compose config hashes; plus the
Compose-style interpolation it relies on. No secret value may appear in any rendering.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from jitsi_ops.envfile import Section, render
from jitsi_ops.errors import ConfigError
from jitsi_ops.facts import (
    ContainerInfo,
    HostFacts,
    ImageInfo,
    gather_host_facts,
    parse_config_hashes,
)
from jitsi_ops.hoststate import DeployState
from jitsi_ops.plan import (
    FileChange,
    Plan,
    interpolate,
    parse_services,
    plan,
    referenced_variables,
    target_images,
)
from jitsi_ops.runner import RecordingRunner

REPO = Path(__file__).resolve().parents[2]
ROOTLESS = REPO / "compose" / "rootless"
FACT_FIXTURES = REPO / "tests" / "fixtures" / "facts"
JVB_SECRET = "5f0c1e9a7b3d42c8a6e1f09b7c2d4e6a"
JICOFO_SECRET = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
NEW_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
CORE = ("docker-compose.yml", "etherpad.yml")

VALUES = {
    "COMPOSE_PROJECT_NAME": "jitsi",
    "COMPOSE_FILE": "docker-compose.yml:etherpad.yml",
    "CONFIG": "/srv/jitsi-meet-cfg",
    "PUBLIC_URL": "https://meet.example.com",
    "HTTP_PORT": "80",
    "HTTPS_PORT": "443",
    "JITSI_IMAGE_REPO": "127.0.0.1:5000/jitsi",
    "JITSI_IMAGE_VERSION": "stable-11146-2",
    "ETHERPAD_IMAGE": "127.0.0.1:5000/jitsi/etherpad:2.0.3",
    "ETHERPAD_URL_BASE": "http://etherpad.meet.jitsi:9001",
    "TZ": "UTC",
    "JICOFO_AUTH_PASSWORD": JICOFO_SECRET,
    "JVB_AUTH_PASSWORD": JVB_SECRET,
}


def env_text(values: Mapping[str, str], header: str = "rendered by test") -> str:
    return render([header], [Section("all", values)], show_secrets=True)


def target_files(values: Mapping[str, str], files: Sequence[str] = CORE) -> dict[str, bytes]:
    return {
        ".env": env_text(values).encode(),
        **{name: (ROOTLESS / name).read_bytes() for name in files},
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_id(text: str) -> str:
    return "sha256:" + sha(text.encode())


def container(
    service: str, ref: str, *, state: str = "running", config_hash: str | None = None
) -> ContainerInfo:
    return ContainerInfo(
        service=service,
        name=f"jitsi-{service}-1",
        id=sha(service.encode())[:12],
        image=ref,
        state=state,
        status="Up 3 hours" if state == "running" else "Exited (0) 1 hour ago",
        health="",
        exit_code=0,
        created="2026-11-26 03:00:00 +0000 UTC",
        project="jitsi",
        config_hash=config_hash or sha(f"hash-{service}".encode()),
        image_id=fake_id(ref),
        restart_count=0,
    )


def converged(
    values: Mapping[str, str], files: Sequence[str] = CORE, **changes: object
) -> HostFacts:
    """Facts of a host that runs exactly `values` + `files`."""
    deployed = target_files(values, files)
    refs = target_images(values, deployed)
    containers = tuple(container(service, ref) for service, ref in refs.items())
    images = {
        fake_id(ref): ImageInfo(
            fake_id(ref), (ref,), (ref.rsplit(":", 1)[0] + "@" + fake_id("digest " + ref),)
        )
        for ref in refs.values()
    }
    facts = HostFacts(
        env_text=deployed[".env"].decode(),
        file_hashes={name: sha(data) for name, data in deployed.items()},
        containers=containers,
        images=images,
        ref_ids={ref: fake_id(ref) for ref in refs.values()},
        state=DeployState(
            env="prod", release=values.get("JITSI_IMAGE_VERSION"), deploy_id="prod-20261126T030000Z-abcdef",
            time="2026-11-26T03:00:00Z", compose_files=tuple(files),
        ),
    )  # fmt: skip
    return replace(facts, **changes)  # type: ignore[arg-type]


def assert_no_secret(result: Plan, *secrets: str) -> None:
    for text in (result.render_text(), json.dumps(result.as_dict()), repr(result)):
        for secret in (JVB_SECRET, JICOFO_SECRET, NEW_SECRET, *secrets):
            assert secret not in text, f"secret leaked into: {text[:400]}"


# --- scenarios --------------------------------------------------------------------------------


def test_nothing_to_do() -> None:
    result = plan(VALUES, target_files(VALUES), converged(VALUES))
    assert result.nothing_to_do, result.render_text()
    assert (
        result.service_changes == () and result.files_changed == () and result.image_changes == ()
    )
    assert result.render_text().startswith("Nothing to do"), result.render_text()
    assert result.as_dict()["nothing_to_do"] is True
    assert result.target_images["web"] == "127.0.0.1:5000/jitsi/web:stable-11146-2", (
        result.target_images
    )
    assert_no_secret(result)


def test_env_change_is_masked_and_recreates_only_consumers() -> None:
    new = {**VALUES, "PUBLIC_URL": "https://meet2.example.com", "JVB_AUTH_PASSWORD": NEW_SECRET}
    result = plan(new, target_files(new), converged(VALUES))
    assert not result.nothing_to_do and result.env_changed
    assert result.changed_keys == ("JVB_AUTH_PASSWORD", "PUBLIC_URL"), result.changed_keys
    assert "-PUBLIC_URL=https://meet.example.com" in result.env_diff, result.env_diff
    assert "+PUBLIC_URL=https://meet2.example.com" in result.env_diff, result.env_diff
    assert "+JVB_AUTH_PASSWORD=******** (changed)" in result.env_diff, result.env_diff
    assert "-JVB_AUTH_PASSWORD=******** (previous value)" in result.env_diff, result.env_diff
    specs = parse_services(target_files(new))
    expected = {
        s for s, spec in specs.items() if {"PUBLIC_URL", "JVB_AUTH_PASSWORD"} & spec.consumes
    }
    assert set(result.services_to_recreate) == expected, result.render_text()
    assert {"web", "prosody", "jvb"} <= expected and "etherpad" not in expected, expected
    jvb = next(c for c in result.service_changes if c.service == "jvb")
    assert jvb.reasons == ("env: JVB_AUTH_PASSWORD",), jvb
    assert result.image_changes == () and result.files_changed == ()
    assert_no_secret(result)


def test_a_jvb_only_key_recreates_jvb_like_compose_itself_says() -> None:
    """The captured `config --hash` before/after adding JVB_ADVERTISE_IPS changed only jvb."""
    before = parse_config_hashes((FACT_FIXTURES / "compose-config-hash.txt").read_text())
    after = parse_config_hashes(
        (FACT_FIXTURES / "compose-config-hash-jvb-env-changed.txt").read_text()
    )
    compose_says = {s for s in before if before[s] != after[s]}
    new = {**VALUES, "JVB_ADVERTISE_IPS": "192.0.2.1"}
    result = plan(new, target_files(new), converged(VALUES))
    assert set(result.services_to_recreate) == compose_says == {"jvb"}, result.render_text()


def test_image_change_names_current_digest_and_target_ref() -> None:
    old = {**VALUES, "JITSI_IMAGE_VERSION": "stable-11031"}
    # Same compose set on both sides: only the image version differs.
    result = plan(VALUES, target_files(VALUES), converged(old))
    changed = {i.service: i for i in result.image_changes}
    assert set(changed) == {"web", "prosody", "jicofo", "jvb"}, result.render_text()
    web = changed["web"]
    assert web.current_ref == "127.0.0.1:5000/jitsi/web:stable-11031", web
    assert web.current_digest == "127.0.0.1:5000/jitsi/web@" + fake_id(
        "digest 127.0.0.1:5000/jitsi/web:stable-11031"
    ), web
    assert web.target_ref == "127.0.0.1:5000/jitsi/web:stable-11146-2", web
    assert set(result.services_to_recreate) == {"web", "prosody", "jicofo", "jvb"}, (
        result.render_text()
    )
    web_change = next(c for c in result.service_changes if c.service == "web")
    assert (
        web_change.reasons[0]
        == "image 127.0.0.1:5000/jitsi/web:stable-11031 -> 127.0.0.1:5000/jitsi/web:stable-11146-2"
    )
    assert "env: JITSI_IMAGE_VERSION" in web_change.reasons, web_change
    text = result.render_text()
    assert "web: 127.0.0.1:5000/jitsi/web:stable-11031 (127.0.0.1:5000/jitsi/web@sha256:" in text, (
        text
    )
    assert result.as_dict()["image_changes"][-1]["current_digest"].startswith(
        "127.0.0.1:5000/jitsi/"
    ), result.as_dict()
    assert_no_secret(result)


def test_retagged_image_already_pulled_recreates() -> None:
    current = converged(VALUES)
    moved = {**current.ref_ids, "127.0.0.1:5000/jitsi/jvb:stable-11146-2": fake_id("rebuilt jvb")}
    result = plan(VALUES, target_files(VALUES), replace(current, ref_ids=moved))
    assert result.services_to_recreate == ("jvb",), result.render_text()
    assert result.service_changes[0].reasons == (
        "tag 127.0.0.1:5000/jitsi/jvb:stable-11146-2 now names another image",
    )
    assert result.image_changes[0].current_ref == result.image_changes[0].target_ref


def test_changed_compose_file_recreates_its_services() -> None:
    current = converged(VALUES)
    hashes = {**current.file_hashes, "docker-compose.yml": "0" * 64}
    result = plan(VALUES, target_files(VALUES), replace(current, file_hashes=hashes))
    assert result.files_changed == (FileChange("docker-compose.yml", "changed"),), (
        result.files_changed
    )
    assert set(result.services_to_recreate) == {"web", "prosody", "jicofo", "jvb"}, (
        result.render_text()
    )
    assert all(
        c.reasons == ("compose file docker-compose.yml changed",) for c in result.service_changes
    )
    assert not result.env_changed and "compose files:" in result.render_text()


def test_added_overlay_creates_and_removed_overlay_removes() -> None:
    deployed = ("docker-compose.yml", "etherpad.yml", "jibri.yml")
    current = converged(VALUES, deployed)
    new = {**VALUES, "WHITEBOARD_COLLAB_SERVER_URL_BASE": "http://whiteboard.meet.jitsi"}
    new_files = ("docker-compose.yml", "etherpad.yml", "whiteboard.yml")
    result = plan(new, target_files(new, new_files), current)
    assert set(result.files_changed) == {
        FileChange("whiteboard.yml", "added"),
        FileChange("jibri.yml", "removed"),
    }, result.files_changed
    actions = {c.service: c.action for c in result.service_changes}
    # web reads WHITEBOARD_COLLAB_SERVER_URL_BASE (config.js), so it is recreated too.
    assert actions == {"whiteboard": "create", "jibri": "remove", "web": "recreate"}, (
        result.render_text()
    )
    assert any(i.service == "whiteboard" and i.current_ref is None for i in result.image_changes)
    assert "whiteboard: (none) -> jitsi/excalidraw-backend:2026.3.0" in result.render_text()


def test_removed_files_fall_back_to_compose_file_without_state() -> None:
    old = {**VALUES, "COMPOSE_FILE": "docker-compose.yml:etherpad.yml:jibri.yml"}
    current = replace(
        converged(old, ("docker-compose.yml", "etherpad.yml", "jibri.yml")), state=None
    )
    result = plan(VALUES, target_files(VALUES), current)
    assert FileChange("jibri.yml", "removed") in result.files_changed, result.files_changed
    # COMPOSE_* keys are Compose's own: they recreate nothing by themselves.
    assert "COMPOSE_FILE" in result.changed_keys
    assert {c.service: c.action for c in result.service_changes} == {"jibri": "remove"}, (
        result.render_text()
    )


def test_first_deploy_with_no_remote_state() -> None:
    result = plan(VALUES, target_files(VALUES), HostFacts())
    assert result.first_deploy and not result.nothing_to_do and result.env_changed
    assert {c.service: c.action for c in result.service_changes} == dict.fromkeys(
        ("web", "prosody", "jicofo", "jvb", "etherpad"), "create"
    ), result.render_text()
    assert {f.change for f in result.files_changed} == {"added"} and len(result.files_changed) == 2
    assert "+JVB_AUTH_PASSWORD=********" in result.env_diff, result.env_diff
    assert result.render_text().startswith("Plan (first deploy on this host):"), (
        result.render_text()
    )
    assert_no_secret(result)


def test_stopped_container_is_started_not_recreated() -> None:
    current = converged(VALUES)
    stopped = tuple(
        replace(c, state="exited") if c.service == "jvb" else c for c in current.containers
    )
    result = plan(VALUES, target_files(VALUES), replace(current, containers=stopped))
    assert [(c.service, c.action) for c in result.service_changes] == [("jvb", "start")], (
        result.render_text()
    )
    assert result.services_to_recreate == () and not result.nothing_to_do


def test_mid_recreate_prefers_the_running_container() -> None:
    current = converged(VALUES)
    old_web = replace(
        container("web", "127.0.0.1:5000/jitsi/web:stable-11031", state="created"),
        created="2026-11-26 06:00:00 +0000 UTC",
        name="jitsi-web-old",
    )
    result = plan(
        VALUES, target_files(VALUES), replace(current, containers=(*current.containers, old_web))
    )
    assert result.nothing_to_do, result.render_text()


def test_orphan_container_is_removed() -> None:
    current = converged(VALUES)
    extra = container("jigasi", "127.0.0.1:5000/jitsi/jigasi:stable-11146-2")
    result = plan(
        VALUES, target_files(VALUES), replace(current, containers=(*current.containers, extra))
    )
    assert [(c.service, c.action) for c in result.service_changes] == [("jigasi", "remove")]


def test_comment_only_env_change_is_not_nothing_to_do_but_recreates_nothing() -> None:
    current = converged(VALUES, env_text=env_text(VALUES, header="rendered by jitsi-ops 0.0.9"))
    current = replace(
        current, file_hashes={**current.file_hashes, ".env": sha(current.env_text.encode())}
    )  # type: ignore[union-attr]
    result = plan(VALUES, target_files(VALUES), current)
    assert result.env_changed and result.changed_keys == () and result.env_diff == ""
    assert result.service_changes == () and not result.nothing_to_do
    assert ".env: comments or formatting only" in result.render_text(), result.render_text()


def test_exact_mode_uses_compose_config_hashes() -> None:
    current = converged(VALUES)
    hashes = {c.service: c.config_hash or "" for c in current.containers}
    hashes["jvb"] = "f" * 64
    new = {
        **VALUES,
        "PUBLIC_URL": "https://meet2.example.com",
    }  # the approximation would say web, prosody, ...
    result = plan(new, target_files(new), replace(current, target_config_hashes=hashes))
    assert result.exact and result.services_to_recreate == ("jvb",), result.render_text()
    assert result.service_changes[0].reasons == ("compose config hash differs",)
    assert "from Compose config hashes" in result.render_text()


def test_secret_copied_into_a_plain_key_is_scrubbed() -> None:
    new = {**VALUES, "XMPP_BOSH_URL_BASE": f"http://jvb:{JVB_SECRET}@xmpp.meet.jitsi:5280"}
    result = plan(new, target_files(new), converged(VALUES))
    assert "XMPP_BOSH_URL_BASE" in result.changed_keys
    assert "+XMPP_BOSH_URL_BASE=http://jvb:********@xmpp.meet.jitsi:5280" in result.env_diff, (
        result.env_diff
    )
    assert_no_secret(result)


def test_rotated_secret_masks_old_and_new_value() -> None:
    current = converged(VALUES)
    new = {**VALUES, "JICOFO_AUTH_PASSWORD": NEW_SECRET}
    result = plan(new, target_files(new), current)
    assert "-JICOFO_AUTH_PASSWORD=******** (previous value)" in result.env_diff, result.env_diff
    assert "+JICOFO_AUTH_PASSWORD=******** (changed)" in result.env_diff, result.env_diff
    assert result.changed_keys == ("JICOFO_AUTH_PASSWORD",)
    assert set(result.services_to_recreate) == {"prosody", "jicofo"}, result.render_text()
    assert_no_secret(result)


def test_migrations_are_part_of_the_plan() -> None:
    result = plan(VALUES, target_files(VALUES), converged(VALUES)).with_migrations(
        ["move storage/ to uid 1000"]
    )
    assert not result.nothing_to_do
    text = result.render_text()
    assert "  migrations (run in the migrate phase, after backup and pull):\n" in text, text
    assert "\n    move storage/ to uid 1000\n" in text, text
    assert result.as_dict()["migrations"] == ["move storage/ to uid 1000"]


def test_as_dict_shape() -> None:
    data = plan(VALUES, target_files(VALUES), HostFacts()).as_dict()
    assert set(data) == {
        "nothing_to_do", "first_deploy", "exact", "env", "files_changed", "image_changes",
        "services", "services_to_recreate", "target_images", "migrations",
    }, sorted(data)  # fmt: skip
    assert set(data["env"]) == {"changed", "changed_keys", "diff"}
    json.dumps(data)  # serialisable as-is


# --- the target compose set -------------------------------------------------------------------


def test_target_images_use_upstream_defaults_without_overrides() -> None:
    files = {
        name: (ROOTLESS / name).read_bytes()
        for name in ("docker-compose.yml", "etherpad.yml", "whiteboard.yml")
    }
    images = target_images({}, files)
    assert images == {
        "etherpad": "etherpad/etherpad:2.0.3",
        "jicofo": "ghcr.io/jitsi/jicofo:stable-11146-2",
        "jvb": "ghcr.io/jitsi/jvb:stable-11146-2",
        "prosody": "ghcr.io/jitsi/prosody:stable-11146-2",
        "web": "ghcr.io/jitsi/web:stable-11146-2",
        "whiteboard": "jitsi/excalidraw-backend:2026.3.0",
    }, images


def test_parse_services_consumption_rules() -> None:
    compose = b"""
services:
  a:
    image: ${REPO:-x}/a:${TAG}
    environment:
      - BARE
      - SET=${INNER:-d}
      - LITERAL=1
    volumes: ["${CONFIG}/a:/config"]
  b:
    image: b
    environment:
      MAPPED:
      GIVEN: ${OTHER}
    env_file: .env
networks:
  net:
    name: ${NET_NAME}
"""
    overlay = b"services:\n  a:\n    environment: [EXTRA]\n"
    specs = parse_services({"x.yml": compose, "y.yml": overlay, ".env": b"IGNORED=1\n"})
    a, b = specs["a"], specs["b"]
    assert {"REPO", "TAG", "BARE", "INNER", "CONFIG", "EXTRA", "NET_NAME"} <= a.consumes, a.consumes
    assert not {"SET", "LITERAL"} & a.consumes, a.consumes
    assert a.files == ("x.yml", "y.yml") and a.image == "${REPO:-x}/a:${TAG}", a
    assert {"MAPPED", "OTHER", "NET_NAME"} <= b.consumes and "GIVEN" not in b.consumes, b.consumes
    assert b.all_env and not a.all_env


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"bad\.yml"):
        parse_services({"bad.yml": b"services: [unclosed"})


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A/x", {"A": "1"}, "1/x"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:+alt}", {"A": "1"}, "alt"),
        ("${A:+alt}", {"A": ""}, ""),
        ("${A+alt}", {"A": ""}, "alt"),
        ("${A:?required}", {"A": "v"}, "v"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("cost $$5", {}, "cost $5"),
        ("${MISSING}", {}, ""),
        ("${P:+${P:-}:}${PORT}:8000", {"P": "127.0.0.1", "PORT": "80"}, "127.0.0.1:80:8000"),
        ("${P:+${P:-}:}${PORT}:8000", {"PORT": "80"}, "80:8000"),
        (
            "${REPO:-ghcr.io/jitsi}/web:${V:-stable-11146-2}",
            {"V": "stable-11031"},
            "ghcr.io/jitsi/web:stable-11031",
        ),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("trailing $", {}, "trailing $"),
        ("${unclosed", {}, "${unclosed"),
    ],
)
def test_interpolate_like_compose(template: str, values: dict[str, str], expected: str) -> None:
    assert interpolate(template, values) == expected


@pytest.mark.parametrize(
    ("template", "names"),
    [
        (
            "'${PUBLISH_ADDRESS:+${PUBLISH_ADDRESS:-}:}${HTTP_PORT}:8000'",
            {"PUBLISH_ADDRESS", "HTTP_PORT"},
        ),
        ('SENTRY_DSN="${JICOFO_SENTRY_DSN:-0}"', {"JICOFO_SENTRY_DSN"}),
        ("${A:-${B}}$C $$D", {"A", "B", "C"}),
        ("no variables", set()),
    ],
)
def test_referenced_variables(template: str, names: set[str]) -> None:
    assert referenced_variables(template) == names


def test_plan_on_captured_facts_of_a_moved_tag() -> None:
    """Real capture: the stand-in images were rebuilt under the same tags while the project ran.

    Compose recreates such services on `up`; the plan must say so although nothing in the
    .env or the compose files changed.
    """
    stack = "/tmp/factcap/stack2"
    fixtures = {
        ("find", stack): "stack-hashes.txt",
        ("docker", "compose", "-p", "jitsiops-factcap", "ps"): "compose-ps-tag-moved-2.26.txt",
        ("docker", "inspect"): "container-inspect-tag-moved.txt",
        ("docker", "image", "inspect"): "image-inspect-tag-moved.txt",
    }
    runner = RecordingRunner(
        responses={k: (0, (FACT_FIXTURES / v).read_text(), "") for k, v in fixtures.items()}
    )
    current = gather_host_facts(runner, project="jitsiops-factcap", stack_dir=stack)
    names = ("docker-compose.yml", "etherpad.yml")
    values = {**VALUES, "ETHERPAD_IMAGE": "127.0.0.1:5000/jitsi/etherpad:2.0.3"}
    # The host ran the etherpad overlay of the capture's day (kept beside the fixtures).
    files = {
        **target_files(values, names[:1]),
        "etherpad.yml": (FACT_FIXTURES / "factcap-etherpad.yml").read_bytes(),
    }
    # The host's files are the shipped ones; its .env is what we compare as unchanged here.
    current = replace(
        current,
        env_text=files[".env"].decode(),
        file_hashes={**current.file_hashes, ".env": sha(files[".env"])},
    )
    assert all(current.file_hashes[n] == sha(files[n]) for n in names), current.file_hashes
    result = plan(values, files, current)
    assert set(result.services_to_recreate) == {"web", "prosody", "jicofo", "jvb", "etherpad"}, (
        result.render_text()
    )
    assert all("now names another image" in c.reasons[0] for c in result.service_changes), (
        result.render_text()
    )
    web = next(i for i in result.image_changes if i.service == "web")
    assert web.current_ref == web.target_ref == "127.0.0.1:5000/jitsi/web:stable-11146-2", web
    assert (
        web.current_digest
        == "sha256:b1365083569bf66f30a8c34045627290cf8484d7d38896e5d393921f52484e80"
    ), web
