"""Parse, merge, interpolate, render, mask and diff docker-jitsi-meet `.env` text.

Reading goes through python-dotenv's parser (never `load_dotenv`, which would leak into
os.environ). Writing picks, per value, a quoting that Compose v2 and python-dotenv both read
back to exactly the same string, with no interpolation and no command execution.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables

from jitsi_ops.errors import ConfigError
from jitsi_ops.secrets import is_secret_key

MASK = "********"

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The key of a line python-dotenv could not parse (shown in the error; the value never is).
_LINE_KEY_RE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
# Values made only of these characters mean the same to every reader when left unquoted.
_PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9_./:,@%+=~-]*")

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n"})
# ENABLE_*/DISABLE_* keys that hold text, not a flag.
_NON_BOOLEAN_SUFFIXES = ("_LINK", "_STRING", "_URL", "_REGEXP", "_REGEX")
_EXTRA_BOOLEAN_KEYS = frozenset(
    {
        "BOSH_RELATIVE",
        "COLIBRI_REST_ENABLED",
        "JICOFO_ENABLE_HEALTH_CHECKS",
        "JICOFO_ENABLE_REST",
        "JVB_PREFER_SCTP",
        "JWT_ALLOW_EMPTY",
        "JWT_ENABLE_DOMAIN_VERIFICATION",
        "LETSENCRYPT_USE_STAGING",
        "SHUTDOWN_REST_ENABLED",
        "START_AUDIO_MUTED",
        "START_AUDIO_ONLY",
        "START_SILENT",
        "START_VIDEO_MUTED",
        "START_WITH_AUDIO_MUTED",
        "START_WITH_VIDEO_MUTED",
        "JVB_DISABLE_STUN",
        "JVB_ADVERTISE_PRIVATE_CANDIDATES",
        "DISABLE_AWS_HARVESTER",
        "PROSODY_C2S_REQUIRE_ENCRYPTION",
    }
)


@dataclass(frozen=True)
class Entry:
    """One assignment read from an env file: its value and whether it was single-quoted (literal)."""

    key: str
    value: str
    literal: bool
    line: int


def parse_entries(text: str, source: str) -> list[Entry]:
    """Parse env text into entries; an error names the file, the line and the key, never any
    part of the line's text (in secrets.env or a host's .env that is half a password)."""
    entries: list[Entry] = []
    for binding in parse_stream(io.StringIO(text)):
        text_of_binding = binding.original.string.lstrip()
        # A binding starts with the blank lines before it: count them to name the real line.
        skipped = binding.original.string[: len(binding.original.string) - len(text_of_binding)]
        line_no = binding.original.line + skipped.count("\n")
        if binding.error:
            key = _LINE_KEY_RE.match(text_of_binding)
            raise ConfigError(
                f"{source}:{line_no}: cannot parse the value of {key[1]}"
                if key
                else f"{source}:{line_no}: cannot parse this line",
                hint="write KEY=value lines; an unterminated quote is the usual cause; quote "
                "values with spaces or '#' in single quotes",
            )
        if binding.key is None:
            continue
        if not _KEY_RE.fullmatch(binding.key) or binding.value is None:
            # Not shown: a line that is no KEY=value may well be a pasted password.
            raise ConfigError(
                f"{source}:{line_no}: not a KEY=value line",
                hint="names use letters, digits and '_' and do not start with a digit; "
                "every line is KEY=value or a # comment",
            )
        raw_value = binding.original.string.split("=", 1)[-1].lstrip()
        entries.append(
            Entry(
                key=binding.key,
                value=binding.value,
                literal=raw_value.startswith("'"),
                line=line_no,
            )
        )
    return entries


def parse_env(text: str, source: str = "<env>") -> dict[str, str]:
    """Parse env text into a dict without interpolation (last assignment wins)."""
    return {entry.key: entry.value for entry in parse_entries(text, source)}


def interpolate(entries: Iterable[Entry], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Apply assignments in order, resolving `${VAR}` / `${VAR:-default}` against earlier ones only.

    Unlike dotenv_values(), unresolved names become empty strings instead of falling back to
    this machine's os.environ, so a render is the same on every workstation.
    """
    values: dict[str, str] = dict(base or {})
    for entry in entries:
        if entry.literal:
            values[entry.key] = entry.value
        else:
            values[entry.key] = "".join(
                atom.resolve(values) for atom in parse_variables(entry.value)
            )
    return values


