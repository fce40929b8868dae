"""Bridge hosts (role 'jvb'): deploy.toml host entries, each host's view of the environment,
the compose files and the `.env` a bridge host gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jitsi_ops import stack
from jitsi_ops.environments import rendered_values
from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import Environment, load_environment, parse_deploy_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN = '[[hosts]]\naddress = "meet.example.com"\n'
BRIDGE = """
[[hosts]]
address = "jvb2.example.com"
role = "jvb"
stack_dir = "/srv/bridge"
backup_dir = "/srv/bridge-backups"
values = { JVB_XMPP_SERVER = "10.0.0.1", JVB_ADVERTISE_IPS = "198.51.100.12" }
"""


def parse(text: str):
    return parse_deploy_toml(text, "env/x/deploy.toml", Path("/repo/env/x"))


@pytest.mark.parametrize(
    ("host", "message", "hint"),
    [
        ('values = "JVB_PORT=1"', "hosts[1].values must be a table", "values = {"),
        ('values = { jvb_port = "1" }', "values.jvb_port is not an .env key", "upper-case"),
        (
            "values = { JVB_PORT = 10001 }",
            "values.JVB_PORT must be a string, got an integer",
            "quote",
        ),
        ('stack_dir = "relative"', "hosts[1].stack_dir 'relative' must be absolute", ""),
        ("backup_dir = 3", "hosts[1].backup_dir must be a string", ""),
        ('valeus = { A = "1" }', "unknown key 'hosts[1].valeus'", "did you mean 'values'"),
    ],
)
def test_bad_bridge_host_entries_are_one_clear_error(host: str, message: str, hint: str) -> None:
    text = MAIN + f'[[hosts]]\naddress = "jvb2"\nrole = "jvb"\n{host}\n'
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in info.value.message, info.value.message
    assert hint in info.value.hint, info.value.hint


def test_main_host_keeps_the_top_level_directories() -> None:
    with pytest.raises(ConfigError) as info:
        parse('[[hosts]]\naddress = "a"\nstack_dir = "/x"\n')
    assert "for role 'jvb' hosts" in info.value.message
    assert "top-level stack_dir" in info.value.hint


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """env/example's values with a bridge host, secrets filled."""
    shutil.copytree(REPO_ROOT / "compose", tmp_path / "compose")
    env_dir = tmp_path / "env" / "prod"
    env_dir.mkdir(parents=True)
    (tmp_path / "env" / "common.env").write_text((REPO_ROOT / "env" / "common.env").read_text())
    (env_dir / "deploy.toml").write_text(MAIN + BRIDGE)
    (env_dir / "jitsi.env").write_text(
        "PUBLIC_URL=https://meet.example.com\nJVB_ADVERTISE_IPS=198.51.100.7\n"
        "JITSI_IMAGE_VERSION=stable-11146-2\nXMPP_PUBLISH_ADDRESS=10.0.0.1\n"
    )
    (env_dir / "secrets.env").write_text(
        "JVB_AUTH_PASSWORD=bridge-secret\nJICOFO_AUTH_PASSWORD=focus-secret\n"
    )
    return load_environment("prod", tmp_path, environ={"JITSI_OPS_JVB_PORT": "10001"})


def test_bridge_view_layers_its_values_below_process_overrides(env: Environment) -> None:
    bridge = env.deploy.bridge_hosts[0]
    view = env.for_host(bridge)
    assert view.role == "jvb"
    assert view.values["JVB_ADVERTISE_IPS"] == "198.51.100.12", "the host's own value wins"
    assert env.values["JVB_ADVERTISE_IPS"] == "198.51.100.7", "the main view is untouched"
    assert view.values["JVB_PORT"] == "10001", "JITSI_OPS_* overrides still win"
    assert view.origins["JVB_XMPP_SERVER"] == "deploy.toml hosts (jvb2.example.com)"
    assert view.deploy.stack_dir == "/srv/bridge"
    assert view.deploy.backup.dir == "/srv/bridge-backups"
    assert env.for_host(env.deploy.main_host) is env


def test_bridge_host_gets_only_jvb_yml_and_only_the_values_it_consumes(env: Environment) -> None:
    view = env.for_host(env.deploy.bridge_hosts[0])
    values = rendered_values(view)
    assert values["COMPOSE_FILE"] == "jvb.yml"
    assert values["JVB_AUTH_PASSWORD"] == "bridge-secret"
    assert "JICOFO_AUTH_PASSWORD" not in values, "jicofo's password must not reach a bridge"
    assert "PUBLIC_URL" not in values
    assert values["JVB_XMPP_SERVER"] == "10.0.0.1"
    assert sorted(stack.stack_files(view)) == [".env", "jvb.yml"]
    assert stack.target_for(view).stack_dir == "/srv/bridge"
    assert stack.target_for(view).files == ("jvb.yml",)


def test_main_host_publishes_xmpp_for_its_bridges(env: Environment) -> None:
    files = rendered_values(env)["COMPOSE_FILE"].split(":")
    assert files == ["docker-compose.yml", "remote-jvb.yml"], files
    overlay = stack.stack_files(env)["remote-jvb.yml"].decode()
    assert "XMPP_PUBLISH_ADDRESS" in overlay and "prosody:" in overlay


def test_single_host_environment_has_no_bridge_overlay(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "compose", tmp_path / "compose")
    env_dir = tmp_path / "env" / "solo"
    env_dir.mkdir(parents=True)
    (env_dir / "deploy.toml").write_text(MAIN)
    (env_dir / "jitsi.env").write_text("JITSI_IMAGE_VERSION=stable-11031\n")
    env = load_environment("solo", tmp_path, environ={})
    assert rendered_values(env)["COMPOSE_FILE"] == "docker-compose.yml"
    assert env.deploy.bridge_hosts == ()


@pytest.mark.parametrize("layout", ["rootless", "legacy"])
def test_jvb_yml_is_the_core_jvb_service_without_prosody(layout: str) -> None:
    import yaml  # noqa: PLC0415

    core = yaml.safe_load((REPO_ROOT / "compose" / layout / "docker-compose.yml").read_text())
    bridge = yaml.safe_load((REPO_ROOT / "compose" / layout / "jvb.yml").read_text())
    assert list(bridge["services"]) == ["jvb"]
    expected = {k: v for k, v in core["services"]["jvb"].items() if k != "depends_on"}
    assert bridge["services"]["jvb"] == expected, "jvb.yml drifted from the core jvb service"
