"""ssh: configuration errors surface as one-line ConfigErrors before any connection."""

from __future__ import annotations

import os
import posixpath
import shlex
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_OPEN

from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import Host, SshOptions
from jitsi_ops.ssh import SshRunner, create_private, known_hosts_path, shell_step


def test_missing_ssh_config_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "ssh_config"
    with pytest.raises(ConfigError, match=r"ssh_config .* does not exist"):
        SshRunner(Host("sandbox"), SshOptions(config_file=missing))


@pytest.mark.parametrize(
    ("options", "ssh_config", "expected"),
    [
        (SshOptions(known_hosts=Path("/x/kh")), {"userknownhostsfile": "/y/kh"}, "/x/kh"),
        (SshOptions(), {"userknownhostsfile": "/y/kh /z/kh"}, "/y/kh"),
        (SshOptions(), {"userknownhostsfile": ["/y/kh"]}, "/y/kh"),
        (SshOptions(), {}, str(Path("~/.ssh/known_hosts").expanduser())),
    ],
)
def test_known_hosts_precedence(
    options: SshOptions, ssh_config: dict[str, object], expected: str
) -> None:
    assert str(known_hosts_path(options, ssh_config)) == expected


def _through_local_sh(commands: list[str]) -> bytes:
    """What the command shell's channel would carry, from a real local `sh`."""
    from jitsi_ops.ssh import _SHELL_BOOT  # noqa: PLC0415

    script = _SHELL_BOOT.format(ready="READY") + "".join(
        shell_step(command, f"TOKEN{index}") for index, command in enumerate(commands)
    )
    return subprocess.run(["sh"], input=script.encode(), capture_output=True, check=True).stdout


def test_command_shell_frames_output_by_size_not_by_content() -> None:
    tricky = "TOKEN1 0 0 0\nno newline at the end"
    stream = _through_local_sh(
        [
            shlex.join(["printf", "%s", tricky]),
            shlex.join(["sh", "-c", "echo oops >&2; exit 7"]),
            shlex.join(["sh", "-c", "read line; echo read:$line"]),
        ]
    )
    assert stream.startswith(b"READY\n"), stream
    rest = stream[len(b"READY\n") :]
    header, rest = rest.split(b"\n", 1)
    assert header.split() == [b"TOKEN0", b"0", str(len(tricky)).encode(), b"0"], header
    assert rest[: len(tricky)] == tricky.encode()
    rest = rest[len(tricky) :]
    header, rest = rest.split(b"\n", 1)
    assert header.split() == [b"TOKEN1", b"7", b"0", b"5"], header
    assert rest[:5] == b"oops\n"
    header, rest = rest[5:].split(b"\n", 1)
    # stdin is /dev/null: a command can never read the shell's stream of commands.
    assert header.split()[:2] == [b"TOKEN2", b"0"], header
    assert rest == b"read:\n", rest


# --- uploads through a real OpenSSH sftp-server (a local process on a socketpair) -------------

SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")


class WatchedSftp(paramiko.SFTPClient):  # type: ignore[misc]
    """An SFTP client that stats every file the moment the server answers its OPEN, before any
    other request (a write, a chmod) can change it: the mode it was created with."""

    first_modes: dict[str, int]

    def _request(self, t: int, *args: Any) -> Any:
        answer = super()._request(t, *args)
        if t == CMD_OPEN:
            path = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            self.first_modes.setdefault(path, stat.S_IMODE(os.lstat(path).st_mode))
        return answer


class _ServerPipe:
    """The client's end of the socketpair, with the one Channel method paramiko's logging uses."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.send = sock.send
        self.recv = sock.recv
        self.close = sock.close

    def get_name(self) -> str:
        return "sftp-server"


@pytest.fixture
def sftp() -> Iterator[WatchedSftp]:
    if not SFTP_SERVER.is_file():
        pytest.skip(f"{SFTP_SERVER} not installed (openssh-sftp-server)")
    ours, theirs = socket.socketpair()
    # umask 022, as sshd usually gives it: a file created without permissions is 0644.
    server = subprocess.Popen([str(SFTP_SERVER), "-u", "022"], stdin=theirs, stdout=theirs)
    theirs.close()
    client = WatchedSftp(_ServerPipe(ours))
    client.first_modes = {}
    try:
        yield client
    finally:
        client.close()
        ours.close()
        server.wait(timeout=10)


def upload_runner(tmp_path: Path, client: paramiko.SFTPClient) -> SshRunner:
    config = tmp_path / "ssh_config"
    config.write_text("")
    runner = SshRunner(Host("meet.example.com", user="deploy"), SshOptions(config_file=config))
    runner._sftp_client = lambda: client  # type: ignore[method-assign]
    return runner


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_put_creates_its_temporary_file_0600_before_anything_else(
    tmp_path: Path, sftp: WatchedSftp, mode: int
) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    upload_runner(tmp_path, sftp).put(b"JVB_AUTH_PASSWORD=s3cret\n", str(stack / ".env"), mode)
    (tmp,) = sftp.first_modes
    assert posixpath.dirname(tmp) == str(stack) and tmp != str(stack / ".env"), tmp
    first = sftp.first_modes[tmp]
    assert first == 0o600, f"the temporary file was created {oct(first)}: readable by others"
    assert stat.S_IMODE((stack / ".env").stat().st_mode) == mode
    assert (stack / ".env").read_bytes() == b"JVB_AUTH_PASSWORD=s3cret\n"
    assert [p.name for p in stack.iterdir()] == [".env"], "temporary file left behind"


def test_create_private_never_reuses_an_existing_file(tmp_path: Path, sftp: WatchedSftp) -> None:
    planted = tmp_path / "planted"
    planted.write_text("someone else's")
    with pytest.raises(OSError, match="Failure"):
        create_private(sftp, str(planted))
    assert planted.read_text() == "someone else's"
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="Failure"):
        create_private(sftp, str(tmp_path / "link"))
    assert (tmp_path / "elsewhere").read_text() == ""


@pytest.mark.parametrize("failure", ["rename", "ctrl-c"])
def test_a_failed_put_leaves_no_temporary_file(
    tmp_path: Path, sftp: WatchedSftp, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    stack = tmp_path / "stack"
    target = stack / "docker-compose.yml"
    if failure == "rename":
        (target / "in-the-way").mkdir(parents=True)  # a non-empty directory: rename fails
        error: type[BaseException] = OSError
    else:
        stack.mkdir()

        def interrupted(_self: object, _data: bytes) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(paramiko.SFTPFile, "write", interrupted)
        error = KeyboardInterrupt
    with pytest.raises(error):
        upload_runner(tmp_path, sftp).put(b"services: {}\n", str(target), 0o644)
    assert sftp.first_modes, "nothing was uploaded"
    left = sorted(p.name for p in stack.iterdir())
    assert left == (["docker-compose.yml"] if failure == "rename" else []), left
