"""CLI tier: the init/secrets/render/check tasks as an operator runs them (no hosts involved)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from jitsi_ops.secrets import GENERATED_SECRETS

TASKS = Path(__file__).resolve().parents[2] / "tasks.py"
TRICKY = "a b#c$d'e\"f\\g$(id)"


def invoke(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `invoke` against the scratch repository, the way an operator would."""
    (root / "tasks.py").write_text(TASKS.read_text())
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TASKS.parent), **(env or {})},
        check=False,
    )


def secrets_of(root: Path, name: str = "example") -> dict[str, str | None]:
    return dotenv_values(root / "env" / name / "secrets.env")


def test_list_shows_every_task_with_a_summary(scratch_repo: Path) -> None:
    out = invoke(scratch_repo, "--list").stdout
    for name in ("init", "secrets", "render", "check"):
        assert re.search(rf"^\s+{name}\s+\S", out, re.M), f"{name} missing in:\n{out}"


@pytest.mark.parametrize("name", ["init", "secrets", "render", "check"])
def test_every_flag_has_help(scratch_repo: Path, name: str) -> None:
    out = invoke(scratch_repo, name, "--help").stdout
    options = [line for line in out.splitlines() if line.strip().startswith("-")]
    assert options, out
    for line in options:
        assert re.search(r"\S\s{2,}\S", line.strip()), f"flag without help text: {line!r}"


def test_secrets_fills_missing_once_and_never_rotates(scratch_repo: Path) -> None:
    first = invoke(scratch_repo, "secrets", "--env", "example")
    assert first.returncode == 0, first.stderr
    path = scratch_repo / "env" / "example" / "secrets.env"
    before = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = secrets_of(scratch_repo)
    assert set(values) == set(GENERATED_SECRETS)
    for key, value in values.items():
        assert value and re.fullmatch(r"[0-9a-f]{32}", value), key
        assert value not in first.stdout + first.stderr, f"{key} value printed"
    assert all(key in first.stdout for key in GENERATED_SECRETS)

    second = invoke(scratch_repo, "secrets", "--env", "example")
    assert second.returncode == 0
    assert "nothing to generate" in second.stdout
    assert path.read_bytes() == before, "second run changed secrets.env"


