"""`invoke init`: arguments validated strictly, TOML written by a serializer, all or nothing
(issue 10 item 6)."""

from __future__ import annotations

import errno
import stat
import tomllib
from pathlib import Path

import pytest
from dotenv import dotenv_values

from jitsi_ops import environments
from jitsi_ops.cli import env_tasks
from tests.unit.taskrun import run_task


def init(root: Path, *args: str) -> int:
    return run_task(env_tasks, root, "init", "--env", "prod", *args)


def env_entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "env").iterdir())


@pytest.mark.parametrize(
    "url",
    [
        "https://meet.example.org\nJVB_AUTH_PASSWORD=injected",
        "https://meet.example.org\rX=1",
        "https://meet.example.org JVB_AUTH_PASSWORD=x",
        "https://meet.example.org'",
        'https://meet.example.org"',
        "https://meet.example.org/$(id)",
        "https://meet.example.org/path",
        "https://meet.example.org?x=1",
        "https://meet.example.org#frag",
        "https://user:pw@meet.example.org",
        "http://meet.example.org",
        "https://",
        "https://meet.example.org:99999",
        "https://meet.example.org:0",
        "https://meet_example.org",
        "https://-meet.example.org",
        "meet.example.org",
    ],
)
def test_bad_public_url_is_refused_and_nothing_is_created(
    scratch_repo: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    before = env_entries(scratch_repo)
    code = init(scratch_repo, "--public-url", url)
    err = capsys.readouterr().err
    assert code == 1, f"accepted {url!r}: {err}"
    assert err.startswith("error: --public-url ") and "\nhint: " in err, err
    assert env_entries(scratch_repo) == before


@pytest.mark.parametrize(
    "host",
    [
        'meet.example.org"\nproject = "injected',
        "meet.example.org\n[ssh]",
        "meet example.org",
        "meet.example.org'",
        "-oProxyCommand=touch /tmp/x",
        "deploy@meet.example.org",
        "meet.example.org:2222",
        "meet.example.org\n",
    ],
)
def test_bad_host_is_refused_and_nothing_is_created(
    scratch_repo: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    before = env_entries(scratch_repo)
    code = init(scratch_repo, "--public-url", "https://meet.example.org", "--host", host)
    err = capsys.readouterr().err
    assert code == 1, f"accepted {host!r}: {err}"
    assert err.startswith("error: --host ") and "\nhint: " in err, err
    assert env_entries(scratch_repo) == before


@pytest.mark.parametrize(
    ("url", "host", "address", "public_url"),
    [
        ("https://meet.example.org", "", "meet.example.org", "https://meet.example.org"),
        ("https://meet.example.org/", "", "meet.example.org", "https://meet.example.org"),
        ("https://192.0.2.7:8443", "jitsi-prod", "jitsi-prod", "https://192.0.2.7:8443"),
        ("https://[2001:db8::7]:8443", "2001:db8::7", "2001:db8::7", "https://[2001:db8::7]:8443"),
    ],
)
def test_init_writes_values_that_read_back_exactly(
    scratch_repo: Path, url: str, host: str, address: str, public_url: str
) -> None:
    args = ["--public-url", url] + (["--host", host] if host else [])
    assert init(scratch_repo, *args) == 0
    env_dir = scratch_repo / "env" / "prod"
    text = (env_dir / "deploy.toml").read_text()
    deploy = tomllib.loads(text)
    assert deploy["hosts"] == [{"address": address, "role": "main"}], deploy
    # A [[hosts]] table, so the operator can append a bridge host the same way.
    bridge = '\n[[hosts]]\naddress = "jvb2.example.org"\nrole = "jvb"\n'
    assert len(tomllib.loads(text + bridge)["hosts"]) == 2, text
    values = dotenv_values(env_dir / "jitsi.env")
    assert values["PUBLIC_URL"] == public_url, values
    # COLIBRI_REST_ENABLED=1: the bridge REST media.ice needs (host 127.0.0.1 only).
    assert set(values) == {"PUBLIC_URL", "JITSI_IMAGE_VERSION", "COLIBRI_REST_ENABLED"}, values
    assert stat.S_IMODE((env_dir / "secrets.env").stat().st_mode) == 0o600
    assert env_entries(scratch_repo) == ["common.env", "example", "prod"]


def test_a_failed_init_leaves_nothing_and_the_next_one_works(
    scratch_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_write_private = environments.write_private

    def disk_full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(environments, "write_private", disk_full)
    with pytest.raises(OSError, match="No space left"):
        init(scratch_repo, "--public-url", "https://meet.example.org")
    assert env_entries(scratch_repo) == ["common.env", "example"], "init left files behind"

    monkeypatch.setattr(environments, "write_private", real_write_private)
    capsys.readouterr()
    assert init(scratch_repo, "--public-url", "https://meet.example.org") == 0
    assert (scratch_repo / "env" / "prod" / "secrets.env").is_file()


def test_init_refuses_an_existing_environment_without_touching_it(
    scratch_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(scratch_repo, "--public-url", "https://meet.example.org") == 0
    env_dir = scratch_repo / "env" / "prod"
    before = {p.name: p.read_bytes() for p in env_dir.iterdir()}
    capsys.readouterr()
    assert init(scratch_repo, "--public-url", "https://other.example.org") == 1
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in env_dir.iterdir()} == before
    assert env_entries(scratch_repo) == ["common.env", "example", "prod"]
