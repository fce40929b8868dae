"""Whole-string checks use fullmatch: `^...$` with re.match lets a trailing newline through
(`$` also matches before a final '\\n'), so `prod\\n` would pass a name check (issue 10 item 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jitsi_ops import hoststate
from jitsi_ops.lint import LintContext, run_checks

PACKAGE = Path(__file__).resolve().parents[2] / "jitsi_ops"
# A regex literal anchored at both ends: a whole-string check that must use fullmatch instead.
_ANCHORED_LITERAL = re.compile(r"""r["']\^[^"'\n]*\$["']""")


def test_no_whole_string_pattern_relies_on_dollar() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _ANCHORED_LITERAL.search(line)
    ]
    assert not offenders, "use re.fullmatch without ^...$:\n" + "\n".join(offenders)


def test_deploy_id_with_trailing_newline_is_not_ours() -> None:
    assert hoststate.env_of_deploy_id("prod-20261126T063357Z-a1b2c3") == "prod"
    assert hoststate.env_of_deploy_id("prod-20261126T063357Z-a1b2c3\n") is None


@pytest.mark.parametrize(
    ("key", "value"), [("TZ", "Europe/Berlin\n"), ("RESTART_POLICY", "unless-stopped\n")]
)
def test_lint_value_checks_refuse_a_trailing_newline(key: str, value: str) -> None:
    def rules_on(text: str) -> set[str]:
        ctx = LintContext.for_test(
            {key: text, "JITSI_IMAGE_VERSION": "stable-11146-2"}, root=PACKAGE.parent
        )
        return {f.rule for f in run_checks(ctx) if f.key == key}

    assert rules_on(value) - rules_on(value.rstrip("\n")), (
        f"{key}={value!r} passed as without '\\n'"
    )