def test_secrets_keeps_existing_values_byte_identical(scratch_repo: Path) -> None:
    path = scratch_repo / "env" / "example" / "secrets.env"
    path.write_text("# mine\nJVB_AUTH_PASSWORD='hand made pass'\n")
    os.chmod(path, 0o644)
    result = invoke(scratch_repo, "secrets", "--env", "example")
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert text.startswith("# mine\nJVB_AUTH_PASSWORD='hand made pass'\n"), text
    assert "JVB_AUTH_PASSWORD" not in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_render_masks_secrets_and_round_trips_tricky_values(
    scratch_repo: Path, tmp_path: Path
) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    jitsi = scratch_repo / "env" / "example" / "jitsi.env"
    jitsi.write_text(jitsi.read_text() + "ETHERPAD_TITLE='" + TRICKY.replace("'", "\\'") + "'\n")
    shown = invoke(scratch_repo, "render", "--env", "example")
    assert shown.returncode == 0, shown.stderr
    for value in secrets_of(scratch_repo).values():
        assert value and value not in shown.stdout, "secret value in render output"
    assert "JVB_AUTH_PASSWORD=********" in shown.stdout
    assert "# environment: example" in shown.stdout
    assert "# release: stable-11146-2" in shown.stdout
    assert "ENABLE_LETSENCRYPT=1" in shown.stdout

    out = tmp_path / "rendered.env"
    written = invoke(scratch_repo, "render", "--env", "example", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    back = dotenv_values(out, interpolate=False)
    assert back["ETHERPAD_TITLE"] == TRICKY
    assert back["JVB_AUTH_PASSWORD"] == secrets_of(scratch_repo)["JVB_AUTH_PASSWORD"]
    assert back["COMPOSE_PROJECT_NAME"] == "jitsi"
    assert back["COMPOSE_FILE"] == "docker-compose.yml:etherpad.yml:whiteboard.yml:remote-jvb.yml"


def test_render_normalises_booleans_and_applies_overrides(scratch_repo: Path) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    jitsi = scratch_repo / "env" / "example" / "jitsi.env"
    jitsi.write_text(jitsi.read_text() + "ENABLE_LOBBY=true\nENABLE_PREJOIN_PAGE=no\n")
    out = invoke(scratch_repo, "render", "--env", "example", env={"JITSI_OPS_TZ": "Europe/Berlin"})
    assert "ENABLE_LOBBY=1" in out.stdout
    assert "ENABLE_PREJOIN_PAGE=0" in out.stdout
    assert "TZ=Europe/Berlin" in out.stdout
    assert "overrides: TZ" in out.stdout


def test_render_refuses_newline_values_and_writes_nothing(
    scratch_repo: Path, tmp_path: Path
) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    jitsi = scratch_repo / "env" / "example" / "jitsi.env"
    jitsi.write_text(jitsi.read_text() + 'ETHERPAD_TITLE="two\\nlines"\n')
    out = tmp_path / "never.env"
    result = invoke(scratch_repo, "render", "--env", "example", "--output", str(out))
    assert result.returncode == 1
    assert "ETHERPAD_TITLE" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_check_example_passes(scratch_repo: Path) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    result = invoke(scratch_repo, "check", "--env", "example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout


def test_check_reports_ip_public_url(scratch_repo: Path) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    result = invoke(
        scratch_repo,
        "check",
        "--env",
        "example",
        env={"JITSI_OPS_PUBLIC_URL": "https://192.0.2.7:8443"},
    )
    assert "PUBLIC_URL" in result.stdout and "192.0.2.7" in result.stdout, result.stdout


def test_check_whiteboard_path_is_an_error_in_json(scratch_repo: Path) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    secret_values = [v for v in secrets_of(scratch_repo).values() if v]
    result = invoke(
        scratch_repo,
        "check",
        "--env",
        "example",
        "--json",
        env={
            "JITSI_OPS_WHITEBOARD_COLLAB_SERVER_PUBLIC_URL": "https://meet.example.com:8443/socket.io/"
        },
    )
    assert result.returncode == 1, result.stdout
    report = json.loads(result.stdout)
    assert set(report) == {"env", "release", "findings"}
    assert report["env"] == "example" and report["release"] == "stable-11146-2"
    for finding in report["findings"]:
        assert set(finding) == {"rule", "severity", "key", "message", "hint"}
        assert finding["severity"] in ("error", "warning", "info")
        assert isinstance(finding["rule"], str) and isinstance(finding["message"], str)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert any(f["key"] == "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL" for f in errors), errors
    assert not any(v in result.stdout for v in secret_values)


@pytest.mark.parametrize(
    ("release", "code", "rule", "says"),
    [
        ("stable-11300", 0, "release-unknown", "newer than stable-11146-2"),
        ("stable-7882", 1, "release-before-compose-sets", "pin stable-10978 or later"),
    ],
)
def test_check_on_a_release_outside_the_compose_sets(
    scratch_repo: Path, release: str, code: int, rule: str, says: str
) -> None:
    invoke(scratch_repo, "secrets", "--env", "example")
    result = invoke(
        scratch_repo,
        "check",
        "--env",
        "example",
        "--json",
        env={"JITSI_OPS_JITSI_IMAGE_VERSION": release},
    )
    assert result.returncode == code, result.stdout + result.stderr
    findings = [f for f in json.loads(result.stdout)["findings"] if f["rule"] == rule]
    assert findings and says in findings[0]["message"] + findings[0]["hint"], findings


def test_check_unknown_environment_is_one_line_with_hint(scratch_repo: Path) -> None:
    result = invoke(scratch_repo, "check", "--env", "prdo")
    assert result.returncode == 1
    assert result.stderr.startswith("error: environment 'prdo' not found")
    assert "hint: create it with `invoke init --env prdo`; existing: example" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_without_env_is_refused(scratch_repo: Path) -> None:
    result = invoke(scratch_repo, "check")
    assert result.returncode != 0
    assert "--env" in result.stderr


def test_init_scaffolds_and_refuses_to_overwrite(scratch_repo: Path) -> None:
    result = invoke(
        scratch_repo, "init", "--env", "prod", "--public-url", "https://meet.example.org"
    )
    assert result.returncode == 0, result.stderr
    env_dir = scratch_repo / "env" / "prod"
    assert (env_dir / "deploy.toml").is_file() and (env_dir / "jitsi.env").is_file()
    assert stat.S_IMODE((env_dir / "secrets.env").stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in env_dir.iterdir()}
    again = invoke(
        scratch_repo, "init", "--env", "prod", "--public-url", "https://other.example.org"
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert {p.name: p.read_bytes() for p in env_dir.iterdir()} == before
    checked = invoke(scratch_repo, "check", "--env", "prod")
    assert "0 error(s)" in checked.stdout, checked.stdout


def test_init_enables_the_bridge_rest_that_media_ice_needs(scratch_repo: Path) -> None:
    result = invoke(
        scratch_repo, "init", "--env", "prod", "--public-url", "https://meet.example.org"
    )
    assert result.returncode == 0, result.stderr
    text = (scratch_repo / "env" / "prod" / "jitsi.env").read_text()
    assert "\nCOLIBRI_REST_ENABLED=1\n" in text, text
    checked = invoke(scratch_repo, "check", "--env", "prod")
    assert "colibri-rest" not in checked.stdout, checked.stdout


def test_secrets_files_are_ignored_by_git(repo_root: Path) -> None:
    for path in ("env/example/secrets.env", "env/prod/secrets.env", "env/sandbox/secrets.env"):
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", path], cwd=repo_root, check=False
        )
        assert result.returncode == 0, f"{path} is not ignored by git"
