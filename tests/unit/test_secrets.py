"""secrets: which keys are secret, generation of missing ones only, scrubbing."""

from __future__ import annotations

import re

import pytest

from jitsi_ops.secrets import GENERATED_SECRETS, fill_missing, is_secret_key, new_secret, scrub


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("JVB_AUTH_PASSWORD", True),
        ("JWT_APP_SECRET", True),
        ("LDAP_BINDPW", True),
        ("TURN_CREDENTIALS", True),
        ("MATRIX_UVS_AUTH_TOKEN", True),
        ("GC_PRIVATE_KEY", True),
        ("JIGASI_TRANSCRIBER_WHISPER_PRIVATE_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("JVB_SENTRY_DSN", True),
        ("TOKEN_AUTH_URL", False),
        ("JWT_TOKEN_AUTH_MODULE", False),
        ("PUBLIC_URL", False),
        ("JVB_AUTH_USER", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_new_secret_shape() -> None:
    values = {new_secret() for _ in range(50)}
    assert len(values) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in values)


def test_fill_missing_never_touches_existing() -> None:
    existing = {"JICOFO_AUTH_PASSWORD": "keepme-keepme-keepme", "JVB_AUTH_PASSWORD": ""}
    new = fill_missing(existing)
    assert "JICOFO_AUTH_PASSWORD" not in new
    assert set(new) == set(GENERATED_SECRETS) - {"JICOFO_AUTH_PASSWORD"}


def test_scrub_replaces_secret_values() -> None:
    text = "connect jvb with abcdef0123456789 now"
    assert "abcdef0123456789" not in scrub(text, {"JVB_AUTH_PASSWORD": "abcdef0123456789"})
