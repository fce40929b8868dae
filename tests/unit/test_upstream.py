"""Upstream's variables per release (jitsi_ops/data) and what `check` makes of them.

The table is facts computed from upstream's release tags; these tests keep it in step with the
rest of the project (the releases jitsi-ops knows, the curated hints, the compose sets, and
upstream env.example files read at their own commits) and hold `check` to the acceptance of
issue 10: upstream's own env.example of any release, every line uncommented, has no
`unknown-key`, and every variable upstream removed is reported with the release that removed it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jitsi_ops import upstream
from jitsi_ops.composeset import known_variables
from jitsi_ops.lint import Finding, LintContext, run_checks
from jitsi_ops.versions import (
    DESCRIBED_RELEASES,
    LATEST_KNOWN,
    NEWEST_KNOWN,
    Layout,
    Release,
    parse_release,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "upstream-env-example"
SHARED_TABLE = REPO_ROOT.parent / "shared" / "upstream-variables.tsv"
TABLE = upstream.variables()
# Every release the table names (a first or a removing release), oldest first, plus the newest.
RELEASES = sorted(
    {v.first for v in TABLE.values()}
    | {v.removed_in for v in TABLE.values() if v.removed_in}
    | {upstream.newest_recorded()}
)
OUR_OWN = {"PUBLISH_ADDRESS", "XMPP_PUBLISH_ADDRESS", "ETHERPAD_IMAGE", "WHITEBOARD_IMAGE"}


def _show(findings: list[Finding]) -> str:
    return "\n".join(f"{f.severity} {f.key} {f.rule}: {f.message} | {f.hint}" for f in findings)


# --- the table is in step ---------------------------------------------------------------------


def test_table_parses_and_records_every_removal() -> None:
    removed = [v for v in TABLE.values() if v.removed_in is not None]
    assert len(TABLE) == 528, len(TABLE)
    assert len(removed) == 49, len(removed)
    for var in TABLE.values():
        assert var.first <= var.last, var
        if var.removed_in is not None:
            assert var.last < var.removed_in, var
        else:
            assert var.last == upstream.newest_recorded(), var


def test_table_matches_the_shared_facts_when_present() -> None:
    if not SHARED_TABLE.is_file():
        pytest.skip(f"{SHARED_TABLE} is not on this machine")
    packaged = REPO_ROOT / "jitsi_ops" / "data" / upstream.DATA_FILE
    assert packaged.read_bytes() == SHARED_TABLE.read_bytes(), "re-copy the upstream table"


def test_newest_release_is_the_same_everywhere() -> None:
    assert upstream.newest_recorded() == NEWEST_KNOWN, (upstream.newest_recorded(), NEWEST_KNOWN)
    assert str(NEWEST_KNOWN) == LATEST_KNOWN


def test_curated_hints_are_for_removed_variables_only() -> None:
    for name in upstream.REMOVAL_HINTS:
        assert name in TABLE and TABLE[name].removed_in is not None, name


@pytest.mark.parametrize("layout", list(Layout))
def test_our_compose_sets_consume_only_what_their_releases_have(layout: Layout) -> None:
    # A variable our files pass that none of the described releases had would be a file that
    # does not describe those releases.
    consumed = known_variables(REPO_ROOT, layout) & set(TABLE)
    for release in DESCRIBED_RELEASES[layout]:
        missing = sorted(
            name
            for name in consumed
            if not TABLE[name].present_in(release) and TABLE[name].first > release
        )
        # Deliberate: jibri's chromedriver debug switches arrived in stable-11146-1 (unset:
        # harmless); the legacy set takes its images through JITSI_IMAGE_REPO too (a mirror).
        missing = [
            n
            for n in missing
            if not n.startswith("JIBRI_CHROMEDRIVER_DEBUG") and n != "JITSI_IMAGE_REPO"
        ]
        assert missing == [], f"{release}: {missing}"


def _fixture_names(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _releases_having(names: set[str]) -> list[Release]:
    return [r for r in RELEASES if all(TABLE[n].present_in(r) for n in names if n in TABLE)]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.stem[:7])
def test_upstream_env_examples_agree_with_the_table(path: Path) -> None:
    # Two independent readings of upstream: an env.example read at its commit, and the table.
    names = _fixture_names(path)
    assert len(names) > 50, names
    unknown = sorted(n for n in names if n not in TABLE or not TABLE[n].in_env_example)
    assert unknown == [], unknown
    assert _releases_having(names), f"no release of the table has all of {path.name}"


# --- the acceptance: env.example of any release, and every removal ---------------------------


def _check(values: dict[str, str], release: Release) -> list[Finding]:
    return run_checks(
        LintContext.for_test({**values, "JITSI_IMAGE_VERSION": str(release)}, root=REPO_ROOT)
    )


def _example_env(names: set[str]) -> dict[str, str]:
    # Values do not matter to unknown-key; a plausible one keeps other rules calm.
    return dict.fromkeys(sorted(names), "1")


@pytest.mark.parametrize("release", RELEASES, ids=str)
def test_env_example_of_every_release_has_no_unknown_key(release: Release) -> None:
    example = {v.name for v in TABLE.values() if v.in_env_example and v.present_in(release)}
    findings = [f for f in _check(_example_env(example), release) if f.rule == "unknown-key"]
    assert findings == [], _show(findings)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.stem[:7])
def test_real_env_example_has_no_unknown_key(path: Path) -> None:
    names = _fixture_names(path)
    for release in _releases_having(names):
        findings = [f for f in _check(_example_env(names), release) if f.rule == "unknown-key"]
        assert findings == [], f"{release}:\n{_show(findings)}"


@pytest.mark.parametrize(
    "name", sorted(n for n, v in TABLE.items() if v.removed_in is not None), ids=str
)
def test_every_removed_variable_is_reported_with_its_release(name: str) -> None:
    var = TABLE[name]
    assert var.removed_in is not None
    findings = [f for f in _check({name: "1"}, NEWEST_KNOWN) if f.key == name]
    assert findings, f"{name} (removed in {var.removed_in}) is not reported"
    assert any(str(var.removed_in) in f.message for f in findings), _show(findings)
    assert not any(f.rule == "unknown-key" for f in findings), _show(findings)
    assert not any("did you mean" in f.hint for f in findings), _show(findings)


def test_removed_tcp_port_names_its_release_and_the_real_fix() -> None:
    (finding,) = [
        f for f in _check({"JVB_TCP_PORT": "4443"}, NEWEST_KNOWN) if f.key == "JVB_TCP_PORT"
    ]
    assert finding.rule == "removed-variable", _show([finding])
    assert "stable-7001" in finding.message and "TURN" in finding.hint, _show([finding])
    assert "JVB_XMPP_PORT" not in finding.hint


def test_removed_variable_is_quiet_while_its_release_still_has_it() -> None:
    findings = [f for f in _check({"JVB_TCP_PORT": "4443"}, Release(6865)) if f.key]
    assert not [f for f in findings if f.key == "JVB_TCP_PORT"], _show(findings)


def test_variable_of_a_later_release_names_the_release_that_added_it() -> None:
    # ENABLE_AUDIO_TRANSLATION arrived in stable-11146; the legacy set does not pass it.
    findings = [
        f
        for f in _check({"ENABLE_AUDIO_TRANSLATION": "1"}, Release(11031))
        if f.key == "ENABLE_AUDIO_TRANSLATION"
    ]
    (finding,) = findings
    assert finding.rule == "unknown-key" and "stable-11146" in finding.message, _show(findings)
    assert "did you mean" not in finding.hint


def test_release_tags_in_the_table_parse() -> None:
    for release in RELEASES:
        assert parse_release(str(release)) == release
    assert re.fullmatch(r"stable-\d+(-\d+)?", str(RELEASES[0]))
