"""sudo for a non-root deploy user: settings, argv wrapping, the password's path, the prompt.

SshRunner is exercised without a network: its one command primitive (_exec) and its SFTP
client are replaced by fakes that record what would have gone over the wire.
"""

from __future__ import annotations

import shlex
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import ssh
from jitsi_ops.cli import common as cli_common
from jitsi_ops.cli.common import SudoPasswordPrompt
from jitsi_ops.errors import ConfigError, OpsError, RemoteCommandError
from jitsi_ops.settings import (
    SUDO_PASSWORD_VAR,
    Host,
    SshOptions,
    load_environment,
    override_layer,
    parse_deploy_toml,
)
from jitsi_ops.ssh import SUDO_PROBE, SUDO_VALIDATE, SshRunner, install_argv, sudo_argv
from jitsi_ops.stack import stack_files

PASSWORD = "s3cret-Sudo-pw"
MINIMAL = '[[hosts]]\naddress = "203.0.113.10"\n'


# --- settings -----------------------------------------------------------------------------------


def parse(text: str) -> Any:
    return parse_deploy_toml(text, "env/x/deploy.toml", Path("/repo/env/x"))


def test_sudo_defaults_to_false_and_is_per_host() -> None:
    settings = parse(
        MINIMAL + 'user = "deploy"\nsudo = true\n[[hosts]]\naddress = "b"\nrole = "jvb"\n'
    )
    assert [h.sudo for h in settings.hosts] == [True, False]
    assert parse(MINIMAL).main_host.sudo is False


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        (
            'sudo = "yes"',
            "hosts[0].sudo must be a boolean (true or false), got a string",
            "without quotes",
        ),
        ("sudo = 1", "hosts[0].sudo must be a boolean (true or false), got an integer", ""),
        ("sudoo = true", "unknown key 'hosts[0].sudoo'", "did you mean 'sudo'?"),
    ],
)
def test_bad_sudo_key_is_one_clear_error(line: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(MINIMAL + line + "\n")
    assert message in info.value.message, info.value.message
    assert hint in info.value.hint, info.value.hint


def test_sudo_password_variable_is_never_an_override() -> None:
    layer = override_layer({SUDO_PASSWORD_VAR: PASSWORD, "JITSI_OPS_TZ": "Europe/Berlin"})
    assert [(e.key, e.value) for e in layer.entries] == [("TZ", "Europe/Berlin")]


def test_sudo_password_never_reaches_the_rendered_env(scratch_repo: Path) -> None:
    env = load_environment(
        "example", scratch_repo, environ={SUDO_PASSWORD_VAR: PASSWORD, "JITSI_OPS_TZ": "X/Y"}
    )
    assert "SUDO_PASSWORD" not in env.values, sorted(env.values)
    rendered = stack_files(env)[".env"].decode()
    assert "TZ=" in rendered and "X/Y" in rendered, "ordinary overrides still apply"
    assert PASSWORD not in rendered
    assert "SUDO_PASSWORD" not in rendered


# --- argv builders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mode", "expected"),
    [
        (["docker", "ps"], "off", "docker ps"),
        (["docker", "ps"], "nopasswd", "sudo -n -- docker ps"),
        (["docker", "ps"], "password", "sudo -k -S -p '' -- docker ps"),
        (["sh", "-c", "echo $HOME"], "password", "sudo -k -S -p '' -- sh -c 'echo $HOME'"),
        (["-n"], "nopasswd", "sudo -n -- -n"),
    ],
)
def test_sudo_argv(argv: list[str], mode: Any, expected: str) -> None:
    assert shlex.join(sudo_argv(argv, mode)) == expected


def test_probe_and_validation_never_prompt_or_use_cached_credentials() -> None:
    assert SUDO_PROBE == ("sudo", "-n", "-k", "true")
    assert SUDO_VALIDATE == ("sudo", "-k", "-S", "-p", "", "--", "true")


def test_install_argv_stages_next_to_the_target() -> None:
    argv = install_argv("/tmp/.jitsi-ops-x/f1", "/srv/stack/.env", 0o600, "abcd1234")
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == [
        "sh",
        "600",
        "/tmp/.jitsi-ops-x/f1",
        "/srv/stack/..env.abcd1234",
        "/srv/stack/.env",
    ]


