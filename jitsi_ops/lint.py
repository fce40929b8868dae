"""`invoke check`: offline rules that refuse known operator mistakes before anything touches a host.

Each rule is a pure function of a LintContext returning Findings; rules register themselves
with @rule so the README table and tests can enumerate them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from jitsi_ops.composeset import known_variables
from jitsi_ops.settings import DeploySettings, Environment, Host
from jitsi_ops.versions import Layout, layout_for

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: Mapping[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem found in an environment."""

    rule: str
    severity: Severity
    key: str | None
    message: str
    hint: str

    def as_dict(self) -> dict[str, str | None]:
        """The JSON shape of `invoke check --json`."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class LintContext:
    """What the rules see: resolved values plus the deploy settings and the known variable set."""

    values: Mapping[str, str]
    deploy: DeploySettings
    known: frozenset[str]
    env_name: str = "test"
    origins: Mapping[str, str] = field(default_factory=dict)
    secrets_file_mode: int | None = None

    @property
    def release(self) -> str | None:
        """The pinned JITSI_IMAGE_VERSION, if set."""
        return self.values.get("JITSI_IMAGE_VERSION") or None

    @property
    def layout(self) -> Layout:
        """Compose layout of the pinned release."""
        return layout_for(self.release)

    def get(self, key: str) -> str:
        """A value, or '' when unset."""
        return self.values.get(key, "")

    def flag(self, key: str) -> bool:
        """A 1/0 style flag as upstream templates read it (any other non-empty text is true)."""
        value = self.get(key).strip().lower()
        return bool(value) and value not in ("0", "false", "f")

    @classmethod
    def for_test(
        cls,
        values: Mapping[str, str],
        *,
        root: Path,
        test_environment: bool = False,
        reverse_proxy: bool = False,
        internet_facing: bool = True,
        components: tuple[str, ...] = (),
        secrets_file_mode: int | None = 0o600,
        hosts: tuple[Host, ...] = (Host("meet.example.com"),),
    ) -> LintContext:
        """A context for unit tests, using the compose set shipped under `root`."""
        deploy = DeploySettings(
            hosts=hosts,
            test_environment=test_environment,
            reverse_proxy=reverse_proxy,
            internet_facing=internet_facing,
            components=components,
        )
        return cls(
            values=MappingProxyType(dict(values)),
            deploy=deploy,
            known=known_variables(root, layout_for(values.get("JITSI_IMAGE_VERSION"))),
            secrets_file_mode=secrets_file_mode,
        )


RuleFunc = Callable[[LintContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A registered rule: id, one-line summary for the README table, and the check itself."""

    id: str
    summary: str
    func: RuleFunc


RULES: dict[str, Rule] = {}


def rule(rule_id: str, summary: str) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule under `rule_id`."""

    def register(func: RuleFunc) -> RuleFunc:
        if rule_id in RULES:
            raise ValueError(f"duplicate rule id {rule_id}")
        RULES[rule_id] = Rule(rule_id, summary, func)
        return func

    return register


def context_for(env: Environment) -> LintContext:
    """Build the lint context of a loaded environment."""
    mode = None
    try:
        mode = stat.S_IMODE(os.stat(env.secrets_file).st_mode)
    except FileNotFoundError:
        mode = None
    return LintContext(
        values=env.values,
        deploy=env.deploy,
        known=known_variables(env.root, env.layout),
        env_name=env.name,
        origins=env.origins,
        secrets_file_mode=mode,
    )


def run_checks(ctx: LintContext, only: Iterable[str] | None = None) -> list[Finding]:
    """Run every rule (or only some) and return findings, errors first, stable order."""
    # Rules live in lint_rules; importing it registers them.
    from jitsi_ops import lint_rules  # noqa: F401, PLC0415

    selected = [RULES[r] for r in only] if only else list(RULES.values())
    findings = [finding for r in selected for finding in r.func(ctx)]
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.key or "", f.rule))


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error (check exits 1)."""
    return any(f.severity == "error" for f in findings)
