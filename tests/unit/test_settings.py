"""settings: deploy.toml validation, layering and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import load_environment, parse_deploy_toml

MINIMAL = '[[hosts]]\naddress = "203.0.113.10"\n'


def parse(text: str):
    return parse_deploy_toml(text, "env/x/deploy.toml", Path("/repo/env/x"))


def test_minimal_deploy_toml_gets_documented_defaults() -> None:
    settings = parse(MINIMAL)
    assert settings.main_host.address == "203.0.113.10"
    assert settings.project == "jitsi"
    assert settings.stack_dir == "/opt/jitsi-meet"
    assert settings.backup.keep == 5
    assert settings.ssh.host_key_policy == "strict"


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ('projetc = "x"\n' + MINIMAL, "unknown key 'projetc'", "did you mean 'project'"),
        (
            MINIMAL + 'project = "x"\n',
            "unknown key 'hosts[0].project'",
            "above the first [[hosts]]",
        ),
        ('[[hosts]]\naddress = "a"\nrol = "main"\n', "unknown key 'hosts[0].rol'", "role"),
        ('[[hosts]]\naddress = "a"\nport = "22"\n', "hosts[0].port must be an integer", ""),
        ('[[hosts]]\naddress = "a"\nport = 70000\n', "port 70000 out of range", ""),
        ('[[hosts]]\naddress = "a"\nrole = "jvb"\n', "0 hosts have role 'main'", "exactly one"),
        ('[[hosts]]\naddress = "a"\n[[hosts]]\naddress = "b"\n', "2 hosts have role 'main'", ""),
        ("project = 'x'\n", "no [[hosts]] defined", ""),
        (MINIMAL + '[ssh]\nhost_key_policy = "yolo"\n', "host_key_policy", "strict"),
        (MINIMAL + "[backup]\nkep = 3\n", "unknown key 'backup.kep'", "keep"),
        ('stack_dir = "relative/dir"\n' + MINIMAL, "must be absolute", ""),
        (
            'components = ["jibri", "grafana"]\n' + MINIMAL,
            "grafana.yml, which jitsi-ops does not ship",
            "own",
        ),
        ('components = ["nope"]\n' + MINIMAL, "unknown component 'nope'", "transcriber"),
        ("[[hosts]\n", "env/x/deploy.toml", "TOML"),
    ],
)
def test_bad_deploy_toml_is_one_clear_error(text: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in info.value.message, info.value.message
    assert hint in info.value.hint, info.value.hint
    assert "\n" not in info.value.message


def write_env(root: Path, name: str, jitsi: str, secrets: str = "", common: str = "") -> None:
    env_dir = root / "env" / name
    env_dir.mkdir(parents=True)
    (env_dir / "deploy.toml").write_text(MINIMAL)
    (env_dir / "jitsi.env").write_text(jitsi)
    if secrets:
        (env_dir / "secrets.env").write_text(secrets)
    (root / "env" / "common.env").write_text(common)


def test_layers_precedence_and_interpolation(tmp_path: Path) -> None:
    write_env(
        tmp_path,
        "prod",
        jitsi="HOST=meet.example.com\nPUBLIC_URL=https://${HOST}\nTZ=Europe/Berlin\n",
        secrets="JVB_AUTH_PASSWORD=fromfile\n",
        common="TZ=UTC\nCONFIG=/srv/jitsi\n",
    )
    env = load_environment(
        "prod", tmp_path, environ={"JITSI_OPS_JVB_AUTH_PASSWORD": "override", "PATH": "/bin"}
    )
    assert env.values["PUBLIC_URL"] == "https://meet.example.com"
    assert env.values["TZ"] == "Europe/Berlin", "jitsi.env must override common.env"
    assert env.values["CONFIG"] == "/srv/jitsi"
    assert env.values["JVB_AUTH_PASSWORD"] == "override", "JITSI_OPS_ overrides are the top layer"
    assert "PATH" not in env.values
    assert env.origins["TZ"] == "env/prod/jitsi.env"
    assert env.origins["JVB_AUTH_PASSWORD"].startswith("process overrides")


def test_missing_environment_names_the_file_and_suggests_init(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    with pytest.raises(ConfigError) as info:
        load_environment("prod", tmp_path, environ={})
    assert "env/prod/deploy.toml does not exist" in info.value.message
    assert "invoke init --env prod" in info.value.hint


@pytest.mark.parametrize("name", ["", "../etc", "Prod", "a b", "x" * 41])
def test_invalid_environment_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError):
        load_environment(name, tmp_path, environ={})


def test_transcriber_is_a_component() -> None:
    assert parse('components = ["jigasi", "transcriber"]\n' + MINIMAL).components == (
        "jigasi",
        "transcriber",
    )
