"""Every compose file jitsi-ops ships says what upstream's file of the same release says.

The upstream side is tests/fixtures/upstream/compose-facts.yml: facts per release (images,
environment names and defaults, ports, volumes, ...), written from the upstream release, not a
copied file. A difference is allowed only when DELIBERATE below names it, with its reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from jitsi_ops import upstream
from jitsi_ops.versions import parse_release

ROOT = Path(__file__).resolve().parents[2]
FACTS = yaml.safe_load((ROOT / "tests/fixtures/upstream/compose-facts.yml").read_text())
# Keys compared service by service (labels, restart, networks are not part of the contract).
KEYS = (
    "image",
    "environment",
    "ports",
    "expose",
    "volumes",
    "depends_on",
    "user",
    "read_only",
    "tmpfs",
    "shm_size",
    "cap_add",
)
# Files that are ours only: a bridge host's whole set, and the main host's overlay publishing
# prosody's XMPP port to such hosts. Upstream has neither.
OURS_ONLY = frozenset({"jvb.yml", "remote-jvb.yml"})
PUBLISH_PREFIX = "${PUBLISH_ADDRESS:+${PUBLISH_ADDRESS:-}:}"


def _published_on_address(ours: Any, upstream: Any) -> bool:
    """Publicly published ports bind to PUBLISH_ADDRESS when set (empty: all interfaces, as
    upstream); ports upstream binds to 127.0.0.1 stay as they are."""
    if not (isinstance(ours, list) and isinstance(upstream, list)) or len(ours) != len(upstream):
        return False
    return sorted(ours) == sorted(
        port if port.startswith("127.0.0.1:") else PUBLISH_PREFIX + port for port in upstream
    )


def _image_parameter(ours: Any, upstream: Any) -> bool:
    """Every image honours a registry mirror: the third-party ones through ETHERPAD_IMAGE /
    WHITEBOARD_IMAGE with upstream's pinned reference as default, the pre-11146 Jitsi ones
    through JITSI_IMAGE_REPO with upstream's `jitsi` as default."""
    if not isinstance(ours, str) or not isinstance(upstream, str):
        return False
    allowed = {f"${{{name}:-{upstream}}}" for name in ("ETHERPAD_IMAGE", "WHITEBOARD_IMAGE")}
    if upstream.startswith("jitsi/"):
        allowed.add("${JITSI_IMAGE_REPO:-jitsi}/" + upstream.removeprefix("jitsi/"))
    return ours in allowed


# key -> (why, predicate(ours, upstream)): the only differences the sets may have.
DELIBERATE: Mapping[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "ports": ("PUBLISH_ADDRESS binds the public ports to one address", _published_on_address),
    "image": ("image references honour a mirror (JITSI_IMAGE_REPO, *_IMAGE)", _image_parameter),
}


def _environment(entries: Any) -> dict[str, str | None]:
    """`- NAME` -> NAME: None, `- NAME=value` -> NAME: value (the mapping form as it is)."""
    if isinstance(entries, dict):
        return {str(k): None if v is None else str(v) for k, v in entries.items()}
    parsed: dict[str, str | None] = {}
    for item in entries or []:
        name, sep, value = str(item).partition("=")
        parsed[name] = value if sep else None
    return parsed


