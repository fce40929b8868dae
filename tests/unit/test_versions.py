"""versions: tag parsing, ordering and layout selection."""

from __future__ import annotations

import pytest

from jitsi_ops.versions import Layout, Release, layout_for, parse_release


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("stable-11146-2", Release(11146, 2)),
        ("stable-11146", Release(11146, 0)),
        ("stable-9584-1", Release(9584, 1)),
        ("stable", None),
        ("unstable", None),
        ("latest", None),
        ("stable-11146-2-broken", None),
        ("standin-broken", None),
    ],
)
def test_parse_release(tag: str, expected: Release | None) -> None:
    assert parse_release(tag) == expected


def test_ordering_and_str() -> None:
    tags = ["stable-11146-2", "stable-9584", "stable-11146", "stable-11031", "stable-11146-1"]
    ordered = sorted(parse_release(t) for t in tags)  # type: ignore[type-var]
    assert [str(r) for r in ordered] == [
        "stable-9584",
        "stable-11031",
        "stable-11146",
        "stable-11146-1",
        "stable-11146-2",
    ]


@pytest.mark.parametrize(
    ("tag", "layout"),
    [
        ("stable-11031", Layout.LEGACY),
        ("stable-10008", Layout.LEGACY),
        ("stable-11146", Layout.ROOTLESS),
        ("stable-11146-2", Layout.ROOTLESS),
        ("standin-broken", Layout.ROOTLESS),
        (None, Layout.ROOTLESS),
    ],
)
def test_layout_for(tag: str | None, layout: Layout) -> None:
    assert layout_for(tag) is layout
