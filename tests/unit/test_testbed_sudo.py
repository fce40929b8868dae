"""The testbed's non-root sudo login: sshd, ssh_config, known_hosts and sudoers rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.testbed import sshhosts
from tests.testbed.sudouser import SUDO_ALIAS, SUDO_USER, render_sudoers

KEYS = Path("/state/authorized_keys")
USER_KEYS = Path("/home/jitsi-ops-deploy/.ssh/authorized_keys")


def sandbox(directory: Path = Path("/state/sandbox")) -> sshhosts.Host:
    return sshhosts.Host("sandbox", "127.0.0.1", 2222, directory, "unix:///var/run/docker.sock")


def test_sshd_config_gives_the_user_its_own_keys_file_in_a_final_match_block() -> None:
    lines = sshhosts.render_sshd_config(sandbox(), KEYS, ((SUDO_USER, USER_KEYS),)).splitlines()
    assert f"AuthorizedKeysFile {KEYS}" in lines, "root keeps the state dir's file"
    match = lines.index(f"Match User {SUDO_USER}")
    assert lines[match + 1 :] == [f"    AuthorizedKeysFile {USER_KEYS}"], lines[match:]
    assert "Match" not in sshhosts.render_sshd_config(sandbox(), KEYS)


def test_ssh_config_and_known_hosts_cover_the_sudo_alias(tmp_path: Path) -> None:
    host = sandbox(tmp_path)
    host.host_key.with_suffix(".pub").write_text("ssh-ed25519 AAAAkey comment\n")
    logins = [host, replace(host, alias=SUDO_ALIAS, user=SUDO_USER)]
    config = sshhosts.render_ssh_config(logins, Path("/k"), Path("/kh"))
    block = config.split(f"Host {SUDO_ALIAS}\n")[1]
    assert "    HostName 127.0.0.1\n    Port 2222\n" in block
    assert f"    User {SUDO_USER}\n" in block
    assert "    User root\n" in config.split(f"Host {SUDO_ALIAS}\n")[0]
    assert sshhosts.render_known_hosts(logins).splitlines() == [
        "[127.0.0.1]:2222 ssh-ed25519 AAAAkey",
        "sandbox ssh-ed25519 AAAAkey",
        f"{SUDO_ALIAS} ssh-ed25519 AAAAkey",
    ]


def test_sudoers_rule_requires_the_password() -> None:
    text = render_sudoers(SUDO_USER)
    assert f"{SUDO_USER} ALL=(ALL:ALL) ALL" in text.splitlines()
    assert "NOPASSWD" not in text
