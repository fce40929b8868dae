"""A relative CONFIG is resolved against stack_dir everywhere, as Compose does (issue 10 item 19).

Compose resolves a relative bind-mount source against the project directory, and jitsi-ops pins
that to stack_dir (`--project-directory`), so `CONFIG=./jitsi-config` is well defined: backup,
preflight, migrations, verify and adopt must all mean the same directory, and `check` warns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops import adopt as adoption
from jitsi_ops import backup, settings, stack
from jitsi_ops.lint import LintContext
from jitsi_ops.lint_rules import config_dir as config_dir_rule
from jitsi_ops.runner import LocalRunner, RecordingRunner
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.verify.facts import Facts, VerifyRun
from tests.unit.test_adopt import Install

REPO = Path(__file__).resolve().parents[2]


def environment(root: Path, stack_dir: str, config: str) -> Environment:
    env_dir = root / "env" / "prod"
    env_dir.mkdir(parents=True)
    (env_dir / "deploy.toml").write_text(
        f'stack_dir = "{stack_dir}"\n[[hosts]]\naddress = "meet.example.com"\n'
    )
    (env_dir / "jitsi.env").write_text(f"CONFIG={config}\nJITSI_IMAGE_VERSION=stable-11146-2\n")
    return load_environment("prod", root, environ={})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("./jitsi-config", "/opt/jitsi-meet/jitsi-config"),
        ("jitsi-config", "/opt/jitsi-meet/jitsi-config"),
        ("../jitsi-cfg/", "/opt/jitsi-cfg"),
        (".", "/opt/jitsi-meet"),
        ("/srv/cfg", "/srv/cfg"),
        ("~/.jitsi-meet-cfg", "~/.jitsi-meet-cfg"),
        ("", ""),
    ],
)
def test_config_path_follows_compose(config: str, expected: str) -> None:
    assert settings.config_path(config, "/opt/jitsi-meet") == expected


def test_environment_config_dir_is_resolved_against_its_stack_dir(tmp_path: Path) -> None:
    env = environment(tmp_path, "/opt/jitsi-meet", "./jitsi-config")
    assert env.config_dir == "/opt/jitsi-meet/jitsi-config"


def test_host_side_resolution_is_absolute(tmp_path: Path) -> None:
    env = environment(tmp_path, "/opt/jitsi-meet", "./jitsi-config")
    runner = RecordingRunner("meet", responses={("printenv", "HOME"): (0, "/home/deploy\n", "")})
    assert stack.resolve_config_dir(env, runner) == "/opt/jitsi-meet/jitsi-config"
    home = environment(tmp_path / "other", "/opt/jitsi-meet", "~/cfg")
    assert stack.resolve_config_dir(home, runner) == "/home/deploy/cfg"


def test_backup_archives_the_config_below_the_stack_dir(tmp_path: Path) -> None:
    host_stack = tmp_path / "host" / "stack"
    (host_stack / "jitsi-config" / "web").mkdir(parents=True)
    env = environment(tmp_path / "repo", str(host_stack), "./jitsi-config")
    roots = backup.resolve_roots(env, LocalRunner("fake"))
    by_kind = {root.kind: root for root in roots}
    assert by_kind["config"].path == str(host_stack / "jitsi-config"), roots
    assert by_kind["config"].present, roots
    assert by_kind["stack"].path == str(host_stack), roots


def test_verify_facts_use_the_same_config_dir(tmp_path: Path) -> None:
    host_stack = tmp_path / "host" / "stack"
    env = environment(tmp_path / "repo", str(host_stack), "./jitsi-config")
    host = env.deploy.main_host
    run = VerifyRun(
        env=env, values={}, runners={host: LocalRunner("fake")}, loopback=None, deadline=9e9
    )
    facts = Facts(run)
    assert facts.config_dir(env.deploy.main_host) == str(host_stack / "jitsi-config")


def lint(config: str, stack_dir: str = "/opt/jitsi-meet") -> list[tuple[str, str, str]]:
    ctx = LintContext.for_test(
        {"CONFIG": config, "JITSI_IMAGE_VERSION": "stable-11146-2"}, root=REPO
    )
    ctx = LintContext(
        values=ctx.values,
        deploy=ctx.deploy.__class__(hosts=ctx.deploy.hosts, stack_dir=stack_dir),
        known=ctx.known,
    )
    return [(f.severity, f.message, f.hint) for f in config_dir_rule(ctx)]


def test_check_warns_about_a_relative_config_and_names_where_it_is() -> None:
    findings = lint("./jitsi-config")
    assert [f[0] for f in findings] == ["warning"], findings
    assert "/opt/jitsi-meet/jitsi-config" in findings[0][1], findings


@pytest.mark.parametrize("config", ["", "/", "../../..", " /srv/cfg"])
def test_check_still_refuses_unusable_config(config: str) -> None:
    findings = lint(config)
    assert [f[0] for f in findings] == ["error"], findings


def test_adopt_resolves_a_relative_config_against_the_install_dir(tmp_path: Path) -> None:
    install = Install(tmp_path)
    env_file = install.dir / ".env"
    env_file.write_text(
        env_file.read_text().replace(f"CONFIG={install.config}", "CONFIG=../handmade-cfg")
    )
    found = adoption.discover(install.runner(), str(install.dir))
    assert found.config_dir == "../handmade-cfg", found.config_dir
    assert found.config_source == ".env (matches the running mounts)", found.config_source
    assert not any("adopting where the data is" in w for w in found.warnings), found.warnings
