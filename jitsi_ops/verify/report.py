"""Render a verify report: short human lines, the JSON document, JUnit XML.

Outcomes arrive already scrubbed of secret values (suite._outcome); `scrubbed()` lets a caller
apply the environment's values once more before anything leaves the process.

JSON (`invoke verify --json`), one document:
    {"env", "release", "ok", "started_at", "duration_s", "timeout_s",
     "summary": {"pass", "warn", "fail", "total"},
     "checks": [{"id", "host", "role", "description", "status": "pass"|"warn"|"fail",
                 "observed", "hint", "attempts", "duration_s"}, ...]}

JUnit XML (`--junit PATH`): <testsuites> with one <testsuite name="verify.<env>.<host>"> per
host; one <testcase classname="<env>.<host>.<group>" name="<check id>"> per check. A failed
check has <failure type="fail" message="<observed>">observed + hint</failure>; a warning passes
and carries "WARN: <observed>" and its hint in <system-out>; passes carry the observation in
<system-out>. Elements and attributes stay within the Ant/Jenkins JUnit schema (junit-10).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

from jitsi_ops.secrets import scrub
from jitsi_ops.verify.model import Outcome, VerifyReport

LABELS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
# Characters XML 1.0 cannot carry even escaped (server answers may contain them).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def scrubbed(report: VerifyReport, values: Mapping[str, str]) -> VerifyReport:
    """The report with every observed value and hint scrubbed of secrets from `values`."""
    outcomes = tuple(
        replace(o, observed=scrub(o.observed, values), hint=scrub(o.hint, values))
        for o in report.outcomes
    )
    return replace(report, outcomes=outcomes)


def summary_line(report: VerifyReport) -> str:
    """`verify sandbox (stable-11146-2): 27 passed, 1 warning, 2 failed in 31.0s`."""
    warnings = report.count("warn")
    parts = [f"{report.count('pass')} passed"]
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    parts.append(f"{report.count('fail')} failed")
    release = f" ({report.release})" if report.release else ""
    return f"verify {report.env}{release}: {', '.join(parts)} in {report.duration:.1f}s"


def human_lines(report: VerifyReport, *, verbose: bool = False) -> list[str]:
    """One line per check (host, check, status); observed and hint on failures and warnings."""
    if not report.outcomes:
        return [summary_line(report)]
    host_width = max(len(o.host) for o in report.outcomes)
    id_width = max(len(o.id) for o in report.outcomes)
    indent = " " * (host_width + id_width + 4 + 6)
    lines = []
    for outcome in report.outcomes:
        head = f"{outcome.host:<{host_width}}  {outcome.id:<{id_width}}  {LABELS[outcome.status]}"
        show = outcome.status != "pass" or verbose
        if show and outcome.observed:
            head += f"  {outcome.observed}"
        lines.append(head.rstrip())
        if outcome.status != "pass" and outcome.hint:
            lines.append(f"{indent}hint: {outcome.hint}")
    lines.append(summary_line(report))
    return lines


def as_json(report: VerifyReport) -> dict[str, object]:
    """The documented JSON document."""
    return {
        "env": report.env,
        "release": report.release,
        "ok": report.ok,
        "started_at": report.started_at,
        "duration_s": round(report.duration, 3),
        "timeout_s": report.timeout,
        "summary": {
            "pass": report.count("pass"),
            "warn": report.count("warn"),
            "fail": report.count("fail"),
            "total": len(report.outcomes),
        },
        "checks": [o.as_dict() for o in report.outcomes],
    }


def _text(value: str) -> str:
    return _XML_INVALID.sub("?", value)


def _testcase(parent: ElementTree.Element, env: str, outcome: Outcome) -> None:
    group = outcome.id.split(".", 1)[0]
    case = ElementTree.SubElement(
        parent,
        "testcase",
        classname=f"{env}.{outcome.host}.{group}",
        name=outcome.id,
        time=f"{outcome.duration:.3f}",
    )
    if outcome.status == "fail":
        failure = ElementTree.SubElement(
            case, "failure", type="fail", message=_text(outcome.observed or "failed")
        )
        failure.text = _text(outcome.observed + (f"\nhint: {outcome.hint}" if outcome.hint else ""))
    else:
        out = ElementTree.SubElement(case, "system-out")
        prefix = "WARN: " if outcome.status == "warn" else ""
        hint = f"\nhint: {outcome.hint}" if outcome.status == "warn" and outcome.hint else ""
        out.text = _text(prefix + outcome.observed + hint)


def junit_xml(report: VerifyReport) -> str:
    """The report as JUnit XML text (one testsuite per host)."""
    root = ElementTree.Element(
        "testsuites",
        name=f"jitsi-ops verify {report.env}",
        tests=str(len(report.outcomes)),
        failures=str(report.count("fail")),
        errors="0",
        time=f"{report.duration:.3f}",
    )
    hosts: list[str] = []
    for outcome in report.outcomes:
        if outcome.host not in hosts:
            hosts.append(outcome.host)
    for host in hosts:
        mine = [o for o in report.outcomes if o.host == host]
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"verify.{report.env}.{host}",
            tests=str(len(mine)),
            failures=str(sum(1 for o in mine if o.status == "fail")),
            errors="0",
            skipped="0",
            time=f"{sum(o.duration for o in mine):.3f}",
            # JUnit timestamps carry no zone (the Ant/Jenkins schema); ours is UTC.
            timestamp=report.started_at[:19],
            hostname=host,
        )
        properties = ElementTree.SubElement(suite, "properties")
        for name, value in (
            ("env", report.env),
            ("release", report.release or ""),
            ("timeout_s", f"{report.timeout:g}"),
        ):
            ElementTree.SubElement(properties, "property", name=name, value=value)
        for outcome in mine:
            _testcase(suite, report.env, outcome)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, "unicode") + "\n"


def write_junit(report: VerifyReport, path: Path) -> None:
    """Write the JUnit XML file (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(report), encoding="utf-8")
