"""Which variables are secrets, and generating the missing ones (never rotating existing ones)."""

from __future__ import annotations

import re
import secrets as _random
from collections.abc import Mapping

# Exactly the variables upstream's gen-passwords.sh fills, in its order.
GENERATED_SECRETS: tuple[str, ...] = (
    "JICOFO_AUTH_PASSWORD",
    "JVB_AUTH_PASSWORD",
    "JIGASI_XMPP_PASSWORD",
    "JIBRI_RECORDER_PASSWORD",
    "JIBRI_XMPP_PASSWORD",
    "JIGASI_TRANSCRIBER_PASSWORD",
)

_SECRET_KEY_RE = re.compile(
    r"(_PASSWORD|_SECRET|_TOKEN|_BINDPW|_CREDENTIALS|_DSN|PRIVATE_KEY(_[A-Z0-9]+)?|"
    r"SECRET_ACCESS_KEY|_AUTH_TOKEN)$"
)


def is_secret_key(key: str) -> bool:
    """Whether a variable holds a secret that must never be printed."""
    return bool(_SECRET_KEY_RE.search(key))


def new_secret() -> str:
    """32 lowercase hex characters (128 bits), the same shape gen-passwords.sh produces."""
    return _random.token_hex(16)


def missing_secrets(existing: Mapping[str, str]) -> list[str]:
    """Generated secrets that are absent or empty in `existing`, in gen-passwords.sh order."""
    return [key for key in GENERATED_SECRETS if not existing.get(key)]


def fill_missing(existing: Mapping[str, str]) -> dict[str, str]:
    """New values for the missing secrets only; existing values are never touched."""
    return {key: new_secret() for key in missing_secrets(existing)}


def secret_values(values: Mapping[str, str]) -> list[str]:
    """Every non-trivial secret value in `values` (used to scrub text before it is shown)."""
    return [v for k, v in values.items() if is_secret_key(k) and len(v) >= 4]


def scrub(text: str, values: Mapping[str, str]) -> str:
    """Replace any secret value that appears in `text` with a mask."""
    for value in sorted(secret_values(values), key=len, reverse=True):
        text = text.replace(value, "********")
    return text