def is_boolean_key(key: str) -> bool:
    """Whether upstream templates read this variable as a flag."""
    if key in _EXTRA_BOOLEAN_KEYS:
        return True
    if key.startswith(("ENABLE_", "DISABLE_")) or key.endswith("_ENABLED"):
        return not key.endswith(_NON_BOOLEAN_SUFFIXES)
    return False


def normalise_boolean(key: str, value: str) -> str:
    """Write flags as 1/0: upstream shell checks compare to 1, so `true` can silently mean off."""
    if not is_boolean_key(key):
        return value
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return "1"
    if word in FALSE_WORDS:
        return "0"
    return value


def quote_value(key: str, value: str) -> str:
    """Quote a value so Compose v2 and python-dotenv both read back exactly `value`.

    Single quotes are literal to both readers (no `$` expansion); only `\\'` is an escape
    both understand. Backslashes that either reader could take as an escape fall back to
    double quotes, which are safe only without `$` (Compose expands `$` there).
    """
    if "\n" in value or "\r" in value:
        raise ConfigError(
            f"{key}: value contains a line break",
            hint="docker compose .env files cannot hold multi-line values; use a single line",
        )
    if _PLAIN_VALUE_RE.fullmatch(value):
        return value
    if not re.search(r"\\(\\|')|\\\Z", value):
        return "'" + value.replace("'", "\\'") + "'"
    if "$" not in value:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise ConfigError(
        f"{key}: value combines '$' with an escaped backslash, which Compose and dotenv read differently",
        hint="avoid a backslash directly before another backslash or a quote in values with '$'",
    )


@dataclass(frozen=True)
class Section:
    """A titled group of keys in a rendered `.env`."""

    title: str
    values: Mapping[str, str]


def render(header: Iterable[str], sections: Iterable[Section], *, show_secrets: bool) -> str:
    """Render a `.env`: header comments, then each section with its keys sorted."""
    lines = [f"# {line}" if line else "#" for line in header]
    for section in sections:
        if not section.values:
            continue
        lines.extend(["", f"# --- {section.title}"])
        for key in sorted(section.values):
            value = section.values[key]
            if not show_secrets and is_secret_key(key) and value:
                lines.append(f"{key}={MASK}")
            else:
                lines.append(f"{key}={quote_value(key, value)}")
    return "\n".join(lines) + "\n"


def mask_values(values: Mapping[str, str]) -> dict[str, str]:
    """Copy of `values` with every secret value replaced by the mask."""
    return {k: (MASK if is_secret_key(k) and v else v) for k, v in values.items()}


def masked_diff(
    current: Mapping[str, str], target: Mapping[str, str], *, current_name: str, target_name: str
) -> str:
    """Unified diff of two env mappings, secrets masked but a changed secret still shown as changed."""

    def lines(values: Mapping[str, str], other: Mapping[str, str], label: str) -> list[str]:
        out = []
        for key in sorted(values):
            value = values[key]
            if is_secret_key(key) and value:
                # Different labels on each side, so a changed secret still shows as a change.
                value = MASK if other.get(key) == value else f"{MASK} ({label})"
            out.append(f"{key}={value}\n")
        return out

    return "".join(
        difflib.unified_diff(
            lines(current, target, "previous value"),
            lines(target, current, "changed"),
            fromfile=current_name,
            tofile=target_name,
        )
    )
