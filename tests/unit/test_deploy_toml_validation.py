"""deploy.toml validation: every key type-checked, remote paths absolute, one-line errors only.

Issue 10 items 5 (`bool("false")` is True), 9 (`~` in remote paths), 10 (malformed values give
tracebacks or wrong errors) and 11 (a trailing newline passes a name check).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.errors import ConfigError
from jitsi_ops.settings import load_environment, parse_deploy_toml, validate_env_name

SOURCE = "env/x/deploy.toml"
HOST = '[[hosts]]\naddress = "203.0.113.10"\n'


def parse(text: str):
    return parse_deploy_toml(text, SOURCE, Path("/repo/env/x"))


def top(line: str) -> str:
    """A deploy.toml with one extra top-level line (top-level keys come before [[hosts]])."""
    return line + "\n" + HOST


def table(name: str, line: str) -> str:
    return HOST + f"[{name}]\n{line}\n"


def host(line: str) -> str:
    return HOST + line + "\n"


# (deploy.toml text, the dotted key the error must name, a word the message or hint must hold)
MALFORMED = [
    # item 5: strings where booleans belong turned the option on
    (
        table("verify", 'trust_host_certificate = "false"'),
        "verify.trust_host_certificate",
        "true or false",
    ),
    (top('test_environment = "false"'), "test_environment", "true or false"),
    (top('reverse_proxy = "no"'), "reverse_proxy", "true or false"),
    (top("internet_facing = 0"), "internet_facing", "true or false"),
    (top('use_common_env = "yes"'), "use_common_env", "true or false"),
    (host('sudo = "false"'), "hosts[0].sudo", "true or false"),
    # item 10: the reported reproductions
    (top("project = 5"), "project", "string"),
    (table("ssh", 'connect_timeout = "abc"'), "ssh.connect_timeout", "number"),
    (top("ssh = 1"), "ssh", "table"),
    (top('components = "etherpad"'), "components", "list"),
    (table("backup", 'dir = "backups"'), "backup.dir", "absolute"),
    # more wrong types and shapes
    (top("backup = []"), "backup", "table"),
    (top('verify = "yes"'), "verify", "table"),
    (top("components = [1]"), "components", "string"),
    (top('components = [["etherpad"]]'), "components", "string"),
    (top("stack_dir = 5"), "stack_dir", "string"),
    (top("stack_dir = true"), "stack_dir", "string"),
    (top('stack_dir = ""'), "stack_dir", "absolute"),
    (top('stack_dir = "/"'), "stack_dir", "/"),
    (top('stack_dir = "/opt/ji\\ntsi"'), "stack_dir", "control"),
    (top('project = "Jitsi"'), "project", "lowercase"),
    (top('project = "jitsi\\n"'), "project", "lowercase"),
    (top('project = ""'), "project", "lowercase"),
    ("hosts = 5\n", "hosts", "[[hosts]]"),
    ("hosts = [1]\n", "hosts[0]", "table"),
    ('hosts = ["a"]\n', "hosts[0]", "table"),
    ("[[hosts]]\naddress = 5\n", "hosts[0].address", "string"),
    ('[[hosts]]\naddress = ""\n', "hosts[0].address", "host"),
    ('[[hosts]]\naddress = "meet example"\n', "hosts[0].address", "host"),
    ('[[hosts]]\naddress = "meet.example.com\\n"\n', "hosts[0].address", "host"),
    ('[[hosts]]\naddress = "-oProxyCommand=x"\n', "hosts[0].address", "host"),
    (host("user = 5"), "hosts[0].user", "string"),
    (host('user = ""'), "hosts[0].user", "user"),
    (host('user = "de ploy"'), "hosts[0].user", "user"),
    (host("port = 22.5"), "hosts[0].port", "integer"),
    (host("port = true"), "hosts[0].port", "integer"),
    (host("port = 0"), "hosts[0].port", "1-65535"),
    (host("role = 1"), "hosts[0].role", "main"),
    (host('role = "Main"'), "hosts[0].role", "main"),
    (host('values = "x"'), "hosts[0].values", "table"),
    (host("values = { JVB_ADVERTISE_IPS = 1 }"), "hosts[0].values.JVB_ADVERTISE_IPS", "string"),
    (host('values = { "lower" = "x" }'), "hosts[0].values.lower", "upper-case"),
    (host('values = { "KEY\\n" = "x" }'), "hosts[0].values", "upper-case"),
    (
        HOST + '[[hosts]]\naddress = "b"\nrole = "jvb"\nstack_dir = "~/jitsi"\n',
        "hosts[1].stack_dir",
        "absolute",
    ),
    (
        HOST + '[[hosts]]\naddress = "b"\nrole = "jvb"\nbackup_dir = "rel"\n',
        "hosts[1].backup_dir",
        "absolute",
    ),
    (
        HOST + '[[hosts]]\naddress = "b"\nrole = "jvb"\nbackup_dir = 3\n',
        "hosts[1].backup_dir",
        "string",
    ),
    (table("ssh", "config = 5"), "ssh.config", "string"),
    (table("ssh", "known_hosts = false"), "ssh.known_hosts", "string"),
    (table("ssh", "host_key_policy = 1"), "ssh.host_key_policy", "strict"),
    (table("ssh", "connect_timeout = true"), "ssh.connect_timeout", "number"),
    (table("ssh", "connect_timeout = 0"), "ssh.connect_timeout", "greater than 0"),
    (table("ssh", "connect_timeout = -1.5"), "ssh.connect_timeout", "greater than 0"),
    (table("ssh", "connect_timeout = nan"), "ssh.connect_timeout", "number"),
    (table("ssh", "connect_timeout = inf"), "ssh.connect_timeout", "number"),
    (table("backup", "dir = 5"), "backup.dir", "string"),
    (table("backup", 'dir = "~/backups"'), "backup.dir", "absolute"),
    (table("backup", 'keep = "5"'), "backup.keep", "integer"),
    (table("backup", "keep = 2.0"), "backup.keep", "integer"),
    (table("backup", "keep = 0"), "backup.keep", "at least 1"),
    (table("verify", 'timeout = "180"'), "verify.timeout", "number"),
    (table("verify", "timeout = -3"), "verify.timeout", "greater than 0"),
    (table("verify", "ca_file = 1"), "verify.ca_file", "string"),
    (table("verify", 'cert_warning_days = "14"'), "verify.cert_warning_days", "integer"),
    (table("verify", "cert_warning_days = -1"), "verify.cert_warning_days", "at least 0"),
    (table("verify", "min_free_disk_mb = 2048.5"), "verify.min_free_disk_mb", "integer"),
    (
        table("verify", "trust_host_certificate = 1"),
        "verify.trust_host_certificate",
        "true or false",
    ),
    (top("stack_dir = 1979-05-27"), "stack_dir", "string"),
    (top('"proj\\nect" = "x"'), "unknown key 'proj\\nect'", "did you mean"),
    (table("ssh", '"con\\nfig" = "x"'), "unknown key 'ssh.con\\nfig'", "did you mean"),
]


@pytest.mark.parametrize(("text", "key", "word"), MALFORMED)
def test_malformed_value_is_one_config_error_naming_the_key(text: str, key: str, word: str) -> None:
    try:
        parse(text)
    except ConfigError as error:
        message, hint = error.message, error.hint
    except Exception as other:
        pytest.fail(f"{type(other).__name__} instead of a ConfigError: {other}")
    else:
        pytest.fail(f"accepted:\n{text}")
    assert message.startswith(f"{SOURCE}: "), message
    assert key in message, f"{key!r} not named in {message!r}"
    assert word in message + " " + hint, f"{word!r} not in {message!r} / hint {hint!r}"
    assert hint, f"no hint for {message!r}"
    assert "\n" not in message and "\n" not in hint, repr(message + hint)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (table("verify", "trust_host_certificate = false"), False),
        (table("verify", "trust_host_certificate = true"), True),
    ],
)
def test_real_booleans_still_work(text: str, expected: bool) -> None:
    assert parse(text).verify.trust_host_certificate is expected


def test_numbers_accept_integers_and_floats() -> None:
    settings = parse(table("ssh", "connect_timeout = 7") + "[verify]\ntimeout = 90.5\n")
    assert settings.ssh.connect_timeout == 7.0
    assert settings.verify.timeout == 90.5


def test_components_list_is_kept() -> None:
    assert parse(top('components = ["jibri", "etherpad"]')).components == ("jibri", "etherpad")


@pytest.mark.parametrize(
    "line",
    [
        'stack_dir = "~/jitsi-meet"',
        'stack_dir = "~"',
        'stack_dir = "~deploy/jitsi"',
    ],
)
def test_home_relative_stack_dir_is_refused_with_a_hint(line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(top(line))
    assert "stack_dir" in info.value.message and "~" in info.value.message
    assert "use an absolute path" in info.value.hint, info.value.hint


def test_non_utf8_deploy_toml_is_one_line_error(tmp_path: Path) -> None:
    env_dir = tmp_path / "env" / "x"
    env_dir.mkdir(parents=True)
    (env_dir / "deploy.toml").write_bytes(b'# caf\xe9\n[[hosts]]\naddress = "a"\n')
    with pytest.raises(ConfigError) as info:
        load_environment("x", tmp_path, environ={})
    assert info.value.message.startswith("env/x/deploy.toml"), info.value.message
    assert "UTF-8" in info.value.message + info.value.hint
    assert "\n" not in info.value.message


@pytest.mark.parametrize("name", ["prod\n", "prod\r\n"])
def test_env_name_with_trailing_newline_is_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_env_name(name)