def test_install_script_replaces_the_target_with_the_mode_and_cleans_up(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.write_bytes(b"\x00binary\xff")
    target = tmp_path / "stack" / "docker-compose.yml"
    target.parent.mkdir()
    target.write_text("old")
    done = subprocess.run(install_argv(str(upload), str(target), 0o640, "t1"), check=False)
    assert done.returncode == 0
    assert target.read_bytes() == b"\x00binary\xff"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not upload.exists(), "the user's temporary upload is removed"
    assert sorted(p.name for p in target.parent.iterdir()) == ["docker-compose.yml"]


def test_install_script_failure_keeps_the_target_and_removes_the_upload(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.write_text("new")
    done = subprocess.run(
        install_argv(str(upload), str(tmp_path / "missing-dir" / "x"), 0o600, "t2"),
        check=False,
        capture_output=True,
    )
    assert done.returncode != 0
    assert not upload.exists()


# --- SshRunner in sudo mode, with a fake wire ---------------------------------------------------

Answer = tuple[int | None, bytes, bytes]


@dataclass
class Wire:
    """What SshRunner._exec would have sent, and scripted answers by argv prefix."""

    answers: dict[tuple[str, ...], Answer] = field(default_factory=dict)
    sent: list[tuple[tuple[str, ...], bytes | None]] = field(default_factory=list)
    channel_only: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(
        self, argv: Any, stdin: bytes | None, _timeout: float | None, *, shell: bool = True
    ) -> Answer:
        key = tuple(argv)
        self.sent.append((key, stdin))
        if not shell:
            self.channel_only.append(key)
        best: Answer = (0, b"", b"")
        best_len = -1
        for prefix, answer in self.answers.items():
            if key[: len(prefix)] == prefix and len(prefix) > best_len:
                best, best_len = answer, len(prefix)
        return best

    def everything(self) -> str:
        return repr(self.sent)


PRIVATE = "new, 0600, exclusive"  # how FakeSftp records a file made by ssh.create_private


class FakeSftp:
    """Records the SFTP calls of a sudo put()."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.files: dict[str, bytes] = {}

    def mkdir(self, path: str, mode: int) -> None:
        self.calls.append(("mkdir", path, oct(mode)))

    def rmdir(self, path: str) -> None:
        self.calls.append(("rmdir", path))

    def open(self, path: str, mode: str) -> Any:
        sftp = self
        self.calls.append(("open", path, mode))

        class Handle:
            def __enter__(self) -> Handle:
                return self

            def __exit__(self, *_exc: object) -> None:
                return None

            def chmod(self, mode: int) -> None:
                sftp.calls.append(("chmod", path, oct(mode)))

            def write(self, data: bytes) -> None:
                sftp.files[path] = data

        return Handle()

    def close(self) -> None:
        self.calls.append(("close",))


NEEDS_PASSWORD: Answer = (1, b"", b"sudo: a password is required\n")
WRONG_PASSWORD: Answer = (
    1,
    b"",
    b"Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n",
)


def sudo_runner(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wire: Wire,
    provider: Callable[[str], str] | None = None,
    *,
    sudo: bool = True,
) -> tuple[SshRunner, FakeSftp]:
    config = tmp_path / "ssh_config"
    config.write_text("")
    runner = SshRunner(
        Host("meet.example.com", user="deploy", sudo=sudo),
        SshOptions(config_file=config, known_hosts=tmp_path / "known_hosts"),
        provider,
    )
    sftp = FakeSftp()
    monkeypatch.setattr(runner, "_exec", wire)
    monkeypatch.setattr(runner, "_sftp_client", lambda: sftp)
    # The real one speaks paramiko's request layer (tested against sftp-server in test_ssh).
    monkeypatch.setattr(ssh, "create_private", lambda client, path: client.open(path, PRIVATE))
    runner._sftp = sftp  # type: ignore[assignment]  # close() closes the one it opened
    monkeypatch.setattr(runner._conn, "close", lambda: None)
    return runner, sftp


class Counting:
    """A password provider that counts how often it is asked."""

    def __init__(self, answer: str = PASSWORD) -> None:
        self.answer = answer
        self.labels: list[str] = []

    def __call__(self, label: str) -> str:
        self.labels.append(label)
        return self.answer


def test_no_sudo_runs_argv_unchanged_without_any_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire()
    runner, _ = sudo_runner(tmp_path, monkeypatch, wire, sudo=False)
    runner.run(["docker", "ps"])
    assert wire.sent == [(("docker", "ps"), None)]


def test_passwordless_sudo_wraps_with_dash_n_after_one_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire()
    asked = Counting()
    runner, _ = sudo_runner(tmp_path, monkeypatch, wire, asked)
    runner.run(["docker", "ps"])
    runner.run(["tee", "-a", "/x"], stdin="line\n")
    assert wire.sent == [
        (SUDO_PROBE, None),
        (("sudo", "-n", "--", "docker", "ps"), None),
        (("sudo", "-n", "--", "tee", "-a", "/x"), b"line\n"),
    ]
    assert asked.labels == [], "no password is asked when sudo needs none"


def test_password_is_validated_once_then_prepended_to_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(
        {
            SUDO_PROBE: NEEDS_PASSWORD,
            ("sudo", "-k", "-S", "-p", "", "--", "echo"): (0, b"hi\n", b""),
        }
    )
    asked = Counting()
    runner, _ = sudo_runner(tmp_path, monkeypatch, wire, asked)
    first = runner.run(["echo", "hi"])
    runner.run(["tee", "-a", "/x"], stdin="line\n")
    runner.run(["docker", "ps"])
    assert asked.labels == ["deploy@meet.example.com"], "asked exactly once"
    line = (PASSWORD + "\n").encode()
    assert wire.sent == [
        (SUDO_PROBE, None),
        (SUDO_VALIDATE, line),
        (("sudo", "-k", "-S", "-p", "", "--", "echo", "hi"), line),
        (("sudo", "-k", "-S", "-p", "", "--", "tee", "-a", "/x"), line + b"line\n"),
        (("sudo", "-k", "-S", "-p", "", "--", "docker", "ps"), line),
    ]
    assert first.argv == ("echo", "hi"), "the Result names the command, not the wrapper"
    assert first.stdout == "hi\n"
    assert all(PASSWORD not in " ".join(argv) for argv, _ in wire.sent), "never in argv"


def test_password_never_appears_in_results_or_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaked = f"got {PASSWORD} on stdin\n".encode()
    wire = Wire(
        {
            SUDO_PROBE: NEEDS_PASSWORD,
            ("sudo", "-k", "-S", "-p", "", "--", "cat"): (3, leaked, leaked),
        }
    )
    runner, _ = sudo_runner(tmp_path, monkeypatch, wire, Counting())
    result = runner.run(["cat"], check=False)
    assert PASSWORD not in repr(result), repr(result)
    with pytest.raises(RemoteCommandError) as info:
        runner.run(["cat"])
    text = f"{info.value} {info.value.hint} {info.value.stderr} {info.value.argv}"
    assert PASSWORD not in text, text


def test_wrong_password_is_one_error_and_nothing_else_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire({SUDO_PROBE: NEEDS_PASSWORD, SUDO_VALIDATE: WRONG_PASSWORD})
    asked = Counting("wrong-" + PASSWORD)
    runner, sftp = sudo_runner(tmp_path, monkeypatch, wire, asked)
    with pytest.raises(OpsError) as info:
        runner.run(["mkdir", "-p", "/srv/stack"])
    assert info.value.message == "meet.example.com: sudo refused the password of deploy"
    assert "nothing was run" in info.value.hint
    assert PASSWORD not in f"{info.value.message} {info.value.hint}"
    # Later calls repeat the error without another attempt (sudo would delay each one).
    for call in (
        lambda: runner.run(["true"]),
        lambda: runner.get("/x"),
        lambda: runner.put(b"x", "/y"),
    ):
        with pytest.raises(OpsError, match="sudo refused the password"):
            call()
    assert [argv for argv, _ in wire.sent] == [SUDO_PROBE, SUDO_VALIDATE]
    assert asked.labels == ["deploy@meet.example.com"]
    assert sftp.calls == []


@pytest.mark.parametrize(
    ("probe", "validate", "message"),
    [
        ((127, b"", b"sh: 1: sudo: not found\n"), None, "sudo is not installed there"),
        (
            NEEDS_PASSWORD,
            (1, b"", b"deploy is not in the sudoers file.\n"),
            "deploy may not use sudo there",
        ),
        (NEEDS_PASSWORD, (None, b"", b""), "sudo did not answer"),
    ],
)
def test_sudo_problems_are_one_line_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    probe: Answer,
    validate: Answer | None,
    message: str,
) -> None:
    answers = {SUDO_PROBE: probe, **({SUDO_VALIDATE: validate} if validate else {})}
    runner, _ = sudo_runner(tmp_path, monkeypatch, Wire(answers), Counting())
    with pytest.raises(OpsError, match=message) as info:
        runner.run(["true"])
    assert "\n" not in str(info.value)


def test_password_needed_without_a_provider_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, _ = sudo_runner(tmp_path, monkeypatch, Wire({SUDO_PROBE: NEEDS_PASSWORD}), None)
    with pytest.raises(ConfigError, match="sudo needs deploy's password"):
        runner.run(["true"])


def test_get_reads_bytes_through_sudo_cat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = bytes(range(256))
    wire = Wire(
        {
            SUDO_PROBE: (0, b"", b""),
            ("sudo", "-n", "--", "cat", "--", "/srv/a.tar.gz"): (0, binary, b""),
            ("sudo", "-n", "--", "cat", "--", "/srv/none"): (
                1,
                b"",
                b"cat: /srv/none: No such file or directory\n",
            ),
            ("sudo", "-n", "--", "cat", "--", "/srv/dir"): (
                1,
                b"",
                b"cat: /srv/dir: Is a directory\n",
            ),
        }
    )
    runner, sftp = sudo_runner(tmp_path, monkeypatch, wire)
    assert runner.get("/srv/a.tar.gz") == binary, "binary data is not decoded"
    with pytest.raises(FileNotFoundError):
        runner.get("/srv/none")
    with pytest.raises(RemoteCommandError, match="Is a directory"):
        runner.get("/srv/dir")
    assert sftp.calls == [], "a sudo get never reads as the SSH user"
    # A file's bytes (an .env, say) never pass through the command shell's output files.
    assert ("sudo", "-n", "--", "cat", "--", "/srv/a.tar.gz") in wire.channel_only, wire.sent


def test_put_uploads_privately_then_installs_with_one_sudo_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire({SUDO_PROBE: NEEDS_PASSWORD})
    runner, sftp = sudo_runner(tmp_path, monkeypatch, wire, Counting())
    runner.put(b"KEY=value\n", "/srv/stack/.env", 0o600)
    runner.put(b"services: {}\n", "/srv/stack/docker-compose.yml", 0o644)
    mkdirs = [c for c in sftp.calls if c[0] == "mkdir"]
    assert len(mkdirs) == 1 and mkdirs[0][2] == "0o700", sftp.calls
    private = mkdirs[0][1]
    assert private.startswith("/tmp/.jitsi-ops-")
    opened = [c for c in sftp.calls if c[0] == "open"]
    assert all(c[1].startswith(private + "/") and c[2] == PRIVATE for c in opened), opened
    assert [c for c in sftp.calls if c[0] == "chmod"] == [], "created 0600: nothing to chmod"
    installs = [argv for argv, _ in wire.sent if "install" in " ".join(argv)]
    assert len(installs) == 2
    first = installs[0]
    assert first[:6] == ("sudo", "-k", "-S", "-p", "", "--")
    assert first[-4:-2] == ("600", opened[0][1]), first
    assert first[-2].startswith("/srv/stack/..env.") and first[-1] == "/srv/stack/.env"
    assert installs[1][-4] == "644"
    runner.close()
    assert ("rmdir", private) in sftp.calls
    assert runner._secret is None, "the password is forgotten on close"


def test_put_failure_is_a_remote_command_error_naming_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(
        {SUDO_PROBE: (0, b"", b""), ("sudo", "-n", "--", "sh"): (1, b"", b"mv: cannot move\n")}
    )
    runner, _ = sudo_runner(tmp_path, monkeypatch, wire)
    with pytest.raises(RemoteCommandError, match="install -m 600 /srv/x"):
        runner.put(b"x", "/srv/x")


# --- the CLI's password provider ----------------------------------------------------------------


class Tty:
    """Just enough of sys.stdin for the prompt's terminal check."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_prompt_asks_once_for_every_host_without_echo() -> None:
    asked: list[str] = []
    prompt = SudoPasswordPrompt(
        environ={}, stdin=Tty(True), ask=lambda p: asked.append(p) or PASSWORD
    )
    assert prompt("deploy@a") == PASSWORD
    assert prompt("deploy@b") == PASSWORD
    assert asked == ["[sudo] password for deploy@a: "]
    assert PASSWORD not in repr(prompt)


def test_prompt_prefers_the_environment_variable_and_never_asks() -> None:
    def never(_prompt: str) -> str:
        raise AssertionError("asked although the variable is set")

    prompt = SudoPasswordPrompt(environ={SUDO_PASSWORD_VAR: PASSWORD}, stdin=Tty(True), ask=never)
    assert prompt("deploy@a") == PASSWORD


@pytest.mark.parametrize("environ", [{}, {SUDO_PASSWORD_VAR: ""}])
def test_prompt_without_a_terminal_is_a_config_error(environ: dict[str, str]) -> None:
    prompt = SudoPasswordPrompt(environ=environ, stdin=Tty(False), ask=lambda _p: PASSWORD)
    with pytest.raises(ConfigError) as info:
        prompt("deploy@meet.example.com")
    assert "deploy@meet.example.com" in info.value.message
    assert "\n" not in info.value.message
    assert "terminal" in info.value.hint and SUDO_PASSWORD_VAR in info.value.hint


def test_cli_runners_share_the_one_prompt(scratch_repo: Path) -> None:
    env = load_environment("example", scratch_repo, environ={})
    runners = [cli_common.connect(env, host) for host in env.deploy.hosts]
    assert len(runners) == 2
    assert all(r._sudo_password is cli_common.SUDO_PASSWORD for r in runners)
