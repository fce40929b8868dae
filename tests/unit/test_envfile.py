"""envfile: parsing, interpolation, quoting that round-trips, masking and diffs."""

from __future__ import annotations

import pytest
from dotenv import dotenv_values

from jitsi_ops.envfile import (
    MASK,
    Section,
    interpolate,
    is_boolean_key,
    masked_diff,
    normalise_boolean,
    parse_entries,
    parse_env,
    quote_value,
    render,
)
from jitsi_ops.errors import ConfigError

TRICKY = "a b#c$d'e\"f\\g$(id)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("https://meet.example.com:8443", "https://meet.example.com:8443"),
        ("a b", "'a b'"),
        ("x#y", "'x#y'"),
        ("$HOME", "'$HOME'"),
        ("it's", "'it\\'s'"),
        (TRICKY, "'a b#c$d\\'e\"f\\g$(id)'"),
        ("a\\\\b", '"a\\\\\\\\b"'),
        ("ends\\", '"ends\\\\"'),
    ],
    ids=[
        "plain",
        "empty",
        "url",
        "space",
        "hash",
        "dollar",
        "quote",
        "tricky",
        "double-bs",
        "trailing-bs",
    ],
)
def test_quote_value_table(value: str, expected: str) -> None:
    assert quote_value("K", value) == expected, f"quoted as {quote_value('K', value)!r}"


@pytest.mark.parametrize(
    "value",
    [TRICKY, "a b", "it's", "$(id)", "`id`", "${HOME}", "a\\\\b", "ends\\", "x\\'y", "100%", "ü ñ"],
)
def test_rendered_values_read_back_identically_with_python_dotenv(tmp_path, value: str) -> None:
    path = tmp_path / ".env"
    path.write_text(f"K={quote_value('K', value)}\n", encoding="utf-8")
    assert dotenv_values(path, interpolate=False)["K"] == value
    if "${" not in value:
        # python-dotenv expands ${VAR} even inside single quotes; Compose does not.
        assert dotenv_values(path)["K"] == value
    assert parse_env(path.read_text(encoding="utf-8"))["K"] == value


def test_newline_in_value_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="PUBLIC_URL: value contains a line break"):
        quote_value("PUBLIC_URL", "a\nb")


def test_dollar_with_escaped_backslash_is_refused() -> None:
    with pytest.raises(ConfigError, match="K:"):
        quote_value("K", "$x\\\\y")


def test_interpolation_uses_earlier_layers_and_defaults_not_os_environ(monkeypatch) -> None:
    monkeypatch.setenv("FROM_MACHINE", "leak")
    base = interpolate(parse_entries("HOST=meet.example.com\n", "common"))
    values = interpolate(
        parse_entries(
            "URL=https://${HOST}:${PORT:-443}\nLIT='${HOST}'\nM=${FROM_MACHINE}\n", "jitsi"
        ),
        base,
    )
    assert values["URL"] == "https://meet.example.com:443"
    assert values["LIT"] == "${HOST}", "single-quoted values must stay literal"
    assert values["M"] == "", f"os.environ leaked into a render: {values['M']!r}"


def test_parse_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"env/x/jitsi.env:2"):
        parse_entries("A=1\nB='unterminated\n", "env/x/jitsi.env")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("ENABLE_AUTH", "true", "1"),
        ("ENABLE_AUTH", "No", "0"),
        ("ENABLE_AUTH", "off", "0"),
        ("DISABLE_HTTPS", "yes", "1"),
        ("LETSENCRYPT_USE_STAGING", "false", "0"),
        ("ENABLE_AUTH", "1", "1"),
        ("ENABLE_LIVESTREAMING_DATA_PRIVACY_LINK", "yes", "yes"),
        ("PUBLIC_URL", "true", "true"),
    ],
)
def test_normalise_boolean(key: str, value: str, expected: str) -> None:
    assert normalise_boolean(key, value) == expected


def test_is_boolean_key() -> None:
    assert is_boolean_key("ENABLE_LETSENCRYPT")
    assert is_boolean_key("COLIBRI_REST_ENABLED")
    assert not is_boolean_key("ENABLE_LIVESTREAMING_VALIDATOR_REGEXP_STRING")
    assert not is_boolean_key("PUBLIC_URL")


def test_render_masks_secrets_and_sorts_keys() -> None:
    text = render(
        ["header"],
        [
            Section("settings", {"B": "2", "A": "1"}),
            Section("secrets", {"JVB_AUTH_PASSWORD": "s3cr3tvalue"}),
        ],
        show_secrets=False,
    )
    assert "s3cr3tvalue" not in text
    assert f"JVB_AUTH_PASSWORD={MASK}" in text
    assert text.index("A=1") < text.index("B=2")
    shown = render(
        ["h"], [Section("secrets", {"JVB_AUTH_PASSWORD": "s3cr3tvalue"})], show_secrets=True
    )
    assert "JVB_AUTH_PASSWORD=s3cr3tvalue" in shown


def test_masked_diff_shows_changed_secret_without_value() -> None:
    diff = masked_diff(
        {"JVB_AUTH_PASSWORD": "old-secret-1", "PUBLIC_URL": "https://a"},
        {"JVB_AUTH_PASSWORD": "new-secret-2", "PUBLIC_URL": "https://b"},
        current_name="host/.env",
        target_name="rendered",
    )
    assert "old-secret-1" not in diff and "new-secret-2" not in diff
    assert "(changed)" in diff
    assert "-PUBLIC_URL=https://a" in diff and "+PUBLIC_URL=https://b" in diff


def test_masked_diff_shows_a_change_of_only_a_secret() -> None:
    diff = masked_diff(
        {"JVB_AUTH_PASSWORD": "old-secret-1"},
        {"JVB_AUTH_PASSWORD": "new-secret-2"},
        current_name="host/.env",
        target_name="rendered",
    )
    assert "-JVB_AUTH_PASSWORD=******** (previous value)" in diff, diff
    assert "+JVB_AUTH_PASSWORD=******** (changed)" in diff, diff
    assert "old-secret-1" not in diff
    assert "new-secret-2" not in diff
