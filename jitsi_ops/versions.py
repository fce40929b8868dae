"""docker-jitsi-meet release tags: parsing, ordering, which compose layout a release uses and which
releases jitsi-ops' compose sets describe exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_TAG_RE = re.compile(r"stable-(?P<base>\d{4,6})(?:-(?P<patch>\d{1,3}))?")
FLOATING_TAGS = frozenset({"stable", "unstable", "latest"})
LATEST_KNOWN = "stable-11146-2"  # == str(NEWEST_KNOWN) (a unit test keeps them equal)


class Layout(StrEnum):
    """The two upstream compose layouts; they differ in uid, container ports and CONFIG paths."""

    LEGACY = "legacy"  # before stable-11146: root, web on 80/443, images on docker.io
    ROOTLESS = "rootless"  # stable-11146 and later: uid 1000, web on 8000/8443, storage/ + tmp/


@dataclass(frozen=True, order=True)
class Release:
    """A pinned stable release `stable-NNNN[-N]`, ordered by base build then follow-up number."""

    base: int
    patch: int = 0

    @property
    def tag(self) -> str:
        """The tag as upstream writes it."""
        return f"stable-{self.base}" + (f"-{self.patch}" if self.patch else "")

    def __str__(self) -> str:
        return self.tag


ROOTLESS_SINCE = Release(11146)


def parse_release(tag: str) -> Release | None:
    """The Release for a pinned tag, or None for anything else (floating or custom tags)."""
    match = _TAG_RE.fullmatch(tag.strip())
    if not match:
        return None
    return Release(int(match["base"]), int(match["patch"] or 0))


def layout_for(tag: str | None) -> Layout:
    """Compose layout for a tag; unpinned or custom tags (test environments only) get the newest."""
    release = parse_release(tag or "")
    if release is not None and release < ROOTLESS_SINCE:
        return Layout.LEGACY
    return Layout.ROOTLESS


# Which upstream releases each compose set reproduces exactly (upstream's core compose file of the
# release, service by service). The legacy set is stable-11031's layout; upstream's core file was
# the same in stable-10978 but differs in stable-10888 and earlier (the variables passed to
# prosody, web, jicofo and jvb), so an older release would run with files it never had.
DESCRIBED_RELEASES: dict[Layout, tuple[Release, ...]] = {
    Layout.LEGACY: (Release(10978), Release(11031)),
    Layout.ROOTLESS: (Release(11146), Release(11146, 1), Release(11146, 2)),
}
OLDEST_DEPLOYABLE = min(min(releases) for releases in DESCRIBED_RELEASES.values())
NEWEST_KNOWN = max(max(releases) for releases in DESCRIBED_RELEASES.values())


def described_by(layout: Layout) -> str:
    """The releases a compose set describes, for messages ("stable-10978, stable-11031")."""
    return ", ".join(str(release) for release in DESCRIBED_RELEASES[layout])


def older_than_compose_sets(tag: str | None) -> Release | None:
    """The pinned release when it predates every compose set jitsi-ops ships, else None."""
    release = parse_release(tag or "")
    return release if release is not None and release < OLDEST_DEPLOYABLE else None


def newer_than_known(tag: str | None) -> Release | None:
    """The pinned release when it is newer than the newest release jitsi-ops knows, else None."""
    release = parse_release(tag or "")
    return release if release is not None and release > NEWEST_KNOWN else None