def _normalise(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "environment":
        return dict(sorted(_environment(value).items()))
    if isinstance(value, list):
        return sorted(str(v) for v in value)
    return value


def _service_differences(ours: Mapping[str, Any], upstream: Mapping[str, Any]) -> list[str]:
    found = []
    for key in KEYS:
        mine, theirs = _normalise(key, ours.get(key)), _normalise(key, upstream.get(key))
        if mine == theirs:
            continue
        reason = DELIBERATE.get(key)
        if reason and reason[1](mine, theirs):
            continue
        if key == "environment":
            mine = mine or {}
            theirs = theirs or {}
            for name in sorted(set(mine) | set(theirs)):
                if name not in mine:
                    found.append(f"environment {name}: missing (upstream: {theirs[name]!r})")
                elif name not in theirs:
                    found.append(f"environment {name}: not upstream's")
                elif mine[name] != theirs[name]:
                    found.append(f"environment {name}: {mine[name]!r}, upstream {theirs[name]!r}")
        else:
            found.append(f"{key}: {mine!r}, upstream {theirs!r}")
    return found


def _cases() -> list[tuple[str, str, str]]:
    return [
        (release, facts["layout"], name)
        for release, facts in FACTS.items()
        for name in facts["files"]
    ]


@pytest.mark.parametrize(("release", "layout", "name"), _cases())
def test_each_file_matches_upstream_service_by_service(
    release: str, layout: str, name: str
) -> None:
    path = ROOT / "compose" / layout / name
    assert path.is_file(), f"compose/{layout}/{name} missing: upstream {release} has it"
    services = (yaml.safe_load(path.read_text()) or {}).get("services") or {}
    upstream = FACTS[release]["files"][name]
    assert sorted(services) == sorted(upstream), (
        f"compose/{layout}/{name}: services {sorted(services)}, upstream {sorted(upstream)}"
    )
    problems = [
        f"{service}: {problem}"
        for service in sorted(upstream)
        for problem in _service_differences(services[service], upstream[service])
    ]
    assert not problems, f"compose/{layout}/{name} differs from {release}:\n" + "\n".join(problems)


@pytest.mark.parametrize("release", sorted(FACTS))
def test_a_set_ships_no_file_upstream_lacks_except_ours(release: str) -> None:
    layout = FACTS[release]["layout"]
    shipped = {p.name for p in (ROOT / "compose" / layout).glob("*.yml")}
    extra = shipped - set(FACTS[release]["files"]) - OURS_ONLY
    assert not extra, f"compose/{layout}: {sorted(extra)} neither upstream's nor documented as ours"


def test_deliberate_differences_are_only_the_documented_ones() -> None:
    # A guard on the guard: the predicates accept exactly the documented forms.
    assert _published_on_address([PUBLISH_PREFIX + "${HTTP_PORT}:80"], ["${HTTP_PORT}:80"])
    assert not _published_on_address(["127.0.0.2:${HTTP_PORT}:80"], ["${HTTP_PORT}:80"])
    assert not _published_on_address([PUBLISH_PREFIX + "127.0.0.1:1:1"], ["127.0.0.1:1:1"])
    assert _image_parameter("${ETHERPAD_IMAGE:-etherpad/etherpad:2.0.3}", "etherpad/etherpad:2.0.3")
    assert _image_parameter("${JITSI_IMAGE_REPO:-jitsi}/web:x", "jitsi/web:x")
    assert not _image_parameter(
        "${ETHERPAD_IMAGE:-etherpad/etherpad:2.1}", "etherpad/etherpad:2.0.3"
    )
    assert not _image_parameter("${JITSI_IMAGE_REPO:-ghcr.io/jitsi}/web:x", "jitsi/web:x")


def test_the_facts_name_each_release_once_with_its_image_tag() -> None:
    # The fixture itself: each release's Jitsi images default to that very tag.
    for release, facts in FACTS.items():
        for name, services in facts["files"].items():
            for service, spec in services.items():
                image = spec["image"]
                if re.search(r"/(web|prosody|jicofo|jvb|jibri|jigasi):", image):
                    assert image.endswith(f":-{release}}}"), f"{release} {name} {service}: {image}"


def _compose_binary() -> list[str] | None:
    plugin = Path("/usr/libexec/docker/cli-plugins/docker-compose")
    if plugin.is_file():
        return [str(plugin)]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    return None


@pytest.mark.parametrize("layout", ["rootless", "legacy"])
def test_real_compose_reads_every_file_without_a_warning(layout: str, tmp_path: Path) -> None:
    # Compose v2 itself: every overlay of the set valid together with the core file, and no
    # "variable is not set" for anything upstream gives a default (the .env holds only the
    # three keys upstream has no default for).
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Compose v2 binary on this machine")
    (tmp_path / ".env").write_text("CONFIG=/srv/cfg\nHTTP_PORT=8000\nHTTPS_PORT=8443\n")
    directory = ROOT / "compose" / layout
    main = sorted(p.name for p in directory.glob("*.yml") if p.name != "jvb.yml")
    main.remove("docker-compose.yml")
    for files in (["docker-compose.yml", *main], ["jvb.yml"]):
        argv = [*binary, "-p", "fidelity", "--project-directory", str(tmp_path)]
        argv += [arg for name in files for arg in ("-f", str(directory / name))]
        done = subprocess.run(
            [*argv, "config", "-q"], check=False, capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, f"{files}: {done.stderr}"
        assert done.stderr.strip() == "", f"compose/{layout} {files}:\n{done.stderr}"


# Upstream variables the facts leave out on purpose: `restart:` is not compared, and grafana.yml
# (a monitoring overlay jitsi-ops does not ship) sets GF_ANALYTICS_REPORTING_ENABLED.
NOT_IN_FACTS = frozenset({"RESTART_POLICY", "GF_ANALYTICS_REPORTING_ENABLED"})


@pytest.mark.parametrize("release", sorted(FACTS))
def test_the_facts_name_exactly_the_variables_of_upstreams_release_table(release: str) -> None:
    # An independent source for the names: the per-release variable table computed from
    # upstream's tags (jitsi_ops/data/upstream-variables.tsv).
    tag = parse_release(release)
    assert tag is not None
    names: set[str] = set()
    for services in FACTS[release]["files"].values():
        for spec in services.values():
            names |= set(spec.get("environment") or {})
            names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", yaml.safe_dump(spec)))
    consumed = {v.name for v in upstream.variables().values() if v.in_compose and v.present_in(tag)}
    assert names <= upstream.present_in(tag), sorted(names - upstream.present_in(tag))
    assert consumed - names == NOT_IN_FACTS, sorted(consumed - names)
