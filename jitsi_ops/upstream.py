"""What upstream docker-jitsi-meet had, release by release: its variables and the removed ones.

The facts live in `jitsi_ops/data/upstream-variables.tsv` (computed from upstream's release tags:
every variable a release's compose files consume or its env.example lists, with the first and
last release that had it and the release that removed it). `check` reads them so that a variable
of the pinned release is never "unknown" and a removed one is named with its release, whether or
not our compose set passes it. Hints written by hand for some removals sit next to the facts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from jitsi_ops.versions import Release, parse_release

DATA_FILE = "upstream-variables.tsv"
COLUMNS = (
    "variable",
    "first_release",
    "last_release",
    "removed_in",
    "in_compose",
    "in_env_example",
)


@dataclass(frozen=True)
class UpstreamVariable:
    """One upstream variable: the releases that had it and where it was seen."""

    name: str
    first: Release
    last: Release
    removed_in: Release | None  # None: still present in the newest recorded release
    in_compose: bool
    in_env_example: bool

    def present_in(self, release: Release) -> bool:
        """Whether `release` has this variable (releases newer than the table keep what the
        newest recorded release had)."""
        return self.first <= release and (self.removed_in is None or release < self.removed_in)

    def removed_by(self, release: Release) -> bool:
        """Whether upstream removed it in or before `release`."""
        return self.removed_in is not None and self.removed_in <= release


def _release(text: str, line: int) -> Release:
    release = parse_release(text)
    if release is None:
        raise ValueError(f"{DATA_FILE} line {line}: {text!r} is not a stable-NNNN[-N] tag")
    return release


def parse_table(text: str) -> dict[str, UpstreamVariable]:
    """The table's rows by name (comment lines start with '#')."""
    rows: dict[str, UpstreamVariable] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ValueError(
                f"{DATA_FILE} line {number}: {len(fields)} columns, not {len(COLUMNS)}"
            )
        name, first, last, removed, in_compose, in_example = fields
        rows[name] = UpstreamVariable(
            name=name,
            first=_release(first, number),
            last=_release(last, number),
            removed_in=_release(removed, number) if removed else None,
            in_compose=in_compose == "1",
            in_env_example=in_example == "1",
        )
    return rows


@functools.cache
def variables() -> Mapping[str, UpstreamVariable]:
    """Every variable upstream ever had, by name."""
    text = resources.files("jitsi_ops").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return MappingProxyType(parse_table(text))


def newest_recorded() -> Release:
    """The newest release the table describes."""
    return max(v.last for v in variables().values())


@functools.cache
def present_in(release: Release) -> frozenset[str]:
    """The variables `release` has."""
    return frozenset(v.name for v in variables().values() if v.present_in(release))


def removed_by(release: Release) -> dict[str, UpstreamVariable]:
    """The variables upstream removed in or before `release`."""
    return {v.name: v for v in variables().values() if v.removed_by(release)}


# --- hints written by hand, for removals where "delete it" is not the whole story ------------


@dataclass(frozen=True)
class RemovalHint:
    """Why upstream removed a variable and what to do instead."""

    why: str
    fix: str


_COLIBRI = RemovalHint(
    "colibri websockets are gone",
    "delete it: stable-11146 removed colibri websockets (SCTP data channels only), and reverse "
    "proxies no longer need /colibri-ws",
)
_TCP_HARVESTER = RemovalHint(
    "the bridge's TCP harvester was removed",
    "delete it; for clients behind UDP-blocking firewalls run a TURN server (TURN over TLS on "
    "443) instead",
)
_CALLSTATS = RemovalHint("the callstats.io integration was removed", "delete it")
_OCTO = RemovalHint(
    "the bridge's octo settings changed with the relay rework",
    "delete it; cascading bridges are configured through the bridge's relay settings now",
)

REMOVAL_HINTS: Mapping[str, RemovalHint] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "ENABLE_COLIBRI_WEBSOCKET",
                "ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX",
                "DISABLE_COLIBRI_WEBSOCKET_JVB_LOOKUP",
                "COLIBRI_WEBSOCKET_PORT",
                "COLIBRI_WEBSOCKET_REGEX",
                "COLIBRI_WEBSOCKET_JVB_LOOKUP_NAME",
            ),
            _COLIBRI,
        ),
        **dict.fromkeys(
            ("JVB_WS_DOMAIN", "JVB_WS_SERVER_ID", "JVB_WS_TLS"),
            RemovalHint("the bridge websocket settings are gone", _COLIBRI.fix),
        ),
        "ENABLE_SCTP": RemovalHint(
            "SCTP is always on", "delete it (JVB_PREFER_SCTP still exists for the web client)"
        ),
        "ENABLE_OCTO_SCTP": RemovalHint("SCTP is always on", "delete it"),
        "JICOFO_AUTH_USER": RemovalHint(
            "jicofo always logs in as focus@auth",
            "delete it; if you changed it, prosody still holds the old account (harmless)",
        ),
        **dict.fromkeys(
            ("JVB_TCP_HARVESTER_DISABLED", "JVB_TCP_PORT", "JVB_TCP_MAPPED_PORT"), _TCP_HARVESTER
        ),
        **dict.fromkeys(
            ("CALLSTATS_ID", "CALLSTATS_SECRET", "CALLSTATS_CUSTOM_SCRIPT_URL"), _CALLSTATS
        ),
        **dict.fromkeys(("JVB_OCTO_BIND_PORT", "JVB_OCTO_PUBLIC_ADDRESS"), _OCTO),
        **dict.fromkeys(
            ("JICOFO_RESERVATION_ENABLED", "JICOFO_RESERVATION_REST_BASE_URL"),
            RemovalHint(
                "jicofo's reservation system was removed",
                "delete it; prosody's mod_reservations does the same job",
            ),
        ),
        "GOOGLE_APPLICATION_CREDENTIALS": RemovalHint(
            "the transcriber takes Google credentials as values now",
            "copy the fields of the JSON key into the GC_* variables and delete it",
        ),
        "WHITEBOARD_ENABLED": RemovalHint(
            "the whiteboard is enabled by its collab server URL",
            "delete it; set WHITEBOARD_COLLAB_SERVER_URL_BASE instead",
        ),
    }
)
