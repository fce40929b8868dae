"""ssh: configuration errors surface as one-line ConfigErrors before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import Host, SshOptions
from jitsi_ops.ssh import SshRunner, known_hosts_path


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
