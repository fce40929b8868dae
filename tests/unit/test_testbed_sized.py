"""The bench's sized stand-ins: padding that is deterministic, incompressible and adds up to
what a real host pulls for a release (tests/testbed/images.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.testbed import images


def test_padding_is_deterministic_and_incompressible(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    images.write_padding(first, "seed-1", 3 * 1024 * 1024 + 5, chunk=1024 * 1024)
    images.write_padding(again, "seed-1", 3 * 1024 * 1024 + 5, chunk=1024 * 1024)
    images.write_padding(other, "seed-2", 3 * 1024 * 1024 + 5, chunk=1024 * 1024)
    data = first.read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 5
    assert data == again.read_bytes(), "the same seed must give the same bytes"
    assert data != other.read_bytes()
    assert first.stat().st_mtime == 0, "a varying mtime would vary the layer"
    assert len(gzip.compress(data, 6)) > 0.99 * len(data), "gzip shrank the padding"


def test_padding_adds_up_to_the_real_images_with_shared_layers_once() -> None:
    for release in ("stable-11146-2", "stable-11031"):
        real = images.REAL_IMAGE_MB[release]
        pulled = images.upgrade_pull_mb(release)
        assert set(pulled) == set(images.JITSI_SERVICES)
        assert all(mb > 0 for mb in pulled.values()), pulled
        shared = images.SHARED_BASE_MB * 3 + images.SHARED_BASE_JAVA_MB
        assert sum(pulled.values()) == sum(real.values()) - shared, pulled
    assert images.upgrade_pull_mb("stable-11146-1") == images.upgrade_pull_mb("stable-11146-2")
    assert images.sized_ref("r:5000", "jvb", "t") == "r:5000/jitsi-sized/jvb:t"
