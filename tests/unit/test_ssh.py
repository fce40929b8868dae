"""ssh: configuration errors surface as one-line ConfigErrors before any connection."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import Host, SshOptions
from jitsi_ops.ssh import SshRunner, known_hosts_path, shell_step


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
    import subprocess  # noqa: PLC0415

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
