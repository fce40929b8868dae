"""docker-jitsi-meet release tags: parsing, ordering and which compose layout a release uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_TAG_RE = re.compile(r"^stable-(?P<base>\d{4,6})(?:-(?P<patch>\d{1,3}))?$")
FLOATING_TAGS = frozenset({"stable", "unstable", "latest"})
LATEST_KNOWN = "stable-11146-2"


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
    match = _TAG_RE.match(tag.strip())
    if not match:
        return None
    return Release(int(match["base"]), int(match["patch"] or 0))


def layout_for(tag: str | None) -> Layout:
    """Compose layout for a tag; unpinned or custom tags (test environments only) get the newest."""
    release = parse_release(tag or "")
    if release is not None and release < ROOTLESS_SINCE:
        return Layout.LEGACY
    return Layout.ROOTLESS
